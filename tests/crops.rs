//! Crops and flips end to end: `classify --crop aligned --tta flip --json` on the sample photos
//! (`assets/samples/`, see PROVENANCE.md there) gives valid answers; flip test-time augmentation
//! is symmetric (a mirrored copy of a photo gets the same probabilities); `--no-face-crop` is
//! `--crop whole`; model files written before crop modes existed load as box crops.
//!
//! `tune_aligned_crop_on_validation` (ignored; `cargo test --locked --test crops -- --ignored
//! --nocapture`, a few minutes) measures the aligned crop's side and centre offset, and the
//! "already a face crop" cover threshold, on the validation splits of `../shared/datasets/web-faces`
//! and `utk-dev`; docs/ACCURACY.md records what it chose.

mod common;

use std::path::{Path, PathBuf};

use common::cli::{ok, run, samples};
use gc_core::context::Context;
use gc_core::face::{CROP_SCALE, FaceFinder, aligned_crop, box_cover};
use gc_core::model_file::Model;
use gc_core::preprocess::{CropMode, PreprocessSpec, Region, prepare, whole_image};
use serde_json::Value;

/// Probabilities of every face of every photo in a `classify --json` document, by file name.
fn probs_by_file(doc: &Value) -> Vec<(String, Vec<Vec<f64>>)> {
    let images = doc["images"].as_array().expect("an images array");
    images
        .iter()
        .map(|im| {
            let name = Path::new(im["path"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            let faces = im["faces"].as_array().unwrap();
            let probs = faces
                .iter()
                .map(|f| f["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect())
                .collect();
            (name, probs)
        })
        .collect()
}

/// A sample photo and its mirror image, both saved losslessly as PNG in `dir`.
fn photo_and_mirror(dir: &Path, sample: &str) -> (PathBuf, PathBuf) {
    let img = image::open(samples().join(sample)).unwrap().to_rgb8();
    let (a, b) = (dir.join("photo.png"), dir.join("mirrored.png"));
    img.save(&a).unwrap();
    image::imageops::flip_horizontal(&img).save(&b).unwrap();
    (a, b)
}

fn classify_json(args: &[&str], paths: &[&Path], cache: &Path) -> Value {
    let mut all: Vec<&str> = vec!["classify"];
    all.extend_from_slice(args);
    all.push("--json");
    all.extend(paths.iter().map(|p| p.to_str().unwrap()));
    serde_json::from_str(&ok(&run(&all, cache))).expect("classify --json prints JSON")
}

#[test]
fn aligned_crops_with_flips_classify_every_sample_validly() {
    let tmp = tempfile::tempdir().unwrap();
    let doc = classify_json(&["--crop", "aligned", "--tta", "flip"], &[&samples()], &tmp.path().join("cache"));
    let photos = probs_by_file(&doc);
    assert_eq!(photos.len(), 6, "the six samples: {photos:?}");
    for (name, faces) in &photos {
        assert!(!faces.is_empty(), "{name}: no answer");
        for p in faces {
            assert_eq!(p.len(), 2, "{name}: two classes");
            assert!(p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)), "{name}: {p:?}");
            assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-4, "{name}: {p:?} sums to 1");
        }
    }
    // The aligned crop turns the square: a detected face carries its angle, a small one for portraits.
    let images = doc["images"].as_array().unwrap();
    let obama = images.iter().find(|i| i["path"].as_str().unwrap().ends_with("obama.jpg")).unwrap();
    let face = &obama["faces"][0];
    assert!(face["region"]["detection"].is_object(), "a face is found on obama.jpg");
    let angle = face["region"]["angle"].as_f64().unwrap();
    assert!(angle != 0.0 && angle.abs() < 0.2, "a near-level portrait is turned a little: {angle}");
}

#[test]
fn flip_averaging_gives_a_photo_and_its_mirror_the_same_probabilities() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (photo, mirrored) = photo_and_mirror(tmp.path(), "grace-hopper.jpg");
    let with = probs_by_file(&classify_json(&["--crop", "whole", "--tta", "flip"], &[&photo, &mirrored], &cache));
    let (a, b) = (&with[0].1[0], &with[1].1[0]);
    for k in 0..2 {
        assert!((a[k] - b[k]).abs() < 1e-4, "with flips: {a:?} vs {b:?}");
    }
    // Without flips the two differ (so the check above can fail): faceres is not mirror-symmetric.
    let without = probs_by_file(&classify_json(&["--crop", "whole", "--tta", "none"], &[&photo, &mirrored], &cache));
    let (c, d) = (&without[0].1[0], &without[1].1[0]);
    assert!((c[0] - d[0]).abs() > 1e-4, "without flips: {c:?} vs {d:?}");
    // The flip average lies between the two one-sided answers.
    let (lo, hi) = (c[0].min(d[0]), c[0].max(d[0]));
    assert!(a[0] > lo - 0.05 && a[0] < hi + 0.05, "{a:?} against {c:?} and {d:?}");
}

#[test]
fn no_face_crop_is_crop_whole_and_the_two_cannot_be_mixed() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let photo = samples().join("biden.jpg");
    let alias = classify_json(&["--no-face-crop"], &[&photo], &cache);
    let whole = classify_json(&["--crop", "whole"], &[&photo], &cache);
    assert_eq!(alias["images"], whole["images"]);
    assert!(alias["images"][0]["faces"][0]["region"]["detection"].is_null(), "whole images look for no face");
    let o = run(&["classify", "--crop", "box", "--no-face-crop", photo.to_str().unwrap()], &cache);
    assert_eq!(o.status.code(), Some(2), "conflicting crop flags are a usage error");
    let o = run(&["classify", "--crop", "sideways", photo.to_str().unwrap()], &cache);
    assert_eq!(o.status.code(), Some(2));
    assert!(common::cli::stderr(&o).contains("aligned"), "the error lists the choices");
}

