//! `gender-classifier bench`: extraction images/s per backbone and batch size (decode included and
//! excluded), achieved GFLOP/s, face detection ms/image and head training time on cached vectors.
//! Ctrl-C stops it between two forward passes (or two photos): the table keeps the rows measured,
//! and `--json` prints the results measured so far as a whole document.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use candle_core::{Device, Tensor};
use clap::Args;

use gc_core::context::Context;
use gc_core::dataset::collect_images;
use gc_core::pipeline::Pipeline;
use gc_core::preprocess::{PreprocessSpec, whole_image};
use gc_core::train::{LabelledSet, TrainOptions, train_head};
use gc_engine::BackboneKind;

use crate::cli::BackboneArg;

/// `bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Folder of photos to time on (default: ../shared/datasets/web-faces, else assets/samples).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Backbones to time.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "faceres,inception-v3")]
    pub backbones: Vec<BackboneArg>,
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
    /// Print the extraction results as one JSON object (forward pass only) and skip the rest.
    #[arg(long)]
    pub json: bool,
    /// Write `<backbone>.safetensors` with the prepared `input` `[N, 3, H, W]` and Candle's `features`
    /// `[N, D]` for the first `count` images into this folder, then stop (used by benches/onnx_peer.py).
    #[arg(long, value_name = "DIR")]
    pub export: Option<PathBuf>,
    /// Time the whole default `classify` on the photos of DIR beside the network alone, with a
    /// profile of where each photo's time goes (decode, detection, crop, network, head, output).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["export", "images"])]
    pub pipeline: Option<PathBuf>,
}

/// One extraction measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtractionResult {
    /// Backbone id.
    pub backbone: String,
    /// Images per forward pass.
    pub batch: usize,
    /// Forward-pass images/s, one per repeat.
    pub images_per_s: Vec<f64>,
    /// Median of `images_per_s`.
    pub median_images_per_s: f64,
    /// Images/s with decoding and preprocessing included (median), when measured.
    pub median_images_per_s_with_decode: Option<f64>,
    /// Achieved GFLOP/s at the median.
    pub gflops: f64,
}

/// The JSON document of `bench --json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExtractionReport {
    /// Worker threads of the compute pool.
    pub threads: usize,
    /// Images per measurement.
    pub count: usize,
    /// One entry per backbone and batch size.
    pub results: Vec<ExtractionResult>,
}

/// Stops with the typed `Cancelled` (exit code 130) once Ctrl-C has set `cancel`.
pub(crate) fn check(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        return Err(anyhow::Error::from(gc_core::error::Cancelled).context("bench interrupted"));
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn bench_images(a: &BenchArgs) -> Result<(PathBuf, Vec<PathBuf>)> {
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
    Ok((dir, files))
}

/// Whole-image network inputs of `files` (those that decode), for timing the forward pass alone.
pub(crate) fn prepared_inputs(files: &[PathBuf], spec: &PreprocessSpec) -> Vec<Vec<f32>> {
    files
        .iter()
        .filter_map(|f| gc_core::imaging::load_rgb(f).ok())
        .map(|i| gc_core::preprocess::prepare(&i, whole_image(i.width(), i.height()), 0.0, spec))
        .collect()
}

/// Times one backbone at one batch size (forward pass only, and optionally with decoding).
fn time_extraction(
    pipeline: &Pipeline,
    inputs: &[Vec<f32>],
    files: &[PathBuf],
    batch: usize,
    repeats: usize,
    with_decode: bool,
    cancel: &AtomicBool,
) -> Result<ExtractionResult> {
    let spec = pipeline.spec;
    let b = batch.max(1);
    pipeline.features(inputs.get(..b).unwrap_or(inputs))?; // warm-up
    let mut no_decode = Vec::new();
    let mut decode = Vec::new();
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        for chunk in inputs.chunks(b) {
            check(cancel)?;
            pipeline.features(chunk)?;
        }
        no_decode.push(inputs.len() as f64 / t.elapsed().as_secs_f64());
        if with_decode {
            let t = Instant::now();
            for chunk in files.chunks(b) {
                check(cancel)?;
                pipeline.features(&prepared_inputs(chunk, &spec))?;
            }
            decode.push(files.len() as f64 / t.elapsed().as_secs_f64());
        }
    }
    let (m, _, _) = median(no_decode.clone());
    Ok(ExtractionResult {
        backbone: spec.backbone.id().to_string(),
        batch: b,
        images_per_s: no_decode,
        median_images_per_s: m,
        median_images_per_s_with_decode: with_decode.then(|| median(decode).0),
        gflops: m * spec.backbone.macs_per_image() * 2.0 / 1e9,
    })
}

