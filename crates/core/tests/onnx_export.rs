//! The ONNX export, run in another runtime (tract), against Candle and the original runtime's
//! outputs (`../shared/models/reference`), fed as docs/EXPORT.md says.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use gc_core::classify::Classifier;
use gc_core::context::Context;
use gc_core::error::Error;
use gc_core::export::{Exported, export_onnx};
use gc_core::model_file::Model;
use gc_core::preprocess::crop_and_resize;
use gc_engine::faceres::{BGR_MEAN, Faceres, INPUT_SIZE};
use gc_engine::head::{Dense, Head};
use gc_engine::weights::FACERES;
use gc_engine::{Backbone, BackboneKind};
use tract_onnx::prelude::{Framework, InferenceModelExt, IntoRunnable, TValue, tvec};

/// The tolerance of the brief: the exported graph gives Candle's numbers to 1e-4.
const TOL: f32 = 1e-4;
const PLANE: usize = INPUT_SIZE * INPUT_SIZE;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ctx(dir: &Path) -> Context {
    Context::cpu_with_cache(dir.join("cache"))
}

/// faceres' reference input (BGR minus the means, NCHW) and outputs from the original runtime.
fn reference() -> HashMap<String, Tensor> {
    let p = workspace().join("../shared/models/reference/faceres_deep_ref.safetensors");
    assert!(p.exists(), "reference file missing: expected {} (the development workspace's shared/models)", p.display());
    candle_core::safetensors::load(&p, &Device::Cpu).expect("reference loads")
}

/// Candle's faceres input (BGR minus the means) turned into the exported graph's input (RGB
/// 0..255). The reference photo's pixels were whole numbers, so they are rounded back to them.
fn to_rgb_0_255(bgr_centred: &[f32]) -> Vec<f32> {
    let n = bgr_centred.len() / (3 * PLANE);
    let mut rgb = vec![0f32; bgr_centred.len()];
    for img in 0..n {
        for c in 0..3 {
            let src = &bgr_centred[(img * 3 + 2 - c) * PLANE..][..PLANE];
            let dst = &mut rgb[(img * 3 + c) * PLANE..][..PLANE];
            for (d, s) in dst.iter_mut().zip(src) {
                let v = s + BGR_MEAN[2 - c];
                assert!((v - v.round()).abs() < 1e-3 && (0.0..=255.0).contains(&v.round()), "not a pixel value: {v}");
                *d = v.round();
            }
        }
    }
    rgb
}

/// The reference image and its mirror image, as one Candle batch `[2, 3, 224, 224]`.
fn reference_batch(r: &HashMap<String, Tensor>) -> Tensor {
    let x = &r["input"];
    let idx = Tensor::from_vec((0..INPUT_SIZE as u32).rev().collect::<Vec<_>>(), INPUT_SIZE, &Device::Cpu).unwrap();
    Tensor::cat(&[x, &x.index_select(&idx, 3).unwrap()], 0).unwrap()
}

/// The three outputs of the exported file for an input batch, by name, as rows.
fn run_onnx(path: &Path, input: Vec<f32>) -> HashMap<&'static str, Vec<Vec<f32>>> {
    let n = input.len() / (3 * PLANE);
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .expect("tract reads the exported file")
        .into_optimized()
        .expect("tract types and optimises the graph")
        .into_runnable()
        .expect("tract plans the graph");
    let x = tract_onnx::prelude::Tensor::from_shape(&[n, 3, INPUT_SIZE, INPUT_SIZE], &input).unwrap();
    let outputs = model.run(tvec![TValue::from(x)]).expect("tract runs the graph");
    let names = ["probs", "logits", "features"];
    assert_eq!(outputs.len(), names.len(), "outputs: probs, logits, features");
    names
        .into_iter()
        .zip(outputs.iter())
        .map(|(name, t)| {
            let view = t.to_plain_array_view::<f32>().unwrap();
            assert_eq!(view.shape()[0], n, "{name}: one row per input image");
            let rows = view.rows().into_iter().map(|r| r.to_vec()).collect();
            (name, rows)
        })
        .collect()
}

