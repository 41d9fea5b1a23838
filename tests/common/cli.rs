//! Running the binary from the CLI tests: the shipped models, a cache of the test's own, no fault points.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The bundled sample photos.
pub fn samples() -> PathBuf {
    super::root().join("assets/samples")
}

/// The binary with the shipped models and its own cache folder.
pub fn bin(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gender-classifier"));
    c.env("GENDER_CLASSIFIER_MODELS", super::root().join("models"))
        .env("GENDER_CLASSIFIER_CACHE", cache)
        .env_remove("FAILPOINTS");
    c
}

/// Runs the binary with `args` and waits for it.
pub fn run(args: &[&str], cache: &Path) -> Output {
    bin(cache).args(args).output().expect("binary runs")
}

/// A run's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Stdout of a run that must succeed.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(o));
    String::from_utf8(o.stdout.clone()).expect("UTF-8 output")
}
