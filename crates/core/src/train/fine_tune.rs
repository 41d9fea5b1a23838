//! Fine-tuning (`train --fine-tune`): faceres' last blocks trained together with the head.
//!
//! Head-only training sees the frozen network's pooled features; fine-tuning also moves the
//! weights of the last [`FineTuneOptions::blocks`] blocks, at a lower learning rate than the
//! head's. To make that affordable on a CPU, the frozen part of the network runs once per photo
//! and copy: its output before the first trained block ([`Faceres::activations`]) is kept in
//! memory as f16, for the photo, its mirror image and [`FineTuneOptions::jitter_copies`] copies
//! with random scale, shift, brightness and contrast (validation and test photos: the photo
//! alone). Each epoch then runs only the trained blocks, forward and backward, on Candle's ops
//! ([`Tail`]). Early stopping keeps the weights of the epoch with the best validation loss.
//!
//! It starts from the head-only model, so an epoch that does not help is never kept.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rayon::prelude::*;

use super::rng::Rng;
use super::{CellWeights, LabelledSet, weighted_nll, weighted_nll_sum};
use crate::context::Context;
use crate::dataset::split::Split;
use crate::error::{Result, invalid};
use crate::features::dataset::DatasetFeatures;
use crate::features::extract::{Cancelled, Progress};
use crate::model_file::TunedBlocks;
use crate::pipeline::Pipeline;
use crate::preprocess::mirror_chw;
use crate::recipe::{EpochStats, FineTuneOptions};
use gc_engine::BackboneKind;
use gc_engine::faceres::{BGR_MEAN, Faceres};
use gc_engine::faceres_train::Tail;
use gc_engine::head::{Dense, Head};
use gc_engine::weights::{self, FACERES};

/// What fine-tuning made.
pub struct FineTuned {
    /// The trained head.
    pub head: Head,
    /// The trained blocks; `None` when no epoch beat the head-only model on the validation loss
    /// (then the head is the head-only model's, and the shipped blocks stay).
    pub tuned: Option<TunedBlocks>,
    /// Loss and accuracy per epoch.
    pub history: Vec<EpochStats>,
    /// The datasets again, each photo's features now from the fine-tuned network (photos that
    /// could not be read again are moved to the failures).
    pub features: Vec<DatasetFeatures>,
}

/// Something that happened while fine-tuning.
pub enum FineTuneEvent {
    /// The frozen part of the network ran on this many photos of the total.
    Preparing(Progress),
    /// Training photos (and copies) done so far in the current epoch (1-based).
    Batch {
        /// The epoch.
        epoch: usize,
        /// Photos and copies done.
        done: usize,
        /// Photos and copies per epoch.
        total: usize,
    },
    /// One epoch finished.
    Epoch(EpochStats),
}

/// One photo's kept activations.
struct Entry {
    /// Index into the photo list.
    photo: usize,
    /// `[1, H, W, C]`, f16.
    act: Tensor,
    /// False for mirror images and jittered copies.
    original: bool,
}

/// A photo to fine-tune on.
struct Photo<'a> {
    item: &'a crate::features::dataset::ItemFeatures,
    /// Its dataset.
    domain: usize,
    /// Its index among its dataset's items.
    index: usize,
}