/// Largest absolute difference between two equally shaped sets of rows.
fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len(), "row counts");
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len(), "row lengths");
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0f32, f32::max)
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn export(ctx: &Context, model: &Path, out: &Path) -> Exported {
    let exported = export_onnx(ctx, model, out).expect("the model exports");
    assert_eq!(exported.path, out);
    assert_eq!(exported.bytes as u64, std::fs::metadata(out).unwrap().len(), "the size reported is the file's");
    exported
}

#[test]
fn the_default_model_exported_matches_candle_and_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let out = dir.path().join("new-folder/default.onnx");
    let exported = export(&ctx, &ctx.default_model(), &out);
    assert_eq!(exported.classes, ["female", "male"]);
    assert!(exported.input_description().contains("RGB, values 0..255"), "{}", exported.input_description());

    let r = reference();
    let batch = reference_batch(&r);
    let net = Faceres::load(&ctx.weights(&FACERES), &Device::Cpu).unwrap();
    let feats = net.features(&batch).unwrap();
    let model = Model::load(&ctx.default_model(), &Device::Cpu).unwrap();
    let (logits, probs) = (model.head.logits(&feats).unwrap(), model.head.probs(&feats).unwrap());

    let onnx = run_onnx(&out, to_rgb_0_255(&batch.flatten_all().unwrap().to_vec1::<f32>().unwrap()));
    let d_feats = max_diff(&onnx["features"], &rows(&feats));
    let d_ref = max_diff(&onnx["features"][..1], &rows(&r["global_pool"]));
    let d_logits = max_diff(&onnx["logits"], &rows(&logits));
    let d_probs = max_diff(&onnx["probs"], &rows(&probs));
    eprintln!(
        "max |ONNX - Candle|: features {d_feats:e}, logits {d_logits:e}, probs {d_probs:e}; features vs tfjs {d_ref:e}"
    );
    assert!(d_feats <= TOL, "features differ from Candle's by {d_feats}");
    assert!(d_ref <= TOL, "features differ from the original runtime's by {d_ref}");
    assert!(d_logits <= TOL, "logits differ from Candle's by {d_logits}");
    assert!(d_probs <= TOL, "probabilities differ from Candle's by {d_probs}");
    // The mirror image is a different input: a graph that mixed up the batch would fail above,
    // unless both images gave the same features.
    assert!(max_diff(&onnx["features"][..1], &onnx["features"][1..]) > 1e-2, "the two images differ");
    for p in &onnx["probs"] {
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "probabilities sum to 1: {p:?}");
    }
}

#[test]
fn the_zero_shot_head_with_its_hidden_layer_matches_candle_and_the_reference_gender() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let zero_shot = gc_core::train::run::zero_shot_model(&ctx, true).unwrap();
    assert!(zero_shot.head.hidden.is_some(), "this head has the hidden layer the default lacks");
    let model_path = dir.path().join("zero-shot.safetensors");
    zero_shot.save(&model_path).unwrap();
    let out = dir.path().join("zero-shot.onnx");
    export(&ctx, &model_path, &out);

    let r = reference();
    let onnx = run_onnx(&out, to_rgb_0_255(&r["input"].flatten_all().unwrap().to_vec1::<f32>().unwrap()));
    let feats = Faceres::load(&ctx.weights(&FACERES), &Device::Cpu).unwrap().features(&r["input"]).unwrap();
    let d_probs = max_diff(&onnx["probs"], &rows(&zero_shot.head.probs(&feats).unwrap()));
    assert!(d_probs <= TOL, "probabilities differ from Candle's by {d_probs}");
    let p_male = onnx["probs"][0][1];
    let want = r["gender"].flatten_all().unwrap().to_vec1::<f32>().unwrap()[0];
    assert!((p_male - want).abs() <= TOL, "P(male) {p_male} against the original runtime's {want}");
}

