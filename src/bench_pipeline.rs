//! `bench --pipeline DIR`: the whole default `classify` beside the network alone, in one run.
//!
//! First a profile: each photo one at a time through every stage (read, decode with EXIF turn,
//! face detection, crop, network, head, output), mean milliseconds per photo. Then `--repeats`
//! rounds, each timing in turn: the faceres forward pass alone on prepared inputs (batch 16, what
//! `bench --backbones faceres --batches 16` measures), the whole default `classify` (the streaming
//! pipeline of `classify`, output serialised and dropped), and `classify --no-face-crop`. The
//! ratio of the whole pipeline to the network is taken within each round.
//!
//! The profile of `--no-face-crop` gives a bound: a photo must at least be read and decoded, so
//! with `r` ms of one core for that and `n` core-ms per photo for the network at batch 16, no
//! pipeline reaches more than `n / (n + r)` of the network on the same cores.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Result, bail};

use gc_core::classify::Classifier;
use gc_core::classify_stream::{StreamOptions, classify_stream};
use gc_core::context::Context;
use gc_core::dataset::collect_images;
use gc_core::model_file::Model;
use gc_core::preprocess::CropMode;

use crate::bench::{BenchArgs, check, prepared_inputs};

/// Mean milliseconds per photo in each stage, one photo at a time.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageProfile {
    /// Reading the file.
    pub read_ms: f64,
    /// Decoding (large JPEGs at a reduced scale, as `classify` does), EXIF turn, conversion to RGB.
    pub decode_ms: f64,
    /// Face detection (BlazeFace pass 1, and tiles where they run).
    pub detect_ms: f64,
    /// BlazeFace runs per photo (1 = pass 1 only).
    pub detector_passes_per_photo: f64,
    /// Cutting and resampling the network inputs.
    pub crop_ms: f64,
    /// The network on this photo's inputs alone (batch = its faces).
    pub network_ms: f64,
    /// Inputs (faces, or the whole photo) per photo.
    pub inputs_per_photo: f64,
    /// The head and the probabilities.
    pub head_ms: f64,
    /// Serialising the result as JSON.
    pub output_ms: f64,
    /// Median photo size (full resolution), width x height.
    pub median_size: (u32, u32),
}

/// One round of the throughput measurement, photos/s.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Round {
    /// faceres forward pass alone, batch 16, on prepared inputs.
    pub network: f64,
    /// The whole default `classify`.
    pub classify: f64,
    /// `classify --no-face-crop`.
    pub classify_no_face_crop: f64,
    /// `classify / network`.
    pub ratio: f64,
}

/// The JSON document of `bench --pipeline DIR --json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineReport {
    /// The folder.
    pub dir: PathBuf,
    /// Photos in it.
    pub photos: usize,
    /// Worker threads of the compute pool.
    pub threads: usize,
    /// Where the time goes.
    pub profile: StageProfile,
    /// Where the time goes with `--no-face-crop` (the decode at the scale the whole photo needs).
    pub profile_no_face_crop: StageProfile,
    /// The most any pipeline that reads and decodes these photos can reach of the network
    /// (`n / (n + r)`, module docs), from the first round's network rate.
    pub decode_bound: f64,
    /// One entry per round.
    pub rounds: Vec<Round>,
    /// Median of the rounds' ratios.
    pub median_ratio: f64,
    /// Peak resident memory of this process (VmHWM), MB.
    pub peak_rss_mb: Option<f64>,
}

/// Runs `bench --pipeline DIR`.
pub fn run(dir: &Path, a: &BenchArgs, ctx: &Context, cancel: &AtomicBool) -> Result<()> {
    let files = collect_images(&[dir.to_path_buf()])?;
    if files.is_empty() {
        bail!("no photos in {}: give a folder of photos to time", dir.display());
    }
    // Warm the page cache, so the rounds time the pipeline rather than the disk.
    for f in &files {
        let _ = std::fs::read(f);
    }
    let model = Model::load(&ctx.default_model(), &ctx.device)?;
    let mut whole_model = model.clone();
    whole_model.meta.preprocess.set_crop(CropMode::Whole);
    let classifier = Classifier::new(model, ctx)?;
    let whole = Classifier::new(whole_model, ctx)?;
    let profile = profile(&classifier, &files, cancel)?;
    let profile_whole = self::profile(&whole, &files, cancel)?;
    let inputs = prepared_inputs(&files, &whole.pipeline.spec);
    if !a.json {
        let (w, h) = profile.median_size;
        println!("pipeline: {} photos from {} (median {w}x{h})", files.len(), dir.display());
        print_profile(&profile, "default");
        print_profile(&profile_whole, "--no-face-crop");
    }
    let mut rounds = Vec::new();
    for r in 0..a.repeats.max(1) {
        let network = network_rate(&whole, &inputs, cancel)?;
        let classify = classify_rate(&classifier, &files, cancel)?;
        let no_crop = classify_rate(&whole, &files, cancel)?;
        let round = Round { network, classify, classify_no_face_crop: no_crop, ratio: classify / network };
        if !a.json {
            println!(
                "round {}: network alone {:.1} photos/s | classify {:.1} ({:.2}x) | classify --no-face-crop {:.1} ({:.2}x)",
                r + 1,
                network,
                classify,
                round.ratio,
                no_crop,
                no_crop / network
            );
        }
        rounds.push(round);
    }
    let mut ratios: Vec<f64> = rounds.iter().map(|r| r.ratio).collect();
    ratios.sort_by(f64::total_cmp);
    let threads = rayon::current_num_threads();
    let decode_bound = decode_bound(&profile_whole, rounds[0].network, threads);
    let report = PipelineReport {
        dir: dir.to_path_buf(),
        photos: files.len(),
        threads,
        profile,
        profile_no_face_crop: profile_whole,
        decode_bound,
        median_ratio: ratios[ratios.len() / 2],
        rounds,
        peak_rss_mb: peak_rss_mb(),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "median ratio classify / network: {:.2} | reading and decoding alone cap any pipeline at {:.2} | peak memory {}",
            report.median_ratio,
            report.decode_bound,
            report.peak_rss_mb.map_or("unknown".into(), |m| format!("{m:.0} MB"))
        );
    }
    Ok(())
}

