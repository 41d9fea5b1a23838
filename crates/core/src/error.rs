//! Typed errors of core: [`Error`] for every fallible call, with what callers decide on (a
//! cancelled run, a broken model, a file that was skipped) as types, never as message text.
//!
//! Messages say what failed and what to do; an underlying error (the OS's, the parser's, the
//! engine's) is kept as the source, so `{:#}` prints the whole chain once.

use std::path::PathBuf;

use crate::imaging::ImageLoadError;
use crate::task::Panicked;

/// Why a call into core failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user cancelled the run.
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
    /// A network or weight file failed in the engine.
    #[error(transparent)]
    Engine(Box<gc_engine::Error>),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(Box<candle_core::Error>),
    /// A photo could not be loaded.
    #[error(transparent)]
    Image(#[from] ImageLoadError),
    /// A background task panicked.
    #[error(transparent)]
    Panicked(#[from] Panicked),
    /// Reading or writing a file or folder failed; `what` names it and what to do.
    #[error("{what}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file (model metadata, journal, review log) is damaged; `what` names it and what to do.
    #[error("{what}")]
    Damaged {
        /// Which file, and what to do.
        what: String,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A model file could not be loaded; `what` names it.
    #[error("{what}")]
    Model {
        /// Which model, and what to do.
        what: String,
        /// The engine's error.
        source: Box<gc_engine::Error>,
    },
    /// Another window or program has the dataset open for changes; this one may only read it.
    #[error("{what}")]
    Locked {
        /// Which dataset, and what to do.
        what: String,
    },
    /// Writing JSON failed.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// An operating-system error with nothing more to say about it.
    #[error(transparent)]
    Os(#[from] std::io::Error),
    /// The input cannot be used as asked (a folder without classes, an unknown class, bad
    /// options); the message says what to change.
    #[error("{0}")]
    Invalid(String),
}

impl From<gc_engine::Error> for Error {
    fn from(e: gc_engine::Error) -> Self {
        Error::Engine(Box::new(e))
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Candle(Box::new(e))
    }
}

/// Core's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Returns early with [`Error::Invalid`] built like `format!`.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($arg)*)))
    };
}
pub(crate) use invalid;

/// Adds what was being done to an I/O error.
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`Error::Io`] with the text `what()` returns.
    fn io(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { what: what(), source })
    }
}

/// Says which JSON file is damaged and what to do.
pub(crate) trait JsonContext<T> {
    /// Wraps the error as [`Error::Damaged`] with the text `what()` returns.
    fn damaged(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> JsonContext<T> for serde_json::Result<T> {
    fn damaged(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Damaged { what: what(), source })
    }
}

/// The run was cancelled by the user (Ctrl-C or Cancel). Where work was cached, the caller's
/// context says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled by the user")]
pub struct Cancelled;

/// The error's message followed by its causes, `"what: why: deeper why"` (a cause whose text is
/// already in the message is not repeated).
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let t = cause.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        next = cause.source();
    }
    text
}

/// True when `e`, or any error in its chain, is a cancelled run.
pub fn is_cancelled(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<Cancelled>().is_some() || matches!(e.downcast_ref::<Error>(), Some(Error::Cancelled(_))) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Why one file of a batch was skipped; the batch goes on without it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read from disk.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not an image this program can use.
    #[error(transparent)]
    Image(#[from] ImageLoadError),
    /// The face detector failed on the decoded image.
    #[error("face detection failed on {path}: {reason}")]
    Detection {
        /// The file.
        path: PathBuf,
        /// The detector's error, with its causes.
        reason: String,
    },
}
