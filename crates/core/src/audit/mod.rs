//! Dataset audit: exact and near duplicates, likely wrong labels, images without a face, tiny images
//! and feature-space outliers, each with its reason and a score, most important first.
//!
//! Works on cached features only ([`crate::features::dataset::dataset_features`]), so a second audit of
//! an unchanged dataset runs no network.

pub mod outliers;
pub mod review;
pub mod suspects;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::error::Result;
use serde::Serialize;

use crate::context::Context;
use crate::dataset::Dataset;
use crate::dataset::split::SplitSpec;
use crate::features::dataset::{DatasetFeatures, ItemFeatures, dataset_features};
use crate::features::extract::Progress;
use crate::pipeline::Pipeline;
use crate::preprocess::PreprocessSpec;
use crate::similarity;
use crate::train::{LabelledSet, TrainOptions};
use suspects::Suspect;

/// Images whose shorter side is below this many pixels are flagged as tiny.
pub const MIN_SIDE: u32 = 64;

/// What kind of problem a finding is, in order of importance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// The same bytes filed under two or more classes: always an error.
    ConflictingDuplicate,
    /// Held-out prediction disagrees confidently with the label.
    LikelyWrongLabel,
    /// The detector found no face (the whole image was used).
    NoFace,
    /// The same bytes more than once in one class.
    ExactDuplicate,
    /// Re-encoded, resized or slightly cropped copies of one photo.
    NearDuplicate,
    /// Far from the rest of its class in feature space (drawings, non-photos, odd crops).
    Outlier,
    /// Too few pixels to say much.
    Tiny,
    /// Several faces: the label may be about any of them.
    SeveralFaces,
}

impl FindingKind {
    /// Every kind, most important first.
    pub const ALL: [FindingKind; 8] = [
        FindingKind::ConflictingDuplicate,
        FindingKind::LikelyWrongLabel,
        FindingKind::NoFace,
        FindingKind::ExactDuplicate,
        FindingKind::NearDuplicate,
        FindingKind::Outlier,
        FindingKind::Tiny,
        FindingKind::SeveralFaces,
    ];

    /// Short human name.
    pub fn title(self) -> &'static str {
        match self {
            FindingKind::ConflictingDuplicate => "same image in two classes",
            FindingKind::LikelyWrongLabel => "likely wrong label",
            FindingKind::NoFace => "no face found",
            FindingKind::ExactDuplicate => "exact duplicates",
            FindingKind::NearDuplicate => "near duplicates",
            FindingKind::Outlier => "far from its class",
            FindingKind::Tiny => "tiny image",
            FindingKind::SeveralFaces => "several faces",
        }
    }

    /// True for findings about a group of images rather than one.
    pub fn is_group(self) -> bool {
        matches!(self, FindingKind::ConflictingDuplicate | FindingKind::ExactDuplicate | FindingKind::NearDuplicate)
    }
}

/// One image in a finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// The file.
    #[serde(serialize_with = "crate::path_text::lossy")]
    pub path: PathBuf,
    /// Its class folder.
    pub class: String,
    /// sha256 of its bytes.
    pub sha256: String,
}

/// One problem worth a look.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// The images involved (one, or a duplicate group).
    pub members: Vec<Member>,
    /// How strong the evidence is; higher first within a kind.
    pub score: f32,
    /// Why, in words.
    pub reason: String,
    /// The class the evidence points to, for wrong labels.
    pub suggested_class: Option<String>,
}

/// Knobs of an audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Folds of the out-of-fold training.
    pub folds: usize,
    /// Head options for each fold.
    pub train: TrainOptions,
    /// Robust z-score for outliers.
    pub outlier_z: f32,
    /// Shorter side, in pixels, below which an image is tiny.
    pub min_side: u32,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            folds: 5,
            train: TrainOptions { epochs: 30, patience: 0, dropout: 0.0, ..Default::default() },
            outlier_z: outliers::OUTLIER_Z,
            min_side: MIN_SIDE,
        }
    }
}

