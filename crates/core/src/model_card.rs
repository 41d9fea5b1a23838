//! The model card: a short markdown file `X.md` beside every trained `X.safetensors` that says
//! what the model predicts, what it was trained on and how, its numbers with 95% intervals, the
//! guard's comparison with the model it would replace, and its limits.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::metrics::Metrics;
use crate::model_file::ModelMeta;
use crate::train::guard::{Guard, Verdict};
use crate::train::run::TrainReport;

/// The card's path: `X.md` beside the model `X.safetensors`.
pub fn card_path(model: &Path) -> PathBuf {
    crate::model_file::model_paths(model).0.with_extension("md")
}

/// True when a file name follows UTKFace's `age_gender_race_date.jpg` (e.g.
/// `26_1_2_20170116174525125.jpg.chip.jpg`).
pub fn is_utkface_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let stem = name.split('.').next().unwrap_or_default();
    let parts: Vec<&str> = stem.split('_').collect();
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    parts.len() == 4
        && parts.iter().all(|p| number(p))
        && matches!(parts[1], "0" | "1")
        && matches!(parts[2], "0" | "1" | "2" | "3" | "4")
        && parts[3].len() >= 8
}

/// True when at least half of the photos (and at least one) have UTKFace names.
pub fn names_look_utkface<'a>(paths: impl IntoIterator<Item = &'a Path>) -> bool {
    let (mut n, mut utk) = (0usize, 0usize);
    for p in paths {
        n += 1;
        utk += usize::from(is_utkface_name(p));
    }
    utk > 0 && utk * 2 >= n
}

/// True when UTKFace's non-commercial terms apply: the path of any dataset it was trained on
/// contains `utk`, or the photos' names (of any one dataset) parse as UTKFace's.
pub fn utkface_terms_apply(meta: &ModelMeta, utkface_names: bool) -> bool {
    utkface_names || meta.trained_on().iter().any(|d| d.root.to_string_lossy().to_lowercase().contains("utk"))
}

/// "91.7% (95% CI 64.6–98.5%) on 12 photos".
fn accuracy_text(m: &Metrics) -> String {
    format!(
        "{:.1}% (95% CI {:.1}–{:.1}%) on {} photos",
        m.accuracy * 100.0,
        m.accuracy_ci95.0 * 100.0,
        m.accuracy_ci95.1 * 100.0,
        m.count
    )
}

