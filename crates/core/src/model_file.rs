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
        Ok(Self { meta, head })
    }
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
mod tests {
    use super::*;
    use candle_core::Tensor;
    use gc_engine::BackboneKind;
    use gc_engine::head::Dense;

    const DIM: usize = gc_engine::faceres::FEATURE_DIM;

    fn head(classes: usize) -> Head {
        let dev = Device::Cpu;
        let w: Vec<f32> = (0..classes * DIM).map(|i| (i as f32 * 0.37).sin() * 0.1).collect();
        let b: Vec<f32> = (0..classes).map(|i| 0.2 - 0.1 * i as f32).collect();
        Head {
            hidden: None,
            out: Dense {
                weight: Tensor::from_vec(w, (classes, DIM), &dev).unwrap(),
                bias: Tensor::from_vec(b, classes, &dev).unwrap(),
            },
        }
    }

    fn meta(classes: &[&str]) -> ModelMeta {
        ModelMeta {
            format_version: FORMAT_VERSION,
            classes: classes.iter().map(|c| c.to_string()).collect(),
            preprocess: PreprocessSpec::new(BackboneKind::Faceres, true),
            backbone_sha256: BackboneKind::Faceres.weight_file().sha256.to_string(),
            origin: "test".into(),
            training: Some(TrainOptions::default()),
            split: Some(SplitSpec::default()),
            dataset: None,
            test_metrics: None,
            validation_metrics: None,
            history: vec![EpochStats {
                epoch: 1,
                train_loss: 0.5,
                train_accuracy: 0.75,
                val_loss: Some(0.6),
                val_accuracy: None,
            }],
            created: "2025-01-31T12:00:00Z".into(),
        }
    }

    fn model(classes: &[&str]) -> Model {
        Model { meta: meta(classes), head: head(classes.len()) }
    }

    /// Writes `m` in the single-file form without `save`'s checks (to make broken files).
    fn write_unchecked(m: &Model, path: &Path) {
        std::fs::write(path, m.to_bytes().unwrap()).unwrap();
    }

    fn load_err(path: &Path) -> String {
        crate::error::describe(&Model::load(path, &Device::Cpu).unwrap_err())
    }

