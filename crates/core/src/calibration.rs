//! Calibration of a trained head: one temperature `T`, fitted on the validation split after
//! training, so that a stated 90% is right about 90% of the time; and the "uncertain" answer, a
//! threshold on the top probability below which a prediction is reported as uncertain.
//!
//! The temperature is applied by dividing the head's last layer (weights and bias) by `T`, so the
//! saved model gives `softmax(logits / T)` on every path (classify, eval, the app) with no change
//! there. Calibration changes confidence only: the predicted class stays the same.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::metrics::wilson;
use crate::train::LabelledSet;
use candle_core::Tensor;
use gc_engine::head::{Head, ROWS_PER_PASS};

/// Default threshold of the "uncertain" answer: a top probability below it is reported as
/// uncertain (measured on validation data; docs/ACCURACY.md, "Calibration and the uncertain answer").
pub const DEFAULT_UNCERTAIN_BELOW: f32 = 0.75;

/// Fewer validation photos than this: the temperature is not fitted and stays 1.
pub const MIN_VALIDATION: usize = 20;

/// Equal-width confidence bins of [`expected_calibration_error`].
pub const ECE_BINS: usize = 15;

/// The searched temperature range (inclusive).
const T_RANGE: (f64, f64) = (0.05, 20.0);

/// How a model was calibrated, as recorded in its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The temperature the head's last layer was divided by (1 = unchanged).
    pub temperature: f32,
    /// Expected calibration error on the validation split before scaling.
    pub ece_before: f64,
    /// Expected calibration error on the validation split after scaling (the split it was fitted on).
    pub ece_after: f64,
    /// Validation photos it was fitted on.
    pub validation_n: usize,
    /// The "uncertain" threshold recommended with this model (top probability below it).
    pub uncertain_below: f32,
    /// Why the temperature was not fitted, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Calibration {
    /// One line for logs, the train report and the model card.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "temperature {:.3}, expected calibration error {:.3} before, {:.3} after ({} validation photos)",
            self.temperature, self.ece_before, self.ece_after, self.validation_n
        );
        if let Some(n) = &self.note {
            s += &format!("; {n}");
        }
        s
    }
}

