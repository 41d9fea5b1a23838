//! The face detector over a whole photo: pass 1 on the image stretched to 256x256, and on large
//! photos pass 2, a pyramid of overlapping square tiles, merged with non-maximum suppression.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::{Device, Tensor};
use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::decode::{Detection, decode, non_max_suppression};
use super::resize::{crop_planar, resize_f32, resize_rgb8, resize_rgb8_window};
use super::{
    BlazeFace, DETECT_BATCH, FLAT_STD, INPUT_SIZE, MAX_TILES, MIN_TILE_SIDE, NUM_ANCHORS, RAW_COLS, TILE_EDGE_MARGIN,
    TILE_STRIDE, TILE_TRIGGER_SIDE, USE_NHWC,
};
use crate::Result;

/// Options for [`FaceDetector::detect`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectOptions {
    /// Minimum face probability (default 0.5).
    pub min_score: f32,
    /// NMS IoU threshold for merging duplicates (default 0.3).
    pub iou_threshold: f32,
    /// Most faces returned, best first (default 20).
    pub max_faces: usize,
    /// Run pass 2 (tiles) on large images to find small faces (default true).
    pub tiled: bool,
    /// When pass 1 found a face spanning at least this share of the image's longer side, pass 2
    /// runs only its coarse levels (default [`LARGE_FACE_SHARE`]; 0 runs every level, as before).
    pub large_face_share: f32,
}

/// Most large faces of pass 1 looked at again through a window of their own.
const MAX_REFINED: usize = 4;

/// Side of that window as a multiple of the face box's longer side.
const REFINE_WINDOW: f32 = 2.5;

/// Default [`DetectOptions::large_face_share`]: a face found by pass 1 that spans an eighth of the
/// longer side or more (32 px or more of the 256 input) makes the photo a portrait, a close shot or
/// a group seen from near; pass 2 then looks only for faces of about that size (its coarse
/// levels), not for faces far smaller than it (the fine levels hold most of the tiles).
pub const LARGE_FACE_SHARE: f32 = 1.0 / 8.0;

/// With a large face from pass 1, pass 2 keeps the levels whose tile side is at least this many
/// times that face's size: a level of side t holds faces up to t/4 whole, so these hold the faces
/// from half its size up.
const COARSE_LEVEL_FACE_SIDES: f32 = 2.0;

impl Default for DetectOptions {
    fn default() -> Self {
        Self { min_score: 0.5, iou_threshold: 0.3, max_faces: 20, tiled: true, large_face_share: LARGE_FACE_SHARE }
    }
}

/// A 256x256 network input cut from a (scaled) image, with how to map its detections back.
struct Tile {
    /// Offset of the tile's top-left corner in the scaled image (may be negative: padded).
    ox: i64,
    oy: i64,
    /// Scaled-image pixels to original-image pixels.
    sx: f32,
    sy: f32,
    /// Which tile edges (left, top, right, bottom) are shared with a neighbouring tile.
    inner: [bool; 4],
}

/// High-level face detector over images of any size.
pub struct FaceDetector {
    net: BlazeFace,
    device: Device,
    /// Network runs (256x256 inputs) so far, for profiles: pass 1 plus any tiles.
    passes: AtomicU64,
}

impl FaceDetector {
    /// Wraps a loaded network; `device` is where inputs are placed (the network's device).
    pub fn new(net: BlazeFace, device: Device) -> Self {
        Self { net, device, passes: AtomicU64::new(0) }
    }

