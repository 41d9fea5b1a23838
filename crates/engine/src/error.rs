//! The engine's error type: what went wrong, which file or device it concerns and what to do.
//!
//! Each message names the file (or device, or input) and says how to fix it. Variants that wrap
//! an underlying error expose it as [`std::error::Error::source`] rather than repeating it in the
//! message, so a caller printing the whole chain of causes shows each of them exactly once.

use std::path::{Path, PathBuf};

use crate::weights::{BLAZEFACE, FACERES, INCEPTION_V3};

/// Result of the engine's fallible operations.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in gc-engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A weight file is not there.
    #[error("cannot read model file {}: {}", path.display(), missing_advice(path))]
    ModelMissing {
        /// The file that was looked for.
        path: PathBuf,
    },

    /// A weight file exists but could not be read (permissions, a folder, an I/O error).
    #[error("cannot read model file {}: check that it is a readable file, or {}", path.display(), missing_advice(path))]
    ModelUnreadable {
        /// The file that could not be read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A weight file is there but is not what the network needs: wrong sha256, not safetensors,
    /// a missing or wrong-shaped tensor.
    #[error("model file {} {reason}: {}", path.display(), corrupt_advice(path))]
    ModelCorrupt {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it, e.g. "is damaged or not the expected ... (sha256 ...)".
        reason: String,
    },

    /// A model's weights could not be written.
    #[error(
        "cannot write model weights {}: check that its folder exists and is writable, and that the disk has room",
        path.display()
    )]
    ModelUnwritable {
        /// The file that was being written.
        path: PathBuf,
        /// Candle's error (usually an I/O error).
        source: candle_core::Error,
    },

    /// `--device` named something other than auto, cpu, cuda or metal.
    #[error("unknown device '{0}': use auto, cpu, cuda or metal")]
    UnknownDevice(String),

    /// A backbone name other than faceres or inception-v3.
    #[error("unknown backbone '{0}': use faceres or inception-v3")]
    UnknownBackbone(String),

    /// A GPU device was asked for but this binary was built without its cargo feature.
    #[error(
        "this build has no {device} support: rebuild with `cargo build --release --features {feature}`, or use --device cpu"
    )]
    DeviceNotBuilt {
        /// The device's display name ("CUDA", "Metal").
        device: &'static str,
        /// The cargo feature that enables it ("cuda", "metal").
        feature: &'static str,
    },

    /// The build supports the device but none could be opened (no GPU, no driver).
    #[error("no usable {device} GPU ({reason}); use --device cpu")]
    DeviceUnavailable {
        /// The device's display name ("CUDA", "Metal").
        device: &'static str,
        /// Why it could not be opened, as the driver reported it.
        reason: String,
    },

    /// An input of the wrong shape or size was given to a network, e.g. feature vectors from
    /// another backbone; the message says which sizes were expected.
    #[error("{0}")]
    Input(String),

    /// An error raised by Candle while running a network.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Whether `path` names one of the shipped weight files (rather than a trained head).
fn is_shipped(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    [FACERES, INCEPTION_V3, BLAZEFACE].iter().any(|w| w.file_name == name)
}

/// What to do about a missing file.
fn missing_advice(path: &Path) -> String {
    if is_shipped(path) {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut looked: Vec<String> =
            crate::weights::search_path(dir).iter().map(|d| d.display().to_string()).collect();
        looked.dedup();
        format!(
            "looked in {}; copy {name} into one of them (see models/README.md) or set GENDER_CLASSIFIER_MODELS",
            looked.join(", ")
        )
    } else {
        "check the path, or train and save a model there first".to_owned()
    }
}

/// What to do about a file with the wrong content.
fn corrupt_advice(path: &Path) -> &'static str {
    if is_shipped(path) {
        "delete it so that the program writes its built-in copy again, or restore it from a fresh clone (see models/README.md)"
    } else {
        "retrain the model, or restore it from a backup"
    }
}

impl Error {
    /// The error for a failed read of the model file `path`: [`Error::ModelMissing`] when it
    /// does not exist, else [`Error::ModelUnreadable`].
    pub fn model_read(path: &Path, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::ModelMissing { path: path.to_path_buf() },
            _ => Error::ModelUnreadable { path: path.to_path_buf(), source },
        }
    }

    /// [`Error::ModelCorrupt`] for `path`.
    pub fn model_corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Error::ModelCorrupt { path: path.to_path_buf(), reason: reason.into() }
    }
}

/// Candle's message for `e` without the backtrace Candle appends when `RUST_BACKTRACE` is set,
/// for embedding in a one-line [`Error::ModelCorrupt`] reason.
pub(crate) fn candle_message(e: &candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::path::Path;

    use super::Error;

    #[test]
    fn messages_name_the_file_and_say_what_to_do() {
        let shipped = Path::new("/m/faceres_deep.f32.safetensors");
        let missing = Error::model_read(shipped, std::io::ErrorKind::NotFound.into());
        assert!(matches!(missing, Error::ModelMissing { .. }));
        let text = missing.to_string();
        assert!(text.contains("/m/faceres_deep.f32.safetensors"), "{text}");
        assert!(text.contains("GENDER_CLASSIFIER_MODELS"), "{text}");

        let denied = Error::model_read(shipped, std::io::ErrorKind::PermissionDenied.into());
        assert!(matches!(denied, Error::ModelUnreadable { .. }));
        assert!(denied.source().is_some(), "the I/O error is kept as the source");

        let head = Path::new("/x/my-model.safetensors");
        let text = Error::model_corrupt(head, "lacks tensor 'out.weight'").to_string();
        assert!(text.contains("/x/my-model.safetensors lacks tensor 'out.weight'"), "{text}");
        assert!(text.contains("retrain"), "{text}");
        assert!(Error::model_read(head, std::io::ErrorKind::NotFound.into()).to_string().contains("check the path"));
    }
}
