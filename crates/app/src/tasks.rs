//! Background jobs: each runs on its own thread, reports progress over a channel, and is polled by
//! the UI once per frame. The UI thread never waits on disk or compute.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gc_core::classify::Classifier;
use gc_core::context::Context;
use gc_core::dataset::Dataset;
use gc_core::dataset::split::Split;
use gc_core::error::{describe, is_cancelled};
use gc_core::eval::EvalReport;
use gc_core::model_file::model_paths;
pub use gc_core::task::{Job, Panicked, Polled, Runtime, Task};
use gc_core::train::guard::{Guard, guard_against};
use gc_core::train::run::{TrainConfig, TrainEvent, TrainReport, train_dataset};

/// Wakes the UI when a background thread has news. Clones share one slot, which is filled with
/// the [`egui::Context`] on the first frame, so workers started earlier can wake the UI too.
#[derive(Clone, Default)]
pub struct Waker(Arc<std::sync::OnceLock<egui::Context>>);

impl Waker {
    /// Sets the context to repaint (the first call wins).
    pub fn set_context(&self, ctx: &egui::Context) {
        let _ = self.0.set(ctx.clone());
    }

    /// Asks for a repaint (no-op before the first frame, e.g. in unit tests).
    pub fn wake(&self) {
        if let Some(ctx) = self.0.get() {
            ctx.request_repaint();
        }
    }
}

/// A runtime whose jobs work with `ctx` and wake the UI through `waker`.
pub fn runtime(ctx: Context, waker: &Waker) -> Runtime {
    let waker = waker.clone();
    Runtime::new(ctx, Arc::new(move || waker.wake()))
}

/// Why a background job gave no result, as a type the UI matches on (never by its text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The user cancelled it.
    #[error("cancelled")]
    Cancelled,
    /// It failed; the message, with its causes, says why and what to do.
    #[error("{0}")]
    Failed(String),
}

impl From<gc_core::error::Error> for Failure {
    fn from(e: gc_core::error::Error) -> Self {
        if is_cancelled(&e) { Failure::Cancelled } else { Failure::Failed(describe(&e)) }
    }
}

impl From<String> for Failure {
    fn from(reason: String) -> Self {
        Failure::Failed(reason)
    }
}

/// The result of a background job.
pub type Outcome<T> = Result<T, Failure>;

// ----------------------------------------------------------------------------------------------
// Dataset scanning

/// Scans a dataset folder and says, in words, what is wrong with it.
pub fn scan_dataset(root: &Path) -> Outcome<Dataset> {
    let ds = Dataset::scan(root)?;
    if ds.classes.is_empty() {
        return Err(Failure::Failed(format!(
            "{} has no class folders. A dataset is a folder with one sub-folder per class, e.g. male/ and female/, each holding photos.",
            root.display()
        )));
    }
    Ok(ds)
}

// ----------------------------------------------------------------------------------------------
// Models

pub use crate::model_store::{ModelInfo, legacy_models_dir, list_models};

/// Loads a model for classification, with advice when it is missing.
pub fn load_classifier(path: &Path, ctx: &Context) -> Outcome<Classifier> {
    let (st, _) = model_paths(path);
    if !st.exists() {
        return Err(Failure::Failed(format!(
            "model {} is missing: train one with the Train button, choose another model, or use the zero-shot head",
            st.display()
        )));
    }
    Classifier::load(path, ctx)
        .map_err(|e| Failure::Failed(format!("cannot load model {}: {}", st.display(), describe(&e))))
}

/// Saves faceres' zero-shot head under `dir` and returns its path.
pub fn save_zero_shot(dir: &Path, ctx: &Context) -> Outcome<PathBuf> {
    let model = gc_core::train::run::zero_shot_model(ctx, true)?;
    // Rewrite an earlier zero-shot head; a model the user gave that name is kept, and this one
    // takes the next free name.
    let is_zero_shot = |p: &Path| {
        gc_core::model_file::read_meta(p).is_ok_and(|(m, _)| m.training.is_none() && m.origin.contains("zero-shot"))
    };
    let mut path = dir.join("zero-shot-faceres.safetensors");
    let mut n = 2;
    while path.exists() && !is_zero_shot(&path) {
        path = dir.join(format!("zero-shot-faceres-{n}.safetensors"));
        n += 1;
    }
    model.save(&path)?;
    Ok(path)
}

