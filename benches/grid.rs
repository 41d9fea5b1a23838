//! Grid benchmark: filtering, sorting and the frame time of the app with 100,000 photos.
//!
//! First times the filters and sort orders of the photo list on 100,000 predicted entries (what the
//! grid recomputes when the photos, the filters or the order change). Then builds a dataset of small
//! generated images, opens it in the app (headless, through egui_kittest), scrolls the grid down a
//! stretch, jumps to the bottom and scrolls back, and prints the median and 99th percentile of the
//! UI-thread frame time (layout, painting and tessellation; thumbnails are decoded by the background
//! pool meanwhile). Run with `cargo bench --bench grid` (release) or
//! `cargo bench --bench grid --profile dev` (quicker to build); `GRID_PHOTOS=10000` picks another size.

use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use gc_app::photos::Photos;
use gc_app::state::{FaceFilter, Filters, SortOrder, SplitFilter};
use gc_app::tasks::{PredictionRow, Predictions};
use gc_app::{GenderApp, Settings};
use gc_core::dataset::split::Split;
use gc_core::dataset::{Dataset, Item};

/// Photos in the benchmark unless `GRID_PHOTOS` says otherwise.
const PHOTOS: usize = 100_000;

/// Frames of each scroll pass (a stretch from the top, then from the bottom up).
const FRAMES_PER_PASS: usize = 300;

fn make_dataset(root: &Path, photos: usize) {
    for (c, class) in ["female", "male"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..photos / 2 {
            let shade = (i % 200) as u8;
            let img = image::RgbImage::from_fn(48, 48, |x, y| {
                image::Rgb([shade, (x * 5) as u8, if c == 0 { 200 - (y * 3) as u8 } else { (y * 4) as u8 }])
            });
            img.save(dir.join(format!("{class}-{i:06}.png"))).unwrap();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds of the fastest of three runs of `f`.
fn best_ms(mut f: impl FnMut()) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

/// Times every filter and sort order on `n` predicted photos (no files needed).
fn filters_and_sorting(n: usize) {
    let root = std::path::PathBuf::from("/photos");
    let classes = vec!["female".to_string(), "male".to_string()];
    let items: Vec<Item> = (0..n)
        .map(|i| Item { path: root.join(classes[i % 2].as_str()).join(format!("{i:06}.jpg")), label: i % 2 })
        .collect();
    let ds = Dataset { root: root.clone(), classes: classes.clone(), items, ignored: Vec::new() };
    let t = Instant::now();
    let mut photos = Photos::from_dataset(&ds);
    let listed = t.elapsed().as_secs_f64() * 1e3;
    let rows: Vec<PredictionRow> = ds
        .items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let male = ((i * 7919) % 1000) as f32 / 1000.0;
            PredictionRow {
                path: it.path.clone(),
                predicted: usize::from(male > 0.5),
                probs: vec![1.0 - male, male],
                split: Some(if i % 5 == 0 { Split::Test } else { Split::Train }),
                n_faces: Some((i % 3) as u32),
            }
        })
        .collect();
    let preds = Predictions { classes, rows, failures: Vec::new() };
    let set = best_ms(|| photos.set_predictions(&preds));
    println!("{n} photos: listed in {listed:.1} ms, predictions set in {set:.1} ms");
    let all = Filters::default();
    let cases: Vec<(&str, Filters, SortOrder)> = vec![
        ("all, by name", all.clone(), SortOrder::Name),
        ("all, by confidence", all.clone(), SortOrder::ConfidenceAsc),
        ("all, by loss", all.clone(), SortOrder::Loss),
        ("one class", Filters { class: Some("male".into()), ..all.clone() }, SortOrder::Name),
        ("wrong only, by loss", Filters { wrong_only: true, ..all.clone() }, SortOrder::Loss),
        (
            "confidence 0.5-0.7, one face",
            Filters { confidence: (0.5, 0.7), faces: FaceFilter::OneFace, ..all.clone() },
            SortOrder::Name,
        ),
        ("test split", Filters { split: SplitFilter::Test, ..all.clone() }, SortOrder::Name),
        ("name contains \"123\"", Filters { name_contains: "123".into(), ..all.clone() }, SortOrder::Name),
    ];
    for (what, f, order) in cases {
        let mut shown = 0;
        let ms = best_ms(|| shown = photos.filtered(&f, order).len());
        println!("  filter and sort ({what}): {ms:.1} ms, {shown} shown");
    }
    let counts = best_ms(|| _ = std::hint::black_box(photos.counts()));
    let predicted = best_ms(|| _ = std::hint::black_box(photos.predicted_count()));
    println!("  counts per class: {counts:.2} ms; predicted count: {predicted:.2} ms");
}

fn main() {
    let photos: usize = std::env::var("GRID_PHOTOS").ok().and_then(|v| v.parse().ok()).unwrap_or(PHOTOS);
    filters_and_sorting(photos);
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("faces");
    let t = Instant::now();
    make_dataset(&root, photos);
    println!("generated {photos} photos in {:.1} s", t.elapsed().as_secs_f64());

    let mut app = GenderApp::with_cache_root(Settings::default(), Some(root.clone()), &tmp.path().join("cache"));
    app.models.auto_load = false;
    app.settings.show_right_panel = true;
    let mut h =
        Harness::builder().with_size([1600.0, 1000.0]).build_ui_state(|ui, app: &mut GenderApp| app.ui(ui), app);
    let t = Instant::now();
    while h.state().data.photos.is_none() {
        h.step();
        std::thread::sleep(Duration::from_millis(5));
        assert!(t.elapsed() < Duration::from_secs(120), "the dataset did not open: {}", h.state().status_text());
    }
    println!("opened the dataset in {:.2} s", t.elapsed().as_secs_f64());
    h.run_steps(3);

    let ppp = h.ctx.pixels_per_point();
    let frame = |h: &mut Harness<'_, GenderApp>| -> Duration {
        let t = Instant::now();
        h.step();
        let shapes = h.output().shapes.clone();
        let _ = h.ctx.tessellate(shapes, ppp);
        t.elapsed()
    };

    // A stretch down from the top, a jump to the bottom and a stretch up from there: the frames at
    // both ends of 100,000 photos, without scrolling through all of them.
    for (pass, speed) in [("fast scroll (cold thumbnail cache)", 400.0f32), ("slow scroll (warm caches)", 60.0)] {
        let mut times = Vec::new();
        let mut max_offset = 0.0f32;
        h.state_mut().data.grid.scroll_to_offset(1.0e9);
        h.step();
        let bottom = h.state().data.grid.offset();
        for (start, dir) in [(0.0f32, 1.0f32), (bottom, -1.0)] {
            let mut y = start;
            for _ in 0..FRAMES_PER_PASS {
                y = (y + dir * speed).clamp(0.0, bottom);
                h.state_mut().data.grid.scroll_to_offset(y);
                times.push(frame(&mut h));
                max_offset = max_offset.max(h.state().data.grid.offset());
            }
        }
        times.sort();
        let median = percentile(&times, 0.5);
        let p99 = percentile(&times, 0.99);
        let worst = *times.last().unwrap();
        println!(
            "{pass}: {} frames, offsets up to {:.0} of {:.0} px: median {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} thumbnails in memory",
            times.len(),
            max_offset,
            bottom,
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3,
            h.state().data.thumbs.texture_count()
        );
        assert!(h.state().data.grid.view.len() == photos, "every photo is in the grid");
    }
}
