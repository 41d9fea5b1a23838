//! faceres in Candle against the original runtime's outputs (`../shared/models/reference`).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use gc_core::train::zero_shot_head;
use gc_engine::Backbone;
use gc_engine::faceres::Faceres;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> std::collections::HashMap<String, Tensor> {
    let p = root().join("../shared/models/reference/faceres_deep_ref.safetensors");
    assert!(p.exists(), "reference file missing: expected {} (the development workspace's shared/models)", p.display());
    candle_core::safetensors::load(&p, &Device::Cpu).expect("reference loads")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn faceres_pool_and_gender_match_reference() {
    let r = reference();
    let path = root().join("models/faceres_deep.f32.safetensors");
    let net = Faceres::load(&path, &Device::Cpu).unwrap();
    let pool = net.features(&r["input"]).unwrap();
    let d = max_diff(&pool, &r["global_pool"]);
    assert!(d <= 1e-4, "global_pool max |diff| {d} > 1e-4");

    let head = Faceres::load_gender_head(&path, &Device::Cpu).unwrap();
    let classes = vec!["female".to_string(), "male".to_string()];
    let zs = zero_shot_head(&head, &classes).unwrap();
    let probs = zs.probs(&pool).unwrap();
    let p_male = probs.get(0).unwrap().get(1).unwrap().to_scalar::<f32>().unwrap();
    let want = r["gender"].flatten_all().unwrap().get(0).unwrap().to_scalar::<f32>().unwrap();
    assert!((p_male - want).abs() < 1e-5, "P(male) {p_male} vs reference {want}");
}

#[test]
fn candle_ops_path_matches_the_cpu_kernels_and_the_reference() {
    // The path a GPU takes (Candle's own ops), run here on the CPU: it must give the reference's
    // features as the hand-written kernels do, for one image and for a batch.
    let r = reference();
    let net = Faceres::load(&root().join("models/faceres_deep.f32.safetensors"), &Device::Cpu).unwrap();
    let x = &r["input"];
    let batch = Tensor::cat(&[x, &x.flip_lr_for_test(), x], 0).unwrap();
    let generic = gc_engine::layer::with_candle_ops(|| net.features(&batch).unwrap());
    let kernels = net.features(&batch).unwrap();
    let d = max_diff(&generic, &kernels);
    assert!(d <= 1e-4, "Candle ops vs CPU kernels: max |diff| {d}");
    let d = max_diff(&generic.get(0).unwrap().unsqueeze(0).unwrap(), &r["global_pool"]);
    assert!(d <= 1e-4, "Candle ops vs reference: max |diff| {d}");
}

#[test]
fn batched_forward_equals_single_forward() {
    let r = reference();
    let net = Faceres::load(&root().join("models/faceres_deep.f32.safetensors"), &Device::Cpu).unwrap();
    let x = &r["input"];
    let flipped = x.flip_lr_for_test();
    // Three and five images: the early blocks run image by image, the later ones on the whole batch.
    for batch in [vec![x, &flipped, x], vec![x, &flipped, x, &flipped, x]] {
        let fb = net.features(&Tensor::cat(&batch, 0).unwrap()).unwrap();
        assert_eq!(fb.dim(0).unwrap(), batch.len());
        for (i, img) in batch.iter().enumerate() {
            let d = max_diff(&fb.get(i).unwrap(), &net.features(img).unwrap().get(0).unwrap());
            assert!(d < 1e-5, "item {i} of a batch of {} differs from its single run by {d}", batch.len());
        }
    }
}

trait FlipForTest {
    fn flip_lr_for_test(&self) -> Tensor;
}
impl FlipForTest for Tensor {
    fn flip_lr_for_test(&self) -> Tensor {
        let w = self.dim(3).unwrap();
        let idx = Tensor::from_vec((0..w as u32).rev().collect::<Vec<_>>(), w, &Device::Cpu).unwrap();
        self.index_select(&idx, 3).unwrap()
    }
}

#[test]
fn missing_truncated_and_wrong_model_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("faceres_deep.f32.safetensors");
    let e = Faceres::load(&missing, &Device::Cpu).err().expect("missing file fails");
    assert!(format!("{e:#}").contains(&missing.display().to_string()), "{e:#}");

    let bytes = std::fs::read(root().join("models/faceres_deep.f32.safetensors")).unwrap();
    std::fs::write(&missing, &bytes[..bytes.len() / 2]).unwrap();
    let e = Faceres::load(&missing, &Device::Cpu).err().expect("truncated file fails");
    assert!(format!("{e:#}").contains("damaged"), "{e:#}");

    let wrong = root().join("models/inception_v3.safetensors");
    let e = Faceres::load(Path::new(&wrong), &Device::Cpu).err().expect("wrong file fails");
    assert!(format!("{e:#}").contains("inception_v3.safetensors"), "{e:#}");
}
