//! Inception-v3 port checked against the reference outputs of the original runtime (tfjs).
//!
//! Reference: `../shared/models/reference/inception_v3_ref.safetensors` (relative to the crate),
//! described in `MODELS.md` section 1. Tolerances: pooled features 2e-3 (f16-stored weights give
//! ~6.5e-4), intermediate maps 3e-2 (f16 storage gives ~9e-3 / 1.1e-2 / 3.7e-3).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use gc_engine::Backbone;
use gc_engine::inception_v3::{FEATURE_DIM, INPUT_SIZE, InceptionV3};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn weights_path() -> PathBuf {
    crate_dir().join("models/inception_v3.safetensors")
}

fn reference_path() -> PathBuf {
    crate_dir().join("../shared/models/reference/inception_v3_ref.safetensors")
}

fn load_reference() -> std::collections::HashMap<String, Tensor> {
    let path = reference_path();
    assert!(
        path.exists(),
        "reference file missing: expected {} (inception_v3_ref.safetensors from the shared models \
         directory, see MODELS.md section 1)",
        path.display()
    );
    candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot read reference file {}: {e}", path.display()))
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(DType::F32).unwrap()))
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn candle_ops_path_matches_the_cpu_kernels_and_the_reference() {
    // The path a GPU takes (Candle's own ops, no NHWC kernels, no Winograd), run on the CPU.
    let reference = load_reference();
    let input = reference.get("input").expect("reference input").clone();
    let model = InceptionV3::load(&weights_path(), &Device::Cpu).expect("load inception_v3");
    let generic = gc_engine::layer::with_candle_ops(|| model.features(&input).expect("features, Candle ops"));
    let kernels = model.features(&input).expect("features, CPU kernels");
    let d = max_abs_diff(&generic, &kernels);
    assert!(d <= 1e-3, "Candle ops vs CPU kernels: max |diff| {d}");
    let d = max_abs_diff(&generic, reference.get("pool").expect("reference pool"));
    assert!(d <= 2e-3, "Candle ops vs reference pool: max |diff| {d}");
}

#[test]
fn matches_reference_outputs() {
    let reference = load_reference();
    let get = |name: &str| reference.get(name).unwrap_or_else(|| panic!("reference lacks tensor '{name}'")).clone();
    let input = get("input");
    assert_eq!(input.dims(), &[1, 3, INPUT_SIZE, INPUT_SIZE]);

    let model = InceptionV3::load(&weights_path(), &Device::Cpu).expect("load inception_v3");

    // Warm-up run, then a timed one.
    let taps = model.forward_with_taps(&input).expect("forward");
    let t0 = Instant::now();
    let feats = model.features(&input).expect("features");
    let elapsed = t0.elapsed();
    eprintln!("inception-v3 forward, batch 1: {:.1} ms", elapsed.as_secs_f64() * 1e3);

    let d_pool = max_abs_diff(&taps.pool, &get("pool"));
    let d_5b = max_abs_diff(&taps.mixed_5b, &get("mixed_5b"));
    let d_6e = max_abs_diff(&taps.mixed_6e, &get("mixed_6e"));
    let d_7c = max_abs_diff(&taps.mixed_7c, &get("mixed_7c"));
    let d_feats = max_abs_diff(&feats, &taps.pool);
    eprintln!(
        "max |diff| vs reference: pool {d_pool:.3e}, mixed_5b {d_5b:.3e}, mixed_6e {d_6e:.3e}, \
         mixed_7c {d_7c:.3e}; features vs taps.pool {d_feats:.3e}"
    );
    assert_eq!(feats.dims(), &[1, FEATURE_DIM]);
    assert!(d_pool <= 2e-3, "pool max |diff| {d_pool} > 2e-3");
    assert!(d_5b < 3e-2, "mixed_5b max |diff| {d_5b} >= 3e-2");
    assert!(d_6e < 3e-2, "mixed_6e max |diff| {d_6e} >= 3e-2");
    assert!(d_7c < 3e-2, "mixed_7c max |diff| {d_7c} >= 3e-2");
    assert!(d_feats < 1e-6, "features() and forward_with_taps() disagree by {d_feats}");

    // A batch gives the same per-image features as single runs. Three images run as one slice
    // (early blocks in slices of two, late ones on the whole batch); five are cut into one slice
    // per core (2 + 3 on two cores).
    let flipped = input.flip(&[3]).expect("flip");
    let f_flip = model.features(&flipped).expect("flipped features");
    for order in [vec![false, true, false], vec![false, true, false, true, false]] {
        let imgs: Vec<&Tensor> = order.iter().map(|&f| if f { &flipped } else { &input }).collect();
        let fb = model.features(&Tensor::cat(&imgs, 0).expect("cat")).expect("batch features");
        assert_eq!(fb.dims(), &[order.len(), FEATURE_DIM]);
        for (i, &f) in order.iter().enumerate() {
            let d = max_abs_diff(&fb.narrow(0, i, 1).unwrap(), if f { &f_flip } else { &feats });
            assert!(d < 1e-4, "item {i} of a batch of {} differs from its single run by {d}", order.len());
        }
    }
}

#[test]
fn wrong_file_is_an_error_naming_the_file() {
    let path = crate_dir().join("models/faceres_deep.f32.safetensors");
    assert!(path.exists(), "test fixture missing: {}", path.display());
    let err = match InceptionV3::load(&path, &Device::Cpu) {
        Ok(_) => panic!("loading {} as inception-v3 should fail", path.display()),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains(&path.display().to_string()), "error does not name the file: {err}");

    // Past the checksum, the architecture check itself rejects a foreign tensor set.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }.expect("mmap");
    let err = match gc_engine::weights::with_file_context(InceptionV3::from_vb(vb), &path) {
        Ok(_) => panic!("faceres tensors should not build an inception-v3"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains(&path.display().to_string()), "error does not name the file: {err}");
    assert!(err.contains("Conv2d_1a_3x3"), "error does not name the missing tensor: {err}");
}

#[test]
fn missing_file_is_an_error_naming_the_path() {
    let path = crate_dir().join("models/does-not-exist/inception_v3.safetensors");
    let err = match InceptionV3::load(&path, &Device::Cpu) {
        Ok(_) => panic!("loading a missing file should fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains(&path.display().to_string()), "error does not name the path: {err}");
}
