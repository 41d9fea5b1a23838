//! What every run needs before it starts: the compute device, the models folder and the cache root.
//!
//! The binary resolves one [`Context`] from its command line and the environment, then passes it
//! down; nothing below reads the environment for these again. `--cache DIR` and
//! `$GENDER_CLASSIFIER_CACHE=DIR` name the same folder.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::features::FeatureCache;

/// The environment variable that names the cache root when `--cache` is not given.
pub const CACHE_ENV: &str = "GENDER_CLASSIFIER_CACHE";

/// The environment variable that names the data root when the user data folder should not be used.
pub const DATA_ENV: &str = "GENDER_CLASSIFIER_DATA";

/// Device, models folder, cache root and data root of one run of the program.
#[derive(Debug, Clone)]
pub struct Context {
    /// Where the networks run.
    pub device: Device,
    /// The folder holding the shipped weights and the default model.
    pub models_dir: PathBuf,
    /// The folder holding every cache: `features/` and `thumbs/`.
    pub cache_root: PathBuf,
    /// The folder holding what the user keeps: `models/` (trained models) and `builtin/` (the
    /// models built into the binary, written out on first use).
    pub data_root: PathBuf,
}

impl Context {
    /// Resolves a context: `device` by name (`auto`, `cpu`, `cuda`, `metal`), `cache` else
    /// `$GENDER_CLASSIFIER_CACHE` else the user cache folder, `models` else the first folder of
    /// [`gc_engine::weights::search_path`] that holds the weights (the data root's `builtin/`
    /// when none does: the binary writes its built-in models there).
    pub fn resolve(device: &str, cache: Option<&Path>, models: Option<&Path>) -> crate::error::Result<Self> {
        let data_root = default_data_root();
        let builtin = data_root.join(BUILTIN_DIR);
        Ok(Self {
            device: gc_engine::device::select(device)?,
            models_dir: models.map(Path::to_path_buf).unwrap_or_else(|| gc_engine::weights::find_models_dir(&builtin)),
            cache_root: cache.map(Path::to_path_buf).unwrap_or_else(default_cache_root),
            data_root,
        })
    }

    /// The CPU with the workspace's models folder, `cache_root`, and `cache_root/data` as the
    /// data root (for tests and tools run from the source tree).
    pub fn cpu_with_cache(cache_root: impl Into<PathBuf>) -> Self {
        let cache_root = cache_root.into();
        Self {
            device: Device::Cpu,
            models_dir: gc_engine::weights::models_dir(),
            data_root: cache_root.join("data"),
            cache_root,
        }
    }

    /// Where the models the user trains are kept: `<data root>/models`.
    pub fn trained_models_dir(&self) -> PathBuf {
        self.data_root.join("models")
    }

    /// Where the binary writes the models built into it: `<data root>/builtin`.
    pub fn builtin_models_dir(&self) -> PathBuf {
        self.data_root.join(BUILTIN_DIR)
    }

    /// The feature cache, under `<cache root>/features`.
    pub fn feature_cache(&self) -> FeatureCache {
        FeatureCache::new(self.cache_root.join("features"))
    }

    /// The thumbnail cache folder, `<cache root>/thumbs`.
    pub fn thumbnails_dir(&self) -> PathBuf {
        self.cache_root.join("thumbs")
    }

    /// The shipped default model (`default.safetensors` in the models folder).
    pub fn default_model(&self) -> PathBuf {
        self.models_dir.join("default.safetensors")
    }

    /// The path of one of the shipped weight files.
    pub fn weights(&self, file: &gc_engine::weights::WeightFile) -> PathBuf {
        self.models_dir.join(file.file_name)
    }
}

/// `$GENDER_CLASSIFIER_CACHE`, else `<user cache folder>/gender-classifier`, else
/// `.gender-classifier-cache` in the working folder.
pub fn default_cache_root() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("gender-classifier")))
        .unwrap_or_else(|| PathBuf::from(".gender-classifier-cache"))
}

/// The data root's folder for the models built into the binary.
const BUILTIN_DIR: &str = "builtin";

/// `$GENDER_CLASSIFIER_DATA`, else `<user data folder>/gender-classifier`, else
/// `.gender-classifier-data` in the working folder.
pub fn default_data_root() -> PathBuf {
    std::env::var_os(DATA_ENV)
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|d| d.join("gender-classifier")))
        .unwrap_or_else(|| PathBuf::from(".gender-classifier-data"))
}

/// A dataset's own state folder (journal, review log). Trained models live in the data root.
pub fn state_dir(dataset_root: &Path) -> PathBuf {
    dataset_root.join(crate::dataset::journal::STATE_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_cache_folder_holds_features_and_thumbnails() {
        let ctx = Context::resolve("cpu", Some(Path::new("/tmp/x")), None).unwrap();
        assert_eq!(ctx.feature_cache().root(), Path::new("/tmp/x/features"));
        assert_eq!(ctx.thumbnails_dir(), Path::new("/tmp/x/thumbs"));
        assert!(ctx.device.is_cpu());
    }

    #[test]
    fn an_unknown_device_is_refused_with_the_choices() {
        let e = Context::resolve("tpu", None, None).unwrap_err().to_string();
        assert!(e.contains("cpu, cuda or metal"), "{e}");
    }
}
