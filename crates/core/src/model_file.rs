//! The saved model: the head's safetensors plus a JSON metadata file beside it.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, JsonContext, Result, invalid};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::dataset::split::SplitSpec;
use crate::metrics::Metrics;
use crate::preprocess::PreprocessSpec;
use crate::recipe::{EpochStats, TrainOptions};
use gc_engine::head::Head;

/// Version of the metadata format.
pub const FORMAT_VERSION: u32 = 1;

/// Image counts of the dataset a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// The dataset folder.
    pub root: PathBuf,
    /// Images per class (in class order), as scanned.
    pub class_counts: Vec<usize>,
    /// Images in each split that were used (train, validation, test).
    pub split_counts: [usize; 3],
    /// Files that could not be read and were skipped.
    pub skipped: usize,
}

/// Everything recorded about how a model was made and how well it does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Metadata format version.
    pub format_version: u32,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Preprocessing (backbone, face crop, version); must match at prediction time.
    pub preprocess: PreprocessSpec,
    /// sha256 of the backbone weights the features came from.
    pub backbone_sha256: String,
    /// How the model was made, in words.
    pub origin: String,
    /// Training options (absent for a zero-shot head).
    pub training: Option<TrainOptions>,
    /// The split rule.
    pub split: Option<SplitSpec>,
    /// The dataset it was trained on.
    pub dataset: Option<DatasetSummary>,
    /// Metrics on the held-out test split.
    pub test_metrics: Option<Metrics>,
    /// Metrics on the validation split.
    pub validation_metrics: Option<Metrics>,
    /// Loss/accuracy per epoch.
    pub history: Vec<EpochStats>,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
}

/// A head with its metadata.
#[derive(Debug, Clone)]
pub struct Model {
    /// Metadata.
    pub meta: ModelMeta,
    /// The trained head.
    pub head: Head,
}

/// The `.safetensors` and `.json` paths of a model given either (or a bare stem).
pub fn model_paths(path: &Path) -> (PathBuf, PathBuf) {
    let stem = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") | Some("json") => path.with_extension(""),
        _ => path.to_path_buf(),
    };
    let add = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
    (add("safetensors"), add("json"))
}

/// Current time as RFC 3339.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Model {
    /// Writes `X.safetensors` and `X.json`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let (st, js) = model_paths(path);
        if let Some(dir) = st.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).io(|| format!("cannot create folder {}", dir.display()))?;
        }
        self.head.save(&st)?;
        std::fs::write(&js, serde_json::to_string_pretty(&self.meta)?)
            .io(|| format!("cannot write model metadata {}", js.display()))?;
        Ok(())
    }

    /// Reads a model and checks that its head fits its metadata and the installed backbone.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (st, js) = model_paths(path);
        let text = std::fs::read_to_string(&js).io(|| {
            format!(
                "cannot read model metadata {} (a model is a .safetensors file with a .json beside it)",
                js.display()
            )
        })?;
        let meta: ModelMeta = serde_json::from_str(&text)
            .damaged(|| format!("model metadata {} is damaged or from another program", js.display()))?;
        if meta.format_version > FORMAT_VERSION {
            invalid!("model {} was written by a newer gender-classifier; update the app", js.display());
        }
        let expected = meta.preprocess.backbone.weight_file().sha256;
        if meta.backbone_sha256 != expected {
            invalid!(
                "model {} was trained on different {} weights (sha256 {}); retrain it with this version",
                st.display(),
                meta.preprocess.backbone,
                meta.backbone_sha256
            );
        }
        let head =
            Head::load(&st, meta.preprocess.backbone.feature_dim(), meta.classes.len(), device).map_err(|source| {
                Error::Model {
                    what: format!("model {} does not fit its backbone {}", st.display(), meta.preprocess.backbone),
                    source: Box::new(source),
                }
            })?;
        Ok(Self { meta, head })
    }
}