/// Writes the prepared inputs and Candle's features of every backbone for an outside runtime to check.
fn export(a: &BenchArgs, dir: &Path, files: &[PathBuf], ctx: &Context, cancel: &AtomicBool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for &bk in &a.backbones {
        let spec = PreprocessSpec::new(bk.into(), false);
        let pipeline = Pipeline::load(spec, ctx)?;
        let inputs = prepared_inputs(files, &spec);
        let mut feats = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(16) {
            check(cancel)?;
            feats.extend(pipeline.features(chunk)?);
        }
        let s = spec.input_size();
        let n = inputs.len();
        let input = Tensor::from_vec(inputs.concat(), (n, 3, s, s), &Device::Cpu)?;
        let d = feats.first().map_or(0, Vec::len);
        let features = Tensor::from_vec(feats.concat(), (n, d), &Device::Cpu)?;
        let path = dir.join(format!("{}.safetensors", BackboneKind::from(bk).id()));
        candle_core::safetensors::save(&HashMap::from([("input", input), ("features", features)]), &path)?;
        tracing::info!("wrote {n} inputs and features to {}", path.display());
    }
    Ok(())
}

/// Times extraction for every backbone and batch size asked, printing a table row per measurement
/// unless `--json`; the results go into `report` as they are measured.
fn measure_extraction(
    a: &BenchArgs,
    ctx: &Context,
    files: &[PathBuf],
    report: &mut ExtractionReport,
    cancel: &AtomicBool,
) -> Result<()> {
    for &bk in &a.backbones {
        check(cancel)?;
        let spec = PreprocessSpec::new(bk.into(), false);
        let pipeline = Pipeline::load(spec, ctx)?;
        let inputs = prepared_inputs(files, &spec);
        for &b in &a.batches {
            let r = time_extraction(&pipeline, &inputs, files, b, a.repeats, !a.json, cancel)?;
            if !a.json {
                let (m, lo, hi) = median(r.images_per_s.clone());
                let md = r.median_images_per_s_with_decode.unwrap_or(f64::NAN);
                println!(
                    "{:<13} {:>5} {:>7.1} ({:>5.1}-{:>5.1}) {:>16.1} {:>9.1}",
                    r.backbone, b, m, lo, hi, md, r.gflops
                );
            }
            report.results.push(r);
        }
    }
    Ok(())
}