/// Trains faceres' last blocks and the head, starting from `start` (the head-only model), on the
/// photos of `sets` with their splits and labels.
#[allow(clippy::too_many_arguments)]
pub fn fine_tune(
    sets: &[DatasetFeatures],
    pipeline: &Pipeline,
    start: &Head,
    num_classes: usize,
    balance: bool,
    opts: &FineTuneOptions,
    ctx: &Context,
    on_event: &mut dyn FnMut(FineTuneEvent),
    cancel: &AtomicBool,
) -> Result<FineTuned> {
    opts.validate()?;
    if pipeline.backbone_kind() != BackboneKind::Faceres {
        invalid!("fine-tuning is only available for the faceres backbone: drop --backbone or --fine-tune");
    }
    let path = ctx.weights(&FACERES);
    let net = Faceres::load(&path, &ctx.device)?;
    let vb = weights::load_checked(&path, &FACERES, &ctx.device)?;
    let tail = weights::with_file_context(Tail::load(&vb, opts.blocks), &path)?;
    let photos: Vec<Photo> = sets
        .iter()
        .enumerate()
        .flat_map(|(d, s)| s.items.iter().enumerate().map(move |(index, item)| Photo { item, domain: d, index }))
        .collect();
    let entries = prepare(&photos, pipeline, &net, tail.first_block(), opts, on_event, cancel)?;
    drop(net);

    let train_set = LabelledSet {
        features: Vec::new(),
        labels: photos.iter().filter(|p| p.item.split == Split::Train).map(|p| p.item.label).collect(),
        domains: photos.iter().filter(|p| p.item.split == Split::Train).map(|p| p.domain).collect(),
    };
    let cells = CellWeights::fit(&train_set, num_classes, balance);
    let weight = |e: &Entry| cells.of(photos[e.photo].domain, photos[e.photo].item.label);
    let of_split = |s: Split, all: bool| -> Vec<usize> {
        (0..entries.len())
            .filter(|&i| photos[entries[i].photo].item.split == s && (all || entries[i].original))
            .collect()
    };
    let (train, val) = (of_split(Split::Train, true), of_split(Split::Validation, false));
    if train.is_empty() {
        invalid!("no training photos could be read again for fine-tuning: check the dataset folders");
    }

    let head = TrainableHead::new(start)?;
    let dev = ctx.device.clone();
    let params = |lr| ParamsAdamW { lr, weight_decay: 0.0, ..Default::default() };
    let mut head_opt = AdamW::new(head.vars(), params(opts.head_lr))?;
    let mut tail_opt = AdamW::new(tail.vars(), params(opts.backbone_lr))?;
    let all_vars: Vec<Var> = head.vars().into_iter().chain(tail.vars()).collect();
    let forward = |idx: &[usize]| -> Result<(Tensor, Tensor, Tensor)> {
        let acts: Vec<&Tensor> = idx.iter().map(|&i| &entries[i].act).collect();
        let x = Tensor::cat(&acts, 0)?.to_dtype(DType::F32)?;
        let logits = head.logits(&tail.forward(&x)?)?;
        let labels: Vec<u32> = idx.iter().map(|&i| photos[entries[i].photo].item.label as u32).collect();
        let w: Vec<f32> = idx.iter().map(|&i| weight(&entries[i])).collect();
        Ok((logits, Tensor::new(labels, &dev)?, Tensor::new(w, &dev)?))
    };
    let evaluate = |idx: &[usize]| -> Result<(f32, f32)> {
        let (mut loss, mut total_w, mut correct) = (0f64, 0f64, 0usize);
        for rows in idx.chunks(64) {
            let (logits, y, w) = forward(rows)?;
            let (sum, weight) = weighted_nll_sum(&logits, &y, &w)?;
            loss += f64::from(sum.to_scalar::<f32>()?);
            total_w += f64::from(weight.to_scalar::<f32>()?);
            let pred = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += pred.iter().zip(y.to_vec1::<u32>()?).filter(|(p, y)| **p == *y).count();
        }
        Ok(((loss / total_w.max(1e-9)) as f32, correct as f32 / idx.len().max(1) as f32))
    };

    let mut rng = Rng::new(opts.seed);
    let mut history = Vec::new();
    let snapshot = || all_vars.iter().map(|v| v.as_tensor().copy()).collect::<candle_core::Result<Vec<_>>>();
    // The head-only model is the one to beat: epoch 0.
    let (mut best_loss, mut best) = match val.is_empty() {
        true => (f32::INFINITY, snapshot()?),
        false => (evaluate(&val)?.0, snapshot()?),
    };
    let (mut since_best, mut best_epoch) = (0, 0);
    for epoch in 1..=opts.epochs {
        let mut order = train.clone();
        rng.shuffle(&mut order);
        let (mut sum, mut n, mut correct) = (0f64, 0usize, 0usize);
        for batch in order.chunks(opts.batch_size) {
            if cancel.load(Ordering::Relaxed) {
                return Err(Cancelled.into());
            }
            let (logits, y, w) = forward(batch)?;
            let loss = weighted_nll(&logits, &y, &w)?;
            let value = loss.to_scalar::<f32>()?;
            if !value.is_finite() {
                invalid!(
                    "the training loss became {value} at epoch {epoch}; fine-tuning stopped and no model was made: \
                     lower the learning rates (--fine-tune-lr, --backbone-lr) and train again"
                );
            }
            let grads = loss.backward()?;
            head_opt.step(&grads)?;
            tail_opt.step(&grads)?;
            sum += f64::from(value) * batch.len() as f64;
            n += batch.len();
            on_event(FineTuneEvent::Batch { epoch, done: n, total: order.len() });
            let pred = logits.argmax(1)?.to_vec1::<u32>()?;
            correct += pred.iter().zip(y.to_vec1::<u32>()?).filter(|(p, y)| **p == *y).count();
        }
        let (val_loss, val_accuracy) = match val.is_empty() {
            true => (None, None),
            false => {
                let (l, a) = evaluate(&val)?;
                (Some(l), Some(a))
            }
        };
        let stats = EpochStats {
            epoch,
            train_loss: (sum / n.max(1) as f64) as f32,
            train_accuracy: correct as f32 / n.max(1) as f32,
            val_loss,
            val_accuracy,
        };
        tracing::info!(epoch, train_loss = stats.train_loss, ?val_loss, ?val_accuracy, "fine-tuning epoch");
        on_event(FineTuneEvent::Epoch(stats.clone()));
        history.push(stats);
        match val_loss {
            Some(l) if l < best_loss => {
                (best_loss, best, since_best, best_epoch) = (l, snapshot()?, 0, epoch);
            }
            Some(_) => {
                since_best += 1;
                if since_best >= opts.patience.max(1) {
                    tracing::info!(epoch, "validation loss stopped improving; fine-tuning stops");
                    break;
                }
            }
            None => (best, best_epoch) = (snapshot()?, epoch),
        }
    }
    if best_epoch == 0 {
        tracing::info!(
            best_loss,
            "no fine-tuning epoch beat the head-only model's validation loss; the head-only model is kept"
        );
    }
    for (v, t) in all_vars.iter().zip(&best) {
        v.set(t)?;
    }

    let originals: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].original).collect();
    let mut tuned_features: Vec<Vec<Option<Vec<f32>>>> = sets.iter().map(|s| vec![None; s.items.len()]).collect();
    for rows in originals.chunks(64) {
        let acts: Vec<&Tensor> = rows.iter().map(|&i| &entries[i].act).collect();
        let feats = tail.forward(&Tensor::cat(&acts, 0)?.to_dtype(DType::F32)?)?.to_vec2::<f32>()?;
        for (&i, f) in rows.iter().zip(feats) {
            let p = &photos[entries[i].photo];
            tuned_features[p.domain][p.index] = Some(f);
        }
    }
    let features = sets
        .iter()
        .zip(tuned_features)
        .map(|(set, feats)| {
            let mut out = DatasetFeatures { failures: set.failures.clone(), ..Default::default() };
            for (item, f) in set.items.iter().zip(feats) {
                match f {
                    Some(features) => {
                        let mut item = item.clone();
                        item.value.features = features;
                        out.items.push(item);
                    }
                    None => out.failures.push((item.path.clone(), "could not be read again for fine-tuning".into())),
                }
            }
            if out.items.len() == set.items.len() {
                out.near_duplicates = set.near_duplicates.clone();
            }
            out
        })
        .collect();
    let tuned = match best_epoch {
        0 => None,
        _ => Some(TunedBlocks { tensors: tail.tensors()? }),
    };
    Ok(FineTuned { head: head.to_head()?, tuned, history, features })
}