    #[test]
    fn single_file_round_trip_keeps_the_metadata_and_weights() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/m.safetensors");
        let m = model(&["female", "male"]);
        m.save(&path).unwrap();
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.safetensors")], "one file, no temp left");
        let back = Model::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back.meta, m.meta);
        assert_eq!(back.head.out.weight.to_vec2::<f32>().unwrap(), m.head.out.weight.to_vec2::<f32>().unwrap());
        assert_eq!(read_meta(&path).unwrap(), (m.meta.clone(), MetaSource::Embedded));
        // The stem and the old .json name find the same model.
        assert_eq!(Model::load(&dir.path().join("sub/m"), &Device::Cpu).unwrap().meta, m.meta);
        // Saving again replaces it whole.
        let mut m2 = model(&["female", "male"]);
        m2.meta.origin = "second".into();
        m2.save(&path).unwrap();
        assert_eq!(Model::load(&path, &Device::Cpu).unwrap().meta.origin, "second");
    }

    #[test]
    fn the_old_two_file_form_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.safetensors");
        let m = model(&["female", "male"]);
        m.head.save(&path).unwrap();
        std::fs::write(path.with_extension("json"), serde_json::to_string_pretty(&m.meta).unwrap()).unwrap();
        let back = Model::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back.meta, m.meta);
        assert_eq!(read_meta(&path).unwrap().1, MetaSource::Sidecar);

        // Without its .json the old form has no description: the error names both files.
        std::fs::remove_file(path.with_extension("json")).unwrap();
        let text = load_err(&path);
        assert!(text.contains(&path.display().to_string()) && text.contains("old.json"), "{text}");
        assert!(text.contains("put its .json back") && text.contains("pick another"), "{text}");
    }

    #[test]
    fn the_shipped_default_model_loads() {
        let ctx = crate::context::Context::cpu_with_cache(std::env::temp_dir());
        let (meta, source) = read_meta(&ctx.default_model()).unwrap();
        assert_eq!(source, MetaSource::Embedded, "the shipped default is one file");
        let m = Model::load(&ctx.default_model(), &Device::Cpu).unwrap();
        assert_eq!(m.meta, meta);
    }

    #[test]
    fn a_model_in_the_old_two_file_form_still_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/two-file-model");
        let (meta, source) = read_meta(&dir.join("m.safetensors")).unwrap();
        assert_eq!(source, MetaSource::Sidecar);
        let m = Model::load(&dir.join("m.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(m.meta, meta);
        assert_eq!(m.meta.classes, ["female", "male"]);
    }

    #[test]
    fn a_stale_json_beside_a_single_file_model_is_ignored_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let js = dir.path().join("m.json");
        // An old two-file model at the path, then a new single-file save over it.
        let old = model(&["female", "male"]);
        old.head.save(&path).unwrap();
        std::fs::write(&js, serde_json::to_string(&old.meta).unwrap()).unwrap();
        let mut new = model(&["female", "male"]);
        new.meta.origin = "new".into();
        new.save(&path).unwrap();
        assert!(!js.exists(), "our own stale sidecar is removed after a successful save");

        // A stale sidecar that survived (a crash right after the rename) cannot override the
        // embedded metadata, even one that would break the model.
        let mut stale = old.meta.clone();
        stale.classes = vec!["a".into(), "b".into(), "c".into()];
        std::fs::write(&js, serde_json::to_string(&stale).unwrap()).unwrap();
        let back = Model::load(&path, &Device::Cpu).unwrap();
        assert_eq!(back.meta.origin, "new");
        assert_eq!(back.meta.classes, ["female", "male"]);
        assert_eq!(read_meta(&path).unwrap().0.origin, "new");

        // A .json that is not ours is left alone by a save.
        std::fs::write(&js, "{\"notes\": \"the user's own\"}").unwrap();
        new.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&js).unwrap(), "{\"notes\": \"the user's own\"}");
    }

    #[test]
    fn nan_or_infinite_weights_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nan.safetensors");
        let mut m = model(&["female", "male"]);
        m.head.out.bias = Tensor::new(&[0.0f32, f32::NAN], &Device::Cpu).unwrap();
        write_unchecked(&m, &path);
        let text = load_err(&path);
        assert!(text.contains(&format!("model {} has NaN/infinite weights", path.display())), "{text}");
        assert!(text.contains("retrain it or pick another"), "{text}");

        // Saving such a model is refused and leaves the good one in place.
        let good = model(&["female", "male"]);
        good.save(&path).unwrap();
        let text = m.save(&path).unwrap_err().to_string();
        assert!(text.contains("NaN/infinite") && text.contains("lower the learning rate"), "{text}");
        m.head.out.bias = Tensor::new(&[0.0f32, f32::INFINITY], &Device::Cpu).unwrap();
        assert!(m.save(&path).is_err());
        Model::load(&path, &Device::Cpu).unwrap();
    }

    #[test]
    fn a_head_for_three_classes_with_two_in_the_metadata_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("three.safetensors");
        let m = Model { meta: meta(&["female", "male"]), head: head(3) };
        write_unchecked(&m, &path);
        let text = load_err(&path);
        assert!(text.contains(&format!("model {} is broken", path.display())), "{text}");
        assert!(text.contains("3 classes") && text.contains("2 classes") && text.contains("retrain"), "{text}");
        assert!(!text.contains("matmul"), "{text}");
        let text = m.save(&path).unwrap_err().to_string();
        assert!(text.contains("3 outputs") && text.contains("2 classes"), "{text}");

        // A head for another backbone's features.
        let mut m = model(&["female", "male"]);
        m.meta.preprocess.backbone = BackboneKind::InceptionV3;
        m.meta.backbone_sha256 = BackboneKind::InceptionV3.weight_file().sha256.into();
        m.save(&path).unwrap();
        let text = load_err(&path);
        assert!(text.contains("does not fit its backbone inception-v3") && text.contains("1024-d"), "{text}");
    }

    #[test]
    fn classes_must_be_present_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        for (classes, want) in
            [(&[][..], "lists no classes"), (&["male", "male"][..], "'male' twice"), (&["", "x"][..], "no name")]
        {
            let m = Model { meta: meta(classes), head: head(classes.len().max(1)) };
            write_unchecked(&m, &path);
            let text = load_err(&path);
            assert!(text.contains(want) && text.contains(&path.display().to_string()), "{classes:?}: {text}");
            assert!(m.save(&path).is_err(), "{classes:?} is refused on save too");
        }
    }

    #[test]
    fn a_header_length_past_the_end_of_the_file_is_refused_as_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.safetensors");
        // Claims a 1000-byte header in a file of 18 bytes; and a header of exactly the file's size.
        for (claimed, body) in [(1000u64, 10usize), (11, 10)] {
            let mut bytes = claimed.to_le_bytes().to_vec();
            bytes.extend(std::iter::repeat_n(b' ', body));
            std::fs::write(&path, &bytes).unwrap();
            let e = read_meta(&path).unwrap_err();
            let text = crate::error::describe(&e);
            assert!(text.contains("header length is out of range"), "{claimed}: {text}");
        }
    }

    #[test]
    fn a_model_from_a_newer_version_is_refused_and_this_version_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.safetensors");
        let mut m = model(&["female", "male"]);
        m.save(&path).unwrap();
        Model::load(&path, &Device::Cpu).expect("this version's model loads");
        m.meta.format_version = FORMAT_VERSION + 1;
        m.save(&path).unwrap();
        let text = load_err(&path);
        assert!(text.contains("newer gender-classifier") && text.contains(&path.display().to_string()), "{text}");
    }

    #[test]
    fn the_creation_time_is_rfc3339_utc() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
        assert!(humantime::parse_rfc3339(&t).is_ok(), "{t}");
    }

    #[test]
    fn damaged_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.safetensors");
        let text = load_err(&path);
        assert!(text.contains(&path.display().to_string()) && text.contains("check the path"), "{text}");
        std::fs::write(&path, b"").unwrap();
        let text = load_err(&path);
        assert!(text.contains(&path.display().to_string()) && text.contains("damaged"), "{text}");
        assert!(read_meta(&path).is_err());
        let mut bytes = model(&["female", "male"]).to_bytes().unwrap();
        bytes.truncate(bytes.len() - 10);
        std::fs::write(&path, &bytes).unwrap();
        let text = load_err(&path);
        assert!(text.contains(&format!("model {} is damaged", path.display())) && text.contains("retrain"), "{text}");
    }

    #[test]
    fn train_options_with_a_bad_learning_rate_are_refused() {
        for lr in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.01] {
            let opts = TrainOptions { learning_rate: lr, ..Default::default() };
            let text = opts.validate().unwrap_err().to_string();
            assert!(text.contains("learning rate") && text.contains("--lr"), "{lr}: {text}");
        }
        TrainOptions::default().validate().unwrap();
    }
}
