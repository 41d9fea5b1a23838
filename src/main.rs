//! `gender-classifier`: the desktop app (no arguments or `app`) and the CLI (`train`, `eval`, `classify`, ...).

mod bench;
mod bench_pipeline;
mod builtin;
mod cli;
mod export;

use clap::{CommandFactory as _, FromArgMatches as _};
use cli::{Cli, Command};

#[global_allocator]
static ALLOCATOR: gc_engine::memory::LineAligned = gc_engine::memory::LineAligned;

fn main() -> std::process::ExitCode {
    gc_engine::memory::keep_freed_buffers();
    gc_core::fault::setup_from_env();
    let cli = parse_command_line();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && !cli::no_color())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    // Device, models and cache are resolved once, for the app and every subcommand alike.
    let result = gc_core::context::Context::resolve(cli.device.name(), cli.cache.as_deref(), cli.models.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(|ctx| {
            if ctx.models_dir == ctx.builtin_models_dir() {
                builtin::install(&ctx.models_dir)?;
            }
            Ok(ctx)
        })
        .inspect(|ctx| {
            if cli.device == cli::DeviceArg::Auto {
                eprintln!("device: {} (picked by --device auto)", gc_engine::device::describe(&ctx.device));
            }
        })
        .and_then(|ctx| match &cli.command {
            None => Ok(gc_app::run_native(ctx, Vec::new(), None)?),
            Some(Command::App { paths, model }) => {
                // A model given by name is checked before the window opens, as the CLI checks it:
                // a typo fails here with the file named, not later inside the app.
                if let Some(m) = model {
                    gc_core::model_file::Model::load(m, &ctx.device)?;
                }
                Ok(gc_app::run_native(ctx, paths.clone(), model.clone())?)
            }
            Some(_) => cli::run(&cli, &ctx),
        });
    match result {
        Ok(()) => std::process::ExitCode::from(Exit::Success as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(Exit::of(&e) as u8)
        }
    }
}

/// The exit codes of a run that got past parsing (clap exits with 2 on a usage error itself);
/// `--help` lists them all (`cli::args::EXIT_CODES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    /// The run did what was asked.
    Success = 0,
    /// It failed; the message says why.
    Failure = 1,
    /// The user stopped it with Ctrl-C.
    Cancelled = 130,
}

impl Exit {
    /// 130 where the typed `gc_core::error::Cancelled` is anywhere in the chain, else 1: decided by
    /// type, never by the message text.
    fn of(e: &anyhow::Error) -> Self {
        if gc_core::error::is_cancelled(e.as_ref()) { Exit::Cancelled } else { Exit::Failure }
    }
}

/// Parses the command line; `--version` also lists the built-in models (hashed only when asked).
fn parse_command_line() -> Cli {
    let mut command = Cli::command();
    if std::env::args_os().any(|a| a == "--version" || a == "-V") {
        command = command.long_version(&*Box::leak(builtin::version_text().into_boxed_str()));
    }
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use super::{Exit, cli};

    #[test]
    fn a_cancelled_run_exits_130_by_type_and_any_other_failure_1() {
        let cancelled = anyhow::Error::from(gc_core::error::Cancelled).context("interrupted after 3 of 6 photos");
        assert_eq!(Exit::of(&cancelled), Exit::Cancelled);
        assert_eq!(Exit::of(&cancelled.context("more context")), Exit::Cancelled);
        // The words alone decide nothing.
        assert_eq!(Exit::of(&anyhow::anyhow!("cancelled; interrupted by Ctrl-C")), Exit::Failure);
        for (exit, code) in [(Exit::Success, 0), (Exit::Failure, 1), (Exit::Cancelled, 130)] {
            assert_eq!(exit as u8, code);
            assert!(cli::args::EXIT_CODES.contains(&format!("\n  {code} ")), "--help lists {code}");
        }
        assert!(cli::args::EXIT_CODES.contains("\n  2 "), "--help lists the usage error");
    }
}