#[test]
fn model_files_from_before_crop_modes_load_as_box_crops() {
    let ctx = Context::cpu_with_cache(tempfile::tempdir().unwrap().path().join("cache"));
    for path in [ctx.default_model(), common::root().join("tests/fixtures/two-file-model/m.safetensors")] {
        let m = Model::load(&path, &ctx.device).unwrap();
        let p = m.meta.preprocess;
        assert_eq!(p.crop(), CropMode::Box, "{}", path.display());
        assert!(!p.keep_face_crops && !p.tta_flip, "{}", path.display());
    }
}

/// Share of `correct` that is true, as a percentage.
fn pct(correct: &[bool]) -> f64 {
    100.0 * correct.iter().filter(|c| **c).count() as f64 / correct.len().max(1) as f64
}

/// Measures the aligned crop (side and offset grid) and the face-crop cover threshold on the
/// validation splits (hash split of `SplitSpec::default()`, as `eval` assigns it before grouping
/// near-duplicates) of web-faces and utk-dev, with the zero-shot head and the shipped default.
#[test]
#[ignore = "a few minutes of CPU on ../shared/datasets; run by hand to retune the crop constants"]
fn tune_aligned_crop_on_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = Context::cpu_with_cache(tmp.path().join("cache"));
    let spec = PreprocessSpec::new(gc_engine::BackboneKind::Faceres, false);
    let pipeline = gc_core::pipeline::Pipeline::load(spec, &ctx).unwrap();
    let finder = FaceFinder::load(&ctx).unwrap();
    let heads = [
        ("zero-shot", gc_core::train::run::zero_shot_model(&ctx, true).unwrap()),
        ("default", Model::load(&ctx.default_model(), &ctx.device).unwrap()),
    ];
    let grid: Vec<(f32, f32)> =
        [3.0f32, 3.4, 3.8, 4.2].iter().flat_map(|&k| [0.4f32, 0.6, 0.8].map(|d| (k, d))).collect();
    let mut names = vec!["whole".to_owned(), "box".to_owned()];
    names.extend(grid.iter().map(|(k, d)| format!("aligned k={k} drop={d}")));
    let covers = [0.2f32, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 2.0];
    let split = gc_core::dataset::split::SplitSpec::default();
    for ds in ["web-faces", "utk-dev"] {
        let root = common::root().join("../shared/datasets").join(ds);
        assert!(root.join("male").is_dir(), "{} is missing", root.display());
        // correct[head][config][photo], loss (negative log-probability of the label) alike, cover[photo]
        let mut correct = vec![vec![Vec::new(); names.len()]; heads.len()];
        let mut loss: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); names.len()]; heads.len()];
        let mut cover = Vec::new();
        for (label, class) in ["female", "male"].iter().enumerate() {
            for path in common::class_files(&root, class) {
                let bytes = std::fs::read(&path).unwrap();
                let sha = gc_engine::weights::sha256_hex(&bytes);
                if split.assign(&sha) != gc_core::dataset::split::Split::Validation {
                    continue;
                }
                let Ok(img) = gc_core::imaging::decode_rgb(&bytes, &path) else { continue };
                let dets = finder.detections(&img).unwrap();
                let whole = whole_image(img.width(), img.height());
                let best = dets.first();
                cover.push(best.map_or(0.0, |d| box_cover(d, img.width(), img.height())));
                let mut regions: Vec<(Region, f32)> = vec![(whole, 0.0)];
                let boxed = best.map_or((whole, 0.0), |d| (d.face_crop_box(CROP_SCALE), 0.0));
                regions.push(boxed);
                for &(k, d) in &grid {
                    regions.push(best.map_or((whole, 0.0), |b| aligned_crop(b, k, d).unwrap_or(boxed)));
                }
                let inputs: Vec<Vec<f32>> = regions.iter().map(|(r, a)| prepare(&img, *r, *a, &spec)).collect();
                let feats = pipeline.features(&inputs).unwrap();
                for (h, (_, m)) in heads.iter().enumerate() {
                    let probs = m.head.probs_of(&feats).unwrap();
                    for (c, p) in probs.iter().enumerate() {
                        correct[h][c].push(usize::from(p[1] > p[0]) == label);
                        loss[h][c].push(-f64::from(p[label].max(1e-7)).ln());
                    }
                }
            }
        }
        println!("\n{ds}: {} validation photos", cover.len());
        for (h, (head, _)) in heads.iter().enumerate() {
            for (c, name) in names.iter().enumerate() {
                let rule: Vec<String> = covers
                    .iter()
                    .map(|&x| {
                        let pick = |i: usize| if cover[i] >= x { 0 } else { c };
                        let mixed: Vec<bool> = (0..cover.len()).map(|i| correct[h][pick(i)][i]).collect();
                        let nll = (0..cover.len()).map(|i| loss[h][pick(i)][i]).sum::<f64>() / cover.len() as f64;
                        format!("{x}:{:.1}/{nll:.4}", pct(&mixed))
                    })
                    .collect();
                let nll = loss[h][c].iter().sum::<f64>() / cover.len() as f64;
                println!(
                    "{ds}\t{head}\t{name}\t{:.2}\t{nll:.4}\tkeep-whole-at-cover {}",
                    pct(&correct[h][c]),
                    rule.join(" ")
                );
            }
        }
        let mut sorted = cover.clone();
        sorted.sort_by(f32::total_cmp);
        let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f) as usize];
        println!("{ds} cover quartiles: {:.2} {:.2} {:.2} {:.2} {:.2}", q(0.0), q(0.25), q(0.5), q(0.75), q(1.0));
    }
}
