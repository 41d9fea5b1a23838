//! The streaming classifier behind `classify` and `bench --pipeline`: results in input order and
//! equal to classifying each photo alone, bad photos handed back in their place, a bounded window
//! of photos in flight, and a stop on Cancel or on the caller's say.

mod common;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gc_core::classify::Classifier;
use gc_core::classify_stream::{Outcome, StreamItem, StreamOptions, classify_stream};
use gc_core::context::Context;

fn classifier(tmp: &tempfile::TempDir) -> Classifier {
    let ctx = Context::cpu_with_cache(tmp.path().join("cache"));
    Classifier::load(&ctx.default_model(), &ctx).unwrap()
}

/// The bundled samples, twice over (12 photos of every size and face count the samples have).
fn samples() -> Vec<PathBuf> {
    let names = [
        "obama.jpg",
        "group-obama-biden-kagan.jpg",
        "grace-hopper.jpg",
        "cameraman.png",
        "biden.jpg",
        "astronaut-eileen-collins.png",
    ];
    names.iter().chain(names.iter()).map(|n| common::sample(n)).collect()
}

fn run(c: &Classifier, items: Vec<StreamItem>, opts: StreamOptions) -> Vec<(PathBuf, Outcome)> {
    let mut out = Vec::new();
    let end = classify_stream(c, items.into_iter(), &opts, &AtomicBool::new(false), |p, o| {
        out.push((p, o));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(!end.cancelled);
    assert_eq!(end.handed_back, out.len());
    out
}

#[test]
fn results_come_in_input_order_and_equal_one_photo_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let c = classifier(&tmp);
    let files = samples();
    // Small batches and a small window: photos overtake each other in the workers.
    let opts = StreamOptions { workers: 3, batch: 3, window: 4, ..StreamOptions::default() };
    let got = run(&c, files.iter().cloned().map(Ok).collect(), opts);
    assert_eq!(got.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), files);
    for (path, outcome) in &got {
        let streamed = outcome.as_ref().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let alone = c.classify_file(path).unwrap();
        assert_eq!(&streamed.path, path);
        assert_eq!(streamed.image_size, alone.image_size, "{}", path.display());
        assert_eq!(streamed.faces.len(), alone.faces.len(), "{}", path.display());
        for (a, b) in streamed.faces.iter().zip(&alone.faces) {
            assert_eq!(a.region, b.region, "{}", path.display());
            assert_eq!(a.class, b.class, "{}", path.display());
            let diff = a.probs.iter().zip(&b.probs).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(diff < 1e-4, "{}: batched and alone differ by {diff}", path.display());
        }
    }
}

#[test]
fn bad_photos_are_handed_back_in_their_place_and_the_rest_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let c = classifier(&tmp);
    let corrupt = tmp.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let missing = tmp.path().join("missing.jpg");
    let items: Vec<StreamItem> = vec![
        Ok(common::sample("obama.jpg")),
        Ok(corrupt.clone()),
        Err((tmp.path().join("fifo"), "not a regular file".into())),
        Ok(missing.clone()),
        Ok(common::sample("grace-hopper.jpg")),
    ];
    let got = run(&c, items, StreamOptions { workers: 2, batch: 16, window: 2, ..StreamOptions::default() });
    assert_eq!(got.len(), 5);
    assert!(got[0].1.is_ok() && got[4].1.is_ok());
    let why = |i: usize| got[i].1.as_ref().err().cloned().unwrap_or_default();
    assert_eq!(got[1].0, corrupt);
    assert!(!why(1).is_empty() && why(1).contains("corrupt.jpg"), "{}", why(1));
    assert_eq!(why(2), "not a regular file");
    assert_eq!(got[3].0, missing);
    assert!(why(3).contains("missing.jpg"), "{}", why(3));
}

