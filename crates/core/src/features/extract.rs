//! Batched, cancellable feature extraction with the cache in front.
//!
//! A producer thread reads, hashes, looks up, decodes and prepares one chunk of files in parallel
//! while the consumer runs the backbone on the previous chunk. Only two chunks are ever in memory,
//! so memory stays flat however large the dataset is.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::Result;
use rayon::prelude::*;

use super::cache::{CachedFeatures, FeatureCache};
use crate::pipeline::Pipeline;
use crate::task::{Job, Task};
use gc_engine::weights::sha256_hex;

pub use crate::error::Cancelled;
use crate::error::FileError;

/// Progress of an extraction run.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Files handled so far (cached, computed or failed).
    pub done: usize,
    /// Files in the run.
    pub total: usize,
    /// Files that needed a backbone forward pass.
    pub computed: usize,
    /// Files found in the cache.
    pub from_cache: usize,
    /// Files that could not be read.
    pub failed: usize,
    /// Time since the start.
    pub elapsed: Duration,
}

impl Progress {
    /// Files per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-6)
    }

    /// Estimated time left at the current rate.
    pub fn eta(&self) -> Duration {
        let rate = self.rate();
        if rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((self.total - self.done) as f64 / rate)
    }
}

/// One extracted file.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
    /// Its features and face info.
    pub value: CachedFeatures,
}

/// Per-file results, aligned with the input list; a failure says why the file was skipped.
pub type ExtractOutcome = Vec<std::result::Result<Extracted, FileError>>;

enum Prepared {
    Ready(std::result::Result<Extracted, FileError>),
    Pending { sha256: String, value: CachedFeatures, input: Vec<f32> },
}

/// Extracts features for `files`, using and filling `cache`.
///
/// Reports progress after each batch and stops with [`Cancelled`] when `cancel` is set.
pub fn extract(
    pipeline: &Pipeline,
    cache: &FeatureCache,
    files: &[PathBuf],
    batch_size: usize,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<ExtractOutcome> {
    let batch_size = batch_size.max(1);
    let cache = &pipeline.scoped_cache(cache);
    let start = Instant::now();
    let mut progress = Progress { total: files.len(), ..Default::default() };
    let mut out: ExtractOutcome = Vec::with_capacity(files.len());
    on_progress(&progress);
    std::thread::scope(|scope| -> Result<()> {
        // The producer reads, decodes and prepares the next chunk while this thread runs the
        // backbone; its queue holds one chunk, so at most two are in memory.
        let mut producer = Task::spawn_scoped(scope, "extract-prepare", 1, |job: &Job<Vec<Prepared>>| {
            for chunk in files.chunks(batch_size) {
                if cancel.load(Ordering::Relaxed) || job.is_cancelled() {
                    break;
                }
                let prepared: Vec<Prepared> = chunk.par_iter().map(|p| prepare_one(pipeline, cache, p)).collect();
                if !job.report(prepared) {
                    break;
                }
            }
        });
        let mut caching = true;
        while let Some(chunk) = producer.next_progress() {
            if cancel.load(Ordering::Relaxed) {
                producer.cancel();
                return Err(Cancelled.into());
            }
            // Move the prepared inputs out (no copy of the pixel data).
            let mut inputs: Vec<Vec<f32>> = Vec::new();
            let chunk: Vec<Prepared> = chunk
                .into_iter()
                .map(|p| match p {
                    Prepared::Pending { sha256, value, input } => {
                        inputs.push(input);
                        Prepared::Pending { sha256, value, input: Vec::new() }
                    }
                    ready => ready,
                })
                .collect();
            let mut feats = pipeline.features(&inputs)?.into_iter();
            for p in chunk {
                let r = match p {
                    Prepared::Ready(r) => {
                        match &r {
                            Ok(_) => progress.from_cache += 1,
                            Err(_) => progress.failed += 1,
                        }
                        r
                    }
                    Prepared::Pending { sha256, mut value, .. } => {
                        value.features = feats.next().expect("one feature vector per input");
                        if caching && let Err(e) = cache.put(&pipeline.spec, &sha256, &value) {
                            // Once, not once per photo: a full disk fails every write alike.
                            tracing::warn!(
                                "{}; going on without the feature cache for this run",
                                crate::error::describe(&e)
                            );
                            caching = false;
                        }
                        progress.computed += 1;
                        Ok(Extracted { sha256, value })
                    }
                };
                out.push(r);
            }
            progress.done = out.len();
            progress.elapsed = start.elapsed();
            on_progress(&progress);
        }
        if let Some(Err(panicked)) = producer.finished() {
            return Err(panicked.into());
        }
        if cancel.load(Ordering::Relaxed) && out.len() < files.len() {
            return Err(Cancelled.into());
        }
        Ok(())
    })?;
    Ok(out)
}

fn prepare_one(pipeline: &Pipeline, cache: &FeatureCache, path: &std::path::Path) -> Prepared {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(source) => return Prepared::Ready(Err(FileError::Unreadable { path: path.to_path_buf(), source })),
    };
    let sha256 = sha256_hex(&bytes);
    if let Some(value) = cache.get(&pipeline.spec, &sha256) {
        return Prepared::Ready(Ok(Extracted { sha256, value }));
    }
    // The same decoding as prediction (large JPEGs at a reduced scale); the crop and size are
    // cached in the full photo's pixels.
    let photo = match crate::imaging::decode_rgb_reduced(&bytes, path, pipeline.min_decoded_side()) {
        Ok(p) => p,
        Err(e) => return Prepared::Ready(Err(e.into())),
    };
    let img = &photo.image;
    drop(bytes);
    let regions = match pipeline.regions(img) {
        Ok(r) => r,
        Err(e) => {
            return Prepared::Ready(Err(FileError::Detection { path: path.to_path_buf(), reason: format!("{e:#}") }));
        }
    };
    let best = &regions[0];
    let n_faces = regions.iter().filter(|r| r.is_face()).count() as u32;
    let value = CachedFeatures {
        features: Vec::new(),
        n_faces,
        crop: best.is_face().then(|| best.clone().scaled(photo.scale).region),
        face_score: best.detection.as_ref().map_or(0.0, |d| d.score),
        image_size: photo.full_size,
    };
    Prepared::Pending { sha256, value, input: pipeline.input(img, best) }
}
