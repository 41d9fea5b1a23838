//! Calibration end to end: `train` on a small sample of real faces (web-faces photos copied to a
//! temporary folder) fits a temperature on the validation split, prints it, and records it with
//! the expected calibration error in the model's metadata and card; `classify --uncertain-below`
//! marks the answers below the threshold as uncertain in JSON lines, text and CSV, `0` marks none,
//! an out-of-range value is refused; `eval` counts the uncertain answers. Without the web-faces
//! dataset the test fails, saying where it expected it (as the other web-faces tests do).

mod common;

use std::path::{Path, PathBuf};

use common::cli::{bin, ok, stderr};

/// 24 web-faces photos per class copied under `dir/{female,male}`, plus 6 more photos of men filed
/// as female: label noise, so the head makes mistakes on its validation split and a temperature
/// can be fitted (with every validation answer right, none can).
fn sample_dataset(dir: &Path) {
    for class in ["female", "male"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for p in common::web_faces_sample(class, 24) {
            std::fs::copy(&p, dir.join(class).join(p.file_name().unwrap())).unwrap();
        }
    }
    for p in &common::web_faces_sample("male", 30)[24..] {
        std::fs::copy(p, dir.join("female").join(format!("mislabelled-{}", p.file_name().unwrap().to_string_lossy())))
            .unwrap();
    }
}

/// The feature cache the web-faces tests share, so each photo is extracted once per build.
fn cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-faces-cache")
}

fn run(args: &[&str]) -> std::process::Output {
    bin(&cache()).args(args).output().expect("binary runs")
}

/// The JSON lines of `classify --jsonl` on `photos` with `extra` arguments.
fn classify_jsonl(model: &Path, photos: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["classify", "--jsonl", "--model", model.to_str().unwrap(), photos.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = ok(&run(&args));
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

#[test]
fn train_calibrates_and_classify_and_eval_report_uncertain_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("faces");
    sample_dataset(&data);
    let model = tmp.path().join("calibrated.safetensors");
    let (d, m) = (data.to_str().unwrap(), model.to_str().unwrap());
    let o = run(&["train", d, "--out", m, "--validation-pct", "50", "--test-pct", "0", "--epochs", "30"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    assert!(out.contains("calibration on the validation split: temperature"), "train reports T: {out}");
    assert!(out.contains("expected calibration error") && out.contains(" after ("), "and the ECE: {out}");

    // The metadata carries the calibration, with both ECEs, as JSON.
    let (meta, _) = gc_core::model_file::read_meta(&model).unwrap();
    let c = meta.calibration.clone().expect("a trained model records its calibration");
    let json = serde_json::to_value(&meta).unwrap();
    for key in ["temperature", "ece_before", "ece_after", "validation_n", "uncertain_below"] {
        assert!(json["calibration"].get(key).is_some(), "metadata lacks calibration.{key}: {}", json["calibration"]);
    }
    assert!(c.validation_n >= gc_core::calibration::MIN_VALIDATION, "enough validation photos to fit: {c:?}");
    assert!(c.note.is_none() && c.temperature != 1.0 && (0.05..=20.0).contains(&c.temperature), "{c:?}");
    assert!((0.0..=1.0).contains(&c.ece_before) && (0.0..=1.0).contains(&c.ece_after), "{c:?}");
    let card = std::fs::read_to_string(tmp.path().join("calibrated.md")).expect("a model card");
    assert!(card.contains(&format!("temperature {:.3}", c.temperature)), "the card reports T:\n{card}");

    // --uncertain-below: each answer is uncertain exactly when its top probability is below it.
    let photos = data.join("female");
    let lines = classify_jsonl(&model, &photos, &["--uncertain-below", "0.999"]);
    assert_eq!(lines.len(), 30);
    for l in &lines {
        let p = l["probability"].as_f64().unwrap_or_else(|| panic!("no probability: {l}"));
        assert_eq!(l["uncertain"], p < 0.999, "{l}");
        assert_eq!(l["faces"][0]["uncertain"], l["uncertain"], "the photo's answer is its first face's: {l}");
    }
    let uncertain = lines.iter().filter(|l| l["uncertain"] == true).count();
    assert!(uncertain > 0, "a model trained on 54 noisy labels is not 99.9% sure of every face");
    let none = classify_jsonl(&model, &photos, &["--uncertain-below", "0"]);
    assert!(none.iter().all(|l| l["uncertain"] == false), "0 marks none uncertain");

    // Text and CSV say it too.
    let text = ok(&run(&["classify", "--model", m, "--uncertain-below", "0.999", photos.to_str().unwrap()]));
    assert!(text.contains("uncertain (leans "), "{text}");
    let csv = ok(&run(&["classify", "--csv", "--model", m, "--uncertain-below", "0", photos.to_str().unwrap()]));
    assert!(csv.lines().next().unwrap().ends_with(",uncertain") && csv.lines().skip(1).all(|l| l.ends_with(",false")));

    // A threshold outside 0..1 is refused, saying what is allowed.
    let bad = run(&["classify", "--model", m, "--uncertain-below", "1.5", photos.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("between 0 and 1"), "{}", stderr(&bad));

    // eval counts the uncertain answers and scores the confident ones.
    let doc: serde_json::Value = serde_json::from_str(&ok(&run(&[
        "eval",
        d,
        "--model",
        m,
        "--split",
        "all",
        "--json",
        "--uncertain-below",
        "0.999",
    ])))
    .unwrap();
    let u = &doc["uncertain"];
    assert_eq!(u["n"], 54, "{u}");
    assert_eq!(u["uncertain_below"].as_f64().map(|v| (v * 1000.0).round()), Some(999.0), "{u}");
    let k = u["uncertain"].as_u64().unwrap();
    assert!(k > 0 && k <= 54, "{u}");
    assert!((u["uncertain_share"].as_f64().unwrap() - k as f64 / 54.0).abs() < 1e-9, "{u}");
    let text = ok(&run(&["eval", d, "--model", m, "--split", "all", "--uncertain-below", "0"]));
    assert!(text.contains("uncertain (top probability below 0): 0 of 54"), "{text}");
}
