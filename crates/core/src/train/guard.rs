//! The guard against regressions: a newly trained model and the model it would replace, scored on
//! the same photos (the new model's held-back validation split), each with its own classifier, so
//! a retrain that makes things worse is seen before it replaces anything.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use super::run::TrainReport;
use crate::classify::Classifier;
use crate::context::Context;
use crate::dataset::split::Split;
use crate::error::Result;
use crate::eval::{EvalScope, Scored, evaluate_scanned};
use crate::features::extract::Progress;
use crate::metrics::wilson;

/// One model's accuracy on the compared photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Photos it got right.
    pub correct: usize,
    /// Photos compared.
    pub count: usize,
    /// `correct / count` (0 when nothing was compared).
    pub accuracy: f64,
    /// Wilson 95% interval of the accuracy.
    pub ci95: (f64, f64),
}

impl Score {
    /// The score of `correct` right answers out of `count`.
    pub fn of(correct: usize, count: usize) -> Self {
        let accuracy = if count > 0 { correct as f64 / count as f64 } else { 0.0 };
        Self { correct, count, accuracy, ci95: wilson(correct, count) }
    }

    /// "83.3% (95% CI 64.1–93.3%), 20 of 24 right".
    pub fn text(&self) -> String {
        format!(
            "{:.1}% (95% CI {:.1}–{:.1}%), {} of {} right",
            self.accuracy * 100.0,
            self.ci95.0 * 100.0,
            self.ci95.1 * 100.0,
            self.correct,
            self.count
        )
    }
}

/// How the new model compares with the one it would replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// More photos right.
    Better,
    /// As many photos right.
    Equal,
    /// Fewer photos right: a regression.
    Worse,
}

/// The new model and the model it would replace, on the same photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The model the new one would replace.
    #[serde(serialize_with = "crate::path_text::lossy")]
    pub baseline: PathBuf,
    /// The new model's score.
    pub new: Score,
    /// The replaced model's score on the same photos.
    pub current: Score,
    /// Better, equal or worse.
    pub verdict: Verdict,
}

impl Comparison {
    /// True when the new model gets fewer of the same photos right.
    pub fn is_worse(&self) -> bool {
        self.verdict == Verdict::Worse
    }

    /// Photos both models were scored on.
    pub fn photos(&self) -> usize {
        self.new.count
    }

    /// Two lines: each model's accuracy with its interval.
    pub fn lines(&self) -> String {
        format!("  new model: {}\n  {}: {}", self.new.text(), self.baseline.display(), self.current.text())
    }

    /// One sentence for a warning: "the new model is worse than X on the same 24 validation
    /// photos: 83.3% against 95.8%".
    pub fn worse_sentence(&self) -> String {
        format!(
            "the new model is worse than {} on the same {} validation photos: {:.1}% against {:.1}%",
            self.baseline.display(),
            self.photos(),
            self.new.accuracy * 100.0,
            self.current.accuracy * 100.0
        )
    }
}

/// The guard's outcome for one trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// Both models were scored on the same photos.
    Compared(Comparison),
    /// No comparison was made; the reason in words.
    NotCompared(String),
}

impl Guard {
    /// The comparison, when one was made.
    pub fn comparison(&self) -> Option<&Comparison> {
        match self {
            Guard::Compared(c) => Some(c),
            Guard::NotCompared(_) => None,
        }
    }

    /// True when the new model was compared and is worse.
    pub fn is_worse(&self) -> bool {
        self.comparison().is_some_and(Comparison::is_worse)
    }
}

/// Compares per-photo scores, matched by path: only photos both sides scored count. Worse means
/// fewer photos right on those same photos (an exact count, so rounding never decides).
pub fn compare(new: &[Scored], current: &[Scored], baseline: &Path) -> Comparison {
    let theirs: HashMap<&Path, bool> = current.iter().map(|s| (s.path.as_path(), s.predicted == s.label)).collect();
    let (mut count, mut new_right, mut cur_right) = (0, 0, 0);
    for s in new {
        if let Some(&right) = theirs.get(s.path.as_path()) {
            count += 1;
            new_right += usize::from(s.predicted == s.label);
            cur_right += usize::from(right);
        }
    }
    let verdict = match new_right.cmp(&cur_right) {
        std::cmp::Ordering::Greater => Verdict::Better,
        std::cmp::Ordering::Equal => Verdict::Equal,
        std::cmp::Ordering::Less => Verdict::Worse,
    };
    Comparison {
        baseline: baseline.to_path_buf(),
        new: Score::of(new_right, count),
        current: Score::of(cur_right, count),
        verdict,
    }
}