// ----------------------------------------------------------------------------------------------
// Predictions for a whole dataset

/// The prediction for one dataset image.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    /// The file.
    pub path: PathBuf,
    /// Predicted class index (in [`Predictions::classes`]).
    pub predicted: usize,
    /// Probability per class.
    pub probs: Vec<f32>,
    /// The split the model's rule puts it in.
    pub split: Option<Split>,
    /// Faces the detector found (from the feature cache), when known.
    pub n_faces: Option<u32>,
}

/// Predictions for a dataset.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    /// The model's class names.
    pub classes: Vec<String>,
    /// One row per readable image.
    pub rows: Vec<PredictionRow>,
    /// Files that could not be read, with the reason.
    pub failures: Vec<(PathBuf, String)>,
}

impl Predictions {
    /// Predictions from a training report (every split, marked).
    pub fn from_report(report: &TrainReport) -> Self {
        Self {
            classes: report.model.meta.classes.clone(),
            rows: report
                .scored
                .iter()
                .map(|s| PredictionRow {
                    path: s.path.clone(),
                    predicted: s.predicted,
                    probs: s.probs.clone(),
                    split: Some(s.split),
                    n_faces: None,
                })
                .collect(),
            failures: report.failures.clone(),
        }
    }

    /// Predictions from core's evaluation of the whole dataset with `classifier`; keeps the face
    /// counts (for the grid's face filters) and the split only when the model has one.
    pub fn from_eval(report: EvalReport, classifier: &Classifier) -> Self {
        let trained_split = classifier.model.meta.split.is_some();
        let face_crop = classifier.pipeline.spec.face_crop;
        let rows = report
            .scored
            .into_iter()
            .map(|s| PredictionRow {
                path: s.path,
                predicted: s.predicted,
                probs: s.probs,
                split: trained_split.then_some(s.split),
                n_faces: face_crop.then_some(s.n_faces),
            })
            .collect();
        Self { classes: report.classes, rows, failures: report.failures }
    }
}

// ----------------------------------------------------------------------------------------------
// Training

/// How a training run ended.
#[derive(Debug)]
pub enum TrainOutcome {
    /// Trained and saved.
    Finished {
        /// Where the model was saved.
        path: PathBuf,
        /// The report (scores of every image).
        report: Box<TrainReport>,
        /// The new model against the current one, on the same validation photos.
        guard: Guard,
    },
    /// Stopped by the user; nothing was saved.
    Cancelled,
    /// Failed, with the reason in words.
    Failed(String),
}

/// A file name for a model made now, e.g. `2025-01-31T12-00-00Z.safetensors`.
pub fn timestamp_file_name() -> String {
    let now = gc_core::model_file::now_rfc3339().replace(':', "-");
    format!("{now}.safetensors")
}

/// A free path for a model made now in the data folder's models folder, e.g.
/// `<data>/models/2025-01-31T12-00-00Z.safetensors` (with `-1`, `-2`… when taken).
pub fn new_model_path(ctx: &Context) -> PathBuf {
    let dir = ctx.trained_models_dir();
    let mut path = dir.join(timestamp_file_name());
    let mut n = 1;
    while path.exists() {
        path = dir.join(timestamp_file_name().replace(".safetensors", &format!("-{n}.safetensors")));
        n += 1;
    }
    path
}

/// Trains on `root`, compares the new model with `current` (the app's current model, else the
/// shipped default) on the same validation photos, and saves the new model with its model card in
/// the data folder's models folder, whatever the comparison says: the app then decides whether it
/// becomes current.
pub fn train_and_save(
    root: &Path,
    cfg: &TrainConfig,
    ctx: &Context,
    current: Option<&Path>,
    on_event: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
) -> TrainOutcome {
    let report = match train_dataset(root, cfg, ctx, on_event, cancel) {
        Ok(r) => r,
        Err(e) if is_cancelled(&e) => return TrainOutcome::Cancelled,
        Err(e) => return TrainOutcome::Failed(format!("{e:#}")),
    };
    if cancel.load(Ordering::Relaxed) {
        return TrainOutcome::Cancelled;
    }
    let shipped = ctx.default_model();
    let baseline = current
        .map(Path::to_path_buf)
        .filter(|p| model_paths(p).0.is_file())
        .or_else(|| shipped.is_file().then_some(shipped));
    let guard = match &baseline {
        Some(b) => {
            let mut on_progress = |p: &gc_core::features::extract::Progress| on_event(TrainEvent::Comparing(p.clone()));
            match guard_against(&report, &[root.to_path_buf()], b, ctx, cfg.extract_batch, &mut on_progress, cancel) {
                Ok(g) => g,
                Err(e) if is_cancelled(&e) => return TrainOutcome::Cancelled,
                Err(e) => Guard::NotCompared(describe(&e)),
            }
        }
        None => Guard::NotCompared("there is no current model to compare with".into()),
    };
    if cancel.load(Ordering::Relaxed) {
        return TrainOutcome::Cancelled;
    }
    let path = new_model_path(ctx);
    if let Err(e) = report.model.save(&path) {
        return TrainOutcome::Failed(format!("training finished but the model could not be saved: {e:#}"));
    }
    if let Err(e) = gc_core::model_card::write_for_report(&path, &report, &guard) {
        // The model itself is saved; only its description beside it is missing.
        tracing::warn!(error = %describe(&e), "the model card was not written");
    }
    TrainOutcome::Finished { path, report: Box::new(report), guard }
}

