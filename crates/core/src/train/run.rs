//! End-to-end training runs over a dataset folder: extract (cached) features, split, train, score
//! and describe the model (saving is the caller's).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Result, invalid};
use candle_core::Device;

use super::{EpochStats, LabelledSet, TrainOptions, train_head, zero_shot_head};
use crate::context::Context;
use crate::dataset::Dataset;
use crate::dataset::split::{Split, SplitSpec};
use crate::eval::{Scored, metrics_of, score};
use crate::features::dataset::{ItemFeatures, dataset_features};
use crate::features::extract::Progress;
use crate::model_file::{DatasetSummary, Model, ModelMeta, now_rfc3339};
use crate::pipeline::Pipeline;
use crate::preprocess::PreprocessSpec;
use gc_engine::faceres::Faceres;
use gc_engine::{BackboneKind, weights};

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
    /// The guard scores the model the new one would replace (feature extraction progress).
    Comparing(Progress),
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

/// Trains a model on the dataset folder `dir`; bad options are refused before any work starts.
pub fn train_dataset(
    dir: &Path,
    cfg: &TrainConfig,
    ctx: &Context,
    on_event: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
) -> Result<TrainReport> {
    cfg.options.validate()?;
    let mut ds = Dataset::scan(dir)?;
    ds.require_trainable()?;
    if let Some(max) = cfg.max_per_class {
        limit_per_class(&mut ds, max);
    }
    on_event(TrainEvent::Loading);
    let spec = PreprocessSpec::new(cfg.backbone, cfg.face_crop);
    let pipeline = Pipeline::load(spec, ctx)?;
    let feats = dataset_features(
        &ds,
        &pipeline,
        &ctx.feature_cache(),
        &cfg.split,
        cfg.extract_batch,
        &mut |p| on_event(TrainEvent::Extracting(p.clone())),
        cancel,
    )?;
    let train = LabelledSet::of_split(&feats, Split::Train);
    let val = LabelledSet::of_split(&feats, Split::Validation);
    if train.is_empty() {
        invalid!("no readable training images in {}: check the class folders", dir.display());
    }
    let start = if cfg.options.warm_start {
        if cfg.backbone != BackboneKind::Faceres {
            invalid!("warm start is only available for the faceres backbone");
        }
        let path = ctx.weights(&weights::FACERES);
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

/// The zero-shot model: faceres' own gender head (from the context's models folder), no training.
pub fn zero_shot_model(ctx: &Context, face_crop: bool) -> Result<Model> {
    let classes = vec!["female".to_string(), "male".to_string()];
    let path = ctx.weights(&weights::FACERES);
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
