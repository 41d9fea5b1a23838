//! The saved model: one `X.safetensors` file holding the head's tensors and, in the safetensors
//! header's `__metadata__` map under [`METADATA_KEY`], the JSON of its [`ModelMeta`].
//!
//! Weights and description live in one file, written whole or not at all
//! ([`crate::durable::write_atomic`]), so they cannot drift apart and a crash mid-save leaves the
//! previous model loadable. The older two-file form (`X.safetensors` without metadata plus `X.json`
//! beside it, as older builds saved them: `tests/fixtures/two-file-model`) is still read. When a
//! file has embedded metadata, a `X.json` beside it is never read; [`Model::save`] removes such a
//! stale sidecar after a successful write when it is one of ours (it parses as [`ModelMeta`]), and
//! leaves any other `X.json` alone.
//!
//! [`Model::load`] checks everything a prediction relies on (shapes, finite weights, classes) so a
//! broken model fails at load with the file named, never later in a matrix product.

use std::collections::{HashMap, HashSet};
use std::io::Read;
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

/// The key of the safetensors `__metadata__` map that holds the model's [`ModelMeta`] as JSON.
pub const METADATA_KEY: &str = "gender_classifier";

/// Safetensors' own limit on the header size (the header holds the metadata).
const MAX_HEADER: u64 = 100_000_000;

/// Image counts of the dataset a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// The dataset folder (a string, or raw bytes when the name is not UTF-8).
    #[serde(with = "crate::dataset::path_serde")]
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
    /// The dataset it was trained on; with several, the first (what older versions read).
    pub dataset: Option<DatasetSummary>,
    /// Every dataset it was trained on, in the order given (empty in models made before several
    /// datasets could be given: then [`ModelMeta::trained_on`] falls back to `dataset`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<DatasetSummary>,
    /// Metrics on the held-out test split.
    pub test_metrics: Option<Metrics>,
    /// Metrics on the validation split.
    pub validation_metrics: Option<Metrics>,
    /// Loss/accuracy per epoch.
    pub history: Vec<EpochStats>,
    /// When it was made (RFC 3339, UTC).
    pub created: String,
    /// How faceres' last blocks were fine-tuned; `None` for a head trained on frozen features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fine_tune: Option<crate::recipe::FineTuneOptions>,
    /// The temperature scaling fitted on the validation split, already applied to the head's last
    /// layer (absent in models made before calibration, and for the zero-shot head).
    #[serde(default)]
    pub calibration: Option<crate::calibration::Calibration>,
}

impl ModelMeta {
    /// Every dataset the model was trained on: `datasets`, else the one `dataset` of older files.
    pub fn trained_on(&self) -> Vec<&DatasetSummary> {
        if self.datasets.is_empty() { self.dataset.iter().collect() } else { self.datasets.iter().collect() }
    }
}

/// A head with its metadata.
#[derive(Debug, Clone)]
pub struct Model {
    /// Metadata.
    pub meta: ModelMeta,
    /// The trained head.
    pub head: Head,
    /// Fine-tuned backbone blocks that replace the shipped ones; `None` for a head-only model.
    pub tuned: Option<TunedBlocks>,
}

/// Prefix of the fine-tuned backbone tensors in a model file (`backbone.block13.pw.weight`).
pub const BACKBONE_PREFIX: &str = "backbone.";

/// Fine-tuned faceres blocks, under faceres' own tensor names (`block13.pw.weight`).
#[derive(Debug, Clone)]
pub struct TunedBlocks {
    /// The tensors that replace the shipped ones.
    pub tensors: HashMap<String, candle_core::Tensor>,
}

impl TunedBlocks {
    /// A short stable id of the weights (sha256 of names and values): the feature cache keeps the
    /// features of these weights apart from the shipped network's.
    pub fn fingerprint(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut names: Vec<_> = self.tensors.keys().collect();
        names.sort();
        let mut h = Sha256::new();
        for n in names {
            h.update(n.as_bytes());
            let v = self.tensors[n].flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
            for x in v {
                h.update(x.to_le_bytes());
            }
        }
        Ok(format!("{:x}", h.finalize())[..16].to_string())
    }
}