// ----------------------------------------------------------------------------------------------
// File dialogs (rfd blocks, so it runs on its own thread)

/// What a file dialog returned.
#[derive(Debug, Clone)]
pub enum Picked {
    /// A dataset folder.
    Folder(Option<PathBuf>),
    /// Photos to classify.
    Files(Vec<PathBuf>),
}

/// Opens the folder picker on a background thread.
pub fn pick_folder(rt: &Runtime, start: Option<PathBuf>) -> Task<(), Picked> {
    rt.spawn("folder-dialog", move |_| {
        let mut d = rfd::FileDialog::new().set_title("Open a dataset folder (one sub-folder per class)");
        if let Some(s) = start {
            d = d.set_directory(s);
        }
        Picked::Folder(d.pick_folder())
    })
}

/// Opens the photo picker on a background thread.
pub fn pick_files(rt: &Runtime) -> Task<(), Picked> {
    rt.spawn("files-dialog", move |_| {
        let exts: Vec<&str> = gc_core::imaging::IMAGE_EXTENSIONS.to_vec();
        let files = rfd::FileDialog::new().set_title("Photos to classify").add_filter("Images", &exts).pick_files();
        Picked::Files(files.unwrap_or_default())
    })
}

/// Loads the classifier and wraps it for sharing between workers.
pub fn load_shared(path: &Path, ctx: &Context) -> Outcome<Arc<Classifier>> {
    load_classifier(path, ctx).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_without_classes_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let e = scan_dataset(dir.path()).unwrap_err().to_string();
        assert!(e.contains("one sub-folder per class"), "{e}");
    }

    #[test]
    fn missing_model_says_what_to_do() {
        let e = load_classifier(Path::new("/nonexistent/m.safetensors"), &Context::cpu_with_cache("/nonexistent"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("Train button"), "{e}");
    }

    #[test]
    fn the_model_list_reads_single_file_models_and_the_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::cpu_with_cache(dir.path().join("cache"));
        let saved = save_zero_shot(&ctx.trained_models_dir(), &ctx).unwrap();
        // A stale sidecar that does not parse must not make the single-file model unreadable.
        std::fs::write(saved.with_extension("json"), "{ damaged").unwrap();
        let list = list_models(&ctx, None, None);
        let shipped = list.iter().find(|m| m.shipped).expect("the shipped model is listed");
        assert!(shipped.meta.is_ok(), "{:?}", shipped.meta);
        let ours = list.iter().find(|m| m.path == saved).expect("the saved model is listed");
        let meta = ours.meta.as_ref().unwrap();
        assert!(meta.origin.contains("zero-shot"), "{}", meta.origin);
        assert!(load_classifier(&saved, &ctx).is_ok());
    }

    #[test]
    fn new_models_are_saved_in_the_data_folder_never_over_another() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::cpu_with_cache(dir.path().join("cache"));
        let first = new_model_path(&ctx);
        assert_eq!(first.parent(), Some(ctx.trained_models_dir().as_path()));
        assert!(first.starts_with(dir.path().join("cache/data/models")), "{}", first.display());
        std::fs::create_dir_all(first.parent().unwrap()).unwrap();
        std::fs::write(&first, b"taken").unwrap();
        let second = new_model_path(&ctx);
        assert_ne!(second, first, "a taken name is not reused");
        assert_eq!(second.parent(), first.parent());
    }
}
