//! Unit tests of [`super`]: the fitted temperature, the ECE and the scaled head.

use super::*;
use crate::train::rng::Rng;
use candle_core::Device;
use gc_engine::head::Dense;

/// `n` two-class examples whose true logits are `z` (labels drawn from `softmax(z)`), returned as
/// the logits `z * scale` a model with that over- (scale > 1) or under-confidence would give.
fn synthetic(n: usize, scale: f32, seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let (mut logits, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let z = [0.0f32, 2.5 * rng.normal()];
        let p1 = softmax_t(&z, 1.0)[1];
        labels.push(usize::from((rng.next_f32() as f64) < p1));
        logits.push(z.iter().map(|v| v * scale).collect());
    }
    (logits, labels)
}

fn probs(logits: &[Vec<f32>], t: f64) -> Vec<Vec<f64>> {
    logits.iter().map(|z| softmax_t(z, t)).collect()
}

#[test]
fn the_fitted_temperature_recovers_a_known_one() {
    for scale in [0.5f32, 1.0, 3.0] {
        let (logits, labels) = synthetic(20_000, scale, 7);
        let t = fit_temperature(&logits, &labels);
        assert!((t / scale - 1.0).abs() < 0.08, "logits scaled by {scale}: fitted T = {t}");
        // It is a minimum: nudging T either way does not lower the loss.
        let at = |t: f32| nll(&logits, &labels, f64::from(t));
        assert!(at(t) <= at(t * 1.05) && at(t) <= at(t / 1.05), "T = {t}");
    }
    assert_eq!(fit_temperature(&[], &[]), 1.0, "no data, no change");
}

#[test]
fn ece_is_small_when_calibrated_and_larger_when_overconfident() {
    let (logits, labels) = synthetic(20_000, 1.0, 11);
    let calibrated = expected_calibration_error(&probs(&logits, 1.0), &labels);
    assert!(calibrated < 0.015, "a calibrated set: ECE {calibrated}");
    let (over, labels) = synthetic(20_000, 3.0, 11);
    let overconfident = expected_calibration_error(&probs(&over, 1.0), &labels);
    assert!(overconfident > 0.05 && overconfident > 4.0 * calibrated, "overconfident: ECE {overconfident}");
    let fixed = expected_calibration_error(&probs(&over, f64::from(fit_temperature(&over, &labels))), &labels);
    assert!(fixed < 0.02, "after temperature scaling: ECE {fixed}");
    // Hand-computed: two photos at 0.9 in one bin, one right: |0.5 - 0.9| = 0.4.
    let two = [vec![0.9, 0.1], vec![0.1, 0.9]];
    assert!((expected_calibration_error(&two, &[0, 0]) - 0.4).abs() < 1e-12);
    assert_eq!(expected_calibration_error::<Vec<f64>>(&[], &[]), 0.0);
}

/// A small MLP head (hidden layer + output) with varied weights.
fn mlp_head() -> Head {
    let dev = Device::Cpu;
    let t = |n: usize, shape: (usize, usize), k: f32| {
        Tensor::from_vec((0..n).map(|i| ((i as f32 + k) * 0.37).sin()).collect::<Vec<f32>>(), shape, &dev).unwrap()
    };
    let v = |n: usize, k: f32| {
        Tensor::from_vec((0..n).map(|i| (i as f32 - k) * 0.2).collect::<Vec<f32>>(), n, &dev).unwrap()
    };
    Head {
        hidden: Some(Dense { weight: t(5 * 4, (5, 4), 1.0), bias: v(5, 1.0) }),
        out: Dense { weight: t(2 * 5, (2, 5), 3.0), bias: v(2, 0.5) },
    }
}

#[test]
fn scaling_the_last_layer_gives_softmax_of_logits_over_t() {
    let feats: Vec<Vec<f32>> =
        (0..9).map(|i| (0..4).map(|k| ((i * 4 + k) as f32 * 0.71).cos() * 2.0).collect()).collect();
    let set = LabelledSet {
        features: feats.iter().map(|f| f.as_slice().into()).collect(),
        labels: vec![0; 9],
        ..Default::default()
    };
    let mut head = mlp_head();
    let logits = logits_of(&head, &set).unwrap();
    let t = 2.7f32;
    apply_temperature(&mut head, t).unwrap();
    let got = head.probs_of(&feats).unwrap();
    for (z, p) in logits.iter().zip(&got) {
        let want = softmax_t(z, f64::from(t));
        for (a, b) in p.iter().zip(&want) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{p:?} vs {want:?}");
        }
    }
}