/// The card's markdown: a pure function of the model's description, the guard's outcome and
/// whether the photos' names are UTKFace's.
pub fn render(title: &str, meta: &ModelMeta, guard: &Guard, utkface_names: bool) -> String {
    let classes = meta.classes.join(", ");
    let mut s = format!("# Model card: {title}\n\n");
    s += &format!(
        "**What it predicts.** The apparent gender presentation of a face, as labelled in its training data, \
         in {} classes ({classes}). It does not tell a person's gender identity or who a person is, and it \
         must not be used to decide anything about a person.\n\n",
        if meta.classes.len() == 2 { "two".to_string() } else { meta.classes.len().to_string() }
    );

    s += "## Training data\n\n";
    let sets = meta.trained_on();
    if sets.is_empty() {
        s += "- Not trained on a dataset folder.\n";
    }
    let indent = if sets.len() > 1 { "  " } else { "" };
    for d in &sets {
        s += &format!("- Dataset: `{}`\n", d.root.display());
        let per_class: Vec<String> =
            meta.classes.iter().zip(&d.class_counts).map(|(c, n)| format!("{c} {n}")).collect();
        s += &format!("{indent}- Photos per class: {}\n", per_class.join(", "));
        let [train, valid, test] = d.split_counts;
        s += &format!("{indent}- Photos per split: train {train}, validation {valid}, test {test}\n");
        if d.skipped > 0 {
            s += &format!("{indent}- Unreadable photos skipped: {}\n", d.skipped);
        }
    }
    if sets.len() > 1 {
        s += &format!(
            "- {} datasets, each split on its own; {}\n",
            sets.len(),
            if meta.training.as_ref().is_some_and(|o| o.balance_classes) {
                "the loss weighs each class of each dataset equally"
            } else {
                "not balanced: each photo weighs the same"
            }
        );
    }
    if let Some(sp) = &meta.split {
        s += &format!(
            "- Split rule: {}% validation, {}% test, by a hash of each photo's bytes (near-duplicates kept together)\n",
            sp.validation_pct, sp.test_pct
        );
    }
    if utkface_terms_apply(meta, utkface_names) {
        s += "\n**Licence.** Some or all of the training photos are UTKFace's (or follow its `age_gender_race_date.jpg` names). \
              UTKFace is available for non-commercial research purposes only; this model is derived from those \
              photos and inherits the same terms: do not use it commercially.\n";
    }

    s += "\n## How it was trained\n\n";
    let p = &meta.preprocess;
    s += &match &meta.fine_tune {
        None => format!(
            "- Method: head only; the {} backbone is frozen and only the classifier head on its features was fitted\n",
            p.backbone.id()
        ),
        Some(ft) => format!(
            "- Method: fine-tuned; the head was trained first, then {}' last {} blocks were trained with it \
             (head learning rate {}, blocks {}, at most {} epochs, early stopping on the validation loss, \
             each training photo also seen mirrored and in {} jittered copies)\n",
            p.backbone.id(),
            ft.blocks,
            ft.head_lr,
            ft.backbone_lr,
            ft.epochs,
            ft.jitter_copies
        ),
    };
    s += &format!("- Backbone: {} (weights sha256 `{}`)\n", p.backbone.id(), meta.backbone_sha256);
    s += &format!(
        "- Face crop: {} (preprocessing version {})\n",
        if p.face_crop { "yes: the detected face, or the whole photo where none is found" } else { "no, whole photos" },
        p.version
    );
    s += &format!("- Origin: {}\n", meta.origin);
    if let Some(o) = &meta.training {
        s += &format!(
            "- Options: learning rate {}, at most {} epochs ({} run), batch size {}, L2 {}, dropout {}, \
             classes {}, early-stopping patience {}, seed {}, {}\n",
            o.learning_rate,
            o.epochs,
            meta.history.len(),
            o.batch_size,
            o.l2,
            o.dropout,
            if o.balance_classes { "balanced" } else { "not balanced" },
            o.patience,
            o.seed,
            if o.warm_start { "warm-started from faceres' own gender head" } else { "a fresh linear head" }
        );
    }
    s += &format!("- Created: {}\n", meta.created);

    s += "\n## Results\n\n";
    let mut any = false;
    for (name, m) in [("Validation", &meta.validation_metrics), ("Test", &meta.test_metrics)] {
        if let Some(m) = m {
            any = true;
            s += &format!("- {name}: accuracy {}", accuracy_text(m));
            let recalls: Vec<String> =
                m.per_class.iter().map(|c| format!("{} {:.1}%", c.class, c.recall * 100.0)).collect();
            s += &format!("; recall {}\n", recalls.join(", "));
        }
    }
    if !any {
        s += "- No held-back photos were scored (the validation and test shares were 0).\n";
    }
    if let Some(c) = &meta.calibration {
        s += &format!(
            "- Calibration: {}. Probabilities are divided by this temperature, so a stated 90% is right about \
             90% of the time on the validation photos; answers whose top probability is below {} are \
             reported as uncertain by default.\n",
            c.describe(),
            c.uncertain_below
        );
    }

    s += "\n## Compared with the model it would replace\n\n";
    match guard {
        Guard::Compared(c) => {
            s += &format!("On the same {} validation photos of the training folder:\n\n", c.photos());
            s += "| model | right | accuracy | 95% interval |\n|---|---|---|---|\n";
            for (name, sc) in [("this model".to_string(), &c.new), (format!("`{}`", c.baseline.display()), &c.current)]
            {
                s += &format!(
                    "| {name} | {} of {} | {:.1}% | {:.1}–{:.1}% |\n",
                    sc.correct,
                    sc.count,
                    sc.accuracy * 100.0,
                    sc.ci95.0 * 100.0,
                    sc.ci95.1 * 100.0
                );
            }
            s += match c.verdict {
                Verdict::Better => "\nThis model got more of these photos right.\n",
                Verdict::Equal => "\nBoth models got as many of these photos right.\n",
                Verdict::Worse => {
                    "\n**This model got fewer of these photos right: it is worse than the model it would replace.**\n"
                }
            };
        }
        Guard::NotCompared(why) => s += &format!("Not compared: {why}.\n"),
    }

    s += "\n## Limits\n\n";
    s += "- The numbers above come from photos of the training folder. Photos from elsewhere (other cameras, \
          ages, skin tones, lighting, poses) can score lower: measure them with `gender-classifier eval`.\n";
    s += "- The 95% intervals show the uncertainty of a small sample; a few dozen photos give wide intervals.\n";
    s += "- The labels are the dataset's: their errors and biases are learnt with them. Accuracy by group \
          (age, race, gender) is not known unless measured.\n";
    s += "- Every face is put in one of the classes above, including faces that fit none of them.\n";
    s
}

