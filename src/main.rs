//! `gender-classifier`: the desktop app (no arguments or `app`) and the CLI (`train`, `eval`, `classify`, ...).

mod bench;
mod cli;

use clap::Parser;
use cli::{Cli, Command};

#[global_allocator]
static ALLOCATOR: gc_engine::memory::LineAligned = gc_engine::memory::LineAligned;

fn main() -> std::process::ExitCode {
    gc_engine::memory::keep_freed_buffers();
    gc_core::fault::setup_from_env();
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .init();
    // Device, models and cache are resolved once, for the app and every subcommand alike.
    let result = gc_core::context::Context::resolve(&cli.device, cli.cache.as_deref(), cli.models.as_deref())
        .map_err(anyhow::Error::from)
        .inspect(|ctx| {
            if cli.device == "auto" {
                eprintln!("device: {} (picked by --device auto)", gc_engine::device::describe(&ctx.device));
            }
        })
        .and_then(|ctx| match &cli.command {
            None => Ok(gc_app::run_native(ctx, None, None)?),
            Some(Command::App { dir, model }) => {
                // A model given by name is checked before the window opens, as the CLI checks it:
                // a typo fails here with the file named, not later inside the app.
                if let Some(m) = model {
                    gc_core::model_file::Model::load(m, &ctx.device)?;
                }
                Ok(gc_app::run_native(ctx, dir.clone(), model.clone())?)
            }
            Some(_) => cli::run(&cli, &ctx),
        });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let interrupted = gc_core::error::is_cancelled(e.as_ref());
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(if interrupted { 130 } else { 1 })
        }
    }
}