/// The `.safetensors` path of a model given it, its old `.json` sidecar or a bare stem, and the
/// `.json` path beside it (read only for models in the old two-file form).
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

/// Where a model's metadata came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaSource {
    /// Embedded in the `.safetensors` header (the current, single-file form).
    Embedded,
    /// The `.json` file beside it (the old two-file form).
    Sidecar,
}

/// Reads a model's metadata without its weights (only the safetensors header is read): the
/// embedded metadata if there is any, else the old `.json` sidecar. For lists of models.
pub fn read_meta(path: &Path) -> Result<(ModelMeta, MetaSource)> {
    let (st, js) = model_paths(path);
    let header = read_header(&st)?;
    meta_of(&st, &js, &header)
}

/// The safetensors header (the JSON after the 8-byte length) of the file `st`, read alone.
fn read_header(st: &Path) -> Result<Vec<u8>> {
    let mut f = std::fs::File::open(st).map_err(|e| unreadable(st, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| not_safetensors(st, "it is too short"))?;
    let n = u64::from_le_bytes(len);
    let size = f.metadata().map_err(|e| unreadable(st, e))?.len();
    if n > MAX_HEADER || n > size.saturating_sub(8) {
        return Err(not_safetensors(st, "its header length is out of range"));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| unreadable(st, e))?;
    Ok(header)
}

/// The safetensors header inside a whole file's bytes.
fn header_of<'a>(st: &Path, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let Some(len) = bytes.get(..8) else {
        return Err(not_safetensors(st, "it is too short"));
    };
    let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
    if n > MAX_HEADER {
        return Err(not_safetensors(st, "its header length is out of range"));
    }
    bytes.get(8..8 + n as usize).ok_or_else(|| not_safetensors(st, "it is cut short"))
}

fn unreadable(st: &Path, e: std::io::Error) -> Error {
    Error::Model {
        what: format!("cannot load model {}", st.display()),
        source: Box::new(gc_engine::Error::model_read(st, e)),
    }
}

fn not_safetensors(st: &Path, why: &str) -> Error {
    Error::Model {
        what: format!("model {} is damaged ({why})", st.display()),
        source: Box::new(gc_engine::Error::model_corrupt(st, "is not valid safetensors")),
    }
}

/// The metadata embedded in a safetensors header, if the header has any.
fn embedded_meta(st: &Path, header: &[u8]) -> Result<Option<ModelMeta>> {
    #[derive(Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__")]
        metadata: Option<HashMap<String, String>>,
    }
    let h: Header = serde_json::from_slice(header).damaged(|| {
        format!(
            "model {} is damaged (its safetensors header is not valid JSON): retrain it or pick another",
            st.display()
        )
    })?;
    let Some(text) = h.metadata.as_ref().and_then(|m| m.get(METADATA_KEY)) else {
        return Ok(None);
    };
    let meta = serde_json::from_str(text).damaged(|| {
        format!(
            "the description inside model {} is damaged or from another program: retrain it or pick another",
            st.display()
        )
    })?;
    Ok(Some(meta))
}

/// The metadata of the model `st`: embedded in `header`, else read from the sidecar `js`.
fn meta_of(st: &Path, js: &Path, header: &[u8]) -> Result<(ModelMeta, MetaSource)> {
    if let Some(meta) = embedded_meta(st, header)? {
        return Ok((meta, MetaSource::Embedded));
    }
    let text = std::fs::read_to_string(js).io(|| {
        format!(
            "model {} has no description inside it and none could be read from {} beside it: \
             put its .json back beside it, retrain it, or pick another",
            st.display(),
            js.display()
        )
    })?;
    let meta = serde_json::from_str(&text).damaged(|| {
        format!("model metadata {} is damaged or from another program: retrain the model or pick another", js.display())
    })?;
    Ok((meta, MetaSource::Sidecar))
}

