//! Faces in licensed sample photos (`assets/samples/`, see PROVENANCE.md there), end to end through
//! the default model: a photo of two people made at run time from two samples finds both faces
//! where they were pasted and classifies each as its sample's label (`labels.csv`); a face JPEG
//! stored rotated with an EXIF orientation tag is found at the same upright place and classified
//! the same as the upright photo.

mod common;

use gc_core::classify::{Classifier, ImagePrediction};
use gc_core::context::Context;
use gc_core::face::FaceFinder;
use image::imageops;

fn setup() -> (tempfile::TempDir, Context, Classifier, FaceFinder) {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = Context::cpu_with_cache(tmp.path().join("cache"));
    let classifier = Classifier::load(&ctx.default_model(), &ctx).unwrap();
    assert!(classifier.model.meta.preprocess.face_crop, "the default model uses face crops");
    let finder = FaceFinder::load(&ctx).unwrap();
    (tmp, ctx, classifier, finder)
}

fn detected(p: &ImagePrediction) -> Vec<([f32; 4], usize)> {
    p.faces.iter().filter_map(|f| f.region.detection.as_ref().map(|d| (d.bbox, f.class))).collect()
}

/// Obama's face (obama.jpg: White House photo, public domain, from the `face_recognition==1.3.0`
/// sdist) and Eileen Collins' (astronaut-eileen-collins.png: NASA portrait, public domain, from the
/// `scikit-image==0.25.2` wheel), pasted side by side on a plain canvas by [`common::two_face_photo`].
#[test]
fn a_photo_of_two_sample_faces_finds_both_where_pasted_and_classifies_each() {
    let (tmp, _ctx, classifier, finder) = setup();
    let (canvas, truth) = common::two_face_photo(&finder);
    let path = tmp.path().join("two-faces.png");
    canvas.save(&path).unwrap();
    let pred = classifier.classify_file(&path).unwrap();
    let found = detected(&pred);
    eprintln!("detected {found:?}; pasted {truth:?}");
    assert_eq!(found.len(), 2, "both faces, and only them: {found:?}");
    for (want, label) in &truth {
        let (bbox, class) =
            found.iter().copied().max_by(|a, b| common::iou(a.0, *want).total_cmp(&common::iou(b.0, *want))).unwrap();
        let overlap = common::iou(bbox, *want);
        assert!(overlap >= 0.5, "no face found where the {label} face was pasted ({want:?}): best IoU {overlap:.2}");
        assert_eq!(&classifier.classes()[class], label, "the face pasted at {want:?}");
    }
}

/// Orientation 6 stores the picture turned 90° counter-clockwise (a viewer turns it clockwise);
/// 8 the other way. The loader must turn it upright before detection and classification. The
/// samples: obama.jpg and astronaut-eileen-collins.png (as above), re-encoded as JPEG here.
#[test]
fn an_exif_rotated_face_is_found_upright_in_place_and_classified_the_same() {
    let (tmp, _ctx, classifier, _finder) = setup();
    for (name, orientation) in [("obama.jpg", 6u16), ("astronaut-eileen-collins.png", 8)] {
        let upright = gc_core::imaging::load_rgb(&common::sample(name)).unwrap();
        let stored = match orientation {
            6 => imageops::rotate270(&upright),
            _ => imageops::rotate90(&upright),
        };
        let (plain, rotated) =
            (tmp.path().join(format!("upright-{name}.jpg")), tmp.path().join(format!("o{orientation}-{name}.jpg")));
        std::fs::write(&plain, common::jpeg_bytes(&upright, 95)).unwrap();
        std::fs::write(&rotated, common::with_exif_orientation(&common::jpeg_bytes(&stored, 95), orientation)).unwrap();
        let (want, got) = (classifier.classify_file(&plain).unwrap(), classifier.classify_file(&rotated).unwrap());
        let (w, g) = (detected(&want), detected(&got));
        eprintln!("{name} upright {w:?}; stored rotated with orientation {orientation}: {g:?}");
        assert_eq!(got.image_size, upright.dimensions(), "{name}: not turned upright");
        assert_eq!(w.len(), 1, "{name}: one face upright");
        assert_eq!(g.len(), 1, "{name}: one face when stored rotated");
        let overlap = common::iou(w[0].0, g[0].0);
        assert!(overlap >= 0.9, "{name}: the face moved: IoU {overlap:.2} ({:?} vs {:?})", w[0].0, g[0].0);
        let label = common::sample_label(name);
        assert_eq!(classifier.classes()[w[0].1], label, "{name} upright");
        assert_eq!(classifier.classes()[g[0].1], label, "{name} stored rotated");
        let (pw, pg) = (&want.faces[0].probs, &got.faces[0].probs);
        assert!(pw.iter().zip(pg).all(|(a, b)| (a - b).abs() < 0.05), "{name}: probabilities {pw:?} vs {pg:?}");
    }
}