/// Writes the card of the model at `model` atomically beside it and returns its path.
pub fn write_card(model: &Path, meta: &ModelMeta, guard: &Guard, utkface_names: bool) -> Result<PathBuf> {
    let path = card_path(model);
    let title = path.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let text = render(&title, meta, guard, utkface_names);
    crate::durable::write_atomic(&path, text.as_bytes(), "model_card")
        .io(|| format!("cannot write the model card {}: check that the folder is writable", path.display()))?;
    Ok(path)
}

/// Writes the card of a freshly trained model saved at `model`, from its training report.
///
/// UTKFace's names are looked for in each dataset's photos apart, so one UTKFace folder among
/// larger others still brings its terms.
pub fn write_for_report(model: &Path, report: &TrainReport, guard: &Guard) -> Result<PathBuf> {
    let paths =
        || report.scored.iter().map(|s| s.path.as_path()).chain(report.failures.iter().map(|(p, _)| p.as_path()));
    let sets = report.model.meta.trained_on();
    let names = if sets.len() > 1 {
        sets.iter().any(|d| names_look_utkface(paths().filter(|p| p.starts_with(&d.root))))
    } else {
        names_look_utkface(paths())
    };
    write_card(model, &report.model.meta, guard, names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::split::SplitSpec;
    use crate::metrics::compute;
    use crate::model_file::DatasetSummary;
    use crate::preprocess::PreprocessSpec;
    use crate::recipe::TrainOptions;
    use crate::train::guard::{Comparison, Score};
    use gc_engine::BackboneKind;

    fn meta(root: &str) -> ModelMeta {
        let classes = vec!["female".to_string(), "male".to_string()];
        // 11 of 12 right on validation.
        let labels: Vec<usize> = (0..12).map(|i| i % 2).collect();
        let probs: Vec<Vec<f32>> = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| if (i == 0) ^ (l == 1) { vec![0.1, 0.9] } else { vec![0.9, 0.1] })
            .collect();
        let valid = compute(&classes, &probs, &labels);
        ModelMeta {
            format_version: crate::model_file::FORMAT_VERSION,
            classes,
            preprocess: PreprocessSpec::new(BackboneKind::Faceres, true),
            backbone_sha256: "abc123".into(),
            origin: "trained on somewhere (linear softmax head, face crops)".into(),
            training: Some(TrainOptions::default()),
            split: Some(SplitSpec::default()),
            dataset: Some(DatasetSummary {
                root: root.into(),
                class_counts: vec![57, 63],
                split_counts: [84, 12, 24],
                skipped: 0,
            }),
            datasets: Vec::new(),
            test_metrics: None,
            validation_metrics: Some(valid),
            history: Vec::new(),
            created: "2026-12-06T16:00:00Z".into(),
            calibration: None,
            fine_tune: None,
        }
    }

    fn worse() -> Guard {
        Guard::Compared(Comparison {
            baseline: "models/default.safetensors".into(),
            new: Score::of(10, 12),
            current: Score::of(12, 12),
            verdict: Verdict::Worse,
        })
    }

    #[test]
    fn the_card_states_counts_intervals_the_comparison_and_what_is_predicted() {
        let m = meta("/data/faces");
        let card = render("m", &m, &worse(), false);
        for want in [
            "`/data/faces`",
            "female 57, male 63",
            "train 84, validation 12, test 24",
            "91.7% (95% CI 64.6–98.5%) on 12 photos",
            "apparent gender presentation of a face, as labelled in its training data, in two classes",
            "does not tell a person's gender identity or who a person is",
            "head only",
            "faceres",
            "Face crop: yes",
            "| this model | 10 of 12 | 83.3% |",
            "| `models/default.safetensors` | 12 of 12 | 100.0% |",
            "worse than the model it would replace",
            "## Limits",
        ] {
            assert!(card.contains(want), "missing {want:?} in:\n{card}");
        }
        assert!(!card.contains("non-commercial"), "no UTKFace clause for another dataset:\n{card}");
        let not = render("m", &m, &Guard::NotCompared("no validation photos".into()), false);
        assert!(not.contains("Not compared: no validation photos."), "{not}");
    }

    #[test]
    fn the_utkface_clause_appears_only_for_utkface_data() {
        let by_path = render("m", &meta("/datasets/utk-dev"), &worse(), false);
        assert!(by_path.contains("non-commercial research purposes only") && by_path.contains("inherits"), "{by_path}");
        let by_names = render("m", &meta("/data/faces"), &worse(), true);
        assert!(by_names.contains("non-commercial research purposes only"), "{by_names}");
        assert!(is_utkface_name(Path::new("x/26_1_2_20170116174525125.jpg.chip.jpg")));
        assert!(is_utkface_name(Path::new("9_0_4_20170103200814791.jpg")));
        for not in ["f12.png", "26_1_20170116174525125.jpg", "26_3_2_20170116174525125.jpg", "a_1_2_20170116.jpg"] {
            assert!(!is_utkface_name(Path::new(not)), "{not}");
        }
        let (utk, other) = (Path::new("26_1_2_20170116174525125.jpg"), Path::new("f1.png"));
        assert!(names_look_utkface([utk, utk, other]));
        assert!(!names_look_utkface([utk, other, other]));
        assert!(!names_look_utkface(Vec::<&Path>::new()));
    }

    #[test]
    fn a_card_of_two_datasets_lists_both_and_keeps_the_utkface_clause() {
        let mut m = meta("/data/web-faces");
        let mut utk = m.dataset.clone().unwrap();
        utk.root = "/data/utk-dev".into();
        utk.class_counts = vec![800, 800];
        m.datasets = vec![m.dataset.clone().unwrap(), utk];
        let card = render("m", &m, &worse(), false);
        for want in [
            "- Dataset: `/data/web-faces`\n  - Photos per class: female 57, male 63",
            "- Dataset: `/data/utk-dev`\n  - Photos per class: female 800, male 800",
            "2 datasets, each split on its own; the loss weighs each class of each dataset equally",
            "non-commercial research purposes only",
        ] {
            assert!(card.contains(want), "missing {want:?} in:\n{card}");
        }
        // An old file with only `dataset` still shows it.
        let old = render("m", &meta("/data/faces"), &worse(), false);
        assert!(old.contains("- Dataset: `/data/faces`\n- Photos per class: female 57"), "{old}");
    }

    #[test]
    fn the_card_reports_the_temperature_and_the_calibration_error() {
        let mut m = meta("/data/faces");
        assert!(!render("m", &m, &worse(), false).contains("Calibration"), "none recorded, none shown");
        m.calibration = Some(crate::calibration::Calibration {
            temperature: 1.8,
            ece_before: 0.081,
            ece_after: 0.012,
            validation_n: 240,
            uncertain_below: 0.75,
            note: None,
        });
        let card = render("m", &m, &worse(), false);
        for want in ["temperature 1.800", "0.081 before, 0.012 after (240 validation photos)", "below 0.75"] {
            assert!(card.contains(want), "'{want}' missing from:\n{card}");
        }
    }

    #[test]
    fn the_card_is_written_beside_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.safetensors");
        let path = write_card(&model, &meta("/data/faces"), &worse(), false).unwrap();
        assert_eq!(path, dir.path().join("m.md"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Model card: m\n"), "{text}");
    }

    #[test]
    fn a_fine_tuned_model_says_so_and_how() {
        let mut m = meta("/data/faces");
        m.fine_tune = Some(crate::recipe::FineTuneOptions { blocks: 3, ..Default::default() });
        let card = render("m", &m, &worse(), false);
        assert!(card.contains("Method: fine-tuned") && card.contains("last 3 blocks"), "{card}");
        assert!(!card.contains("head only"), "{card}");
    }
}