/// Checks the classes alone: present, named, and each named once.
fn check_classes(st: &Path, classes: &[String]) -> Result<()> {
    if classes.is_empty() {
        invalid!("model {} lists no classes; it is damaged: retrain it or pick another", st.display());
    }
    if let Some(blank) = classes.iter().position(|c| c.trim().is_empty()) {
        invalid!(
            "model {} has a class with no name (class {}); it is damaged: retrain it or pick another",
            st.display(),
            blank + 1
        );
    }
    let mut seen = HashSet::new();
    if let Some(twice) = classes.iter().find(|c| !seen.insert(c.as_str())) {
        invalid!("model {} lists the class '{twice}' twice; it is damaged: retrain it or pick another", st.display());
    }
    Ok(())
}

/// Refuses weights holding a NaN or an infinite value.
fn check_finite(st: &Path, head: &Head) -> Result<()> {
    if let Some(tensor) = head.non_finite_tensor()? {
        invalid!(
            "model {} has NaN/infinite weights (in '{tensor}'); it is damaged: retrain it or pick another",
            st.display()
        );
    }
    Ok(())
}

impl Model {
    /// The single-file form: the head's tensors with the metadata JSON in the header.
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut tensors: Vec<_> = self.head.tensors().into_iter().collect();
        if let Some(tuned) = &self.tuned {
            tensors.extend(tuned.tensors.iter().map(|(k, v)| (format!("{BACKBONE_PREFIX}{k}"), v.clone())));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let info = HashMap::from([(METADATA_KEY.to_string(), serde_json::to_string(&self.meta)?)]);
        safetensors::serialize(tensors, Some(info))
            .map_err(|e| Error::Invalid(format!("cannot encode the model as safetensors: {e}")))
    }

    /// Writes the model as one `X.safetensors` (weights and metadata), atomically: after a crash
    /// at any moment the path holds the previous model or the new one, whole.
    ///
    /// A model whose weights hold NaN or infinite values, or whose classes do not fit its head,
    /// is refused before anything is written. After the write, an old-form `X.json` sidecar
    /// beside it is removed (loading would ignore it anyway).
    pub fn save(&self, path: &Path) -> Result<()> {
        let (st, js) = model_paths(path);
        check_classes(&st, &self.meta.classes)?;
        if self.head.num_classes() != self.meta.classes.len() {
            invalid!(
                "refusing to write model {}: its head has {} outputs but it lists {} classes",
                st.display(),
                self.head.num_classes(),
                self.meta.classes.len()
            );
        }
        if let Some(tensor) = self.head.non_finite_tensor()? {
            invalid!(
                "refusing to write model {}: its weights hold NaN/infinite values (in '{tensor}'); \
                 training diverged: lower the learning rate and train again",
                st.display()
            );
        }
        if let Some(dir) = st.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).io(|| format!("cannot create folder {}", dir.display()))?;
        }
        let bytes = self.to_bytes()?;
        crate::durable::write_atomic(&st, &bytes, "model").io(|| {
            format!(
                "cannot write model {}: check that its folder is writable and the disk has room \
                 (the file there is still the previous model, or the new one whole)",
                st.display()
            )
        })?;
        tracing::info!(path = %st.display(), bytes = bytes.len(), "model written");
        remove_stale_sidecar(&js);
        Ok(())
    }

    /// Reads a model and checks that its head fits its metadata and the installed backbone:
    /// shapes, finite weights, classes. Every error names the file and says what to do.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (st, js) = model_paths(path);
        let bytes = std::fs::read(&st).map_err(|e| unreadable(&st, e))?;
        if let Err(e) = safetensors::SafeTensors::deserialize(&bytes) {
            return Err(not_safetensors(&st, &e.to_string()));
        }
        let (meta, source) = meta_of(&st, &js, header_of(&st, &bytes)?)?;
        tracing::debug!(path = %st.display(), ?source, "model metadata read");
        if meta.format_version > FORMAT_VERSION {
            invalid!("model {} was written by a newer gender-classifier; update the app", st.display());
        }
        check_classes(&st, &meta.classes)?;
        let expected = meta.preprocess.backbone.weight_file().sha256;
        if meta.backbone_sha256 != expected {
            invalid!(
                "model {} was trained on different {} weights (sha256 {}); retrain it with this version",
                st.display(),
                meta.preprocess.backbone,
                meta.backbone_sha256
            );
        }
        let (dim, classes) = (meta.preprocess.backbone.feature_dim(), meta.classes.len());
        let head = Head::from_safetensors(&st, &bytes, dim, classes, device).map_err(|source| Error::Model {
            what: format!(
                "model {} is broken: it does not fit its backbone {} ({dim}-d features) and its {classes} classes",
                st.display(),
                meta.preprocess.backbone
            ),
            source: Box::new(source),
        })?;
        check_finite(&st, &head)?;
        let tuned = tuned_blocks(&st, &bytes, &meta, device)?;
        Ok(Self { meta, head, tuned })
    }
}

