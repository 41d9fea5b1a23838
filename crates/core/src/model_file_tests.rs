//! Tests of the model file: single file, old form, validation, datasets, fine-tuned blocks.
use super::*;
use candle_core::Tensor;
use gc_engine::BackboneKind;
use gc_engine::head::Dense;

const DIM: usize = gc_engine::faceres::FEATURE_DIM;

fn head(classes: usize) -> Head {
    let dev = Device::Cpu;
    let w: Vec<f32> = (0..classes * DIM).map(|i| (i as f32 * 0.37).sin() * 0.1).collect();
    let b: Vec<f32> = (0..classes).map(|i| 0.2 - 0.1 * i as f32).collect();
    Head {
        hidden: None,
        out: Dense {
            weight: Tensor::from_vec(w, (classes, DIM), &dev).unwrap(),
            bias: Tensor::from_vec(b, classes, &dev).unwrap(),
        },
    }
}

fn meta(classes: &[&str]) -> ModelMeta {
    ModelMeta {
        format_version: FORMAT_VERSION,
        classes: classes.iter().map(|c| c.to_string()).collect(),
        preprocess: PreprocessSpec::new(BackboneKind::Faceres, true),
        backbone_sha256: BackboneKind::Faceres.weight_file().sha256.to_string(),
        origin: "test".into(),
        training: Some(TrainOptions::default()),
        split: Some(SplitSpec::default()),
        dataset: None,
        datasets: Vec::new(),
        test_metrics: None,
        validation_metrics: None,
        history: vec![EpochStats {
            epoch: 1,
            train_loss: 0.5,
            train_accuracy: 0.75,
            val_loss: Some(0.6),
            val_accuracy: None,
        }],
        created: "2025-01-31T12:00:00Z".into(),
        calibration: None,
        fine_tune: None,
    }
}

fn model(classes: &[&str]) -> Model {
    Model { meta: meta(classes), head: head(classes.len()), tuned: None }
}

/// Writes `m` in the single-file form without `save`'s checks (to make broken files).
fn write_unchecked(m: &Model, path: &Path) {
    std::fs::write(path, m.to_bytes().unwrap()).unwrap();
}

fn load_err(path: &Path) -> String {
    crate::error::describe(&Model::load(path, &Device::Cpu).unwrap_err())
}

#[test]
fn single_file_round_trip_keeps_the_metadata_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/m.safetensors");
    let m = model(&["female", "male"]);
    m.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("m.safetensors")], "one file, no temp left");
    let back = Model::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back.meta, m.meta);
    assert_eq!(back.head.out.weight.to_vec2::<f32>().unwrap(), m.head.out.weight.to_vec2::<f32>().unwrap());
    assert_eq!(read_meta(&path).unwrap(), (m.meta.clone(), MetaSource::Embedded));
    // The stem and the old .json name find the same model.
    assert_eq!(Model::load(&dir.path().join("sub/m"), &Device::Cpu).unwrap().meta, m.meta);
    // Saving again replaces it whole.
    let mut m2 = model(&["female", "male"]);
    m2.meta.origin = "second".into();
    m2.save(&path).unwrap();
    assert_eq!(Model::load(&path, &Device::Cpu).unwrap().meta.origin, "second");
}

#[test]
fn every_dataset_is_listed_and_old_files_fall_back_to_their_one() {
    let d = |r: &str| DatasetSummary { root: r.into(), class_counts: vec![1, 2], split_counts: [3, 0, 0], skipped: 0 };
    let mut m = meta(&["female", "male"]);
    m.dataset = Some(d("/a"));
    let old = serde_json::to_value(&m).unwrap();
    assert!(old.get("datasets").is_none(), "an empty list is not written: {old}");
    let back: ModelMeta = serde_json::from_value(old).unwrap();
    assert_eq!(back.trained_on(), [&d("/a")], "a file without `datasets` lists its one dataset");
    m.datasets = vec![d("/a"), d("/b")];
    let back: ModelMeta = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back.trained_on(), [&d("/a"), &d("/b")]);
    m.dataset = None;
    m.datasets.clear();
    assert!(m.trained_on().is_empty());
}