    /// How many 256x256 inputs the network has run on since this detector was made (pass 1 and
    /// tiles alike; nearly uniform inputs are skipped and not counted).
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// Loads and checks the weights file.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Ok(Self::new(BlazeFace::load(path, device)?, device.clone()))
    }

    /// The underlying network.
    pub fn net(&self) -> &BlazeFace {
        &self.net
    }

    /// The device inputs go to.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Detects faces, best first; boxes and keypoints in original image pixels.
    ///
    /// Pass 1 stretches the whole image to 256x256 (human's default). With `opts.tiled` and a longer
    /// side above [`TILE_TRIGGER_SIDE`], pass 2 adds a pyramid of square tiles ([`TILE_OVERLAP`](super::TILE_OVERLAP)
    /// overlap, finest side [`MIN_TILE_SIDE`] image pixels or coarser to stay within [`MAX_TILES`],
    /// sides doubling per level; see `plan_levels`), each tile resized to 256x256 (no squash; tiles
    /// reaching past the image are padded black). Detections cut by an edge shared with a neighbouring
    /// tile are dropped, and everything is merged with NMS (`iou_threshold`, `max_faces`). Inputs that
    /// are nearly uniform (black images, sky, padding) are skipped without running the network.
    ///
    /// When pass 1 found a face spanning `opts.large_face_share` of the longer side, pass 2 keeps
    /// only the levels whose tiles hold faces from half its size up (a portrait or a 12 MP photo
    /// of one person: none of its 4 to 32 tiles), and when no kept level holds that face whole,
    /// each large face is looked at again through an unsquashed square window 2.5 times its size.
    pub fn detect(&self, img: &RgbImage, opts: &DetectOptions) -> Result<Vec<Detection>> {
        self.detect_with_tile_budget(img, opts, MAX_TILES)
    }

    /// [`detect`](Self::detect) with another cap on the number of pass-2 tiles (0 = pass 1 only).
    /// Cost is about one network run per tile; fewer tiles mean coarser tiles (larger minimum face).
    pub fn detect_with_tile_budget(
        &self,
        img: &RgbImage,
        opts: &DetectOptions,
        max_tiles: usize,
    ) -> Result<Vec<Detection>> {
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 || opts.max_faces == 0 {
            return Ok(Vec::new());
        }
        let s = INPUT_SIZE as u32;
        // Pass 1: the whole image stretched.
        let pass1 = vec![(
            resize_rgb8(img, s, s),
            Tile { ox: 0, oy: 0, sx: w as f32 / s as f32, sy: h as f32 / s as f32, inner: [false; 4] },
        )];
        let mut dets = self.run_tiles(pass1, opts)?;
        let long = w.max(h);
        if opts.tiled && long > TILE_TRIGGER_SIDE {
            let mut levels = plan_levels(w, h, max_tiles);
            let is_large =
                |d: &Detection| opts.large_face_share > 0.0 && face_size(d) >= opts.large_face_share * long as f32;
            let largest = dets.iter().filter(|d| is_large(d)).map(face_size).fold(0.0, f32::max);
            if largest > 0.0 {
                // Only the levels whose tiles hold faces from half that size up (a level of side t
                // holds faces up to t/4 whole: see `plan_levels`).
                levels.retain(|&side| side >= COARSE_LEVEL_FACE_SIDES * largest);
            }
            tracing::debug!(w, h, pass1 = dets.len(), largest, ?levels, "BlazeFace pass 2");
            if !levels.is_empty() {
                dets.extend(self.run_tiles(pyramid(img, &levels), opts)?);
            }
            if largest > 0.0 && !levels.iter().any(|&side| side >= 4.0 * largest) {
                // No tile holds the large faces whole, and pass 1 saw them squashed: look again at
                // each through an unsquashed window around it, and keep those boxes.
                let large: Vec<Detection> = dets.iter().filter(|d| is_large(d)).take(MAX_REFINED).cloned().collect();
                let refined = self.run_tiles(large.iter().map(|d| window_around(img, d)).collect(), opts)?;
                dets.retain(|d| refined.iter().all(|r| r.iou(d) <= opts.iou_threshold));
                dets.extend(refined);
            }
        }
        Ok(non_max_suppression(dets, opts.iou_threshold, opts.max_faces))
    }

    /// Runs the network on `inputs` (nearly uniform ones skipped: black images, sky, padding hold
    /// no face) and returns their detections in image pixels, those cut by a shared tile edge dropped.
    fn run_tiles(&self, mut inputs: Vec<(Vec<f32>, Tile)>, opts: &DetectOptions) -> Result<Vec<Detection>> {
        inputs.retain(|(x, _)| !is_flat(x));
        let raws = self.run_inputs(&inputs)?;
        self.passes.fetch_add(inputs.len() as u64, Ordering::Relaxed);
        let lim = INPUT_SIZE as f32 - TILE_EDGE_MARGIN;
        let mut dets = Vec::new();
        for ((_, t), raw) in inputs.iter().zip(&raws) {
            let found = non_max_suppression(decode(raw, opts.min_score), opts.iou_threshold, opts.max_faces);
            dets.extend(
                found
                    .into_iter()
                    .filter(|d| {
                        let b = d.bbox;
                        !((t.inner[0] && b[0] < TILE_EDGE_MARGIN)
                            || (t.inner[1] && b[1] < TILE_EDGE_MARGIN)
                            || (t.inner[2] && b[2] > lim)
                            || (t.inner[3] && b[3] > lim))
                    })
                    .map(|d| d.mapped(t.ox as f32, t.oy as f32, t.sx, t.sy)),
            );
        }
        Ok(dets)
    }

    /// Raw `[896*17]` outputs for planar 256x256 inputs, in batches of [`DETECT_BATCH`] (on the
    /// CPU the NHWC path shares a batch's images out between the cores). The older NCHW CPU path
    /// ([`USE_NHWC`] off) runs one image per run, several runs in parallel.
    fn run_inputs(&self, inputs: &[(Vec<f32>, Tile)]) -> Result<Vec<Vec<f32>>> {
        let shape = |n: usize| (n, 3, INPUT_SIZE, INPUT_SIZE);
        if self.device.is_cpu() && !USE_NHWC {
            return inputs
                .par_iter()
                .map(|(x, _)| {
                    let x = Tensor::from_slice(x, shape(1), &self.device)?;
                    Ok(self.net.forward_raw(&x)?.flatten_all()?.to_vec1::<f32>()?)
                })
                .collect();
        }
        let mut raws = Vec::with_capacity(inputs.len());
        // Batches of near-equal size (17 inputs: 9 and 8, not 16 and 1).
        let per_batch = inputs.len().div_ceil(inputs.len().div_ceil(DETECT_BATCH).max(1)).max(1);
        for chunk in inputs.chunks(per_batch) {
            let data: Vec<f32> = chunk.iter().flat_map(|(x, _)| x.iter().copied()).collect();
            let x = Tensor::from_vec(data, shape(chunk.len()), &Device::Cpu)?.to_device(&self.device)?;
            let raw = self.net.forward_raw(&x)?.flatten_all()?.to_vec1::<f32>()?;
            raws.extend(raw.chunks_exact(NUM_ANCHORS * RAW_COLS).map(<[f32]>::to_vec));
        }
        Ok(raws)
    }
}

