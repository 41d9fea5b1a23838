//! End-to-end runs over a dataset folder: extract (cached) features, split, train, evaluate, save.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use candle_core::Device;
use serde::{Deserialize, Serialize};

use super::{EpochStats, LabelledSet, TrainOptions, train_head, zero_shot_head};
use crate::classify::Classifier;
use crate::dataset::Dataset;
use crate::dataset::split::{Split, SplitSpec};
use crate::eval::{Metrics, argmax, compute};
use crate::features::cache::{CachedFeatures, FeatureCache};
use crate::features::extract::{Progress, extract};
use crate::model::faceres::Faceres;
use crate::model::head::Head;
use crate::model::{BackboneKind, weights};
use crate::model_file::{DatasetSummary, Model, ModelMeta, now_rfc3339};
use crate::pipeline::Pipeline;
use crate::preprocess::PreprocessSpec;

/// Features of one dataset image.
#[derive(Debug, Clone)]
pub struct ItemFeatures {
    /// The file.
    pub path: PathBuf,
    /// Its class index.
    pub label: usize,
    /// sha256 of its bytes.
    pub sha256: String,
    /// Its split.
    pub split: Split,
    /// Features and face info.
    pub value: CachedFeatures,
}

/// Features of a whole dataset, with the files that failed.
#[derive(Debug, Clone, Default)]
pub struct DatasetFeatures {
    /// Images that were read.
    pub items: Vec<ItemFeatures>,
    /// Files skipped, with the reason.
    pub failures: Vec<(PathBuf, String)>,
    /// Near-duplicate pairs `(i, j, cosine)` among `items`, at the audit's threshold.
    pub near_duplicates: Vec<(usize, usize, f32)>,
}

impl DatasetFeatures {
    /// The labelled vectors of one split.
    pub fn set(&self, split: Split) -> LabelledSet<'_> {
        let mut s = LabelledSet::default();
        for it in self.items.iter().filter(|i| i.split == split) {
            s.features.push(it.value.features.as_slice().into());
            s.labels.push(it.label);
        }
        s
    }
}

/// Extracts (or reads from the cache) the features of every image of `ds`.
pub fn dataset_features(
    ds: &Dataset,
    pipeline: &Pipeline,
    cache: &FeatureCache,
    split: &SplitSpec,
    batch_size: usize,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<DatasetFeatures> {
    let files: Vec<PathBuf> = ds.items.iter().map(|i| i.path.clone()).collect();
    let mut last = Progress::default();
    let results = extract(
        pipeline,
        cache,
        &files,
        batch_size,
        &mut |p| {
            last = p.clone();
            on_progress(p)
        },
        cancel,
    )?;
    tracing::info!(
        total = last.total,
        computed = last.computed,
        from_cache = last.from_cache,
        failed = last.failed,
        secs = last.elapsed.as_secs_f64(),
        "features ready"
    );
    let mut out = DatasetFeatures::default();
    for (item, r) in ds.items.iter().zip(results) {
        match r {
            Ok(e) => out.items.push(ItemFeatures {
                path: item.path.clone(),
                label: item.label,
                split: split.assign(&e.sha256),
                sha256: e.sha256,
                value: e.value,
            }),
            Err(reason) => {
                tracing::warn!("skipping {}: {reason}", item.path.display());
                out.failures.push((item.path.clone(), reason));
            }
        }
    }
    if let Some(threshold) = pipeline.spec.backbone.near_duplicate_cosine() {
        out.near_duplicates = keep_near_duplicates_together(&mut out.items, split, threshold)?;
    }
    Ok(out)
}

/// Puts every near-duplicate group into the split of its representative (the member with the
/// smallest hash), so copies of one photo never sit on both sides of the train/test line.
/// Returns the near-duplicate pairs it found.
fn keep_near_duplicates_together(
    items: &mut [ItemFeatures],
    split: &SplitSpec,
    threshold: f32,
) -> Result<Vec<(usize, usize, f32)>> {
    let feats: Vec<&[f32]> = items.iter().map(|i| i.value.features.as_slice()).collect();
    let pairs = crate::audit::duplicates::similar_pairs(&feats, threshold)?;
    let groups = crate::audit::duplicates::near_groups(items.len(), &pairs);
    let sha: Vec<String> = items.iter().map(|i| i.sha256.clone()).collect();
    let sha_refs: Vec<&str> = sha.iter().map(String::as_str).collect();
    let reps = crate::audit::duplicates::representatives(&sha_refs, &groups);
    let mut moved = 0;
    for (item, rep) in items.iter_mut().zip(reps) {
        let s = split.assign(&sha[rep]);
        moved += usize::from(s != item.split);
        item.split = s;
    }
    tracing::debug!(groups = groups.len(), moved, "near-duplicate groups kept in one split");
    Ok(pairs)
}

/// One scored image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The file.
    pub path: PathBuf,
    /// True class index.
    pub label: usize,
    /// Predicted class index.
    pub predicted: usize,
    /// Probability per class.
    pub probs: Vec<f32>,
    /// Its split.
    pub split: Split,
}

