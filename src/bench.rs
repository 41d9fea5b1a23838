//! `gender-classifier bench`: extraction images/s per backbone and batch size (decode included and
//! excluded), achieved GFLOP/s, face detection ms/image and head training time on cached vectors.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::Device;
use clap::Args;

use crate::dataset::collect_images;
use crate::features::FeatureCache;
use crate::model::BackboneKind;
use crate::pipeline::Pipeline;
use crate::preprocess::{PreprocessSpec, whole_image};
use crate::train::{LabelledSet, TrainOptions, train_head};

/// `bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Folder of photos to time on (default: ../shared/datasets/web-faces, else assets/samples).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Backbones to time.
    #[arg(long, value_delimiter = ',', default_value = "faceres,inception-v3")]
    pub backbones: Vec<BackboneKind>,
    /// Batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub batches: Vec<usize>,
    /// Images per measurement.
    #[arg(long, default_value_t = 32)]
    pub count: usize,
    /// Repeats per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Number of cached vectors for the head-training measurement.
    #[arg(long, default_value_t = 2300)]
    pub train_vectors: usize,
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Runs the benchmark and prints a table.
pub fn run(a: &BenchArgs, _cache: &FeatureCache, device: &Device) -> Result<()> {
    let dir = a.images.clone().unwrap_or_else(|| {
        let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/web-faces");
        if shared.exists() { shared } else { PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/samples") }
    });
    let mut files = collect_images(std::slice::from_ref(&dir))?;
    if files.is_empty() {
        bail!("no images in {}", dir.display());
    }
    files.truncate(a.count.max(1));
    while files.len() < a.count {
        files.push(files[files.len() % files.len().max(1)].clone());
    }
    println!(
        "images: {} from {} | threads: {} | device: {:?}",
        files.len(),
        dir.display(),
        rayon::current_num_threads(),
        device
    );
    println!("{:<13} {:>5} {:>16} {:>16} {:>9}", "backbone", "batch", "img/s (no decode)", "img/s (decode)", "GFLOP/s");
    for &bk in &a.backbones {
        let spec = PreprocessSpec::new(bk, false);
        let pipeline = Pipeline::load(spec, device)?;
        let imgs: Vec<_> = files.iter().filter_map(|f| crate::imaging::load_rgb(f).ok()).collect();
        let inputs: Vec<Vec<f32>> =
            imgs.iter().map(|i| crate::preprocess::prepare(i, whole_image(i.width(), i.height()), &spec)).collect();
        for &b in &a.batches {
            let b = b.max(1);
            // warm-up
            pipeline.features(inputs.get(..b).unwrap_or(&inputs))?;
            let mut no_decode = Vec::new();
            let mut with_decode = Vec::new();
            for _ in 0..a.repeats.max(1) {
                let t = Instant::now();
                for chunk in inputs.chunks(b) {
                    pipeline.features(chunk)?;
                }
                no_decode.push(inputs.len() as f64 / t.elapsed().as_secs_f64());
                let t = Instant::now();
                for chunk in files.chunks(b) {
                    let ins: Vec<Vec<f32>> = chunk
                        .iter()
                        .filter_map(|f| crate::imaging::load_rgb(f).ok())
                        .map(|i| crate::preprocess::prepare(&i, whole_image(i.width(), i.height()), &spec))
                        .collect();
                    pipeline.features(&ins)?;
                }
                with_decode.push(files.len() as f64 / t.elapsed().as_secs_f64());
            }
            let (m, lo, hi) = median(no_decode);
            let (md, _, _) = median(with_decode);
            let gflops = m * bk.macs_per_image() * 2.0 / 1e9;
            println!("{:<13} {:>5} {:>7.1} ({:.1}-{:.1}) {:>16.1} {:>9.1}", bk.id(), b, m, lo, hi, md, gflops);
        }
    }
    // Face detection speed.
    if let Ok(finder) = crate::face::FaceFinder::load(device) {
        let imgs: Vec<_> = files.iter().take(16).filter_map(|f| crate::imaging::load_rgb(f).ok()).collect();
        let big = image::RgbImage::from_pixel(4000, 3000, image::Rgb([120, 120, 120]));
        let t = Instant::now();
        for i in &imgs {
            finder.regions(i)?;
        }
        let small_ms = t.elapsed().as_secs_f64() * 1e3 / imgs.len().max(1) as f64;
        let t = Instant::now();
        finder.regions(&big)?;
        println!(
            "face detection: {small_ms:.1} ms/image (dataset crops), {:.1} ms for a 4000x3000 photo (tiled)",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    // Head training on cached-size vectors.
    let mut rng = crate::train::rng::Rng::new(7);
    for bk in [BackboneKind::Faceres, BackboneKind::InceptionV3] {
        let d = bk.feature_dim();
        let mut set = LabelledSet::default();
        for i in 0..a.train_vectors {
            set.features.push((0..d).map(|_| rng.next_f32()).collect());
            set.labels.push(i % 2);
        }
        let opts = TrainOptions { epochs: 60, patience: 0, ..Default::default() };
        let t = Instant::now();
        train_head(&set, &LabelledSet::default(), 2, None, &opts, &mut |_| {}, &AtomicBool::new(false))?;
        println!(
            "head training: {} vectors x {d}-d, {} epochs: {:.2} s",
            a.train_vectors,
            opts.epochs,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
