//! Grid benchmark: frame time of the app while scrolling through 10,000 photos.
//!
//! Builds a dataset of 10,000 small generated images, opens it in the app (headless, through
//! egui_kittest), scrolls the grid from top to bottom and back, and prints the median and 99th
//! percentile of the UI-thread frame time (layout, painting and tessellation; thumbnails are
//! decoded by the background pool meanwhile). Run with
//! `cargo bench --bench grid` (release) or `cargo bench --bench grid --profile dev` (quicker to build).

use std::path::Path;
use std::time::{Duration, Instant};

use egui_kittest::Harness;
use gc_app::{GenderApp, Settings};

const PHOTOS: usize = 10_000;

fn make_dataset(root: &Path) {
    for (c, class) in ["female", "male"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..PHOTOS / 2 {
            let shade = (i % 200) as u8;
            let img = image::RgbImage::from_fn(48, 48, |x, y| {
                image::Rgb([shade, (x * 5) as u8, if c == 0 { 200 - (y * 3) as u8 } else { (y * 4) as u8 }])
            });
            img.save(dir.join(format!("{class}-{i:05}.png"))).unwrap();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("faces");
    let t = Instant::now();
    make_dataset(&root);
    println!("generated {PHOTOS} photos in {:.1} s", t.elapsed().as_secs_f64());

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

    for (pass, speed) in [("fast scroll (cold thumbnail cache)", 400.0f32), ("slow scroll (warm caches)", 60.0)] {
        let mut times = Vec::new();
        let mut y = 0.0f32;
        let mut max_offset = 0.0f32;
        // Down to the end and back up.
        for dir in [1.0f32, -1.0] {
            loop {
                y += dir * speed;
                if y < 0.0 {
                    break;
                }
                h.state_mut().data.grid.scroll_to_offset(y);
                times.push(frame(&mut h));
                let off = h.state().data.grid.offset();
                max_offset = max_offset.max(off);
                if dir > 0.0 && off + 1.0 < y {
                    y = off; // reached the bottom
                    break;
                }
                if times.len() > 20_000 {
                    break;
                }
            }
        }
        times.sort();
        let median = percentile(&times, 0.5);
        let p99 = percentile(&times, 0.99);
        let worst = *times.last().unwrap();
        println!(
            "{pass}: {} frames over {:.0} px: median {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} thumbnails in memory",
            times.len(),
            max_offset,
            median.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            worst.as_secs_f64() * 1e3,
            h.state().data.thumbs.texture_count()
        );
        assert!(h.state().data.grid.view.len() == PHOTOS, "every photo is in the grid");
    }
}