/// Scores items with a head.
pub fn score(head: &Head, items: &[&ItemFeatures]) -> Result<Vec<Scored>> {
    let feats: Vec<&[f32]> = items.iter().map(|i| i.value.features.as_slice()).collect();
    let probs = head.probs_of(&feats)?;
    Ok(items
        .iter()
        .zip(probs)
        .map(|(i, p)| Scored { path: i.path.clone(), label: i.label, predicted: argmax(&p), probs: p, split: i.split })
        .collect())
}

/// Metrics of scored images.
pub fn metrics_of(classes: &[String], scored: &[Scored]) -> Metrics {
    let probs: Vec<Vec<f32>> = scored.iter().map(|s| s.probs.clone()).collect();
    let labels: Vec<usize> = scored.iter().map(|s| s.label).collect();
    compute(classes, &probs, &labels)
}

/// What a training run is asked to do.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Backbone.
    pub backbone: BackboneKind,
    /// Crop faces first.
    pub face_crop: bool,
    /// Head options.
    pub options: TrainOptions,
    /// Split rule.
    pub split: SplitSpec,
    /// Images per backbone forward pass.
    pub extract_batch: usize,
    /// Train on at most this many images per class (sorted by hash, so stable); `None` = all.
    pub max_per_class: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::Faceres,
            face_crop: true,
            options: TrainOptions::default(),
            split: SplitSpec::default(),
            extract_batch: 16,
            max_per_class: None,
        }
    }
}

/// Something that happened during a training run.
#[derive(Debug, Clone)]
pub enum TrainEvent {
    /// Loading networks.
    Loading,
    /// Feature extraction progress.
    Extracting(Progress),
    /// One epoch finished.
    Epoch(EpochStats),
}

/// The outcome of a training run.
#[derive(Debug, Clone)]
pub struct TrainReport {
    /// The trained model (not yet saved).
    pub model: Model,
    /// Scores of every image that was read (train, validation and test).
    pub scored: Vec<Scored>,
    /// Files skipped.
    pub failures: Vec<(PathBuf, String)>,
}

/// Trains a model on the dataset folder `dir`.
pub fn train_dataset(
    dir: &Path,
    cfg: &TrainConfig,
    cache: &FeatureCache,
    device: &Device,
    on_event: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
) -> Result<TrainReport> {
    let mut ds = Dataset::scan(dir)?;
    ds.require_trainable()?;
    if let Some(max) = cfg.max_per_class {
        limit_per_class(&mut ds, max);
    }
    on_event(TrainEvent::Loading);
    let spec = PreprocessSpec::new(cfg.backbone, cfg.face_crop);
    let pipeline = Pipeline::load(spec, device)?;
    let feats = dataset_features(
        &ds,
        &pipeline,
        cache,
        &cfg.split,
        cfg.extract_batch,
        &mut |p| on_event(TrainEvent::Extracting(p.clone())),
        cancel,
    )?;
    let train = feats.set(Split::Train);
    let val = feats.set(Split::Validation);
    if train.is_empty() {
        bail!("no readable training images in {}: check the class folders", dir.display());
    }
    let start = if cfg.options.warm_start {
        if cfg.backbone != BackboneKind::Faceres {
            bail!("warm start is only available for the faceres backbone");
        }
        let path = weights::models_dir().join(weights::FACERES.file_name);
        Some(zero_shot_head(&Faceres::load_gender_head(&path, &Device::Cpu)?, &ds.classes)?)
    } else {
        None
    };
    let (head, history) = train_head(
        &train,
        &val,
        ds.classes.len(),
        start,
        &cfg.options,
        &mut |e| on_event(TrainEvent::Epoch(e.clone())),
        cancel,
    )?;
    let all: Vec<&ItemFeatures> = feats.items.iter().collect();
    let scored = score(&head, &all)?;
    let of_split = |s: Split| -> Vec<Scored> { scored.iter().filter(|x| x.split == s).cloned().collect() };
    let (test, valid) = (of_split(Split::Test), of_split(Split::Validation));
    let counts =
        [Split::Train, Split::Validation, Split::Test].map(|s| feats.items.iter().filter(|i| i.split == s).count());
    let meta = ModelMeta {
        format_version: crate::model_file::FORMAT_VERSION,
        classes: ds.classes.clone(),
        preprocess: spec,
        backbone_sha256: cfg.backbone.weight_file().sha256.to_string(),
        origin: format!(
            "trained on {} ({} head{})",
            dir.display(),
            if cfg.options.warm_start { "MLP warm-started from faceres' gender" } else { "linear softmax" },
            if cfg.face_crop { ", face crops" } else { ", whole images" }
        ),
        training: Some(cfg.options.clone()),
        split: Some(cfg.split),
        dataset: Some(DatasetSummary {
            root: dir.to_path_buf(),
            class_counts: ds.counts(),
            split_counts: counts,
            skipped: feats.failures.len(),
        }),
        test_metrics: (!test.is_empty()).then(|| metrics_of(&ds.classes, &test)),
        validation_metrics: (!valid.is_empty()).then(|| metrics_of(&ds.classes, &valid)),
        history,
        created: now_rfc3339(),
    };
    Ok(TrainReport { model: Model { meta, head }, scored, failures: feats.failures })
}

