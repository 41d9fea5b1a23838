//! End-to-end training runs over a dataset folder: extract (cached) features, split, train, score
//! and describe the model (saving is the caller's).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::{Result, invalid};
use candle_core::Device;

use super::{EpochStats, LabelledSet, TrainOptions, train_head, zero_shot_head};
use crate::context::Context;
use crate::dataset::split::{Split, SplitSpec};
use crate::dataset::{Dataset, scan_all};
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
    /// Crop mode, face-crop rule and flips other than [`PreprocessSpec::new`]'s defaults.
    pub crops: crate::preprocess::CropOverrides,
    /// Head options.
    pub options: TrainOptions,
    /// Split rule.
    pub split: SplitSpec,
    /// Images per backbone forward pass.
    pub extract_batch: usize,
    /// Train on at most this many images per class (sorted by hash, so stable); `None` = all.
    pub max_per_class: Option<usize>,
    /// Fine-tune faceres' last blocks after training the head ([`super::fine_tune`]); `None` =
    /// head only.
    pub fine_tune: Option<crate::recipe::FineTuneOptions>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::Faceres,
            face_crop: true,
            crops: Default::default(),
            options: TrainOptions::default(),
            split: SplitSpec::default(),
            extract_batch: 16,
            max_per_class: None,
            fine_tune: None,
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
    /// Fine-tuning is this far into its epoch (numbered on from the head's epochs).
    FineTuning {
        /// The epoch.
        epoch: usize,
        /// Training photos and copies done in this epoch.
        done: usize,
        /// Training photos and copies per epoch.
        total: usize,
    },
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
    train_datasets(&[dir.to_path_buf()], cfg, ctx, on_event, cancel)
}