/// Pass 2's inputs: the tiles of `img` at each level of `levels` (tile sides in image pixels,
/// finest first; the finest level from the image, each coarser one from the previous level).
fn pyramid(img: &RgbImage, levels: &[f32]) -> Vec<(Vec<f32>, Tile)> {
    let (w, h) = img.dimensions();
    let n = INPUT_SIZE as i64;
    let mut inputs = Vec::new();
    let mut prev: Option<(Vec<f32>, u32, u32)> = None;
    for &side in levels {
        let (sw, sh) = scaled_dims(w, h, side);
        let scaled = match &prev {
            Some((p, pw, ph)) if *pw >= sw && *ph >= sh => resize_f32(p, *pw, *ph, sw, sh),
            _ => resize_rgb8(img, sw, sh),
        };
        for &oy in &tile_offsets(sh) {
            for &ox in &tile_offsets(sw) {
                let tile = Tile {
                    ox,
                    oy,
                    sx: w as f32 / sw as f32,
                    sy: h as f32 / sh as f32,
                    inner: [ox > 0, oy > 0, ox + n < sw as i64, oy + n < sh as i64],
                };
                inputs.push((crop_planar(&scaled, sw as usize, sh as usize, ox, oy), tile));
            }
        }
        prev = Some((scaled, sw, sh));
    }
    inputs
}

/// A square network input around a pass-1 detection, [`REFINE_WINDOW`] times its box, unsquashed
/// (areas past the image are black), with how to map its detections back.
fn window_around(img: &RgbImage, d: &Detection) -> (Vec<f32>, Tile) {
    let (w, h) = img.dimensions();
    let [x1, y1, x2, y2] = d.bbox;
    let side = (REFINE_WINDOW * box_side(d)).max(INPUT_SIZE as f32);
    let (sw, sh) = scaled_dims(w, h, side);
    let (sx, sy) = (w as f32 / sw as f32, h as f32 / sh as f32);
    let half = INPUT_SIZE as i64 / 2;
    let ox = ((x1 + x2) / 2.0 / sx).round() as i64 - half;
    let oy = ((y1 + y2) / 2.0 / sy).round() as i64 - half;
    let tile = Tile { ox, oy, sx, sy, inner: [false; 4] };
    (resize_rgb8_window(img, sw, sh, ox, oy), tile)
}

/// The longer side of a detection's box, in image pixels.
fn box_side(d: &Detection) -> f32 {
    (d.bbox[2] - d.bbox[0]).max(d.bbox[3] - d.bbox[1])
}

/// A face's size in image pixels: the geometric mean of its box's sides, which pass 1's squash of
/// an oblong photo (one side too long, the other too short) leaves about right.
fn face_size(d: &Detection) -> f32 {
    ((d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1])).abs().sqrt()
}

/// Whether a planar input is (nearly) constant per channel: std below ~2 grey levels.
fn is_flat(x: &[f32]) -> bool {
    let plane = x.len() / 3;
    x.chunks_exact(plane.max(1)).all(|c| {
        let n = c.len() as f32;
        let mean = c.iter().sum::<f32>() / n;
        let var = c.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        var < FLAT_STD * FLAT_STD
    })
}