/// Every photo one at a time through every stage.
fn profile(c: &Classifier, files: &[PathBuf], cancel: &AtomicBool) -> Result<StageProfile> {
    let p = &c.pipeline;
    let mut s = StageProfile::default();
    let mut sizes = Vec::new();
    let passes_before = p.detector_passes();
    let mut inputs_total = 0usize;
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    for f in files {
        check(cancel)?;
        let t = Instant::now();
        let Ok(bytes) = std::fs::read(f) else { continue };
        s.read_ms += ms(t);
        let t = Instant::now();
        let Ok(photo) = p.decode_photo(&bytes, f) else { continue };
        s.decode_ms += ms(t);
        sizes.push(photo.full_size);
        let img = photo.image;
        let t = Instant::now();
        let regions = p.regions(&img)?;
        s.detect_ms += ms(t);
        let t = Instant::now();
        let inputs: Vec<Vec<f32>> = regions.iter().map(|r| p.input(&img, r)).collect();
        s.crop_ms += ms(t);
        inputs_total += inputs.len();
        let t = Instant::now();
        let feats = p.features(&inputs)?;
        s.network_ms += ms(t);
        let t = Instant::now();
        let probs = c.probs_of_features(&feats)?;
        s.head_ms += ms(t);
        let t = Instant::now();
        let _ = serde_json::to_string(&(f, &regions, &probs))?;
        s.output_ms += ms(t);
    }
    let n = sizes.len().max(1) as f64;
    for v in [
        &mut s.read_ms,
        &mut s.decode_ms,
        &mut s.detect_ms,
        &mut s.crop_ms,
        &mut s.network_ms,
        &mut s.head_ms,
        &mut s.output_ms,
    ] {
        *v /= n;
    }
    s.detector_passes_per_photo = (p.detector_passes() - passes_before) as f64 / n;
    s.inputs_per_photo = inputs_total as f64 / n;
    sizes.sort_by_key(|&(w, h)| u64::from(w) * u64::from(h));
    s.median_size = sizes.get(sizes.len() / 2).copied().unwrap_or_default();
    Ok(s)
}

/// `n / (n + r)`: `n` core-ms per photo for the network (`threads` cores at `network_rate`
/// photos/s), `r` ms of one core to read and decode a photo.
fn decode_bound(whole: &StageProfile, network_rate: f64, threads: usize) -> f64 {
    let n = threads as f64 * 1e3 / network_rate;
    n / (n + whole.read_ms + whole.decode_ms)
}

fn print_profile(s: &StageProfile, which: &str) {
    println!(
        "{which}, one photo at a time, mean ms: read {:.2} | decode {:.2} | detect {:.2} ({:.2} BlazeFace runs) | crop {:.2} | \
         network {:.2} ({:.2} inputs) | head {:.2} | output {:.2}",
        s.read_ms,
        s.decode_ms,
        s.detect_ms,
        s.detector_passes_per_photo,
        s.crop_ms,
        s.network_ms,
        s.inputs_per_photo,
        s.head_ms,
        s.output_ms
    );
}

/// The network alone on prepared inputs, batch 16, photos/s (after one warm-up batch).
fn network_rate(c: &Classifier, inputs: &[Vec<f32>], cancel: &AtomicBool) -> Result<f64> {
    c.pipeline.features(&inputs[..inputs.len().min(16)])?;
    let t = Instant::now();
    for chunk in inputs.chunks(16) {
        check(cancel)?;
        c.pipeline.features(chunk)?;
    }
    Ok(inputs.len() as f64 / t.elapsed().as_secs_f64())
}

/// The streaming `classify` over `files`, each result serialised as `classify --jsonl` would,
/// photos/s.
fn classify_rate(c: &Classifier, files: &[PathBuf], cancel: &AtomicBool) -> Result<f64> {
    let t = Instant::now();
    let mut bytes = 0usize;
    let end = classify_stream(c, files.iter().cloned().map(Ok), &StreamOptions::default(), cancel, |_, outcome| {
        if let Ok(p) = outcome {
            bytes += serde_json::to_string(&p).map_or(0, |s| s.len());
        }
        std::ops::ControlFlow::Continue(())
    })?;
    check(cancel)?;
    debug_assert!(bytes > 0 || end.handed_back == 0);
    Ok(end.handed_back as f64 / t.elapsed().as_secs_f64())
}

/// This process's peak resident memory in MB (Linux: VmHWM of /proc/self/status).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
