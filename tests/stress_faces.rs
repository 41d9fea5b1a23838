//! Issue 4's stress set: web-faces photos pasted at 10-20% of the width into 2000x1500 canvases of
//! plain or noisy background. Measures face-detection recall (IoU ≥ 0.5) and accuracy with the face
//! crop on and off, against the accuracy on the original crops; each has a floor. `STRESS_PER_CLASS` (default 30)
//! sets the size; the closing note of issue 4 quotes a larger run.

mod common;

use gc_core::classify::Classifier;
use gc_core::context::Context;
use gc_core::model_file::Model;
use gc_engine::blazeface::Detection;
use image::{Rgb, RgbImage, imageops};

const CANVAS: (u32, u32) = (2000, 1500);

/// Pastes `face` at 10-20% of the canvas width at a random spot; returns the canvas and the paste box.
fn paste(face: &RgbImage, rng: &mut common::Xs, noisy: bool) -> (RgbImage, [f32; 4]) {
    let (cw, ch) = CANVAS;
    let base = Rgb([rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8]);
    let mut canvas = RgbImage::from_pixel(cw, ch, base);
    if noisy {
        for p in canvas.pixels_mut() {
            let r = rng.next();
            *p = Rgb([r as u8, (r >> 8) as u8, (r >> 16) as u8]);
        }
    }
    let w = cw / 10 + rng.below(cw / 10 + 1);
    let h = (w as u64 * face.height() as u64 / face.width().max(1) as u64).max(1) as u32;
    let scaled = imageops::resize(face, w, h, imageops::FilterType::Triangle);
    let (x, y) = (rng.below(cw - w), rng.below(ch.saturating_sub(h).max(1)));
    imageops::replace(&mut canvas, &scaled, x as i64, y as i64);
    (canvas, [x as f32, y as f32, (x + w) as f32, (y + h) as f32])
}

fn boxed(b: [f32; 4]) -> Detection {
    Detection { score: 1.0, bbox: b, keypoints: [[0.0; 2]; 6] }
}

#[test]
fn stress_set_detection_recall_and_accuracy_with_and_without_face_crop() {
    let per_class: usize = std::env::var("STRESS_PER_CLASS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let ctx = Context::cpu_with_cache(std::env::temp_dir().join("gc-stress-faces-cache"));
    let with_crop = Classifier::load(&ctx.default_model(), &ctx).unwrap();
    assert!(with_crop.model.meta.preprocess.face_crop, "the default model uses face crops");
    let mut meta = with_crop.model.meta.clone();
    meta.preprocess.face_crop = false;
    let no_crop = Classifier::new(Model { meta, head: with_crop.model.head.clone(), tuned: None }, &ctx).unwrap();
    let classes = with_crop.classes().to_vec();

    let mut rng = common::Xs(0x5eed_f00d_1234_5678);
    let (mut n, mut right_orig, mut right_on, mut right_off) = (0usize, 0usize, 0usize, 0usize);
    let (mut found_paste, mut found_face, mut with_face) = (0usize, 0usize, 0usize);
    for class in ["female", "male"] {
        let label = classes.iter().position(|c| c == class).unwrap();
        // Photos 200..: not the ones the audit test plants errors among.
        for path in common::web_faces_sample(class, 200 + per_class).iter().skip(200) {
            let face = gc_core::imaging::load_rgb(path).unwrap();
            let orig = with_crop.classify_image(&face).unwrap();
            let (canvas, paste_box) = paste(&face, &mut rng, n % 2 == 1);
            let on = with_crop.classify_image(&canvas).unwrap();
            let off = no_crop.classify_image(&canvas).unwrap();
            n += 1;
            right_orig += usize::from(orig.faces[0].class == label);
            right_on += usize::from(on.faces[0].class == label);
            right_off += usize::from(off.faces[0].class == label);
            let dets: Vec<&Detection> = on.faces.iter().filter_map(|f| f.region.detection.as_ref()).collect();
            found_paste += usize::from(dets.iter().any(|d| d.iou(&boxed(paste_box)) >= 0.5));
            // The face as BlazeFace sees it in the original crop, mapped into the canvas.
            if let Some(d) = orig.faces[0].region.detection.as_ref() {
                with_face += 1;
                let s = (paste_box[2] - paste_box[0]) / face.width() as f32;
                let m = |v: f32, o: f32| o + v * s;
                let truth = boxed([
                    m(d.bbox[0], paste_box[0]),
                    m(d.bbox[1], paste_box[1]),
                    m(d.bbox[2], paste_box[0]),
                    m(d.bbox[3], paste_box[1]),
                ]);
                found_face += usize::from(dets.iter().any(|d| d.iou(&truth) >= 0.5));
            }
        }
    }
    let pct = |k: usize, n: usize| 100.0 * k as f64 / n.max(1) as f64;
    eprintln!(
        "stress set: {n} photos | accuracy: original crops {:.1}%, face crop on {:.1}%, off {:.1}% | \
         detection recall (IoU >= 0.5): vs paste box {:.1}%, vs the face found in the original {:.1}% ({with_face} photos)",
        pct(right_orig, n),
        pct(right_on, n),
        pct(right_off, n),
        pct(found_paste, n),
        pct(found_face, with_face)
    );
    assert!(pct(found_paste, n) >= 90.0, "detection recall {:.1}% < 90%", pct(found_paste, n));
    // Floors just below what the default set (30 per class) measured on the CPU: originals 98.3%
    // (59 of 60 right), a face found in 55 of 60 originals (91.7%), and in the canvas the face
    // found in the original recovered in 48 of those 55 (87.3%). One more miss in 60 still passes.
    let (orig, recall) = (pct(right_orig, n), pct(found_face, with_face));
    assert!(orig >= 96.0, "accuracy on the original photos {orig:.1}% < 96%");
    assert!(pct(with_face, n) >= 88.0, "a face found in only {with_face} of {n} original photos");
    assert!(recall >= 85.0, "recall of the face found in the original {recall:.1}% < 85%");
    assert!(pct(right_on, n) + 5.0 >= pct(right_orig, n), "face crop on is more than 5 points below the originals");
    assert!(pct(right_on, n) >= pct(right_off, n) + 10.0, "cropping the face must beat the whole canvas clearly");
}