/// Scaled image size for tile side `side` (image pixels per 256 input), at least 1x1.
fn scaled_dims(w: u32, h: u32, side: f32) -> (u32, u32) {
    let f = INPUT_SIZE as f32 / side;
    (((w as f32 * f).round() as u32).max(1), ((h as f32 * f).round() as u32).max(1))
}

/// Offsets of 256-wide tiles along a scaled axis of length `n`: evenly spread, neighbours
/// overlapping by at least [`TILE_OVERLAP`]; a single centred (padded) tile when `n <= 256`.
fn tile_offsets(n: u32) -> Vec<i64> {
    let (n, t) = (n as i64, INPUT_SIZE as i64);
    if n <= t {
        return vec![-(t - n) / 2];
    }
    let stride = TILE_STRIDE as i64;
    let count = (n - t + stride - 1) / stride + 1;
    (0..count).map(|i| ((i * (n - t)) as f64 / (count - 1) as f64).round() as i64).collect()
}

fn count_tiles(w: u32, h: u32, levels: &[f32]) -> usize {
    levels
        .iter()
        .map(|&side| {
            let (sw, sh) = scaled_dims(w, h, side);
            tile_offsets(sw).len() * tile_offsets(sh).len()
        })
        .sum()
}

/// Tile sides (image pixels) of pass 2, finest first, with at most `max_tiles` tiles in total.
///
/// A face up to a quarter of the tile side lies whole in some tile, and BlazeFace finds faces down to
/// ~20 px of its 256 input, so a level of side `t` covers faces of ~`t/13..t/4` pixels; sides double
/// from `t0` (starting at [`MIN_TILE_SIDE`]) until pass 1 (which sees faces of 1/8 of the longer side
/// as 32 px) takes over, or until a level holds every face of the shorter side. Elongated images
/// (longer side >= 1.5x the shorter) also get a level of squares of the shorter side, which pass 1
/// squashes. `t0` grows by 1.1x until the budget holds.
fn plan_levels(w: u32, h: u32, max_tiles: usize) -> Vec<f32> {
    if max_tiles == 0 || w == 0 || h == 0 {
        return Vec::new();
    }
    let (long, short) = (w.max(h) as f32, w.min(h) as f32);
    let mut t0 = MIN_TILE_SIDE;
    loop {
        let mut levels = Vec::new();
        let mut t = t0;
        loop {
            levels.push(t);
            if t >= 4.0 * short || 2.0 * t >= 0.5 * long {
                break;
            }
            t *= 2.0;
        }
        let squash_level =
            long >= 1.5 * short && short >= t0 && levels.iter().all(|&l| l < short / 1.5 || l > short * 1.5);
        if squash_level {
            levels.push(short);
            levels.sort_by(f32::total_cmp);
        }
        if count_tiles(w, h, &levels) <= max_tiles {
            return levels;
        }
        t0 *= 1.1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_offsets_cover_axis_with_quarter_overlap() {
        assert_eq!(tile_offsets(100), vec![-78]);
        assert_eq!(tile_offsets(256), vec![0]);
        for n in [257u32, 300, 384, 385, 1000, 4096] {
            let o = tile_offsets(n);
            assert_eq!(o[0], 0);
            assert_eq!(*o.last().unwrap(), n as i64 - 256);
            for p in o.windows(2) {
                assert!(p[1] - p[0] <= TILE_STRIDE as i64 && p[1] > p[0], "{n}: {o:?}");
            }
        }
    }

    #[test]
    fn a_box_side_is_its_longer_side_and_a_face_size_the_mean_of_both() {
        let d = Detection { score: 0.9, bbox: [10.0, 20.0, 110.0, 45.0], keypoints: [[0.0; 2]; 6] };
        assert_eq!(box_side(&d), 100.0);
        assert_eq!(face_size(&d), 50.0);
    }

    #[test]
    fn plan_respects_budget() {
        for (w, h) in [(600, 400), (2000, 1500), (4000, 3000), (20000, 300), (300, 20000), (513, 1), (100000, 100000)] {
            let levels = plan_levels(w, h, MAX_TILES);
            let count: usize = levels
                .iter()
                .map(|&s| {
                    let (sw, sh) = scaled_dims(w, h, s);
                    tile_offsets(sw).len() * tile_offsets(sh).len()
                })
                .sum();
            assert!(!levels.is_empty() && count <= MAX_TILES, "{w}x{h}: {levels:?} -> {count}");
        }
    }
}