/// The result of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Class names.
    pub classes: Vec<String>,
    /// Images audited.
    pub images: usize,
    /// Files that could not be read, with the reason.
    #[serde(serialize_with = "crate::path_text::lossy_pairs")]
    pub unreadable: Vec<(PathBuf, String)>,
    /// Every finding, most important first.
    pub findings: Vec<Finding>,
    /// Every image ranked by held-out self-confidence, most suspicious first.
    pub suspects: Vec<RankedImage>,
    /// Seconds spent on the analysis after the features were ready.
    pub analysis_secs: f64,
}

/// One image in the suspect ranking.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankedImage {
    /// The image.
    pub member: Member,
    /// Held-out probability of its label.
    pub self_confidence: f32,
    /// Held-out predicted class.
    pub predicted: String,
    /// Confident learning calls it a label error.
    pub confident_error: bool,
}

impl AuditReport {
    /// Number of findings of one kind.
    pub fn count(&self, kind: FindingKind) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }
}

fn member(it: &ItemFeatures, classes: &[String]) -> Member {
    Member { path: it.path.clone(), class: classes[it.label].clone(), sha256: it.sha256.clone() }
}

/// Audits images with their cached features (and the near-duplicate pairs found with them).
/// `face_crop` says whether faces were looked for.
pub fn audit_items(
    data: &DatasetFeatures,
    classes: &[String],
    face_crop: bool,
    opts: &AuditOptions,
    cancel: &AtomicBool,
) -> Result<AuditReport> {
    let t0 = std::time::Instant::now();
    let items = &data.items;
    let sha: Vec<&str> = items.iter().map(|i| i.sha256.as_str()).collect();
    let labels: Vec<usize> = items.iter().map(|i| i.label).collect();
    let set = LabelledSet {
        features: items.iter().map(|i| i.value.features.as_slice().into()).collect(),
        labels: labels.clone(),
        domains: Vec::new(),
    };
    let mut findings = Vec::new();

    // Exact duplicates, and the same bytes under two labels.
    for g in similarity::exact_groups(&sha) {
        let members: Vec<Member> = g.iter().map(|&i| member(&items[i], classes)).collect();
        let mut cls: Vec<&str> = members.iter().map(|m| m.class.as_str()).collect();
        cls.sort();
        cls.dedup();
        let (kind, reason) = if cls.len() > 1 {
            (FindingKind::ConflictingDuplicate, format!("{} identical files filed as {}", g.len(), cls.join(" and ")))
        } else {
            (FindingKind::ExactDuplicate, format!("{} identical files in {}", g.len(), cls[0]))
        };
        findings.push(Finding { kind, members, score: g.len() as f32, reason, suggested_class: None });
    }

    // Near duplicates: groups by cosine similarity that hold at least two different files.
    let pairs = &data.near_duplicates;
    let groups = similarity::near_groups(items.len(), pairs);
    let min_sims = min_cosine_per_group(items.len(), &groups, pairs);
    for (g, &min_sim) in groups.iter().zip(&min_sims) {
        let mut distinct: Vec<&str> = g.iter().map(|&i| sha[i]).collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() < 2 {
            continue;
        }
        let members: Vec<Member> = g.iter().map(|&i| member(&items[i], classes)).collect();
        let mut cls: Vec<&str> = members.iter().map(|m| m.class.as_str()).collect();
        cls.sort();
        cls.dedup();
        let across = if cls.len() > 1 { format!(", filed as {}", cls.join(" and ")) } else { String::new() };
        let score = if cls.len() > 1 { 2.0 } else { min_sim };
        findings.push(Finding {
            kind: FindingKind::NearDuplicate,
            reason: format!("{} copies of one photo (feature cosine at least {min_sim:.3}){across}", g.len()),
            members,
            score,
            suggested_class: None,
        });
    }

    // Likely wrong labels from held-out predictions; a near-duplicate group shares one fold.
    let reps = similarity::representatives(&sha, &groups);
    let fold: Vec<usize> = reps.iter().map(|&r| suspects::fold_of(sha[r], opts.folds)).collect();
    let ranked: Vec<Suspect> = if items.len() >= opts.folds * 2 && classes.len() >= 2 {
        let probs = suspects::out_of_fold_probs(&set, &fold, opts.folds, classes.len(), &opts.train, cancel)?;
        suspects::rank(&probs, &labels, classes.len())
    } else {
        Vec::new()
    };
    for s in ranked.iter().filter(|s| s.confident_error || s.predicted != labels[s.index]) {
        let it = &items[s.index];
        findings.push(Finding {
            kind: FindingKind::LikelyWrongLabel,
            members: vec![member(it, classes)],
            score: 1.0 - s.self_confidence,
            reason: format!(
                "filed as {}, but a model that never saw it gives {} only {:.0}% (predicts {})",
                classes[it.label],
                classes[it.label],
                s.self_confidence * 100.0,
                classes[s.predicted]
            ),
            suggested_class: Some(classes[s.predicted].clone()),
        });
    }

    // Per-image flags: no face, several faces, tiny, far from its class.
    let z = outliers::class_distance_z(&set.features, &labels, classes.len());
    for (i, it) in items.iter().enumerate() {
        let one = |kind, score, reason: String| Finding {
            kind,
            members: vec![member(it, classes)],
            score,
            reason,
            suggested_class: None,
        };
        let v = &it.value;
        if face_crop && v.n_faces == 0 {
            findings.push(one(FindingKind::NoFace, 1.0, "no face found; the whole image was used".into()));
        }
        if v.n_faces > 1 {
            findings.push(one(
                FindingKind::SeveralFaces,
                v.n_faces as f32,
                format!("{} faces; the most confident one was used", v.n_faces),
            ));
        }
        let side = v.image_size.0.min(v.image_size.1);
        if side < opts.min_side {
            findings.push(one(
                FindingKind::Tiny,
                1.0 - side as f32 / opts.min_side as f32,
                format!("only {}x{} pixels", v.image_size.0, v.image_size.1),
            ));
        }
        if z[i] > opts.outlier_z {
            findings.push(one(
                FindingKind::Outlier,
                z[i],
                format!("far from the other {} photos ({:.1} robust SDs)", classes[it.label], z[i]),
            ));
        }
    }

    findings.sort_by(|a, b| {
        a.kind.cmp(&b.kind).then(b.score.total_cmp(&a.score)).then_with(|| a.members[0].path.cmp(&b.members[0].path))
    });
    let suspects = ranked
        .iter()
        .map(|s| RankedImage {
            member: member(&items[s.index], classes),
            self_confidence: s.self_confidence,
            predicted: classes[s.predicted].clone(),
            confident_error: s.confident_error,
        })
        .collect();
    Ok(AuditReport {
        classes: classes.to_vec(),
        images: items.len(),
        unreadable: Vec::new(),
        findings,
        suspects,
        analysis_secs: t0.elapsed().as_secs_f64(),
    })
}

