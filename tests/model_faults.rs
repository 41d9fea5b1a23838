//! A saved model is never lost: a save that fails or is killed at any fault point of the model
//! write (`model::write`, `model::tmp_written`, `model::renamed`) leaves a path that loads, as the
//! old model or the new one whole; and training with options that cannot work is refused before
//! any work starts.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use candle_core::Device;
use gc_core::model_file::{MetaSource, Model, read_meta};

fn bin(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gender-classifier"));
    c.env("GENDER_CLASSIFIER_MODELS", common::root().join("models"))
        .env("GENDER_CLASSIFIER_CACHE", cache)
        .env_remove("FAILPOINTS");
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `zero-shot --out path`, whole images when `whole` (so old and new models differ), with the
/// fault points `failpoints` switched on.
fn zero_shot(path: &Path, whole: bool, failpoints: Option<&str>) -> Output {
    let mut c = bin(&path.with_file_name("cache"));
    c.args(["zero-shot", "--out", path.to_str().unwrap()]);
    if whole {
        c.arg("--no-face-crop");
    }
    if let Some(f) = failpoints {
        c.env("FAILPOINTS", f);
    }
    c.output().expect("binary runs")
}

/// Names of the temp files left in `dir`.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_save_that_fails_or_is_killed_at_any_point_leaves_a_model_that_loads() {
    let tmp = tempfile::tempdir().unwrap();
    for point in ["model::write", "model::tmp_written", "model::renamed"] {
        for action in ["return", "return(abort)"] {
            for old_form in [false, true] {
                let case = format!(
                    "{point}={action}, old model in the {} form",
                    if old_form { "two-file" } else { "single-file" }
                );
                let dir = tmp.path().join(format!("{}-{}-{old_form}", point.replace("::", "-"), action.len()));
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join("m.safetensors");
                if old_form {
                    // A model in the old form (the shipped default before it became one file): weights plus a .json beside them.
                    std::fs::copy(common::root().join("tests/fixtures/two-file-model/m.safetensors"), &path).unwrap();
                    std::fs::copy(common::root().join("tests/fixtures/two-file-model/m.json"), dir.join("m.json"))
                        .unwrap();
                } else {
                    let o = zero_shot(&path, false, None);
                    assert!(o.status.success(), "{case}: the first save failed: {}", stderr(&o));
                }
                let old = Model::load(&path, &Device::Cpu).unwrap().meta;
                assert!(old.preprocess.face_crop, "{case}");

                let o = zero_shot(&path, true, Some(&format!("{point}={action}")));
                assert!(!o.status.success(), "{case}: the fault point did not fire: {}", stderr(&o));
                let killed = action.contains("abort");
                if killed {
                    assert_eq!(o.status.code(), None, "{case}: killed by a signal, as kill -9 would");
                } else {
                    assert_eq!(o.status.code(), Some(1), "{case}: {}", stderr(&o));
                    assert!(stderr(&o).contains(path.to_str().unwrap()), "{case}: {}", stderr(&o));
                    assert_eq!(temp_files(&dir), Vec::<String>::new(), "{case}: the failed save removed its temp file");
                }

                let now = Model::load(&path, &Device::Cpu)
                    .unwrap_or_else(|e| panic!("{case}: the path no longer loads: {}", gc_core::error::describe(&e)));
                if point == "model::renamed" {
                    // The rename happened: the new model is there, whole, and its own metadata wins
                    // over a stale .json beside it.
                    assert!(!now.meta.preprocess.face_crop, "{case}: the new model");
                    assert_eq!(now.meta.origin, read_meta(&path).unwrap().0.origin);
                    assert_eq!(read_meta(&path).unwrap().1, MetaSource::Embedded, "{case}");
                } else {
                    assert_eq!(now.meta, old, "{case}: the old model, untouched");
                }

                // A clean save afterwards works and leaves a single file (any stale .json is gone).
                let o = zero_shot(&path, true, None);
                assert!(o.status.success(), "{case}: {}", stderr(&o));
                assert!(!dir.join("m.json").exists(), "{case}: the stale sidecar was removed");
                assert_eq!(read_meta(&path).unwrap().1, MetaSource::Embedded, "{case}");
            }
        }
    }
}

#[test]
fn train_with_a_bad_learning_rate_is_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic_dataset(&data, &["female", "male"], 3);
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("m.safetensors");
    for (flag, value) in
        [("--lr", "nan"), ("--lr", "inf"), ("--lr", "0"), ("--lr", "-1"), ("--dropout", "1"), ("--epochs", "0")]
    {
        let o = bin(&cache)
            .args(["train", data.to_str().unwrap(), "--no-face-crop", "--out", out.to_str().unwrap()])
            .arg(format!("{flag}={value}"))
            .output()
            .expect("binary runs");
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: the message names the option: {err}");
        assert!(!out.exists(), "{flag} {value}: no model written");
        assert!(!cache.join("features").exists(), "{flag} {value}: refused before any feature was extracted");
    }
}

#[test]
fn a_model_whose_head_does_not_fit_is_refused_at_load_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.safetensors");
    let ctx = gc_core::context::Context::cpu_with_cache(tmp.path().join("cache"));
    let mut m = gc_core::train::run::zero_shot_model(&ctx, true).unwrap();
    m.meta.preprocess.backbone = gc_engine::BackboneKind::InceptionV3;
    m.meta.backbone_sha256 = gc_engine::weights::INCEPTION_V3.sha256.into();
    m.save(&path).unwrap();
    let sample = common::root().join("assets/samples/obama.jpg");
    let o = bin(&tmp.path().join("cache"))
        .args(["classify", sample.to_str().unwrap(), "--model", path.to_str().unwrap()])
        .output()
        .expect("binary runs");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("model {} is broken", path.display())), "{err}");
    assert!(err.contains("does not fit its backbone inception-v3") && !err.contains("matmul"), "{err}");
}