/// The fine-tuned backbone tensors of a model file, checked against faceres' shapes; `None` for
/// a head-only model. A file that has them without saying how they were made (or the reverse) is
/// refused.
fn tuned_blocks(st: &Path, bytes: &[u8], meta: &ModelMeta, device: &Device) -> Result<Option<TunedBlocks>> {
    let all = candle_core::safetensors::load_buffer(bytes, device)
        .map_err(|e| not_safetensors(st, &format!("its tensors cannot be read: {e}")))?;
    let tensors: HashMap<String, candle_core::Tensor> =
        all.into_iter().filter_map(|(k, v)| k.strip_prefix(BACKBONE_PREFIX).map(|n| (n.to_string(), v))).collect();
    match (tensors.is_empty(), &meta.fine_tune) {
        (true, None) => return Ok(None),
        (true, Some(_)) => invalid!(
            "model {} says it was fine-tuned but holds no backbone weights; it is damaged: retrain it",
            st.display()
        ),
        (false, None) => invalid!(
            "model {} holds backbone weights but does not say how they were trained; it is damaged: retrain it",
            st.display()
        ),
        (false, Some(_)) => {}
    }
    for (name, t) in &tensors {
        if let Err(why) = gc_engine::faceres_train::check_tensor(name, t.dims()) {
            invalid!("model {} is damaged ({why}): retrain it or pick another", st.display());
        }
        let finite =
            t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?.iter().all(|x| x.is_finite());
        if !finite {
            invalid!("model {} holds NaN/infinite backbone weights (in '{name}'): retrain it", st.display());
        }
    }
    let tensors =
        tensors.into_iter().map(|(k, v)| Ok((k, v.to_dtype(candle_core::DType::F32)?))).collect::<Result<_>>()?;
    Ok(Some(TunedBlocks { tensors }))
}

/// Removes `js` if it is an old-form sidecar of ours (it parses as [`ModelMeta`]); a file of any
/// other content is left alone. Failure is only logged: loading ignores a sidecar beside a
/// single-file model, so a stale one is harmless.
fn remove_stale_sidecar(js: &Path) {
    let Ok(text) = std::fs::read_to_string(js) else { return };
    if serde_json::from_str::<ModelMeta>(&text).is_err() {
        tracing::debug!(path = %js.display(), "a .json beside the model is not model metadata; left alone");
        return;
    }
    match std::fs::remove_file(js) {
        Ok(()) => tracing::info!(path = %js.display(), "removed the old metadata file; the model now holds its own"),
        Err(e) => {
            tracing::warn!(path = %js.display(), error = %e, "cannot remove the old metadata file (it is ignored)")
        }
    }
}

#[cfg(test)]
#[path = "model_file_tests.rs"]
mod tests;