/// The lowest cosine of the pairs within each group (1 for a group without pairs), in one pass over
/// the pairs: every pair links two members of one group.
fn min_cosine_per_group(n: usize, groups: &[Vec<usize>], pairs: &[(usize, usize, f32)]) -> Vec<f32> {
    let mut group_of = vec![usize::MAX; n];
    for (k, g) in groups.iter().enumerate() {
        for &i in g {
            group_of[i] = k;
        }
    }
    let mut min = vec![1.0f32; groups.len()];
    for &(i, j, s) in pairs {
        let k = group_of[i];
        if k != usize::MAX && k == group_of[j] {
            min[k] = min[k].min(s);
        }
    }
    min
}

/// Audits a dataset folder: extracts (or reads cached) features with `spec`, then [`audit_items`].
pub fn audit_dataset(
    dir: &Path,
    spec: PreprocessSpec,
    opts: &AuditOptions,
    ctx: &Context,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<AuditReport> {
    let ds = Dataset::scan(dir)?;
    ds.require_trainable()?;
    let pipeline = Pipeline::load(spec, ctx)?;
    let feats = dataset_features(&ds, &pipeline, &ctx.feature_cache(), &SplitSpec::default(), 16, on_progress, cancel)?;
    let mut report = audit_items(&feats, &ds.classes, spec.face_crop, opts, cancel)?;
    report.unreadable = feats.failures;
    Ok(report)
}

/// The report as plain text, most important first.
pub fn format_text(r: &AuditReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "audited {} images in {} classes ({})", r.images, r.classes.len(), r.classes.join(", "));
    for k in FindingKind::ALL {
        let _ = writeln!(s, "  {:<26} {}", k.title(), r.count(k));
    }
    if !r.unreadable.is_empty() {
        let _ = writeln!(s, "  {:<26} {}", "unreadable files", r.unreadable.len());
    }
    for f in &r.findings {
        let _ = writeln!(s, "\n[{}] score {:.3}: {}", f.kind.title(), f.score, f.reason);
        for m in &f.members {
            let _ = writeln!(s, "    {}", m.path.display());
        }
    }
    for (p, why) in &r.unreadable {
        let _ = writeln!(s, "\n[unreadable] {}: {why}", p.display());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::split::Split;
    use crate::features::cache::CachedFeatures;
    use crate::train::rng::Rng;

    #[test]
    fn the_lowest_cosine_of_each_group_counts_only_its_own_pairs() {
        let groups = vec![vec![0, 1, 2], vec![4, 5], vec![6, 7]];
        let pairs = vec![(0, 1, 0.99), (0, 2, 0.98), (1, 2, 0.95), (4, 5, 0.97)];
        assert_eq!(min_cosine_per_group(8, &groups, &pairs), vec![0.95, 0.97, 1.0]);
    }

    #[test]
    fn copies_linked_to_their_first_give_the_report_of_every_pair() {
        // Two classes of 8-d vectors; file 3 has 12 byte copies, file 10 a near copy in the other
        // class, file 20 three copies across both classes.
        let mut rng = Rng::new(4);
        let mut items: Vec<ItemFeatures> = (0..60)
            .map(|i| {
                let label = i % 2;
                let centre = if label == 0 { 1.0 } else { -1.0 };
                let features = (0..8).map(|_| centre + 0.8 * rng.normal()).collect();
                ItemFeatures {
                    path: PathBuf::from(format!("{i:03}.jpg")),
                    label,
                    sha256: gc_engine::weights::sha256_hex(&(i as u32).to_le_bytes()),
                    split: Split::Train,
                    value: CachedFeatures { features, n_faces: 1, crop: None, face_score: 0.9, image_size: (90, 90) },
                }
            })
            .collect();
        items[11].value.features = items[10].value.features.iter().map(|x| x * 1.01 + 0.001).collect();
        let copy = |it: &ItemFeatures, k: usize, label: usize| ItemFeatures {
            path: PathBuf::from(format!("copy-{k:03}.jpg")),
            label,
            ..it.clone()
        };
        for k in 0..12 {
            items.push(copy(&items[3], k, items[3].label));
        }
        for k in 12..15 {
            items.push(copy(&items[20], k, k % 2));
        }
        let classes = vec!["female".to_string(), "male".to_string()];
        let feats: Vec<&[f32]> = items.iter().map(|i| i.value.features.as_slice()).collect();
        let sha: Vec<&str> = items.iter().map(|i| i.sha256.as_str()).collect();
        let t = similarity::NEAR_DUPLICATE_COSINE;
        let every = similarity::similar_pairs(&feats, t).unwrap();
        let star = similarity::near_duplicate_pairs(&feats, &sha, t).unwrap();
        assert!(star.len() < every.len(), "{} and {}", star.len(), every.len());
        let report = |near_duplicates| {
            let data = DatasetFeatures { items: items.clone(), failures: Vec::new(), near_duplicates };
            audit_items(&data, &classes, true, &AuditOptions::default(), &AtomicBool::new(false)).unwrap()
        };
        let (a, b) = (report(every), report(star));
        let key = |r: &AuditReport| -> Vec<(FindingKind, Vec<PathBuf>, String)> {
            r.findings
                .iter()
                .map(|f| (f.kind, f.members.iter().map(|m| m.path.clone()).collect(), f.reason.clone()))
                .collect()
        };
        assert_eq!(key(&a), key(&b));
        assert_eq!(a.suspects, b.suspects);
        assert!(a.count(FindingKind::ConflictingDuplicate) == 1 && a.count(FindingKind::ExactDuplicate) == 1);
        let pair = vec![PathBuf::from("010.jpg"), PathBuf::from("011.jpg")];
        assert!(key(&a).iter().any(|k| k.0 == FindingKind::NearDuplicate && k.1 == pair), "{:?}", key(&a));
    }
}