/// `softmax(logits / t)`, computed stably.
pub fn softmax_t(logits: &[f32], t: f64) -> Vec<f64> {
    let scaled: Vec<f64> = logits.iter().map(|&z| z as f64 / t).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = scaled.iter().map(|z| (z - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Mean negative log-likelihood of `labels` under `softmax(logits / t)`.
pub fn nll(logits: &[Vec<f32>], labels: &[usize], t: f64) -> f64 {
    if logits.is_empty() {
        return 0.0;
    }
    let total: f64 = logits
        .iter()
        .zip(labels)
        .map(|(z, &y)| {
            let s: Vec<f64> = z.iter().map(|&v| v as f64 / t).collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max + s.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
            lse - s[y]
        })
        .sum();
    total / logits.len() as f64
}

/// The temperature in [0.05, 20] that minimises [`nll`]: a grid on log T, then a golden-section
/// search around the best grid point. Returns 1 for no data.
pub fn fit_temperature(logits: &[Vec<f32>], labels: &[usize]) -> f32 {
    if logits.is_empty() {
        return 1.0;
    }
    let (lo, hi) = (T_RANGE.0.ln(), T_RANGE.1.ln());
    let f = |u: f64| nll(logits, labels, u.exp());
    const GRID: usize = 48;
    let step = (hi - lo) / GRID as f64;
    let best = (0..=GRID)
        .map(|i| lo + step * i as f64)
        .map(|u| (u, f(u)))
        .fold((lo, f64::INFINITY), |b, x| if x.1 < b.1 { x } else { b });
    let (mut a, mut b) = ((best.0 - step).max(lo), (best.0 + step).min(hi));
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..40 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - g * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    (((a + b) / 2.0).exp()) as f32
}

/// The standard expected calibration error: the photos binned by their top probability into
/// [`ECE_BINS`] equal-width bins, then the mean over photos of |accuracy − confidence| of their bin.
pub fn expected_calibration_error<P: AsRef<[f64]>>(probs: &[P], labels: &[usize]) -> f64 {
    if probs.is_empty() {
        return 0.0;
    }
    let mut bins = [(0usize, 0usize, 0f64); ECE_BINS];
    for (p, &y) in probs.iter().zip(labels) {
        let p = p.as_ref();
        let (top, conf) =
            p.iter().copied().enumerate().fold((0, f64::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b });
        // Bin k holds confidences in (k/B, (k+1)/B].
        let k = ((conf * ECE_BINS as f64).ceil() as usize).clamp(1, ECE_BINS) - 1;
        let bin = &mut bins[k];
        bin.0 += 1;
        bin.1 += usize::from(top == y);
        bin.2 += conf;
    }
    let n = probs.len() as f64;
    bins.iter().filter(|b| b.0 > 0).map(|&(_, right, conf)| (right as f64 - conf).abs() / n).sum()
}

/// The head's logits for each feature vector, computed [`ROWS_PER_PASS`] at a time.
pub fn logits_of(head: &Head, set: &LabelledSet) -> Result<Vec<Vec<f32>>> {
    let dev = head.out.weight.device().clone();
    let mut out = Vec::with_capacity(set.len());
    for rows in set.features.chunks(ROWS_PER_PASS) {
        let d = rows.first().map_or(0, |r| r.len());
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let x = Tensor::from_vec(flat, (rows.len(), d), &dev)?;
        out.extend(head.logits(&x)?.to_vec2::<f32>()?);
    }
    Ok(out)
}

/// Divides the head's last layer (weights and bias) by `t`, so its probabilities become
/// `softmax(logits / t)`.
pub fn apply_temperature(head: &mut Head, t: f32) -> Result<()> {
    let t = f64::from(t);
    head.out.weight = (&head.out.weight / t)?;
    head.out.bias = (&head.out.bias / t)?;
    Ok(())
}

/// Fits a temperature on `val` (the validation split), applies it to `head` and says what it did.
/// With fewer than [`MIN_VALIDATION`] photos, or none wrong, the temperature stays 1 and the note
/// says why.
pub fn calibrate(head: &mut Head, val: &LabelledSet) -> Result<Calibration> {
    let logits = logits_of(head, val)?;
    let ece_at = |t: f64| {
        let probs: Vec<Vec<f64>> = logits.iter().map(|z| softmax_t(z, t)).collect();
        expected_calibration_error(&probs, &val.labels)
    };
    let ece_before = ece_at(1.0);
    let errors = logits.iter().zip(&val.labels).filter(|(z, y)| crate::metrics::argmax(z) != **y).count();
    let why = if val.len() < MIN_VALIDATION {
        Some(format!(
            "not calibrated: {} validation photo(s), fewer than {MIN_VALIDATION}; the temperature stays 1",
            val.len()
        ))
    } else if errors == 0 {
        // With every answer right the loss only falls as T shrinks: no temperature fits.
        Some(format!(
            "not calibrated: the head gets all {} validation photos right, so no temperature can be fitted; \
             it stays 1",
            val.len()
        ))
    } else {
        None
    };
    let (temperature, note) = match why {
        Some(why) => {
            tracing::warn!("{why}");
            (1.0, Some(why))
        }
        None => (fit_temperature(&logits, &val.labels), None),
    };
    if temperature != 1.0 {
        apply_temperature(head, temperature)?;
    }
    let c = Calibration {
        temperature,
        ece_before,
        ece_after: ece_at(f64::from(temperature)),
        validation_n: val.len(),
        uncertain_below: DEFAULT_UNCERTAIN_BELOW,
        note,
    };
    tracing::info!("calibration: {}", c.describe());
    Ok(c)
}

/// True when the top probability is below `below` (0 = never uncertain).
pub fn is_uncertain(probs: &[f32], below: f32) -> bool {
    probs.iter().copied().fold(0f32, f32::max) < below
}

/// Checks a threshold given by the user: a number from 0 to 1.
pub fn check_threshold(below: f32) -> Result<f32> {
    if !(0.0..=1.0).contains(&below) {
        crate::error::invalid!("the uncertain threshold must be between 0 and 1 (0 = never uncertain), not {below}");
    }
    Ok(below)
}

/// The threshold in effect: `given` (checked to lie in 0..=1), else the one recorded with the
/// model's calibration, else [`DEFAULT_UNCERTAIN_BELOW`].
pub fn threshold_for(calibration: Option<&Calibration>, given: Option<f32>) -> Result<f32> {
    match given {
        Some(p) => check_threshold(p),
        None => Ok(calibration.map_or(DEFAULT_UNCERTAIN_BELOW, |c| c.uncertain_below)),
    }
}

/// How many answers were uncertain, and how good the confident ones were.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UncertainSummary {
    /// The threshold on the top probability.
    pub uncertain_below: f32,
    /// Answers scored.
    pub n: usize,
    /// Answers whose top probability is below the threshold.
    pub uncertain: usize,
    /// `uncertain / n`.
    pub uncertain_share: f64,
    /// Accuracy of the other (confident) answers; `None` when there are none.
    pub confident_accuracy: Option<f64>,
    /// Wilson 95% interval of `confident_accuracy`.
    pub confident_ci95: Option<(f64, f64)>,
    /// Accuracy of the uncertain answers; `None` when there are none.
    pub uncertain_accuracy: Option<f64>,
    /// Expected calibration error of all the answers.
    pub ece: f64,
}

impl UncertainSummary {
    /// Summarises `(probabilities, true label)` pairs at threshold `below`.
    pub fn of<'a>(answers: impl IntoIterator<Item = (&'a [f32], usize)>, below: f32) -> Self {
        let (mut n, mut unc, mut unc_right, mut conf_right) = (0, 0, 0, 0);
        let mut probs: Vec<Vec<f64>> = Vec::new();
        let mut labels = Vec::new();
        for (p, y) in answers {
            n += 1;
            let right = crate::metrics::argmax(p) == y;
            if is_uncertain(p, below) {
                unc += 1;
                unc_right += usize::from(right);
            } else {
                conf_right += usize::from(right);
            }
            probs.push(p.iter().map(|&v| f64::from(v)).collect());
            labels.push(y);
        }
        let confident = n - unc;
        Self {
            uncertain_below: below,
            n,
            uncertain: unc,
            uncertain_share: if n == 0 { 0.0 } else { unc as f64 / n as f64 },
            confident_accuracy: (confident > 0).then(|| conf_right as f64 / confident as f64),
            confident_ci95: (confident > 0).then(|| wilson(conf_right, confident)),
            uncertain_accuracy: (unc > 0).then(|| unc_right as f64 / unc as f64),
            ece: expected_calibration_error(&probs, &labels),
        }
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        let pct = |v: f64| format!("{:.1}%", v * 100.0);
        let mut s = format!(
            "uncertain (top probability below {}): {} of {} ({})",
            self.uncertain_below,
            self.uncertain,
            self.n,
            pct(self.uncertain_share)
        );
        if let (Some(a), Some((lo, hi))) = (self.confident_accuracy, self.confident_ci95) {
            s += &format!(
                "; the confident answers are {} right (95% CI {}-{})",
                pct(a),
                pct(lo).trim_end_matches('%'),
                pct(hi)
            );
        }
        s += &format!("; expected calibration error {:.3}", self.ece);
        s
    }
}

#[cfg(test)]
#[path = "calibration_tests.rs"]
mod tests;
