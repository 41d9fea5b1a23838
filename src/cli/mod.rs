//! The command-line interface: `train`, `eval`, `classify`, `faces`, `audit`, `bench`, `zero-shot`
//! (`app` is started by `main`).
//!
//! `args` holds what clap parses; `output` the CSV and JSON writers every subcommand prints with;
//! `progress` the progress bars on stderr; one module per subcommand does the work through `gc-core`.
//! Every long loop checks the cancel flag that Ctrl-C sets ([`install_ctrlc`]) and stops with the
//! typed [`gc_core::error::Cancelled`], which `main` turns into exit code 130.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

use gc_core::classify::Classifier;
use gc_core::context::Context;

/// A fault point that stands in for the user's Ctrl-C, so that a test interrupts a run at a known
/// place instead of racing a signal against the work: where `FAILPOINTS` sets `$name` to
/// `return(sigint)` (`cli::progress=2*off->return(sigint)` fires on the third call), the process
/// sends itself SIGINT, which goes through the real handler of [`install_ctrlc`], and waits until
/// that handler has set `$cancel`, so the next check of the flag stops the run. Nothing is compiled
/// in unless the tests build the binary with the `fail` crate's `failpoints` feature.
///
/// The points: `cli::progress` after each chunk of feature extraction reports progress (`train`,
/// `eval`, `audit`; the first call is the report before any chunk), `cli::classified` after each
/// photo of `classify`.
macro_rules! interrupt_point {
    ($name:literal, $cancel:expr) => {
        let fire = || -> bool {
            fail::fail_point!($name, |arg: Option<String>| arg.as_deref() == Some("sigint"));
            false
        };
        if fire() {
            $crate::cli::interrupt_self($cancel);
        }
    };
}

pub mod args;
mod audit;
mod classify;
mod eval;
mod faces;
mod output;
mod progress;
mod train;

pub use args::{BackboneArg, Cli, Command, DeviceArg};
pub use progress::no_color;

/// Runs a parsed command line (everything except `app`).
pub fn run(cli: &Cli, ctx: &Context) -> Result<()> {
    quiet_on_closed_stdout();
    let cancel = install_ctrlc();
    match cli.command.as_ref().expect("app handled by main") {
        Command::Train(a) => train::run(ctx, a, &cancel),
        Command::Eval(a) => eval::run(ctx, a, &cancel),
        Command::Classify(a) => classify::run(ctx, a, &cancel),
        Command::Faces(a) => faces::run(ctx, a, &cancel),
        Command::Audit(a) => audit::run(ctx, a, &cancel),
        Command::Bench(a) => crate::bench::run(a, ctx, &cancel),
        Command::ZeroShot { out, no_face_crop } => {
            gc_core::train::run::zero_shot_model(ctx, !no_face_crop)?.save(out)?;
            eprintln!("zero-shot model written to {}", out.display());
            Ok(())
        }
        Command::Export(a) => crate::export::run(ctx, a),
        Command::App { .. } => unreachable!("the app is started by main"),
    }
}

/// The cancel flag shared with the Ctrl-C handler.
pub fn install_ctrlc() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    if let Err(e) = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst)) {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
    flag
}

/// A reader that closes stdout (`| head`) ends the process quietly, as it does any Unix filter,
/// instead of a panic in `println!`.
fn quiet_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: restoring the default action of one signal, before any other thread writes to stdout.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Sends this process SIGINT and waits (at most 10 s) until the Ctrl-C handler has set `cancel`.
fn interrupt_self(cancel: &AtomicBool) {
    #[cfg(unix)]
    // SAFETY: `raise` sends a signal to this thread; the handler that `install_ctrlc` installed
    // only writes to a pipe, which the ctrlc crate's thread reads before it sets the flag.
    unsafe {
        libc::raise(libc::SIGINT);
    }
    #[cfg(not(unix))]
    cancel.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cancel.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The error of a run the user stopped: the typed [`gc_core::error::Cancelled`] (exit code 130)
/// with `what` (how far it got) as context.
fn interrupted(what: String) -> anyhow::Error {
    anyhow::Error::from(gc_core::error::Cancelled).context(what)
}

/// A `gc-core` error as an `anyhow` one, with "interrupted" in front where the user stopped the run.
fn cancelled_or(e: gc_core::error::Error) -> anyhow::Error {
    let e = anyhow::Error::from(e);
    // The chain keeps the typed `Cancelled`, which `main` turns into exit code 130.
    if gc_core::error::is_cancelled(e.as_ref()) {
        e.context("interrupted; the features computed so far are cached, so the next run resumes from there")
    } else {
        e
    }
}

/// The model at `model` (default: the shipped one), with the crop and flip choices of `crops`.
fn load_classifier(
    model: &Option<PathBuf>,
    crops: &gc_core::preprocess::CropOverrides,
    ctx: &Context,
) -> Result<Classifier> {
    let path = model.clone().unwrap_or_else(|| ctx.default_model());
    let mut m = gc_core::model_file::Model::load(&path, &ctx.device)?;
    m.meta.preprocess = crops.apply(m.meta.preprocess);
    Ok(Classifier::new(m, ctx)?)
}

/// True when both name the same existing folder.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The paths for a message, comma-separated.
fn list_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}