#[test]
fn the_old_two_file_form_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    let m = model(&["female", "male"]);
    m.head.save(&path).unwrap();
    std::fs::write(path.with_extension("json"), serde_json::to_string_pretty(&m.meta).unwrap()).unwrap();
    let back = Model::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back.meta, m.meta);
    assert_eq!(read_meta(&path).unwrap().1, MetaSource::Sidecar);

    // Without its .json the old form has no description: the error names both files.
    std::fs::remove_file(path.with_extension("json")).unwrap();
    let text = load_err(&path);
    assert!(text.contains(&path.display().to_string()) && text.contains("old.json"), "{text}");
    assert!(text.contains("put its .json back") && text.contains("pick another"), "{text}");
}

#[test]
fn the_shipped_default_model_loads() {
    let ctx = crate::context::Context::cpu_with_cache(std::env::temp_dir());
    let (meta, source) = read_meta(&ctx.default_model()).unwrap();
    assert_eq!(source, MetaSource::Embedded, "the shipped default is one file");
    let m = Model::load(&ctx.default_model(), &Device::Cpu).unwrap();
    assert_eq!(m.meta, meta);
}

#[test]
fn a_model_in_the_old_two_file_form_still_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/two-file-model");
    let (meta, source) = read_meta(&dir.join("m.safetensors")).unwrap();
    assert_eq!(source, MetaSource::Sidecar);
    let m = Model::load(&dir.join("m.safetensors"), &Device::Cpu).unwrap();
    assert_eq!(m.meta, meta);
    assert_eq!(m.meta.classes, ["female", "male"]);
}

#[test]
fn a_stale_json_beside_a_single_file_model_is_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let js = dir.path().join("m.json");
    // An old two-file model at the path, then a new single-file save over it.
    let old = model(&["female", "male"]);
    old.head.save(&path).unwrap();
    std::fs::write(&js, serde_json::to_string(&old.meta).unwrap()).unwrap();
    let mut new = model(&["female", "male"]);
    new.meta.origin = "new".into();
    new.save(&path).unwrap();
    assert!(!js.exists(), "our own stale sidecar is removed after a successful save");

    // A stale sidecar that survived (a crash right after the rename) cannot override the
    // embedded metadata, even one that would break the model.
    let mut stale = old.meta.clone();
    stale.classes = vec!["a".into(), "b".into(), "c".into()];
    std::fs::write(&js, serde_json::to_string(&stale).unwrap()).unwrap();
    let back = Model::load(&path, &Device::Cpu).unwrap();
    assert_eq!(back.meta.origin, "new");
    assert_eq!(back.meta.classes, ["female", "male"]);
    assert_eq!(read_meta(&path).unwrap().0.origin, "new");

    // A .json that is not ours is left alone by a save.
    std::fs::write(&js, "{\"notes\": \"the user's own\"}").unwrap();
    new.save(&path).unwrap();
    assert_eq!(std::fs::read_to_string(&js).unwrap(), "{\"notes\": \"the user's own\"}");
}

#[test]
fn nan_or_infinite_weights_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.safetensors");
    let mut m = model(&["female", "male"]);
    m.head.out.bias = Tensor::new(&[0.0f32, f32::NAN], &Device::Cpu).unwrap();
    write_unchecked(&m, &path);
    let text = load_err(&path);
    assert!(text.contains(&format!("model {} has NaN/infinite weights", path.display())), "{text}");
    assert!(text.contains("retrain it or pick another"), "{text}");

    // Saving such a model is refused and leaves the good one in place.
    let good = model(&["female", "male"]);
    good.save(&path).unwrap();
    let text = m.save(&path).unwrap_err().to_string();
    assert!(text.contains("NaN/infinite") && text.contains("lower the learning rate"), "{text}");
    m.head.out.bias = Tensor::new(&[0.0f32, f32::INFINITY], &Device::Cpu).unwrap();
    assert!(m.save(&path).is_err());
    Model::load(&path, &Device::Cpu).unwrap();
}