/// Runs the benchmark and prints a table (or JSON, or an export); Ctrl-C (`cancel`) stops it.
pub fn run(a: &BenchArgs, ctx: &Context, cancel: &AtomicBool) -> Result<()> {
    if let Some(dir) = &a.pipeline {
        return crate::bench_pipeline::run(dir, a, ctx, cancel);
    }
    let device = &ctx.device;
    let (dir, files) = bench_images(a)?;
    if let Some(out) = &a.export {
        return export(a, out, &files, ctx, cancel);
    }
    let threads = rayon::current_num_threads();
    let mut report = ExtractionReport { threads, count: files.len(), results: Vec::new() };
    if !a.json {
        println!("images: {} from {} | threads: {threads} | device: {device:?}", files.len(), dir.display());
        println!(
            "{:<13} {:>5} {:>22} {:>16} {:>9}",
            "backbone", "batch", "img/s (no decode)", "img/s (decode)", "GFLOP/s"
        );
    }
    let measured = measure_extraction(a, ctx, &files, &mut report, cancel);
    if a.json {
        // After Ctrl-C too: the document then holds the measurements finished before it.
        if measured.as_ref().err().is_none_or(|e| gc_core::error::is_cancelled(e.as_ref())) {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        return measured;
    }
    measured?;
    // Face detection speed.
    if let Ok(finder) = gc_core::face::FaceFinder::load(ctx) {
        let imgs: Vec<_> = files.iter().take(16).filter_map(|f| gc_core::imaging::load_rgb(f).ok()).collect();
        let big = image::RgbImage::from_pixel(4000, 3000, image::Rgb([120, 120, 120]));
        let t = Instant::now();
        for i in &imgs {
            check(cancel)?;
            finder.regions(i)?;
        }
        let small_ms = t.elapsed().as_secs_f64() * 1e3 / imgs.len().max(1) as f64;
        check(cancel)?;
        let t = Instant::now();
        finder.regions(&big)?;
        println!(
            "face detection: {small_ms:.1} ms/image (dataset crops), {:.1} ms for a 4000x3000 photo (tiled)",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    // Dataset audit on cached-size vectors (duplicates, 5-fold out-of-fold suspects, outliers).
    check(cancel)?;
    {
        let mut rng = gc_core::train::rng::Rng::new(11);
        let d = BackboneKind::Faceres.feature_dim();
        let classes = vec!["female".to_string(), "male".to_string()];
        let items: Vec<gc_core::features::dataset::ItemFeatures> = (0..a.train_vectors)
            .map(|i| gc_core::features::dataset::ItemFeatures {
                path: PathBuf::from(format!("{i}.jpg")),
                label: i % 2,
                sha256: gc_engine::weights::sha256_hex(&(i as u64).to_le_bytes()),
                split: gc_core::dataset::split::Split::Train,
                value: gc_core::features::cache::CachedFeatures {
                    features: (0..d).map(|_| rng.next_f32() + (i % 2) as f32 * 0.1).collect(),
                    n_faces: 1,
                    crop: None,
                    face_score: 0.9,
                    image_size: (160, 214),
                },
            })
            .collect();
        let t = Instant::now();
        let vectors: Vec<&[f32]> = items.iter().map(|i| i.value.features.as_slice()).collect();
        let near_duplicates = gc_core::similarity::similar_pairs(&vectors, gc_core::similarity::NEAR_DUPLICATE_COSINE)?;
        let data = gc_core::features::dataset::DatasetFeatures { items, failures: Vec::new(), near_duplicates };
        let opts = gc_core::audit::AuditOptions::default();
        let r = gc_core::audit::audit_items(&data, &classes, true, &opts, cancel)?;
        println!(
            "dataset audit: {} cached {d}-d vectors, {} findings: {:.2} s",
            a.train_vectors,
            r.findings.len(),
            t.elapsed().as_secs_f64()
        );
    }
    // Head training on cached-size vectors.
    let mut rng = gc_core::train::rng::Rng::new(7);
    for bk in [BackboneKind::Faceres, BackboneKind::InceptionV3] {
        check(cancel)?;
        let d = bk.feature_dim();
        let mut set = LabelledSet::default();
        for i in 0..a.train_vectors {
            set.features.push((0..d).map(|_| rng.next_f32()).collect::<Vec<f32>>().into());
            set.labels.push(i % 2);
        }
        let opts = TrainOptions { epochs: 60, patience: 0, ..Default::default() };
        let t = Instant::now();
        train_head(&set, &LabelledSet::default(), 2, None, &opts, &mut |_| {}, cancel)?;
        println!(
            "head training: {} vectors x {d}-d, {} epochs: {:.2} s",
            a.train_vectors,
            opts.epochs,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
