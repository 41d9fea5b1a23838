//! `train --fine-tune` on a small sample of real faces: the model file carries the trained blocks
//! and says how they were made, it predicts through them (its answers differ from the head-only
//! model's and from the network it started from, and classify reads them back consistently), its
//! features are cached apart from the shipped network's, a cancelled run makes no model, and a
//! file whose backbone weights and description disagree is refused at load.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use common::cli::{bin, ok};
use gc_core::context::Context;
use gc_core::model_file::Model;
use gc_core::recipe::FineTuneOptions;
use gc_core::train::run::{TrainConfig, train_dataset};

/// 10 web-faces photos per class copied under `dir/{female,male}`.
fn sample_dataset(dir: &Path) {
    common::copy_web_faces_sample(dir, 10);
}

/// The feature cache the web-faces tests share.
fn cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-faces-cache")
}

/// `train` on `data` into `out` with `extra` arguments; the model written.
fn train(data: &Path, out: &Path, extra: &[&str]) -> Model {
    // No validation photos: every epoch of fine-tuning is kept (with validation photos, an epoch
    // is kept only when it beats the head alone on them).
    let args = ["train", data.to_str().unwrap(), "--out", out.to_str().unwrap(), "--validation-pct", "0"];
    let o = bin(&cache()).args(args).args(["--test-pct", "0", "--force"]).args(extra).output().unwrap();
    ok(&o);
    Model::load(out, &candle_core::Device::Cpu).unwrap()
}

/// Probabilities per photo name from `classify --json` with `model`.
fn classify(model: &Path) -> Vec<(String, f64)> {
    let args = ["classify", "--json", "--model", model.to_str().unwrap()];
    let o = bin(&cache()).args(args).arg(common::cli::samples()).output().unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    let photos = v["images"].as_array().expect("a list of images");
    photos
        .iter()
        .filter_map(|p| {
            let face = p["faces"].as_array()?.first()?;
            let probs = face["probs"].as_array()?;
            Some((p["path"].as_str()?.to_string(), probs[0].as_f64()?))
        })
        .collect()
}

#[test]
fn a_fine_tuned_model_carries_its_blocks_and_predicts_through_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("faces");
    sample_dataset(&data);
    let head_only = train(&data, &tmp.path().join("head.safetensors"), &[]);
    assert!(head_only.tuned.is_none() && head_only.meta.fine_tune.is_none());

    let tuned_path = tmp.path().join("tuned.safetensors");
    let args = ["--fine-tune", "--fine-tune-blocks", "1", "--fine-tune-epochs", "2", "--backbone-lr", "0.001"];
    let tuned = train(&data, &tuned_path, &args);
    let ft = tuned.meta.fine_tune.as_ref().expect("the model says it was fine-tuned");
    assert_eq!((ft.blocks, ft.epochs), (1, 2));
    let blocks = tuned.tuned.as_ref().expect("the model holds the trained blocks");
    let mut names: Vec<&String> = blocks.tensors.keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["block13.dw.scale", "block13.dw.shift", "block13.dw.weight", "block13.pw.bias", "block13.pw.weight"]
    );
    assert!(tuned.meta.origin.contains("last 1 blocks fine-tuned"), "{}", tuned.meta.origin);
    let card = std::fs::read_to_string(tmp.path().join("tuned.md")).unwrap();
    assert!(card.contains("Method: fine-tuned"), "{card}");
    // The history goes on from the head's epochs into fine-tuning's.
    let epochs: Vec<usize> = tuned.meta.history.iter().map(|e| e.epoch).collect();
    assert!(epochs.windows(2).all(|w| w[1] == w[0] + 1), "{epochs:?}");

    // The blocks moved, and prediction goes through them: the same head on the shipped network
    // answers differently.
    let tuned_answers = classify(&tuned_path);
    assert!(!tuned_answers.is_empty());
    let mut untuned = tuned.clone();
    untuned.tuned = None;
    untuned.meta.fine_tune = None;
    let untuned_path = tmp.path().join("untuned.safetensors");
    untuned.save(&untuned_path).unwrap();
    let untuned_answers = classify(&untuned_path);
    let moved = tuned_answers.iter().zip(&untuned_answers).map(|(a, b)| (a.1 - b.1).abs()).fold(0.0, f64::max);
    assert!(moved > 1e-4, "the fine-tuned blocks change no answer: {tuned_answers:?}");
    // Read back through the cache (the second run), the tuned model answers the same.
    let again = classify(&tuned_path);
    for (a, b) in tuned_answers.iter().zip(&again) {
        assert!((a.1 - b.1).abs() < 1e-4, "{a:?} against {b:?}");
    }
    // Evaluated, its features are cached in a folder of their own.
    let o = bin(&cache())
        .args(["eval", data.to_str().unwrap(), "--split", "train", "--model", tuned_path.to_str().unwrap()])
        .output();
    ok(&o.unwrap());
    let features = cache().join("features");
    let tuned_dirs = std::fs::read_dir(&features)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("tuned-"))
        .count();
    assert!(tuned_dirs >= 1, "no tuned-* folder in {}", features.display());
}

#[test]
fn a_cancelled_fine_tune_makes_no_model_and_bad_options_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("faces");
    sample_dataset(&data);
    let ctx = Context::cpu_with_cache(cache());
    let cfg = TrainConfig { fine_tune: Some(FineTuneOptions::default()), ..Default::default() };
    let cancelled = AtomicBool::new(true);
    let r = train_dataset(&data, &cfg, &ctx, &mut |_| {}, &cancelled);
    assert!(r.is_err(), "a cancelled run made a model");

    let bad =
        TrainConfig { fine_tune: Some(FineTuneOptions { blocks: 14, ..Default::default() }), ..Default::default() };
    let e = train_dataset(&data, &bad, &ctx, &mut |_| {}, &AtomicBool::new(false)).err().unwrap();
    assert!(e.to_string().contains("--fine-tune-blocks"), "{e}");
    let o = bin(&cache()).args(["train", data.to_str().unwrap(), "--fine-tune-blocks", "2"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "--fine-tune-blocks without --fine-tune must be a usage error");
}

#[test]
fn backbone_weights_without_their_description_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let shipped = Model::load(&common::root().join("models/default.safetensors"), &candle_core::Device::Cpu).unwrap();
    // Described as fine-tuned, but without the blocks.
    let mut m = shipped.clone();
    m.meta.fine_tune = Some(FineTuneOptions::default());
    let path = tmp.path().join("described.safetensors");
    m.save(&path).unwrap();
    let e = Model::load(&path, &candle_core::Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("holds no backbone weights") && e.contains("retrain"), "{e}");
    // Blocks of the wrong shape.
    let dev = candle_core::Device::Cpu;
    let bad = candle_core::Tensor::zeros(7, candle_core::DType::F32, &dev).unwrap();
    let tensors = std::collections::HashMap::from([("block13.pw.bias".to_string(), bad)]);
    m.tuned = Some(gc_core::model_file::TunedBlocks { tensors });
    let path = tmp.path().join("shape.safetensors");
    m.save(&path).unwrap();
    let e = Model::load(&path, &dev).err().unwrap().to_string();
    assert!(e.contains("block13.pw.bias") && e.contains("shape"), "{e}");
}
