//! Two models side by side on the open dataset: both scored on the same photos, by the same
//! evaluation as "Predict all" (`gc_core::eval`), with accuracy, its 95% interval and the counts.
//!
//! The photos are those held back from training: when a model was trained on this dataset, only
//! its test split counts (for two such models, the photos in both test splits), so neither is
//! scored on photos it learnt from. When neither was trained here, every photo counts.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gc_core::classify::Classifier;
use gc_core::context::Context;
use gc_core::dataset::split::Split;
use gc_core::eval::{EvalReport, EvalScope, evaluate_dataset, metrics_of};
use gc_core::features::extract::Progress;
use gc_core::metrics::Metrics;

use crate::model_store::{name_of, same_folder};
use crate::tasks::{Failure, Job, Outcome, Task, load_classifier};

/// One model's side of a comparison.
#[derive(Debug, Clone)]
pub struct Side {
    /// The model file.
    pub path: PathBuf,
    /// Its name (file stem).
    pub name: String,
    /// Its metrics on the compared photos.
    pub metrics: Metrics,
    /// Whether it was trained on this dataset.
    pub trained_here: bool,
}

/// The outcome of comparing two models on one dataset.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The dataset folder.
    pub dataset: PathBuf,
    /// True when only photos held back from training were used.
    pub held_back: bool,
    /// How many photos both were scored on.
    pub photos: usize,
    /// The two models, in the order chosen.
    pub sides: [Side; 2],
}

impl Comparison {
    /// Which photos were used, in words.
    pub fn scope_text(&self) -> String {
        if self.held_back {
            format!("{} photos held back from training (test split)", self.photos)
        } else {
            format!("all {} photos (neither model was trained on this folder)", self.photos)
        }
    }
}

/// Progress of a comparison: which model (0 or 1) and how far its photos are.
#[derive(Debug, Clone)]
pub struct CompareProgress {
    /// 0 for the first model, 1 for the second.
    pub side: usize,
    /// Photos done of this model's pass.
    pub progress: Progress,
}

/// A running comparison.
pub type CompareTask = Task<CompareProgress, Outcome<Comparison>>;

/// Scores both models on the dataset at `root` and compares them on the same photos. A model
/// that is `loaded` already is reused; the others are loaded here (on the job's thread).
pub fn compare_models(
    ctx: &Context,
    root: &Path,
    paths: [PathBuf; 2],
    loaded: Option<(PathBuf, Arc<Classifier>)>,
    job: &Job<CompareProgress>,
) -> Outcome<Comparison> {
    if paths[0] == paths[1] {
        return Err(Failure::Failed("Choose two different models to compare.".into()));
    }
    let cache = ctx.feature_cache();
    let mut reports: Vec<(EvalReport, bool)> = Vec::new();
    for (side, path) in paths.iter().enumerate() {
        let classifier = match &loaded {
            Some((p, c)) if p == path => c.clone(),
            _ => Arc::new(load_classifier(path, ctx)?),
        };
        let trained_here = classifier.model.meta.trained_on().iter().any(|d| same_folder(&d.root, root));
        let report = evaluate_dataset(
            root,
            &classifier,
            EvalScope::All,
            &cache,
            16,
            &mut |p| _ = job.report(CompareProgress { side, progress: p.clone() }),
            job.cancel_flag(),
        )
        .map_err(|e| match Failure::from(e) {
            Failure::Failed(why) => Failure::Failed(format!("{}: {why}", name_of(path))),
            cancelled => cancelled,
        })?;
        reports.push((report, trained_here));
    }
    // The photos both scored; of those, the ones every model trained here held back.
    let scored = |r: &EvalReport, only_test: bool| -> HashSet<PathBuf> {
        r.scored.iter().filter(|s| !only_test || s.split == Split::Test).map(|s| s.path.clone()).collect()
    };
    let mut photos = scored(&reports[0].0, reports[0].1);
    let second = scored(&reports[1].0, reports[1].1);
    photos.retain(|p| second.contains(p));
    let held_back = reports.iter().any(|(_, here)| *here);
    if photos.is_empty() {
        return Err(Failure::Failed(
            "No photo of this folder is held back from both models' training, so they cannot be compared fairly here: compare them on another folder."
                .into(),
        ));
    }
    let side = |i: usize| {
        let (report, trained_here) = &reports[i];
        let kept: Vec<_> = report.scored.iter().filter(|s| photos.contains(&s.path)).cloned().collect();
        Side {
            path: paths[i].clone(),
            name: name_of(&paths[i]),
            metrics: metrics_of(&report.classes, &kept),
            trained_here: *trained_here,
        }
    };
    let sides = [side(0), side(1)];
    tracing::info!(
        dataset = %root.display(),
        a = %sides[0].name,
        a_accuracy = sides[0].metrics.accuracy,
        b = %sides[1].name,
        b_accuracy = sides[1].metrics.accuracy,
        photos = photos.len(),
        held_back,
        "compared two models"
    );
    Ok(Comparison { dataset: root.to_path_buf(), held_back, photos: photos.len(), sides })
}

/// "93.1% (95% 88.0–96.2%)".
pub fn accuracy_text(m: &Metrics) -> String {
    format!("{:.1}% (95% {:.1}–{:.1}%)", m.accuracy * 100.0, m.accuracy_ci95.0 * 100.0, m.accuracy_ci95.1 * 100.0)
}

/// "27 of 29 right".
pub fn counts_text(m: &Metrics) -> String {
    let right: usize = (0..m.confusion.len()).map(|i| m.confusion[i][i]).sum();
    format!("{right} of {} right", m.count)
}