/// The head's layers as variables.
struct TrainableHead {
    hidden: Option<(Var, Var)>,
    out: (Var, Var),
}

impl TrainableHead {
    fn new(h: &Head) -> candle_core::Result<Self> {
        let var = |d: &Dense| -> candle_core::Result<(Var, Var)> {
            Ok((Var::from_tensor(&d.weight.to_dtype(DType::F32)?)?, Var::from_tensor(&d.bias.to_dtype(DType::F32)?)?))
        };
        Ok(Self { hidden: h.hidden.as_ref().map(var).transpose()?, out: var(&h.out)? })
    }

    fn vars(&self) -> Vec<Var> {
        let mut v: Vec<Var> = self.hidden.iter().flat_map(|(w, b)| [w.clone(), b.clone()]).collect();
        v.extend([self.out.0.clone(), self.out.1.clone()]);
        v
    }

    fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let dense = |x: &Tensor, (w, b): &(Var, Var)| x.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor());
        let x = match &self.hidden {
            Some(h) => dense(x, h)?.relu()?,
            None => x.clone(),
        };
        dense(&x, &self.out)
    }

    fn to_head(&self) -> candle_core::Result<Head> {
        let dense = |(w, b): &(Var, Var)| -> candle_core::Result<Dense> {
            Ok(Dense { weight: w.as_tensor().copy()?, bias: b.as_tensor().copy()? })
        };
        Ok(Head { hidden: self.hidden.as_ref().map(dense).transpose()?, out: dense(&self.out)? })
    }
}

