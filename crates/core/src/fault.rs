//! Fault points: named places at every write of a model, a cache entry and the journal, where the
//! test suite makes the write fail or the process die.
//!
//! They cost nothing unless core is built with the `failpoints` feature (the tests turn it on).
//! Then `FAILPOINTS="model::tmp_written=return"` makes that write fail with an I/O error, and
//! `FAILPOINTS="model::tmp_written=return(abort)"` kills the process there, with no clean-up run, as
//! `kill -9` would. Several points are separated by `;`. The names are listed in `docs/RELIABILITY.md`.

/// Fails (or kills the process) here when the fault point `$name` is switched on; see the module doc.
///
/// The enclosing function must return a `Result` whose error converts from [`std::io::Error`].
#[macro_export]
macro_rules! fault_point {
    ($name:expr) => {
        fail::fail_point!($name, |arg: Option<String>| Err($crate::fault::triggered($name, arg).into()))
    };
}

/// Reads `FAILPOINTS` from the environment once, at the start of a process (no-op without the feature).
pub fn setup_from_env() {
    #[cfg(feature = "failpoints")]
    std::mem::forget(fail::FailScenario::setup());
}

/// What a switched-on fault point does: `abort` kills the process, anything else is an I/O error.
#[doc(hidden)]
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
pub fn triggered(name: &str, arg: Option<String>) -> std::io::Error {
    if arg.as_deref() == Some("abort") {
        // As sudden as `kill -9`: no destructor, no buffered write, no clean-up runs.
        std::process::abort();
    }
    std::io::Error::other(format!("fault point {name} (injected by a test)"))
}