/// Trains one model on several dataset folders with the same classes (see [`scan_all`]).
///
/// Each folder is split on its own, exactly as `eval` splits it alone (by content hash, with
/// near-duplicates kept together within the folder), so each folder's test split stays held back.
/// With balancing on, each (folder, class) cell weighs equally in the loss ([`super::CellWeights`]).
pub fn train_datasets(
    dirs: &[PathBuf],
    cfg: &TrainConfig,
    ctx: &Context,
    on_event: &mut dyn FnMut(TrainEvent),
    cancel: &AtomicBool,
) -> Result<TrainReport> {
    cfg.options.validate()?;
    if let Some(ft) = &cfg.fine_tune {
        ft.validate()?;
        if cfg.backbone != BackboneKind::Faceres {
            invalid!("fine-tuning is only available for the faceres backbone: drop --backbone or --fine-tune");
        }
    }
    let mut sets = scan_all(dirs)?;
    if let Some(max) = cfg.max_per_class {
        sets.iter_mut().for_each(|ds| limit_per_class(ds, max));
    }
    on_event(TrainEvent::Loading);
    let spec = cfg.crops.apply(PreprocessSpec::new(cfg.backbone, cfg.face_crop));
    let pipeline = Pipeline::load(spec, ctx)?;
    let mut per = Vec::with_capacity(sets.len());
    for ds in &sets {
        per.push(dataset_features(
            ds,
            &pipeline,
            &ctx.feature_cache(),
            &cfg.split,
            cfg.extract_batch,
            &mut |p| on_event(TrainEvent::Extracting(p.clone())),
            cancel,
        )?);
    }
    let ds = &sets[0];
    let train = LabelledSet::of_split_many(&per, Split::Train);
    let val = LabelledSet::of_split_many(&per, Split::Validation);
    if train.is_empty() {
        let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        invalid!("no readable training images in {}: check the class folders", names.join(" or "));
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
    let (mut head, mut history) = train_head(
        &train,
        &val,
        ds.classes.len(),
        start,
        &cfg.options,
        &mut |e| on_event(TrainEvent::Epoch(e.clone())),
        cancel,
    )?;
    drop((train, val));
    let mut tuned = None;
    if let Some(ft) = &cfg.fine_tune {
        let offset = history.len();
        let done = super::fine_tune::fine_tune(
            &per,
            &pipeline,
            &head,
            ds.classes.len(),
            cfg.options.balance_classes,
            ft,
            ctx,
            &mut |e| match e {
                super::fine_tune::FineTuneEvent::Preparing(p) => on_event(TrainEvent::Extracting(p)),
                super::fine_tune::FineTuneEvent::Batch { epoch, done, total } => {
                    on_event(TrainEvent::FineTuning { epoch: epoch + offset, done, total })
                }
                super::fine_tune::FineTuneEvent::Epoch(mut e) => {
                    e.epoch += offset;
                    on_event(TrainEvent::Epoch(e))
                }
            },
            cancel,
        )?;
        // Fine-tuning's epochs go on from the head's, so one history shows both.
        history.extend(done.history.into_iter().map(|mut e| {
            e.epoch += offset;
            e
        }));
        (head, per, tuned) = (done.head, done.features, done.tuned);
    }
    let val = LabelledSet::of_split_many(&per, Split::Validation);
    // Temperature scaling on the validation split (T = 1 when it is too small); the scores below
    // are of the calibrated head.
    let calibration = crate::calibration::calibrate(&mut head, &val)?;
    let all: Vec<&ItemFeatures> = per.iter().flat_map(|f| f.items.iter()).collect();
    let scored = score(&head, &all)?;
    let of_split = |s: Split| -> Vec<Scored> { scored.iter().filter(|x| x.split == s).cloned().collect() };
    let (test, valid) = (of_split(Split::Test), of_split(Split::Validation));
    let summaries: Vec<DatasetSummary> = sets
        .iter()
        .zip(&per)
        .map(|(d, f)| DatasetSummary {
            root: d.root.clone(),
            class_counts: d.counts(),
            split_counts: [Split::Train, Split::Validation, Split::Test]
                .map(|s| f.items.iter().filter(|i| i.split == s).count()),
            skipped: f.failures.len(),
        })
        .collect();
    let roots: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let tuned_words = match (&cfg.fine_tune, &tuned) {
        (Some(ft), Some(_)) => format!(" with faceres' last {} blocks fine-tuned", ft.blocks),
        (Some(_), None) => "; fine-tuning tried, but no epoch beat the head alone on validation loss".into(),
        (None, _) => String::new(),
    };
    let meta = ModelMeta {
        format_version: crate::model_file::FORMAT_VERSION,
        classes: ds.classes.clone(),
        preprocess: spec,
        backbone_sha256: cfg.backbone.weight_file().sha256.to_string(),
        origin: format!(
            "trained on {} ({} head{}, {}{})",
            roots.join(" + "),
            if cfg.options.warm_start { "MLP warm-started from faceres' gender" } else { "linear softmax" },
            tuned_words,
            spec.describe(),
            match (sets.len() > 1, cfg.options.balance_classes) {
                (true, true) => ", balanced per dataset and class",
                (true, false) => ", not balanced",
                _ => "",
            }
        ),
        training: Some(cfg.options.clone()),
        split: Some(cfg.split),
        dataset: summaries.first().cloned(),
        datasets: summaries,
        test_metrics: (!test.is_empty()).then(|| metrics_of(&ds.classes, &test)),
        validation_metrics: (!valid.is_empty()).then(|| metrics_of(&ds.classes, &valid)),
        history,
        created: now_rfc3339(),
        calibration: Some(calibration),
        fine_tune: cfg.fine_tune.clone().filter(|_| tuned.is_some()),
    };
    let failures = per.into_iter().flat_map(|f| f.failures).collect();
    Ok(TrainReport { model: Model { meta, head, tuned }, scored, failures })
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
            datasets: Vec::new(),
            test_metrics: None,
            validation_metrics: None,
            history: Vec::new(),
            created: now_rfc3339(),
            calibration: None,
            fine_tune: None,
        },
        head,
        tuned: None,
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
