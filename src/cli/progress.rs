//! Progress bars on stderr: drawn only when stderr is a terminal, never in colour.

use std::io::IsTerminal as _;
use std::sync::atomic::AtomicBool;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use gc_core::features::extract::Progress;

/// True when `NO_COLOR` is set to a non-empty value (<https://no-color.org/>): no ANSI colour in
/// logs or bars.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// A bar labelled `label` over `len` steps (0 when not known yet); hidden unless stderr is a
/// terminal. Its template has no colour, so it honours `NO_COLOR` as it is.
pub fn bar(label: &str, len: u64) -> ProgressBar {
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(label.to_string());
    pb
}

/// What every subcommand does when feature extraction reports progress: move the bar, and give
/// the tests' Ctrl-C fault point its turn.
pub fn on_extract(pb: &ProgressBar, p: &Progress, cancel: &AtomicBool) {
    pb.set_length(p.total as u64);
    pb.set_position(p.done as u64);
    interrupt_point!("cli::progress", cancel);
}
