//! Typed errors of core: what callers match on (a cancelled run, a file that was skipped) as
//! types, never as message text.

use std::path::PathBuf;

use crate::imaging::ImageLoadError;

/// The run was cancelled by the user; everything computed so far is in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled; finished images are cached and the next run resumes from there")]
pub struct Cancelled;

/// True when `e` (or any error in its chain) is a [`Cancelled`].
pub fn is_cancelled(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Cancelled>().is_some())
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
