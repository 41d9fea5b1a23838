//! The guard of `train`: a deliberately bad new model (one epoch at a tiny learning rate) is
//! compared with the shipped default on the same validation photos of real faces (a sample of
//! web-faces, copied to a temporary folder), the warning names both accuracies, a better model at
//! `--out` is never overwritten without `--force`, and a model card is written beside the model.

mod common;

use std::path::{Path, PathBuf};

use common::cli::{bin, stderr};

/// 16 web-faces photos per class copied under `dir/{female,male}`.
fn sample_dataset(dir: &Path) {
    common::copy_web_faces_sample(dir, 16);
}

/// The feature cache the web-faces tests share, so each photo is extracted once per build.
fn cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-faces-cache")
}

/// `train` of a deliberately bad model on `data`, written to `out`, plus `extra` arguments.
fn train_bad(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let args = [
        "train",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
        "--lr",
        "0.00001",
        "--patience",
        "0",
        "--validation-pct",
        "50",
        "--test-pct",
        "0",
    ];
    bin(&cache()).args(args).args(extra).output().expect("binary runs")
}

/// The two percentages of "… 52.0% against 97.0%" in `text`.
fn accuracies(text: &str) -> (f64, f64) {
    let (before, after) = text.split_once("% against ").unwrap_or_else(|| panic!("no 'X% against Y%' in: {text}"));
    let new: f64 = before.rsplit(' ').next().unwrap().trim_start_matches('(').parse().unwrap();
    let old: f64 = after.split('%').next().unwrap().parse().unwrap();
    (new, old)
}

#[test]
fn a_worse_model_is_reported_and_never_replaces_a_better_one_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("faces");
    sample_dataset(&data);
    let shipped = common::root().join("models/default.safetensors");

    // No model at --out: compared with the shipped default, reported, and written anyway.
    let fresh = tmp.path().join("fresh.safetensors");
    let o = train_bad(&data, &fresh, &[]);
    let (err, out) = (stderr(&o), String::from_utf8_lossy(&o.stdout).into_owned());
    assert!(o.status.success(), "a worse model is still written when it replaces nothing: {err}");
    assert!(out.contains("compared on the same") && out.contains("validation photos"), "{out}");
    assert!(out.contains("new model: ") && out.contains("default.safetensors: "), "both models are listed: {out}");
    assert!(out.contains("95% CI"), "with their intervals: {out}");
    let warning = err.lines().find(|l| l.contains("worse than")).unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(warning.contains(&shipped.display().to_string()), "it names the shipped default: {warning}");
    let (new, old) = accuracies(warning);
    assert!(new < old, "{warning}");
    assert!(out.contains(&format!("{new:.1}%")) && out.contains(&format!("{old:.1}%")), "{out}");
    assert!(fresh.is_file(), "the model is written");
    let card = std::fs::read_to_string(tmp.path().join("fresh.md")).expect("a model card beside the model");
    assert!(card.contains(&data.display().to_string()), "the card names the dataset:\n{card}");
    assert!(card.contains("female 16, male 16"), "and its counts:\n{card}");
    assert!(card.contains("worse than the model it would replace"), "and the guard's verdict:\n{card}");
    assert!(card.contains("apparent gender presentation"), "and what it predicts:\n{card}");

    // A better model at --out: refused, nothing written, the file byte for byte the same.
    let better = tmp.path().join("better.safetensors");
    std::fs::copy(&shipped, &better).unwrap();
    let before = std::fs::read(&better).unwrap();
    let o = train_bad(&data, &better, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "refused: {err}");
    assert!(err.contains("nothing was written") && err.contains("--force"), "says what to do: {err}");
    let refusal = err.lines().find(|l| l.contains("nothing was written")).unwrap();
    let (old_there, new_again) = accuracies(refusal);
    assert!(new_again < old_there, "{refusal}");
    assert_eq!(std::fs::read(&better).unwrap(), before, "the better model is untouched");
    assert!(!tmp.path().join("better.md").exists(), "no card for a model that was not written");

    // --force overwrites it, with a card.
    let o = train_bad(&data, &better, &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(std::fs::read(&better).unwrap(), before, "--force replaced it");
    assert!(tmp.path().join("better.md").is_file());
}

#[test]
fn a_baseline_that_does_not_exist_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("faces");
    common::synthetic_dataset(&data, &["female", "male"], 3);
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("m.safetensors");
    let o = bin(&cache)
        .args(["train", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--baseline", "nope.safetensors"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--baseline") && err.contains("nope.safetensors"), "{err}");
    assert!(!out.exists() && !cache.join("features").exists(), "refused before any work");
}

#[test]
fn a_model_with_other_preprocessing_is_compared_through_its_own_classifier() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("faces");
    sample_dataset(&data);
    // Whole images for the new model; the shipped default crops faces: each is scored its own way.
    let out = tmp.path().join("whole.safetensors");
    let o = train_bad(&data, &out, &["--no-face-crop"]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", stderr(&o));
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("compared on the same"), "compared despite other preprocessing: {text}");
    let card = std::fs::read_to_string(tmp.path().join("whole.md")).unwrap();
    assert!(card.contains("Face crop: no"), "{card}");
    let compared: usize = first.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!(card.contains(&format!("validation {compared},")), "every validation photo was compared:\n{card}");
}