#[test]
fn a_photo_cropped_as_documented_gets_the_probabilities_classify_gives() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let out = dir.path().join("default.onnx");
    export(&ctx, &ctx.default_model(), &out);

    // docs/EXPORT.md's recipe: the face's square crop box, sampled bilinearly to 224x224 RGB
    // 0..255, laid out NCHW.
    let classifier = Classifier::load(&ctx.default_model(), &ctx).unwrap();
    let photo = workspace().join("assets/samples/obama.jpg");
    let img = gc_core::imaging::load_rgb(&photo).unwrap();
    let predicted = classifier.classify_image(&img).unwrap();
    let face = &predicted.faces[0];
    assert!(face.region.is_face(), "the sample has a face");
    let hwc = crop_and_resize(&img, face.region.region, INPUT_SIZE);
    let mut nchw = vec![0f32; 3 * PLANE];
    for (i, px) in hwc.iter().enumerate() {
        for c in 0..3 {
            nchw[c * PLANE + i] = px[c];
        }
    }
    let onnx = run_onnx(&out, nchw);
    let d = max_diff(&onnx["probs"], std::slice::from_ref(&face.probs));
    assert!(d <= TOL, "ONNX {:?} against classify's {:?}: differ by {d}", onnx["probs"][0], face.probs);
}

#[test]
fn a_model_of_another_backbone_or_a_missing_model_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let mut meta = Model::load(&ctx.default_model(), &Device::Cpu).unwrap().meta;
    meta.preprocess.backbone = BackboneKind::InceptionV3;
    meta.backbone_sha256 = BackboneKind::InceptionV3.weight_file().sha256.into();
    let dim = BackboneKind::InceptionV3.feature_dim();
    let dev = Device::Cpu;
    let head = Head {
        hidden: None,
        out: Dense {
            weight: Tensor::zeros((2, dim), candle_core::DType::F32, &dev).unwrap(),
            bias: Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap(),
        },
    };
    let model_path = dir.path().join("inception.safetensors");
    Model { meta, head, tuned: None }.save(&model_path).unwrap();
    let out = dir.path().join("inception.onnx");
    let err = export_onnx(&ctx, &model_path, &out).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    let text = err.to_string();
    for want in [&model_path.display().to_string(), "inception-v3", "only faceres", "not implemented"] {
        assert!(text.contains(want), "'{want}' missing from: {text}");
    }
    assert!(!out.exists(), "nothing is written for a refused model");

    let missing = dir.path().join("none.safetensors");
    let text = gc_core::error::describe(&export_onnx(&ctx, &missing, &out).unwrap_err());
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(!out.exists());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["inception.safetensors"], "no temporary file is left behind");
}

#[test]
fn a_fine_tuned_model_exports_its_own_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let faceres_path = ctx.weights(&FACERES);
    let vb = gc_engine::weights::load_checked(&faceres_path, &FACERES, &Device::Cpu).unwrap();
    let tail = gc_engine::faceres_train::Tail::load(&vb, 1).unwrap();
    for v in tail.vars() {
        v.set(&(v.as_tensor() * 1.1).unwrap()).unwrap();
    }
    let mut model = Model::load(&ctx.default_model(), &Device::Cpu).unwrap();
    model.meta.fine_tune = Some(gc_core::recipe::FineTuneOptions { blocks: 1, ..Default::default() });
    model.tuned = Some(gc_core::model_file::TunedBlocks { tensors: tail.tensors().unwrap() });
    let model_path = dir.path().join("tuned.safetensors");
    model.save(&model_path).unwrap();
    let out = dir.path().join("tuned.onnx");
    export(&ctx, &model_path, &out);

    let batch = reference_batch(&reference());
    let tuned = Faceres::load_with(&faceres_path, &model.tuned.as_ref().unwrap().tensors, &Device::Cpu).unwrap();
    let feats = tuned.features(&batch).unwrap();
    let shipped = Faceres::load(&faceres_path, &Device::Cpu).unwrap().features(&batch).unwrap();
    let onnx = run_onnx(&out, to_rgb_0_255(&batch.flatten_all().unwrap().to_vec1::<f32>().unwrap()));
    let d_tuned = max_diff(&onnx["features"], &rows(&feats));
    assert!(d_tuned <= TOL, "features differ from the fine-tuned network's by {d_tuned}");
    assert!(max_diff(&onnx["features"], &rows(&shipped)) > 1e-2, "the export used the shipped blocks");
}
