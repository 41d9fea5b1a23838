//! Evaluation metrics: accuracy with a Wilson 95% interval, confusion matrix, per-class P/R/F1, ROC AUC.

use serde::{Deserialize, Serialize};

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub class: String,
    /// Images of this class.
    pub support: usize,
    /// TP / (TP + FP).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
}

/// All metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of evaluated images.
    pub count: usize,
    /// Fraction correct.
    pub accuracy: f64,
    /// Wilson score 95% interval of the accuracy.
    pub accuracy_ci95: (f64, f64),
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
    /// Per-class metrics, in class order.
    pub per_class: Vec<ClassMetrics>,
    /// ROC AUC (binary: of the second class's probability; otherwise the one-vs-rest mean).
    pub roc_auc: Option<f64>,
    /// Mean negative log-likelihood.
    pub log_loss: f64,
}

/// Index of the largest probability.
pub fn argmax(p: &[f32]) -> usize {
    p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

/// Computes metrics from per-image class probabilities and true labels.
pub fn compute(classes: &[String], probs: &[Vec<f32>], labels: &[usize]) -> Metrics {
    let k = classes.len();
    let n = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut log_loss = 0.0;
    for (p, &l) in probs.iter().zip(labels) {
        confusion[l][argmax(p)] += 1;
        log_loss -= f64::from(p[l].max(1e-7)).ln();
    }
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let accuracy = if n > 0 { correct as f64 / n as f64 } else { 0.0 };
    let per_class = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let support: usize = confusion[c].iter().sum();
            let predicted: usize = (0..k).map(|r| confusion[r][c]).sum();
            let precision = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
            let recall = if support > 0 { tp / support as f64 } else { 0.0 };
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            ClassMetrics { class: classes[c].clone(), support, precision, recall, f1 }
        })
        .collect();
    let roc_auc = if k == 2 {
        auc(probs.iter().map(|p| p[1]).collect(), labels.iter().map(|&l| l == 1).collect())
    } else {
        let aucs: Vec<f64> = (0..k)
            .filter_map(|c| auc(probs.iter().map(|p| p[c]).collect(), labels.iter().map(|&l| l == c).collect()))
            .collect();
        (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
    };
    Metrics {
        count: n,
        accuracy,
        accuracy_ci95: wilson(correct, n),
        confusion,
        per_class,
        roc_auc,
        log_loss: if n > 0 { log_loss / n as f64 } else { 0.0 },
    }
}

/// Wilson score interval (z = 1.96).
pub fn wilson(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.96f64;
    let (nf, p) = (n as f64, successes as f64 / n as f64);
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * ((p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt()) / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Area under the ROC curve via the rank statistic (ties count half); `None` if a side is empty.
pub fn auc(scores: Vec<f32>, positive: Vec<bool>) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0f64, 0);
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&t| positive[idx[t]]).count() as f64 * avg_rank;
        i = j + 1;
    }
    let pos = positive.iter().filter(|&&p| p).count() as f64;
    let neg = positive.len() as f64 - pos;
    (pos > 0.0 && neg > 0.0).then(|| (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// Human-readable report.
pub fn format_report(m: &Metrics) -> String {
    let mut s = format!(
        "accuracy {:.1}% (95% CI {:.1}-{:.1}%) on {} images, log loss {:.3}, ROC AUC {}\n",
        m.accuracy * 100.0,
        m.accuracy_ci95.0 * 100.0,
        m.accuracy_ci95.1 * 100.0,
        m.count,
        m.log_loss,
        m.roc_auc.map_or("n/a".into(), |a| format!("{a:.3}"))
    );
    let width = m.per_class.iter().map(|c| c.class.len()).max().unwrap_or(5).max(10);
    s += &format!("\n{:>width$}  predicted ->\n{:>width$}", "confusion", "true");
    for c in &m.per_class {
        s += &format!(" {:>8}", c.class);
    }
    s += "\n";
    for (row, c) in m.confusion.iter().zip(&m.per_class) {
        s += &format!("{:>width$}", c.class);
        for v in row {
            s += &format!(" {v:>8}");
        }
        s += "\n";
    }
    s += &format!("\n{:>width$} {:>9} {:>9} {:>9} {:>8}\n", "class", "precision", "recall", "f1", "support");
    for c in &m.per_class {
        s += &format!("{:>width$} {:>9.3} {:>9.3} {:>9.3} {:>8}\n", c.class, c.precision, c.recall, c.f1, c.support);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_a_known_example() {
        let classes = vec!["female".to_string(), "male".to_string()];
        let probs = vec![vec![0.9, 0.1], vec![0.4, 0.6], vec![0.2, 0.8], vec![0.3, 0.7]];
        let labels = vec![0, 0, 1, 1];
        let m = compute(&classes, &probs, &labels);
        assert_eq!(m.confusion, vec![vec![1, 1], vec![0, 2]]);
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        assert!((m.per_class[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.per_class[0].recall - 0.5).abs() < 1e-12);
        assert_eq!(m.roc_auc, Some(1.0));
        let (lo, hi) = m.accuracy_ci95;
        assert!(lo < 0.75 && hi > 0.75 && lo > 0.2 && hi < 1.0);
        assert!(format_report(&m).contains("accuracy 75.0%"));
    }

    #[test]
    fn auc_handles_ties_and_empty_sides() {
        assert_eq!(auc(vec![0.5, 0.5], vec![true, false]), Some(0.5));
        assert_eq!(auc(vec![0.1, 0.2], vec![true, true]), None);
    }
}