/// The zero-shot model: faceres' own gender head, no training.
pub fn zero_shot_model(face_crop: bool) -> Result<Model> {
    let classes = vec!["female".to_string(), "male".to_string()];
    let path = weights::models_dir().join(weights::FACERES.file_name);
    let head = zero_shot_head(&Faceres::load_gender_head(&path, &Device::Cpu)?, &classes)?;
    Ok(Model {
        meta: ModelMeta {
            format_version: crate::model_file::FORMAT_VERSION,
            classes,
            preprocess: PreprocessSpec::new(BackboneKind::Faceres, face_crop),
            backbone_sha256: weights::FACERES.sha256.to_string(),
            origin: "faceres' own zero-shot gender head (HSE_FaceRec_tf), not retrained".into(),
            training: None,
            split: None,
            dataset: None,
            test_metrics: None,
            validation_metrics: None,
            history: Vec::new(),
            created: now_rfc3339(),
        },
        head,
    })
}

/// Keeps at most `max` images per class, chosen by a hash of the path name (stable across runs).
fn limit_per_class(ds: &mut Dataset, max: usize) {
    let key = |p: &Path| weights::sha256_hex(p.file_name().unwrap_or_default().as_encoded_bytes());
    let mut kept = Vec::new();
    for c in 0..ds.classes.len() {
        let mut items: Vec<_> = ds.items.iter().filter(|i| i.label == c).cloned().collect();
        items.sort_by_cached_key(|i| key(&i.path));
        items.truncate(max);
        kept.extend(items);
    }
    kept.sort_by(|a, b| (a.label, &a.path).cmp(&(b.label, &b.path)));
    ds.items = kept;
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
    let ds = Dataset::scan(dir)?;
    let classes = classifier.classes().to_vec();
    if ds.items.is_empty() {
        bail!("{} has no photos in class folders to evaluate", dir.display());
    }
    // Map the folder's classes onto the model's by name.
    let mapping: Vec<Option<usize>> = ds.classes.iter().map(|c| classes.iter().position(|m| m == c)).collect();
    if let Some((c, _)) = ds.classes.iter().zip(&mapping).find(|(_, m)| m.is_none()) {
        bail!("folder class '{c}' is not one of the model's classes ({})", classes.join(", "));
    }
    let split = classifier.model.meta.split.unwrap_or_default();
    let feats = dataset_features(&ds, &classifier.pipeline, cache, &split, batch_size, on_progress, cancel)?;
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
        bail!("no readable images to evaluate in {} for this scope", dir.display());
    }
    let refs: Vec<&ItemFeatures> = items.iter().collect();
    let scored = score(&classifier.model.head, &refs)?;
    Ok(EvalReport { metrics: metrics_of(&classes, &scored), classes, scored, failures: feats.failures })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::sha256_hex;

    fn item(i: u32, features: Vec<f32>, spec: &SplitSpec) -> ItemFeatures {
        let sha256 = sha256_hex(&i.to_le_bytes());
        ItemFeatures {
            path: PathBuf::from(format!("{i}.jpg")),
            label: 0,
            split: spec.assign(&sha256),
            sha256,
            value: CachedFeatures { features, n_faces: 1, crop: None, face_score: 0.9, image_size: (100, 100) },
        }
    }

    #[test]
    fn copies_of_one_photo_share_a_split_and_other_photos_keep_theirs() {
        let spec = SplitSpec::default();
        // Items 0..40 are distinct directions; each of 40..80 is a near copy of item (i - 40).
        let dir = |k: u32| (0..64).map(|d| if d == k as usize { 1.0 } else { 0.001 * (d as f32) }).collect::<Vec<_>>();
        let mut items: Vec<ItemFeatures> = (0..40).map(|i| item(i, dir(i), &spec)).collect();
        items.extend((40..80).map(|i| {
            let mut f = dir(i - 40);
            f[0] += 0.02;
            item(i, f, &spec)
        }));
        let before: Vec<Split> = items.iter().map(|i| i.split).collect();
        assert!((0..40).any(|i| before[i] != before[i + 40]), "the test needs copies that hashed apart");
        keep_near_duplicates_together(&mut items, &spec, crate::audit::duplicates::NEAR_DUPLICATE_COSINE).unwrap();
        for i in 0..40 {
            assert_eq!(items[i].split, items[i + 40].split, "copy {i} sits in another split");
            let rep = if items[i].sha256 < items[i + 40].sha256 { i } else { i + 40 };
            assert_eq!(items[i].split, before[rep], "the group takes its representative's split");
        }
    }
}