#[test]
fn calibrate_fits_on_enough_photos_and_keeps_t_1_on_too_few() {
    let feats: Vec<Vec<f32>> =
        (0..200).map(|i| (0..4).map(|k| ((i * 4 + k) as f32 * 0.53).sin() * 3.0).collect()).collect();
    let head = mlp_head();
    let set = LabelledSet { features: feats.iter().map(|f| f.as_slice().into()).collect(), ..Default::default() };
    // Labels that disagree with the head a third of the time: it is overconfident.
    let labels: Vec<usize> = logits_of(&head, &set)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, z)| usize::from(z[1] > z[0]) ^ usize::from(i % 3 == 0))
        .collect();
    let set = LabelledSet { labels, ..set };
    let mut h = head.clone();
    let c = calibrate(&mut h, &set).unwrap();
    assert_eq!(c.validation_n, 200);
    assert!(c.temperature > 1.0 && c.note.is_none(), "{c:?}");
    assert!(c.ece_after < c.ece_before, "{c:?}");
    assert_eq!(c.uncertain_below, DEFAULT_UNCERTAIN_BELOW);

    let few = LabelledSet {
        features: set.features[..MIN_VALIDATION - 1].to_vec(),
        labels: set.labels[..MIN_VALIDATION - 1].to_vec(),
        ..Default::default()
    };
    let mut h = head.clone();
    let c = calibrate(&mut h, &few).unwrap();
    assert_eq!(c.temperature, 1.0);
    assert!(c.note.as_deref().is_some_and(|n| n.contains("fewer than 20")), "{c:?}");
    assert_eq!(h.out.bias.to_vec1::<f32>().unwrap(), head.out.bias.to_vec1::<f32>().unwrap(), "the head is unchanged");
    // Every answer right: the loss has no minimum, T stays 1.
    let right: Vec<usize> = logits_of(&head, &set).unwrap().iter().map(|z| usize::from(z[1] > z[0])).collect();
    let all_right = LabelledSet { labels: right, ..set.clone() };
    let mut h = head.clone();
    let c = calibrate(&mut h, &all_right).unwrap();
    assert!(c.temperature == 1.0 && c.note.as_deref().is_some_and(|n| n.contains("all 200")), "{c:?}");
    // Old metadata without a note still reads.
    let json = serde_json::json!({"temperature": 1.5, "ece_before": 0.1, "ece_after": 0.02, "validation_n": 30, "uncertain_below": 0.7});
    let back: Calibration = serde_json::from_value(json).unwrap();
    assert_eq!(back.note, None);
}

#[test]
fn the_uncertain_summary_counts_and_scores_the_confident_answers() {
    let answers: [(&[f32], usize); 4] = [(&[0.9, 0.1], 0), (&[0.6, 0.4], 1), (&[0.2, 0.8], 1), (&[0.45, 0.55], 1)];
    let s = UncertainSummary::of(answers.iter().map(|(p, y)| (*p, *y)), 0.7);
    assert_eq!((s.n, s.uncertain), (4, 2));
    assert_eq!(s.confident_accuracy, Some(1.0));
    assert_eq!(s.uncertain_accuracy, Some(0.5));
    assert!(s.describe().contains("2 of 4 (50.0%)"), "{}", s.describe());
    let never = UncertainSummary::of(answers.iter().map(|(p, y)| (*p, *y)), 0.0);
    assert_eq!(never.uncertain, 0);
    assert!(is_uncertain(&[0.55, 0.45], 0.56) && !is_uncertain(&[0.55, 0.45], 0.55));
    assert!(check_threshold(1.5).is_err() && check_threshold(-0.1).is_err() && check_threshold(0.0).is_ok());
}