/// Runs the frozen part of the network on every photo (and the copies of training photos),
/// keeping its output as f16. Photos that cannot be read again are left out with a warning.
fn prepare(
    photos: &[Photo],
    pipeline: &Pipeline,
    net: &Faceres,
    first: usize,
    opts: &FineTuneOptions,
    on_event: &mut dyn FnMut(FineTuneEvent),
    cancel: &AtomicBool,
) -> Result<Vec<Entry>> {
    let started = Instant::now();
    let mut progress = Progress { total: photos.len(), ..Default::default() };
    let mut entries = Vec::new();
    let size = pipeline.spec.input_size();
    for (c, chunk) in photos.chunks(8).enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(Cancelled.into());
        }
        let inputs: Vec<(usize, Vec<Input>)> = chunk
            .par_iter()
            .enumerate()
            .map(|(k, p)| {
                let index = c * 8 + k;
                let seed = opts.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                (index, inputs_of(p, pipeline, opts, seed, size))
            })
            .collect();
        let mut batch = Vec::new();
        let mut owners = Vec::new();
        for (index, list) in inputs {
            if list.is_empty() {
                progress.failed += 1;
            }
            for (input, original) in list {
                batch.extend(input);
                owners.push((index, original));
            }
        }
        if !owners.is_empty() {
            let x = Tensor::from_vec(batch, (owners.len(), 3, size, size), pipeline.device())?;
            let act = net.activations(&x, first)?.to_dtype(DType::F16)?;
            for (row, (photo, original)) in owners.into_iter().enumerate() {
                entries.push(Entry { photo, act: act.narrow(0, row, 1)?, original });
            }
        }
        progress.done += chunk.len();
        progress.computed = progress.done - progress.failed;
        progress.elapsed = started.elapsed();
        on_event(FineTuneEvent::Preparing(progress.clone()));
    }
    Ok(entries)
}

/// A prepared network input, and whether it is the photo as it is (not a mirrored or jittered copy).
type Input = (Vec<f32>, bool);

/// The prepared inputs of one photo: itself, and for a training photo its mirror image and
/// jittered copies; empty (with a warning) when it cannot be read again.
fn inputs_of(p: &Photo, pipeline: &Pipeline, opts: &FineTuneOptions, seed: u64, size: usize) -> Vec<Input> {
    let path = &p.item.path;
    let read = pipeline.load_photo(path).and_then(|p| Ok((pipeline.regions(&p.image)?, p.image)));
    let (regions, img) = match read {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %crate::error::describe(&e), "left out of fine-tuning");
            return Vec::new();
        }
    };
    let best = &regions[0];
    let input = pipeline.input(&img, best);
    if p.item.split != Split::Train {
        return vec![(input, true)];
    }
    let mut out = vec![(mirror_chw(&input, size), false), (input, true)];
    let mut rng = Rng::new(seed);
    for _ in 0..opts.jitter_copies {
        let mut region = best.clone();
        let [x1, y1, x2, y2] = region.region;
        let side = (x2 - x1).max(y2 - y1);
        let scale = 1.0 + 0.1 * (2.0 * rng.next_f32() - 1.0);
        let (dx, dy) = (0.05 * side * (2.0 * rng.next_f32() - 1.0), 0.05 * side * (2.0 * rng.next_f32() - 1.0));
        let (cx, cy) = ((x1 + x2) / 2.0 + dx, (y1 + y2) / 2.0 + dy);
        let (hw, hh) = ((x2 - x1) / 2.0 * scale, (y2 - y1) / 2.0 * scale);
        region.region = [cx - hw, cy - hh, cx + hw, cy + hh];
        let mut copy = pipeline.input(&img, &region);
        let contrast = 1.0 + 0.2 * (2.0 * rng.next_f32() - 1.0);
        let brightness = 20.0 * (2.0 * rng.next_f32() - 1.0);
        jitter_pixels(&mut copy, size, contrast, brightness);
        if rng.next_f32() < 0.5 {
            copy = mirror_chw(&copy, size);
        }
        out.push((copy, false));
    }
    out
}

/// Contrast and brightness on faceres input (BGR minus the channel means), pixels kept in 0..255.
fn jitter_pixels(input: &mut [f32], size: usize, contrast: f32, brightness: f32) {
    for (plane, mean) in input.chunks_exact_mut(size * size).zip(BGR_MEAN) {
        for v in plane {
            let p = ((*v + mean - 128.0) * contrast + 128.0 + brightness).clamp(0.0, 255.0);
            *v = p - mean;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_keeps_pixels_in_range_and_identity_is_a_no_op() {
        let size = 2;
        let mut x: Vec<f32> = (0..12).map(|i| i as f32 * 20.0 - BGR_MEAN[i / 4]).collect();
        let before = x.clone();
        jitter_pixels(&mut x, size, 1.0, 0.0);
        assert!(x.iter().zip(&before).all(|(a, b)| (a - b).abs() < 1e-4));
        jitter_pixels(&mut x, size, 3.0, 100.0);
        for (i, v) in x.iter().enumerate() {
            let p = v + BGR_MEAN[i / 4];
            assert!((0.0..=255.0).contains(&p), "pixel {p}");
        }
        assert!(x.iter().zip(&before).any(|(a, b)| (a - b).abs() > 1.0));
    }
}