/// Scores the model at `baseline` with its own classifier (its own backbone and preprocessing,
/// through the feature cache) on the photos of the new model's validation split of the folders
/// `dirs` only, and compares. A cancel returns `Cancelled`; a model that cannot be loaded or scored on this folder
/// is a [`Guard::NotCompared`] with the reason.
pub fn guard_against(
    report: &TrainReport,
    dirs: &[PathBuf],
    baseline: &Path,
    ctx: &Context,
    batch_size: usize,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<Guard> {
    let valid: Vec<Scored> = report.scored.iter().filter(|s| s.split == Split::Validation).cloned().collect();
    if valid.is_empty() {
        return Ok(Guard::NotCompared(
            "the new model has no validation photos to compare on (raise the validation share)".into(),
        ));
    }
    // Only those photos are read (a baseline with other preprocessing extracts no more than them).
    let wanted: HashSet<&Path> = valid.iter().map(|s| s.path.as_path()).collect();
    let outcome = crate::dataset::scan_all(dirs).and_then(|sets| {
        let clf = Classifier::load(baseline, ctx)?;
        let mut scored = Vec::new();
        for mut ds in sets {
            ds.items.retain(|i| wanted.contains(i.path.as_path()));
            if ds.items.is_empty() {
                continue;
            }
            let r = evaluate_scanned(&ds, &clf, EvalScope::All, &ctx.feature_cache(), batch_size, on_progress, cancel)?;
            scored.extend(r.scored);
        }
        Ok(scored)
    });
    let scored = match outcome {
        Ok(s) => s,
        Err(e) if crate::error::is_cancelled(&e) => return Err(e),
        Err(e) => {
            let why = crate::error::describe(&e);
            tracing::warn!(baseline = %baseline.display(), error = %why, "the guard could not score the model");
            return Ok(Guard::NotCompared(format!(
                "{} could not be scored on these photos: {why}",
                baseline.display()
            )));
        }
    };
    let c = compare(&valid, &scored, baseline);
    if c.photos() == 0 {
        return Ok(Guard::NotCompared(format!("{} scored none of the validation photos", baseline.display())));
    }
    Ok(Guard::Compared(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scored photo `name` with class `label`, predicted `predicted`.
    fn s(name: &str, label: usize, predicted: usize) -> Scored {
        let mut probs = vec![0.0; 2];
        probs[predicted] = 1.0;
        Scored { path: name.into(), label, predicted, probs, split: Split::Validation, n_faces: 1 }
    }

    #[test]
    fn the_guard_calls_fewer_right_on_the_same_photos_worse() {
        let base = Path::new("models/default.safetensors");
        let current = [s("a", 0, 0), s("b", 1, 1), s("c", 1, 1), s("d", 0, 1)];
        // Worse: 1 of 4 right against 3 of 4.
        let c = compare(&[s("a", 0, 1), s("b", 1, 0), s("c", 1, 1), s("d", 0, 1)], &current, base);
        assert_eq!(c.verdict, Verdict::Worse);
        assert_eq!((c.new.correct, c.current.correct, c.photos()), (1, 3, 4));
        assert!(c.is_worse() && Guard::Compared(c.clone()).is_worse());
        assert!((c.new.accuracy - 0.25).abs() < 1e-12 && (c.current.accuracy - 0.75).abs() < 1e-12);
        assert_eq!(c.new.ci95, wilson(1, 4));
        let w = c.worse_sentence();
        assert!(w.contains("25.0%") && w.contains("75.0%") && w.contains("default.safetensors"), "{w}");
        // Better: all right.
        let c = compare(&[s("a", 0, 0), s("b", 1, 1), s("c", 1, 1), s("d", 0, 0)], &current, base);
        assert_eq!((c.verdict, c.new.correct), (Verdict::Better, 4));
        // Equal: as many right, even if not the same photos.
        let c = compare(&[s("a", 0, 1), s("b", 1, 1), s("c", 1, 1), s("d", 0, 0)], &current, base);
        assert_eq!(c.verdict, Verdict::Equal);
        assert!(!Guard::Compared(c).is_worse());
    }

    #[test]
    fn only_photos_both_models_scored_are_compared() {
        let base = Path::new("old.safetensors");
        // "x" was unreadable for the old model; "y" is not in the new model's validation split.
        let c = compare(&[s("a", 0, 0), s("x", 0, 0)], &[s("a", 0, 1), s("y", 1, 1)], base);
        assert_eq!((c.photos(), c.new.correct, c.current.correct), (1, 1, 0));
        assert_eq!(c.verdict, Verdict::Better);
        let none = compare(&[s("a", 0, 0)], &[], base);
        assert_eq!((none.photos(), none.verdict), (0, Verdict::Equal));
        assert!(!Guard::NotCompared("no photos".into()).is_worse());
    }
}
