//! Evaluation of a model on a dataset folder: score every photo of a split with the head, and the
//! metrics of those scores.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Result, invalid};
use serde::{Deserialize, Serialize};

use crate::classify::Classifier;
use crate::dataset::Dataset;
use crate::dataset::split::Split;
use crate::features::cache::FeatureCache;
use crate::features::dataset::{ItemFeatures, dataset_features};
use crate::features::extract::Progress;
use crate::metrics::{Metrics, argmax, compute};
use gc_engine::head::Head;

/// One scored image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The file.
    #[serde(serialize_with = "crate::path_text::lossy")]
    pub path: PathBuf,
    /// True class index.
    pub label: usize,
    /// Predicted class index.
    pub predicted: usize,
    /// Probability per class.
    pub probs: Vec<f32>,
    /// Its split.
    pub split: Split,
    /// Faces found in the photo (0 where the features came from the whole image).
    #[serde(default)]
    pub n_faces: u32,
}

/// Scores items with a head.
pub fn score(head: &Head, items: &[&ItemFeatures]) -> Result<Vec<Scored>> {
    let feats: Vec<&[f32]> = items.iter().map(|i| i.value.features.as_slice()).collect();
    let probs = head.probs_of(&feats)?;
    Ok(items
        .iter()
        .zip(probs)
        .map(|(i, p)| Scored {
            path: i.path.clone(),
            label: i.label,
            predicted: argmax(&p),
            probs: p,
            split: i.split,
            n_faces: i.value.n_faces,
        })
        .collect())
}

/// Metrics of scored images.
pub fn metrics_of(classes: &[String], scored: &[Scored]) -> Metrics {
    let probs: Vec<Vec<f32>> = scored.iter().map(|s| s.probs.clone()).collect();
    let labels: Vec<usize> = scored.iter().map(|s| s.label).collect();
    compute(classes, &probs, &labels)
}

/// Which images an evaluation covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvalScope {
    /// Every image in the folder.
    All,
    /// Only images of one split (by the model's split rule).
    Only(Split),
}

/// The outcome of evaluating a model on a folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Metrics.
    pub metrics: Metrics,
    /// Class names.
    pub classes: Vec<String>,
    /// Every scored image.
    pub scored: Vec<Scored>,
    /// Files skipped, with reasons.
    #[serde(serialize_with = "crate::path_text::lossy_pairs")]
    pub failures: Vec<(PathBuf, String)>,
}

impl EvalReport {
    /// The wrongly classified images, most confidently wrong first.
    pub fn misclassified(&self) -> Vec<&Scored> {
        let mut v: Vec<&Scored> = self.scored.iter().filter(|s| s.predicted != s.label).collect();
        v.sort_by(|a, b| a.probs[a.label].total_cmp(&b.probs[b.label]));
        v
    }
}

/// Evaluates a classifier on the dataset folder `dir`.
pub fn evaluate_dataset(
    dir: &Path,
    classifier: &Classifier,
    scope: EvalScope,
    cache: &FeatureCache,
    batch_size: usize,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<EvalReport> {
    evaluate_scanned(&Dataset::scan(dir)?, classifier, scope, cache, batch_size, on_progress, cancel)
}

/// Evaluates a classifier on an already scanned dataset folder, e.g. some of its photos only.
pub fn evaluate_scanned(
    ds: &Dataset,
    classifier: &Classifier,
    scope: EvalScope,
    cache: &FeatureCache,
    batch_size: usize,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<EvalReport> {
    let dir = &ds.root;
    let classes = classifier.classes().to_vec();
    if ds.items.is_empty() {
        invalid!("{} has no photos in class folders to evaluate", dir.display());
    }
    // Map the folder's classes onto the model's by name.
    let mapping: Vec<Option<usize>> = ds.classes.iter().map(|c| classes.iter().position(|m| m == c)).collect();
    if let Some((c, _)) = ds.classes.iter().zip(&mapping).find(|(_, m)| m.is_none()) {
        invalid!("folder class '{c}' is not one of the model's classes ({})", classes.join(", "));
    }
    let split = classifier.model.meta.split.unwrap_or_default();
    let feats = dataset_features(ds, &classifier.pipeline, cache, &split, batch_size, on_progress, cancel)?;
    let items: Vec<ItemFeatures> = feats
        .items
        .into_iter()
        .filter(|i| match scope {
            EvalScope::All => true,
            EvalScope::Only(s) => i.split == s,
        })
        .map(|mut i| {
            i.label = mapping[i.label].expect("checked above");
            i
        })
        .collect();
    if items.is_empty() {
        invalid!("no readable images to evaluate in {} for this scope", dir.display());
    }
    let refs: Vec<&ItemFeatures> = items.iter().collect();
    let scored = score(&classifier.model.head, &refs)?;
    Ok(EvalReport { metrics: metrics_of(&classes, &scored), classes, scored, failures: feats.failures })
}