#[test]
fn a_head_for_three_classes_with_two_in_the_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("three.safetensors");
    let m = Model { meta: meta(&["female", "male"]), head: head(3), tuned: None };
    write_unchecked(&m, &path);
    let text = load_err(&path);
    assert!(text.contains(&format!("model {} is broken", path.display())), "{text}");
    assert!(text.contains("3 classes") && text.contains("2 classes") && text.contains("retrain"), "{text}");
    assert!(!text.contains("matmul"), "{text}");
    let text = m.save(&path).unwrap_err().to_string();
    assert!(text.contains("3 outputs") && text.contains("2 classes"), "{text}");

    // A head for another backbone's features.
    let mut m = model(&["female", "male"]);
    m.meta.preprocess.backbone = BackboneKind::InceptionV3;
    m.meta.backbone_sha256 = BackboneKind::InceptionV3.weight_file().sha256.into();
    m.save(&path).unwrap();
    let text = load_err(&path);
    assert!(text.contains("does not fit its backbone inception-v3") && text.contains("1024-d"), "{text}");
}

#[test]
fn classes_must_be_present_and_unique() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    for (classes, want) in
        [(&[][..], "lists no classes"), (&["male", "male"][..], "'male' twice"), (&["", "x"][..], "no name")]
    {
        let m = Model { meta: meta(classes), head: head(classes.len().max(1)), tuned: None };
        write_unchecked(&m, &path);
        let text = load_err(&path);
        assert!(text.contains(want) && text.contains(&path.display().to_string()), "{classes:?}: {text}");
        assert!(m.save(&path).is_err(), "{classes:?} is refused on save too");
    }
}

#[test]
fn a_header_length_past_the_end_of_the_file_is_refused_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.safetensors");
    // Claims a 1000-byte header in a file of 18 bytes; and a header of exactly the file's size.
    for (claimed, body) in [(1000u64, 10usize), (11, 10)] {
        let mut bytes = claimed.to_le_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b' ', body));
        std::fs::write(&path, &bytes).unwrap();
        let e = read_meta(&path).unwrap_err();
        let text = crate::error::describe(&e);
        assert!(text.contains("header length is out of range"), "{claimed}: {text}");
    }
}

#[test]
fn a_model_from_a_newer_version_is_refused_and_this_version_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.safetensors");
    let mut m = model(&["female", "male"]);
    m.save(&path).unwrap();
    Model::load(&path, &Device::Cpu).expect("this version's model loads");
    m.meta.format_version = FORMAT_VERSION + 1;
    m.save(&path).unwrap();
    let text = load_err(&path);
    assert!(text.contains("newer gender-classifier") && text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn the_creation_time_is_rfc3339_utc() {
    let t = now_rfc3339();
    assert_eq!(t.len(), 20, "{t}");
    assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    assert!(humantime::parse_rfc3339(&t).is_ok(), "{t}");
}

#[test]
fn damaged_and_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.safetensors");
    let text = load_err(&path);
    assert!(text.contains(&path.display().to_string()) && text.contains("check the path"), "{text}");
    std::fs::write(&path, b"").unwrap();
    let text = load_err(&path);
    assert!(text.contains(&path.display().to_string()) && text.contains("damaged"), "{text}");
    assert!(read_meta(&path).is_err());
    let mut bytes = model(&["female", "male"]).to_bytes().unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&path, &bytes).unwrap();
    let text = load_err(&path);
    assert!(text.contains(&format!("model {} is damaged", path.display())) && text.contains("retrain"), "{text}");
}

#[test]
fn train_options_with_a_bad_learning_rate_are_refused() {
    for lr in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.01] {
        let opts = TrainOptions { learning_rate: lr, ..Default::default() };
        let text = opts.validate().unwrap_err().to_string();
        assert!(text.contains("learning rate") && text.contains("--lr"), "{lr}: {text}");
    }
    TrainOptions::default().validate().unwrap();
}