#[test]
fn no_more_than_the_window_is_taken_ahead_of_what_was_handed_back() {
    let tmp = tempfile::tempdir().unwrap();
    let c = classifier(&tmp);
    let taken = AtomicUsize::new(0);
    let files = samples();
    let items = files.iter().cloned().map(|p| {
        taken.fetch_add(1, Ordering::SeqCst);
        Ok(p)
    });
    let window = 2;
    let opts = StreamOptions { workers: 2, batch: 16, window, ..StreamOptions::default() };
    let mut handed = 0usize;
    let mut worst = 0usize;
    classify_stream(&c, items, &opts, &AtomicBool::new(false), |_, _| {
        worst = worst.max(taken.load(Ordering::SeqCst) - handed);
        handed += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(handed, files.len());
    assert!(worst <= window, "{worst} photos were taken ahead of the results, with a window of {window}");
}

#[test]
fn cancel_and_break_stop_the_stream_early() {
    let tmp = tempfile::tempdir().unwrap();
    let c = classifier(&tmp);
    let files = samples();
    let opts = StreamOptions { workers: 2, batch: 2, window: 2, ..StreamOptions::default() };
    // The caller says stop after two photos: exactly two are handed back.
    let mut seen = 0;
    let end = classify_stream(&c, files.iter().cloned().map(Ok), &opts, &AtomicBool::new(false), |_, _| {
        seen += 1;
        if seen == 2 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
    })
    .unwrap();
    assert_eq!((seen, end.handed_back, end.cancelled), (2, 2, true));
    // Cancel set while the first photo is handed back: no other photo is handed back after it.
    let cancel = AtomicBool::new(false);
    let mut seen = 0;
    let end = classify_stream(&c, files.iter().cloned().map(Ok), &opts, &cancel, |_, _| {
        seen += 1;
        cancel.store(true, Ordering::SeqCst);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(end.cancelled && seen == end.handed_back && seen == 1, "{seen} of {}", files.len());
}

#[test]
fn cancel_while_handing_back_after_the_workers_finished_ends_cancelled() {
    let tmp = tempfile::tempdir().unwrap();
    let c = classifier(&tmp);
    // The first photo takes the network; the 30 unreadable ones after it are done at once, so the
    // workers run out of list (and the channel closes) while the first is still in its batch:
    // all 31 are finished when Cancel comes during the first hand-back.
    let mut items: Vec<StreamItem> = vec![Ok(common::sample("obama.jpg"))];
    items.extend((0..30).map(|i| Err((PathBuf::from(format!("gone-{i}.jpg")), "unreadable".to_string()))));
    let opts = StreamOptions { workers: 2, batch: 16, window: 64, ..StreamOptions::default() };
    let cancel = AtomicBool::new(false);
    let mut seen = 0;
    let end = classify_stream(&c, items.into_iter(), &opts, &cancel, |_, _| {
        seen += 1;
        cancel.store(true, Ordering::SeqCst);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!((seen, end.handed_back, end.cancelled), (1, 1, true));
}

#[test]
fn a_large_jpeg_decoded_at_half_scale_gives_boxes_and_answers_of_the_full_photo() {
    let tmp = tempfile::tempdir().unwrap();
    let c = classifier(&tmp);
    // obama.jpg enlarged 4x: 3640x4548, decoded at 1/2 (2274 px >= MIN_DECODED_SIDE).
    let small = gc_core::imaging::load_rgb(&common::sample("obama.jpg")).unwrap();
    let (w, h) = (small.width() * 4, small.height() * 4);
    let big = image::imageops::resize(&small, w, h, image::imageops::FilterType::Triangle);
    let path = tmp.path().join("big.jpg");
    std::fs::write(&path, common::jpeg_bytes(&big, 90)).unwrap();
    let photo = c.pipeline.load_photo(&path).unwrap();
    assert_eq!((photo.scale, photo.full_size), (2.0, (w, h)), "decoded at half scale");
    let full = c.classify_image(&gc_core::imaging::load_rgb(&path).unwrap()).unwrap();
    let streamed = run(&c, vec![Ok(path.clone())], StreamOptions::default());
    let alone = c.classify_file(&path).unwrap();
    for reduced in [streamed[0].1.as_ref().unwrap(), &alone] {
        assert_eq!(reduced.image_size, (w, h));
        assert_eq!(reduced.faces.len(), full.faces.len());
        let (a, b) = (&reduced.faces[0], &full.faces[0]);
        let (da, db) = (a.region.detection.as_ref().unwrap(), b.region.detection.as_ref().unwrap());
        assert!(common::iou(da.bbox, db.bbox) > 0.9, "{:?} vs {:?}", da.bbox, db.bbox);
        assert_eq!(a.class, b.class);
        assert!((a.probs[0] - b.probs[0]).abs() < 0.05, "{:?} vs {:?}", a.probs, b.probs);
    }
}
