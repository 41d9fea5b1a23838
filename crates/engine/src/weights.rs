//! Loading of pretrained safetensors weights with integrity checks (existence, sha256, shapes).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};

use crate::error::candle_message;
use crate::{Error, Result};

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

/// The environment variable that names the folder of the shipped weights (as `--models` does).
pub const MODELS_ENV: &str = "GENDER_CLASSIFIER_MODELS";

/// The workspace's own `models/` folder, for tests and tools run from the source tree.
///
/// Order: `$GENDER_CLASSIFIER_MODELS`, `./models`, then the workspace's `models/` (path compiled
/// in). The installed binary does not use this: it searches [`search_path`] instead.
pub fn models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(MODELS_ENV) {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("models");
    if local.join(FACERES.file_name).exists() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// The folders an installed binary searches for the shipped weights, in order.
///
/// `$GENDER_CLASSIFIER_MODELS` alone when it is set; else `models/` next to the executable (a
/// portable copy), then `builtin`, the user's data folder where the binary writes the models
/// built into it.
pub fn search_path(builtin: &Path) -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os(MODELS_ENV) {
        return vec![PathBuf::from(dir)];
    }
    let beside_exe = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("models")));
    beside_exe.into_iter().chain([builtin.to_path_buf()]).collect()
}

/// The first folder of [`search_path`] that holds faceres, else the last one searched.
pub fn find_models_dir(builtin: &Path) -> PathBuf {
    let path = search_path(builtin);
    let found = path.iter().find(|d| d.join(FACERES.file_name).is_file());
    found.or(path.last()).cloned().unwrap_or_else(|| builtin.to_path_buf())
}

/// Lowercase hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads a weight file, checks its sha256 and returns a f32 `VarBuilder` over it.
///
/// Errors name the file and say how to fix it: [`Error::ModelMissing`],
/// [`Error::ModelUnreadable`], or [`Error::ModelCorrupt`] (wrong sha256, not safetensors). Shape
/// mismatches surface when the model asks for a tensor; callers wrap them with
/// [`with_file_context`].
pub fn load_checked(path: &Path, expected: &WeightFile, device: &Device) -> Result<VarBuilder<'static>> {
    let bytes = std::fs::read(path).map_err(|e| Error::model_read(path, e))?;
    let actual = sha256_hex(&bytes);
    if actual != expected.sha256 {
        return Err(Error::model_corrupt(
            path,
            format!(
                "is damaged or not the expected {} (sha256 {actual}, expected {})",
                expected.file_name, expected.sha256
            ),
        ));
    }
    VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)
        .map_err(|e| Error::model_corrupt(path, format!("is not valid safetensors ({})", candle_message(&e))))
}

/// Turns an error raised while building a model from the weights in `path` into
/// [`Error::ModelCorrupt`], naming the file and the missing or wrong-shaped tensor.
pub fn with_file_context<T>(r: candle_core::Result<T>, path: &Path) -> Result<T> {
    r.map_err(|e| {
        Error::model_corrupt(
            path,
            format!(
                "does not match the expected architecture (missing or wrong-shaped tensor: {})",
                candle_message(&e)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use candle_core::{DType, Device};
    use candle_nn::VarBuilder;

    use crate::Error;
    use crate::inception_v3::InceptionV3;

    #[test]
    fn errors_name_the_file_the_tensor_and_the_fix() {
        let path = Path::new("/nowhere/inception_v3.safetensors");
        let err = super::load_checked(path, &super::INCEPTION_V3, &Device::Cpu).err().expect("missing file");
        assert!(matches!(err, Error::ModelMissing { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("/nowhere/inception_v3.safetensors") && text.contains("models/README.md"), "{text}");

        let vb = VarBuilder::from_tensors(HashMap::new(), DType::F32, &Device::Cpu);
        let err = super::with_file_context(InceptionV3::from_vb(vb), path).expect_err("no tensors");
        assert!(matches!(err, Error::ModelCorrupt { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("/nowhere/inception_v3.safetensors"), "{text}");
        assert!(text.contains("Conv2d_1a_3x3") && text.contains("fresh clone"), "{text}");
    }
}
