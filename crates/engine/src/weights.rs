//! Loading of pretrained safetensors weights with integrity checks (existence, sha256, shapes).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

/// Description of one shipped weight file: its name in `models/` and its expected sha256.
#[derive(Debug, Clone, Copy)]
pub struct WeightFile {
    /// File name inside the models directory.
    pub file_name: &'static str,
    /// Expected lowercase hex sha256 of the file's bytes.
    pub sha256: &'static str,
}

/// Faceres (face MobileNetV1 with gender head), float32 weights.
pub const FACERES: WeightFile = WeightFile {
    file_name: "faceres_deep.f32.safetensors",
    sha256: "633513e232a8ac8d58ce66ab031ffbdcf5871e1cb9929f1a1202d5912070769a",
};

/// Inception-v3 backbone (torchvision names), float16 weights.
pub const INCEPTION_V3: WeightFile = WeightFile {
    file_name: "inception_v3.safetensors",
    sha256: "299e85e37569e1c94c9acb1c27ba19057cc2550b734256675538bc6034de4fa9",
};

/// BlazeFace face detector, float16 weights.
pub const BLAZEFACE: WeightFile = WeightFile {
    file_name: "blazeface.safetensors",
    sha256: "6578af98c20c3cebd18f68bbf88db8bb7858e5b259de5fd8bed29ae3188030d9",
};

/// The directory holding the shipped models.
///
/// Order: `$GENDER_CLASSIFIER_MODELS`, `./models`, then the workspace's `models/` (path compiled in).
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GENDER_CLASSIFIER_MODELS") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("models");
    if local.join(FACERES.file_name).exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Lowercase hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a weight file, checks its sha256 and returns a f32 `VarBuilder` over it.
///
/// Errors name the file and say how to fix it. Shape mismatches surface when the model
/// asks for a tensor; callers wrap them with [`with_file_context`].
pub fn load_checked(path: &Path, expected: &WeightFile, device: &Device) -> Result<VarBuilder<'static>> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read model file {}: copy {} into the models directory (see models/README.md) \
             or set GENDER_CLASSIFIER_MODELS",
            path.display(),
            expected.file_name
        )
    })?;
    let actual = sha256_hex(&bytes);
    if actual != expected.sha256 {
        bail!(
            "model file {} is damaged or not the expected {} (sha256 {actual}, expected {}): \
             restore it from a fresh clone (see models/README.md)",
            path.display(),
            expected.file_name,
            expected.sha256
        );
    }
    VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)
        .with_context(|| format!("model file {} is not valid safetensors", path.display()))
}

/// Adds the file name to an error raised while building a model from its weights.
pub fn with_file_context<T>(r: candle_core::Result<T>, path: &Path) -> Result<T> {
    r.with_context(|| {
        format!(
            "model file {} does not match the expected architecture (missing or wrong-shaped tensor): \
             restore it from a fresh clone (see models/README.md)",
            path.display()
        )
    })
}
