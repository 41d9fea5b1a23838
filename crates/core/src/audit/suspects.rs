//! Likely wrong labels: out-of-fold probabilities from k-fold training of the head on cached
//! features, ranked by self-confidence, with confident-learning flags (Northcutt et al., cleanlab).

use std::sync::atomic::AtomicBool;

use crate::error::Result;

use crate::metrics::argmax;
use crate::train::{LabelledSet, TrainOptions, train_head};

/// One image's out-of-fold verdict.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Suspect {
    /// Index into the audited items.
    pub index: usize,
    /// Out-of-fold probability of the label it has.
    pub self_confidence: f32,
    /// The class the held-out head predicts.
    pub predicted: usize,
    /// Confident learning counts it as off-diagonal: some other class `k` has p_k ≥ that class's
    /// mean self-confidence threshold and beats the given label.
    pub confident_error: bool,
}

/// The fold (0..k) of an item from the hex hash of its group representative; stable and balanced.
pub fn fold_of(sha256_hex: &str, k: usize) -> usize {
    let v = sha256_hex.get(..8).and_then(|s| u64::from_str_radix(s, 16).ok()).unwrap_or(0);
    (v % k as u64) as usize
}

/// Probabilities for every item from a head that never saw it (k-fold cross-fitting).
///
/// `fold[i]` is item i's fold; items of one near-duplicate group must share a fold so a copy
/// cannot vouch for its twin.
pub fn out_of_fold_probs(
    set: &LabelledSet,
    fold: &[usize],
    k: usize,
    num_classes: usize,
    opts: &TrainOptions,
    cancel: &AtomicBool,
) -> Result<Vec<Vec<f32>>> {
    let mut probs = vec![Vec::new(); set.len()];
    for f in 0..k {
        let (held, kept): (Vec<usize>, Vec<usize>) = (0..set.len()).partition(|&i| fold[i] == f);
        if held.is_empty() {
            continue;
        }
        let pick = |idx: &[usize]| LabelledSet {
            features: idx.iter().map(|&i| set.features[i].clone()).collect(),
            labels: idx.iter().map(|&i| set.labels[i]).collect(),
            domains: idx.iter().filter_map(|&i| set.domains.get(i).copied()).collect(),
        };
        let train = pick(&kept);
        let (head, _) = train_head(&train, &LabelledSet::default(), num_classes, None, opts, &mut |_| {}, cancel)?;
        let p = head.probs_of(&pick(&held).features)?;
        for (i, pi) in held.into_iter().zip(p) {
            probs[i] = pi;
        }
    }
    Ok(probs)
}

/// Ranks items by out-of-fold self-confidence, lowest (most suspicious) first; ties by index.
pub fn rank(probs: &[Vec<f32>], labels: &[usize], num_classes: usize) -> Vec<Suspect> {
    // Per-class threshold: the mean self-confidence of the items labelled with that class.
    let mut sum = vec![0f64; num_classes];
    let mut count = vec![0usize; num_classes];
    for (p, &l) in probs.iter().zip(labels) {
        sum[l] += p[l] as f64;
        count[l] += 1;
    }
    let threshold: Vec<f32> =
        sum.iter().zip(&count).map(|(s, &c)| if c > 0 { (s / c as f64) as f32 } else { 1.0 }).collect();
    let mut out: Vec<Suspect> = probs
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(index, (p, &l))| {
            let confident_error = (0..num_classes).filter(|&k| k != l && p[k] >= threshold[k]).any(|k| p[k] > p[l]);
            Suspect { index, self_confidence: p[l], predicted: argmax(p), confident_error }
        })
        .collect();
    out.sort_by(|a, b| a.self_confidence.total_cmp(&b.self_confidence).then(a.index.cmp(&b.index)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::rng::Rng;

    #[test]
    fn a_flipped_label_ranks_first_and_is_a_confident_error() {
        // Two well separated clusters; item 4 sits in class 0's cluster but is labelled 1.
        let mut rng = Rng::new(3);
        let mut set = LabelledSet::default();
        for i in 0..80 {
            let c = i % 2;
            let centre = if c == 0 { 1.0 } else { -1.0 };
            set.features.push((0..8).map(|_| centre + 0.3 * (rng.next_f32() - 0.5)).collect::<Vec<f32>>().into());
            set.labels.push(if i == 4 { 1 } else { c });
        }
        let fold: Vec<usize> = (0..set.len()).map(|i| i % 4).collect();
        let opts = TrainOptions { epochs: 30, patience: 0, dropout: 0.0, ..Default::default() };
        let probs = out_of_fold_probs(&set, &fold, 4, 2, &opts, &AtomicBool::new(false)).unwrap();
        let ranked = rank(&probs, &set.labels, 2);
        assert_eq!(ranked[0].index, 4);
        assert!(ranked[0].confident_error);
        assert_eq!(ranked[0].predicted, 0);
        assert!(!ranked[1].confident_error, "{:?}", ranked[1]);
        let again =
            rank(&out_of_fold_probs(&set, &fold, 4, 2, &opts, &AtomicBool::new(false)).unwrap(), &set.labels, 2);
        assert_eq!(ranked, again, "deterministic");
    }

    #[test]
    fn folds_are_balanced() {
        let mut counts = [0usize; 5];
        for i in 0..5000u32 {
            counts[fold_of(&gc_engine::weights::sha256_hex(&i.to_le_bytes()), 5)] += 1;
        }
        assert!(counts.iter().all(|&c| (900..1100).contains(&c)), "{counts:?}");
    }
}
