//! BlazeFace (human's 256x256 "front" variant): face detector with 896 anchors, box + 6 keypoint
//! decoding, greedy non-maximum suppression, and a multi-scale tiled detector for small faces.
//!
//! Spec: `blazeface.md`. TF "SAME" paddings (stem 1/2, stride-2 depthwise 0/1), residual blocks whose
//! stride-2 skips are a 2x2 max-pool plus zero channels appended at the end, and the raw outputs
//! flattened channels-last into `[896, 17]` rows `(logit, dx, dy, w, h, 6 x (kx, ky))`.
//!
//! [`FaceDetector::detect`] runs pass 1 (the whole image stretched to 256x256, as human does) and,
//! on large images, pass 2: a pyramid of overlapping square tiles, all merged with NMS.
//!
//! On the CPU the stem (5x5 stride-2 conv) and each block's pointwise conv + bias + skip + relu run
//! as fused kernels (with an AVX2 build picked at runtime); other devices use plain candle ops.

use std::path::Path;
use std::sync::OnceLock;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::weights::{self, BLAZEFACE};
use crate::Result;
use crate::depthwise::{Depthwise3x3, pointwise};
use crate::layer::{Activation, has_avx2_fma, same_padding_3x3};

/// Input side in pixels.
pub const INPUT_SIZE: usize = 256;
/// Number of anchors (rows of the raw output).
pub const NUM_ANCHORS: usize = 896;
/// Values per raw row: logit, box (dx, dy, w, h), 6 keypoints (x, y).
pub const RAW_COLS: usize = 17;
/// Number of keypoints per detection.
pub const NUM_KEYPOINTS: usize = 6;
/// Most tiles pass 2 runs on one image (the tile pyramid gets coarser until it fits).
pub const MAX_TILES: usize = 32;
/// Images whose longer side exceeds this get pass 2 (a 40 px face would be under 20 px at 256).
pub const TILE_TRIGGER_SIDE: u32 = 512;
/// Finest tile side in image pixels: a 40 px face becomes ~28 px of the 256 input.
pub const MIN_TILE_SIDE: f32 = 256.0 * 40.0 / 28.0;
/// Images per forward pass of the detector on non-CPU devices (the CPU runs one image per pass).
pub const DETECT_BATCH: usize = 16;
/// Inputs whose every channel has a standard deviation below this (in -1..1 units, ~2 grey levels)
/// are skipped: they cannot hold a face.
const FLAT_STD: f32 = 0.016;
/// Step between neighbouring tiles, in pixels of the 256 input (a quarter of the tile overlaps).
const TILE_STRIDE: usize = 192;
/// Fraction of a tile shared with its neighbour (at least).
pub const TILE_OVERLAP: f32 = 1.0 - TILE_STRIDE as f32 / INPUT_SIZE as f32;
/// Tile detections closer than this (256-input pixels) to an edge shared with a neighbouring tile are
/// dropped: that face is cut by the tile and appears whole in the neighbour or a coarser level.
const TILE_EDGE_MARGIN: f32 = 3.0;

/// Number of residual blocks (`blocks.0..=30`).
const NUM_BLOCKS: usize = 31;

/// (stride, C_in, C_out) of `blocks.i`.
const fn block_spec(i: usize) -> (usize, usize, usize) {
    match i {
        7 => (2, 24, 24),
        15 => (2, 24, 48),
        23 => (2, 48, 96),
        0..=14 => (1, 24, 24),
        16..=22 => (1, 48, 48),
        _ => (1, 96, 96),
    }
}

struct Block {
    dw: Depthwise3x3,
    stride: usize,
    cin: usize,
    cout: usize,
    pw_weight: Tensor,
    pw_bias: Tensor,
    /// `pw_weight` `[cout, cin]` and `pw_bias` on the host, for the fused CPU kernel.
    pw_weight_cpu: Vec<f32>,
    pw_bias_cpu: Vec<f32>,
}

/// The BlazeFace network: `[N,3,256,256]` in -1..1 to raw `[N,896,17]`.
pub struct BlazeFace {
    stem_weight: Tensor,
    stem_bias: Tensor,
    stem_weight_cpu: Vec<f32>,
    stem_bias_cpu: Vec<f32>,
    blocks: Vec<Block>,
    tail_dw: Depthwise3x3,
    tail_pw_weight: Tensor,
    tail_pw_bias: Tensor,
    /// Both 16x16 heads fused, rows ordered `(anchor, [cls, reg0..15])`: `[34, 96]`.
    head16_weight: Tensor,
    head16_bias: Tensor,
    /// Both 8x8 heads fused the same way: `[102, 96]`.
    head8_weight: Tensor,
    head8_bias: Tensor,
}

/// Fuses a `cls` head (`[A,96,1,1]`) and a `reg` head (`[16A,96,1,1]`) into one `[17A, 96]` matmul
/// whose output channels are ordered `(anchor, [cls, reg0..15])`, i.e. already raw-row order.
fn fuse_heads(vb: &VarBuilder, anchors: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let cls_w = vb.get((anchors, 96, 1, 1), "cls.weight")?.reshape((anchors, 1, 96))?;
    let cls_b = vb.get(anchors, "cls.bias")?.reshape((anchors, 1))?;
    let reg_w = vb.get((anchors * 16, 96, 1, 1), "reg.weight")?.reshape((anchors, 16, 96))?;
    let reg_b = vb.get(anchors * 16, "reg.bias")?.reshape((anchors, 16))?;
    let w = Tensor::cat(&[cls_w, reg_w], 1)?.reshape((anchors * RAW_COLS, 96))?;
    let b = Tensor::cat(&[cls_b, reg_b], 1)?.reshape(anchors * RAW_COLS)?;
    Ok((w, b))
}

impl BlazeFace {
    /// Loads and checks the weights file.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let vb = weights::load_checked(path, &BLAZEFACE, device)?;
        weights::with_file_context(Self::from_vb(vb), path)
    }

    /// Builds the network from a `VarBuilder` over the blazeface tensor names.
    pub fn from_vb(vb: VarBuilder) -> candle_core::Result<Self> {
        let stem_weight = vb.get((24, 3, 5, 5), "stem.weight")?;
        let stem_bias = vb.get(24, "stem.bias")?;
        let mut blocks = Vec::with_capacity(NUM_BLOCKS);
        for i in 0..NUM_BLOCKS {
            let (stride, cin, cout) = block_spec(i);
            let b = vb.pp(format!("blocks.{i}"));
            let w = b.get((cin, 1, 3, 3), "dw.weight")?;
            let zeros = Tensor::zeros(cin, w.dtype(), w.device())?;
            let dw = Depthwise3x3::new(w, zeros, stride, Activation::None)?;
            let pw_weight = b.get((cout, cin, 1, 1), "pw.weight")?.reshape((cout, cin))?;
            let pw_bias = b.get(cout, "pw.bias")?;
            blocks.push(Block {
                dw,
                stride,
                cin,
                cout,
                pw_weight_cpu: host(&pw_weight)?,
                pw_bias_cpu: host(&pw_bias)?,
                pw_weight,
                pw_bias,
            });
        }
        let t = vb.pp("tail");
        let w = t.get((96, 1, 3, 3), "dw.weight")?;
        let zeros = Tensor::zeros(96, w.dtype(), w.device())?;
        let tail_dw = Depthwise3x3::new(w, zeros, 2, Activation::None)?;
        let tail_pw_weight = t.get((96, 96, 1, 1), "pw.weight")?.reshape((96, 96))?;
        let tail_pw_bias = t.get(96, "pw.bias")?;
        let (head16_weight, head16_bias) = fuse_heads(&vb.pp("head16"), 2)?;
        let (head8_weight, head8_bias) = fuse_heads(&vb.pp("head8"), 6)?;
        Ok(Self {
            stem_weight_cpu: host(&stem_weight)?,
            stem_bias_cpu: host(&stem_bias)?,
            stem_weight,
            stem_bias,
            blocks,
            tail_dw,
            tail_pw_weight,
            tail_pw_bias,
            head16_weight,
            head16_bias,
            head8_weight,
            head8_bias,
        })
    }

    /// Raw outputs `[N, 896, 17]` for a `[N, 3, 256, 256]` batch already scaled to -1..1.
    ///
    /// Rows 0..512 come from the 16x16 map (2 anchors per cell), rows 512..896 from the 8x8 map
    /// (6 per cell), ordered `(y, x, anchor)`; columns: logit, dx, dy, w, h, then 6 keypoints (x, y).
    pub fn forward_raw(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_impl(x, x.device().is_cpu() && x.dtype() == candle_core::DType::F32)
    }

    /// `cpu`: use the fused CPU kernels for the stem and the block tails (else plain candle ops).
    fn forward_impl(&self, x: &Tensor, cpu: bool) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if c != 3 || h != INPUT_SIZE || w != INPUT_SIZE {
            candle_core::bail!("blazeface expects [N,3,256,256], got {:?}", x.shape());
        }
        let mut x = if cpu {
            let op = StemOp { weight: &self.stem_weight_cpu, bias: &self.stem_bias_cpu };
            x.contiguous()?.apply_op1_no_bwd(&op)?
        } else {
            // 5x5 stride 2, TF SAME on 256 = pad 1 before, 2 after.
            let x = x.pad_with_zeros(2, 1, 2)?.pad_with_zeros(3, 1, 2)?;
            let x = x.conv2d(&self.stem_weight, 0, 2, 1, 1)?;
            x.broadcast_add(&self.stem_bias.reshape((1, 24, 1, 1))?)?.relu()?
        };
        for b in &self.blocks {
            let (_, _, h, w) = x.dims4()?;
            let y = b.dw.forward(&x, same_padding_3x3(b.stride, h, w))?;
            let skip = if b.stride == 2 {
                let p = x.max_pool2d(2)?;
                if b.cout > b.cin { p.pad_with_zeros(1, 0, b.cout - b.cin)? } else { p }
            } else {
                x
            };
            x = if cpu {
                let op = PwResidualOp { weight: &b.pw_weight_cpu, bias: &b.pw_bias_cpu, cin: b.cin, cout: b.cout };
                y.apply_op2_no_bwd(&skip.contiguous()?, &op)?
            } else {
                (pointwise(&y, &b.pw_weight, &b.pw_bias, Activation::None)? + skip)?.relu()?
            };
        }
        let f16 = x;
        let t = self.tail_dw.forward(&f16, same_padding_3x3(2, 16, 16))?;
        let t = pointwise(&t, &self.tail_pw_weight, &self.tail_pw_bias, Activation::Relu)?;
        let r16 = pointwise(&f16, &self.head16_weight, &self.head16_bias, Activation::None)?;
        let r8 = pointwise(&t, &self.head8_weight, &self.head8_bias, Activation::None)?;
        // [N, 17A, H, W] -> [N, H*W, 17A] -> [N, H*W*A, 17]: channels-last, anchor fastest.
        let r16 = r16.reshape((n, 2 * RAW_COLS, 256))?.transpose(1, 2)?.reshape((n, 512, RAW_COLS))?;
        let r8 = r8.reshape((n, 6 * RAW_COLS, 64))?.transpose(1, 2)?.reshape((n, 384, RAW_COLS))?;
        Tensor::cat(&[r16, r8], 1)
    }
}

fn host(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{what}: expects a contiguous f32 input"),
    }
}

/// The stem on the CPU: 5x5 stride-2 conv of `[N,3,256,256]` with TF SAME padding (1 before,
/// 2 after), bias and relu, as rows of contiguous multiply-adds over even/odd column planes.
struct StemOp<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
}

const STEM_IN: usize = INPUT_SIZE;
const STEM_OUT: usize = INPUT_SIZE / 2;

impl CustomOp1 for StemOp<'_> {
    fn name(&self) -> &'static str {
        "blazeface_stem"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (inp, out) = (STEM_IN, STEM_OUT);
        let src = contiguous_f32(storage, layout, "blazeface stem")?;
        let (n, c, h, w) = layout.shape().dims4()?;
        if c != 3 || h != inp || w != inp {
            candle_core::bail!("blazeface stem expects [N,3,256,256], got {:?}", layout.shape());
        }
        // Even and odd columns of every input plane: [n*3][2][256][128].
        let mut split = vec![0f32; n * 3 * 2 * inp * out];
        split.par_chunks_mut(2 * inp * out).zip(src.par_chunks(inp * inp)).for_each(|(d, s)| {
            let (even, odd) = d.split_at_mut(inp * out);
            for (y, row) in s.chunks_exact(inp).enumerate() {
                for (j, px) in row.chunks_exact(2).enumerate() {
                    even[y * out + j] = px[0];
                    odd[y * out + j] = px[1];
                }
            }
        });
        let mut dst = vec![0f32; n * 24 * out * out];
        let simd = has_avx2_fma();
        dst.par_chunks_mut(out * out).enumerate().for_each(|(plane, dst)| {
            let (i, co) = (plane / 24, plane % 24);
            let planes = &split[i * 3 * 2 * inp * out..(i + 1) * 3 * 2 * inp * out];
            let k = &self.weight[co * 75..(co + 1) * 75];
            if simd {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 support was checked at runtime.
                unsafe {
                    stem_plane_avx2(planes, k, self.bias[co], dst)
                }
            } else {
                stem_plane(planes, k, self.bias[co], dst);
            }
        });
        Ok((CpuStorage::F32(dst), Shape::from((n, 24, out, out))))
    }
}

/// One stem output plane from the image's even/odd column planes `[3][2][256][128]` and the
/// `[3][5][5]` kernel of this output channel.
#[inline(always)]
fn stem_plane(planes: &[f32], k: &[f32], bias: f32, dst: &mut [f32]) {
    let (inp, out) = (STEM_IN, STEM_OUT);
    dst.fill(bias);
    for ci in 0..3 {
        let (even, odd) = planes[ci * 2 * inp * out..(ci + 1) * 2 * inp * out].split_at(inp * out);
        for ky in 0..5 {
            let k = &k[(ci * 5 + ky) * 5..][..5];
            for (oy, d) in dst.chunks_exact_mut(out).enumerate() {
                // Input row 2*oy + ky - 1 (one padding row on top, two at the bottom).
                let Some(iy) = (2 * oy + ky).checked_sub(1).filter(|&iy| iy < inp) else {
                    continue;
                };
                let e = &even[iy * out..(iy + 1) * out];
                let o = &odd[iy * out..(iy + 1) * out];
                // Input column 2*ox + kx - 1: kx 0 -> odd[ox-1], 1 -> even[ox], 2 -> odd[ox],
                // 3 -> even[ox+1], 4 -> odd[ox+1] (out of range terms are padding).
                axpy(&mut d[1..], k[0], &o[..out - 1]);
                axpy(d, k[1], e);
                axpy(d, k[2], o);
                axpy(&mut d[..out - 1], k[3], &e[1..]);
                axpy(&mut d[..out - 1], k[4], &o[1..]);
            }
        }
    }
    dst.iter_mut().for_each(|v| *v = v.max(0.0));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn stem_plane_avx2(planes: &[f32], k: &[f32], bias: f32, dst: &mut [f32]) {
    stem_plane(planes, k, bias, dst)
}

#[inline(always)]
fn axpy(d: &mut [f32], a: f32, x: &[f32]) {
    for (d, x) in d.iter_mut().zip(x) {
        *d += a * x;
    }
}

/// Positions per work item of the fused pointwise kernel (its accumulators stay in L1/L2).
const PW_BLOCK: usize = 256;

/// A residual block's tail on the CPU: `relu(W y + b + skip)` for `y` `[N,C,H,W]` (the depthwise
/// output) and `skip` `[N,C',H,W]`, one pass over blocks of positions (all output channels at once).
struct PwResidualOp<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
    cin: usize,
    cout: usize,
}

impl CustomOp2 for PwResidualOp<'_> {
    fn name(&self) -> &'static str {
        "blazeface_pw_residual"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s1, l1, "blazeface pointwise")?;
        let skip = contiguous_f32(s2, l2, "blazeface pointwise skip")?;
        let (n, cin, h, w) = l1.shape().dims4()?;
        let cout = self.cout;
        if cin != self.cin || l2.shape().dims4()? != (n, cout, h, w) {
            candle_core::bail!("blazeface pointwise: bad shapes {:?} / {:?}", l1.shape(), l2.shape());
        }
        let hw = h * w;
        let blocks = hw.div_ceil(PW_BLOCK);
        let simd = has_avx2_fma();
        // Each work item computes [cout][len] for one image and one block of positions.
        let parts: Vec<Vec<f32>> = (0..n * blocks)
            .into_par_iter()
            .map(|job| {
                let (i, start) = (job / blocks, (job % blocks) * PW_BLOCK);
                let len = PW_BLOCK.min(hw - start);
                let mut acc = vec![0f32; cout * len];
                let args = PwArgs {
                    y: &y[i * cin * hw..(i + 1) * cin * hw],
                    skip: &skip[i * cout * hw..(i + 1) * cout * hw],
                    weight: self.weight,
                    bias: self.bias,
                    hw,
                    start,
                };
                if simd {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: AVX2 support was checked at runtime.
                    unsafe {
                        pw_block_avx2(&args, &mut acc)
                    }
                } else {
                    pw_block(&args, &mut acc);
                }
                acc
            })
            .collect();
        // Gather the blocks into NCHW planes (sequential copies; no zero-fill).
        let mut out = Vec::with_capacity(n * cout * hw);
        for image in parts.chunks_exact(blocks) {
            for co in 0..cout {
                for part in image {
                    let len = part.len() / cout;
                    out.extend_from_slice(&part[co * len..(co + 1) * len]);
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, cout, h, w))))
    }
}

struct PwArgs<'a> {
    /// One image's `[cin][hw]`.
    y: &'a [f32],
    /// One image's `[cout][hw]`.
    skip: &'a [f32],
    weight: &'a [f32],
    bias: &'a [f32],
    hw: usize,
    start: usize,
}

/// `acc[co][j] = relu(bias[co] + skip[co][start+j] + sum_ci w[co][ci] * y[ci][start+j])`.
#[inline(always)]
fn pw_block(a: &PwArgs, acc: &mut [f32]) {
    let cout = a.bias.len();
    let cin = a.weight.len() / cout;
    let len = acc.len() / cout;
    let (hw, start) = (a.hw, a.start);
    for (co, row) in acc.chunks_exact_mut(len).enumerate() {
        let b = a.bias[co];
        for (d, s) in row.iter_mut().zip(&a.skip[co * hw + start..co * hw + start + len]) {
            *d = s + b;
        }
    }
    for ci in 0..cin {
        let yr = &a.y[ci * hw + start..ci * hw + start + len];
        for (co, row) in acc.chunks_exact_mut(len).enumerate() {
            axpy(row, a.weight[co * cin + ci], yr);
        }
    }
    acc.iter_mut().for_each(|v| *v = v.max(0.0));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pw_block_avx2(a: &PwArgs, acc: &mut [f32]) {
    pw_block(a, acc)
}

/// The 896 anchor centres `(x, y)` in pixels of the 256 input (human's `generateAnchors(256)`).
pub fn anchors() -> Vec<[f32; 2]> {
    anchor_table().to_vec()
}

fn anchor_table() -> &'static [[f32; 2]] {
    static ANCHORS: OnceLock<Vec<[f32; 2]>> = OnceLock::new();
    ANCHORS.get_or_init(|| {
        let mut v = Vec::with_capacity(NUM_ANCHORS);
        for (stride, per_cell) in [(16usize, 2usize), (32, 6)] {
            let cells = INPUT_SIZE / stride;
            for gy in 0..cells {
                for gx in 0..cells {
                    let a = [stride as f32 * (gx as f32 + 0.5), stride as f32 * (gy as f32 + 0.5)];
                    v.extend(std::iter::repeat_n(a, per_cell));
                }
            }
        }
        v
    })
}

/// One detected face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Face probability (sigmoid of the logit).
    pub score: f32,
    /// `[x1, y1, x2, y2]`; from [`FaceDetector::detect`] in original image pixels (not clamped to
    /// the image), from [`decode`] in pixels of the 256 input.
    pub bbox: [f32; 4],
    /// Right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion (subject's
    /// sides: the right eye is on the image left), `(x, y)` in the same pixels as `bbox`.
    pub keypoints: [[f32; 2]; NUM_KEYPOINTS],
}

impl Detection {
    /// Intersection over union of the two boxes (0 when either is empty).
    pub fn iou(&self, other: &Detection) -> f32 {
        box_iou(&self.bbox, &other.bbox)
    }

    /// Box width and height.
    pub fn size(&self) -> (f32, f32) {
        (self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1])
    }

    /// human's face crop: a square around the box centre with side `scale * max(w, h)` (human uses
    /// 1.4), corners rounded to whole pixels: `[x1, y1, x2, y2]`, not clamped to the image.
    pub fn face_crop_box(&self, scale: f32) -> [f32; 4] {
        let [x1, y1, x2, y2] = self.bbox;
        let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        let half = scale * (x2 - x1).max(y2 - y1) / 2.0;
        [(cx - half).round(), (cy - half).round(), (cx + half).round(), (cy + half).round()]
    }

    /// Maps coordinates: `x -> (x + dx) * sx`, `y -> (y + dy) * sy`.
    fn mapped(mut self, dx: f32, dy: f32, sx: f32, sy: f32) -> Detection {
        self.bbox =
            [(self.bbox[0] + dx) * sx, (self.bbox[1] + dy) * sy, (self.bbox[2] + dx) * sx, (self.bbox[3] + dy) * sy];
        for k in &mut self.keypoints {
            *k = [(k[0] + dx) * sx, (k[1] + dy) * sy];
        }
        self
    }
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (corner order within an axis does not matter).
pub fn box_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let norm = |b: &[f32; 4]| [b[0].min(b[2]), b[1].min(b[3]), b[0].max(b[2]), b[1].max(b[3])];
    let (a, b) = (norm(a), norm(b));
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let union = area(&a) + area(&b) - inter;
    if union > 0.0 && inter.is_finite() { inter / union } else { 0.0 }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Decodes raw rows (`896 * 17` values, row-major, as from [`BlazeFace::forward_raw`]) into
/// detections in pixels of the 256 input, keeping those with `score >= min_score` (in anchor order).
///
/// Extra values beyond 896 rows are ignored; a shorter slice decodes the complete rows it holds.
pub fn decode(raw: &[f32], min_score: f32) -> Vec<Detection> {
    let anchors = anchor_table();
    raw.chunks_exact(RAW_COLS)
        .zip(anchors)
        .filter_map(|(r, &[ax, ay])| {
            let score = sigmoid(r[0]);
            if score.is_nan() || score < min_score {
                return None;
            }
            let (cx, cy, w, h) = (r[1] + ax, r[2] + ay, r[3], r[4]);
            let mut keypoints = [[0f32; 2]; NUM_KEYPOINTS];
            for (k, kp) in keypoints.iter_mut().enumerate() {
                *kp = [r[5 + 2 * k] + ax, r[6 + 2 * k] + ay];
            }
            Some(Detection { score, bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], keypoints })
        })
        .collect()
}

/// Greedy hard NMS: by descending score, keep a detection unless its IoU with an already kept one
/// exceeds `iou_threshold`; at most `max_out` results, best first.
pub fn non_max_suppression(mut dets: Vec<Detection>, iou_threshold: f32, max_out: usize) -> Vec<Detection> {
    dets.retain(|d| d.score.is_finite() && d.bbox.iter().all(|v| v.is_finite()));
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(max_out.min(dets.len()));
    for d in dets {
        if kept.len() >= max_out {
            break;
        }
        if kept.iter().all(|k| k.iou(&d) <= iou_threshold) {
            kept.push(d);
        }
    }
    kept
}

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
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self { min_score: 0.5, iou_threshold: 0.3, max_faces: 20, tiled: true }
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
}

impl FaceDetector {
    /// Wraps a loaded network; `device` is where inputs are placed (the network's device).
    pub fn new(net: BlazeFace, device: Device) -> Self {
        Self { net, device }
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
    /// side above [`TILE_TRIGGER_SIDE`], pass 2 adds a pyramid of square tiles ([`TILE_OVERLAP`]
    /// overlap, finest side [`MIN_TILE_SIDE`] image pixels or coarser to stay within [`MAX_TILES`],
    /// sides doubling per level; see `plan_levels`), each tile resized to 256x256 (no squash; tiles
    /// reaching past the image are padded black). Detections cut by an edge shared with a neighbouring
    /// tile are dropped, and everything is merged with NMS (`iou_threshold`, `max_faces`). Inputs that
    /// are nearly uniform (black images, sky, padding) are skipped without running the network.
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
        let mut inputs = vec![(
            resize_rgb8(img, s, s),
            Tile { ox: 0, oy: 0, sx: w as f32 / s as f32, sy: h as f32 / s as f32, inner: [false; 4] },
        )];
        if opts.tiled && w.max(h) > TILE_TRIGGER_SIDE {
            // Finest level from the image, each coarser one from the previous level.
            let mut prev: Option<(Vec<f32>, u32, u32)> = None;
            for side in plan_levels(w, h, max_tiles) {
                let (sw, sh) = scaled_dims(w, h, side);
                let scaled = match &prev {
                    Some((p, pw, ph)) if *pw >= sw && *ph >= sh => resize_f32(p, *pw, *ph, sw, sh),
                    _ => resize_rgb8(img, sw, sh),
                };
                let n = INPUT_SIZE as i64;
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
        }
        // A (nearly) uniform input holds no face: skip it (black images, sky, padding).
        inputs.retain(|(x, _)| !is_flat(x));
        let raws = self.run_inputs(&inputs)?;
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
        Ok(non_max_suppression(dets, opts.iou_threshold, opts.max_faces))
    }

    /// Raw `[896*17]` outputs for planar 256x256 inputs. On the CPU one image per run, several runs
    /// in parallel (batching does not help there: the 128x128 maps fall out of cache); elsewhere in
    /// batches of [`DETECT_BATCH`].
    fn run_inputs(&self, inputs: &[(Vec<f32>, Tile)]) -> Result<Vec<Vec<f32>>> {
        let shape = |n: usize| (n, 3, INPUT_SIZE, INPUT_SIZE);
        if self.device.is_cpu() {
            return inputs
                .par_iter()
                .map(|(x, _)| {
                    let x = Tensor::from_slice(x, shape(1), &self.device)?;
                    Ok(self.net.forward_raw(&x)?.flatten_all()?.to_vec1::<f32>()?)
                })
                .collect();
        }
        let mut raws = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(DETECT_BATCH) {
            let data: Vec<f32> = chunk.iter().flat_map(|(x, _)| x.iter().copied()).collect();
            let x = Tensor::from_vec(data, shape(chunk.len()), &Device::Cpu)?.to_device(&self.device)?;
            let raw = self.net.forward_raw(&x)?.flatten_all()?.to_vec1::<f32>()?;
            raws.extend(raw.chunks_exact(NUM_ANCHORS * RAW_COLS).map(<[f32]>::to_vec));
        }
        Ok(raws)
    }
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

/// Per-output-pixel `(first source index, weights)` of a triangle ("bilinear") filter that widens
/// when downscaling (PIL's antialiased bilinear resize; the identity at equal sizes).
fn filter_coeffs(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    (0..out_size)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - filter_scale + 0.5).floor().max(0.0) as usize).min(in_size - 1);
            let hi = ((center + filter_scale + 0.5).floor() as usize).clamp(lo + 1, in_size);
            let mut w: Vec<f32> =
                (lo..hi).map(|i| (1.0 - ((i as f64 - center + 0.5) / filter_scale).abs()).max(0.0) as f32).collect();
            let sum: f32 = w.iter().sum();
            if sum > 0.0 {
                w.iter_mut().for_each(|v| *v /= sum);
            } else {
                // Cannot happen (the nearest pixel always has weight >= 0.5); fall back to it.
                w.iter_mut().for_each(|v| *v = 0.0);
                w[(center as usize).clamp(lo, hi - 1) - lo] = 1.0;
            }
            (lo, w)
        })
        .collect()
}

/// Runs `f(oy, r, g, b)` for every output row of a planar `[3, oh, ow]` buffer, in parallel, with
/// a per-thread scratch buffer of `scratch` floats.
fn for_each_out_row(
    oh: usize,
    ow: usize,
    scratch: usize,
    f: impl Fn(usize, &mut [f32], &mut [f32], &mut [f32], &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; 3 * oh * ow];
    let (r, rest) = out.split_at_mut(oh * ow);
    let (g, b) = rest.split_at_mut(oh * ow);
    r.par_chunks_mut(ow)
        .zip(g.par_chunks_mut(ow))
        .zip(b.par_chunks_mut(ow))
        .enumerate()
        .for_each_init(|| vec![0f32; scratch], |buf, (oy, ((r, g), b))| f(oy, buf, r, g, b));
    out
}

/// `buf[i] = sum_k ws[k] * rows[k][i]` over u8 rows (vertical filter taps).
#[inline(always)]
fn vertical_u8(src: &[u8], stride: usize, lo: usize, ws: &[f32], buf: &mut [f32]) {
    buf.fill(0.0);
    for (k, &wk) in ws.iter().enumerate() {
        let row = &src[(lo + k) * stride..(lo + k + 1) * stride];
        for (b, &p) in buf.iter_mut().zip(row) {
            *b += wk * p as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vertical_u8_avx2(src: &[u8], stride: usize, lo: usize, ws: &[f32], buf: &mut [f32]) {
    vertical_u8(src, stride, lo, ws, buf)
}

/// Resizes (stretching) an RGB image to `ow x oh`, returning planar `[3, oh, ow]` values
/// `pixel / 127.5 - 1`. Separable antialiased bilinear (vertical then horizontal), parallel over rows.
fn resize_rgb8(img: &RgbImage, ow: u32, oh: u32) -> Vec<f32> {
    let (w, ow, oh) = (img.width() as usize, ow as usize, oh as usize);
    let src = img.as_raw();
    let cx = filter_coeffs(w, ow);
    let cy = filter_coeffs(img.height() as usize, oh);
    let simd = has_avx2_fma();
    for_each_out_row(oh, ow, w * 3, |oy, buf, r, g, b| {
        let (lo, ws) = &cy[oy];
        if simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 support was checked at runtime.
            unsafe {
                vertical_u8_avx2(src, w * 3, *lo, ws, buf)
            }
        } else {
            vertical_u8(src, w * 3, *lo, ws, buf);
        }
        for (ox, (lo, ws)) in cx.iter().enumerate() {
            let mut acc = [0f32; 3];
            for (p, &wk) in buf[lo * 3..(lo + ws.len()) * 3].chunks_exact(3).zip(ws) {
                acc[0] += wk * p[0];
                acc[1] += wk * p[1];
                acc[2] += wk * p[2];
            }
            r[ox] = acc[0] / 127.5 - 1.0;
            g[ox] = acc[1] / 127.5 - 1.0;
            b[ox] = acc[2] / 127.5 - 1.0;
        }
    })
}

/// Resizes a planar `[3, h, w]` image to `[3, oh, ow]` (same filter as [`resize_rgb8`]).
fn resize_f32(src: &[f32], w: u32, h: u32, ow: u32, oh: u32) -> Vec<f32> {
    let (w, h, ow, oh) = (w as usize, h as usize, ow as usize, oh as usize);
    let cx = filter_coeffs(w, ow);
    let cy = filter_coeffs(h, oh);
    for_each_out_row(oh, ow, w, |oy, buf, r, g, b| {
        let (lo, ws) = &cy[oy];
        for (c, dst) in [r, g, b].into_iter().enumerate() {
            buf.fill(0.0);
            for (k, &wk) in ws.iter().enumerate() {
                let row = (c * h + lo + k) * w;
                axpy(buf, wk, &src[row..row + w]);
            }
            for (d, (lo, ws)) in dst.iter_mut().zip(&cx) {
                *d = buf[*lo..lo + ws.len()].iter().zip(ws).map(|(v, wk)| v * wk).sum();
            }
        }
    })
}

/// Cuts a 256x256 tile at `(ox, oy)` from a planar `[3, h, w]` image; outside it is black (-1).
fn crop_planar(src: &[f32], w: usize, h: usize, ox: i64, oy: i64) -> Vec<f32> {
    let n = INPUT_SIZE;
    let mut out = vec![-1f32; 3 * n * n];
    let x0 = ox.max(0) as usize;
    let x1 = (ox + n as i64).min(w as i64).max(0) as usize;
    if x1 <= x0 {
        return out;
    }
    let dx0 = (x0 as i64 - ox) as usize;
    for c in 0..3 {
        for ty in 0..n {
            let sy = oy + ty as i64;
            if sy < 0 || sy >= h as i64 {
                continue;
            }
            let srow = &src[(c * h + sy as usize) * w..(c * h + sy as usize + 1) * w];
            out[(c * n + ty) * n + dx0..(c * n + ty) * n + dx0 + (x1 - x0)].copy_from_slice(&srow[x0..x1]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_cpu_kernels_match_candle_ops() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/blazeface.safetensors");
        let net = BlazeFace::load(&path, &Device::Cpu).expect("load blazeface");
        let x = Tensor::randn(0f32, 0.6, (2, 3, 256, 256), &Device::Cpu).unwrap();
        let fused = net.forward_impl(&x, true).unwrap();
        let plain = net.forward_impl(&x, false).unwrap();
        let diff = (fused - plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-3, "fused vs candle ops: {diff}");
    }

    #[test]
    fn anchors_layout() {
        let a = anchors();
        assert_eq!(a.len(), NUM_ANCHORS);
        assert_eq!(a[0], [8.0, 8.0]);
        assert_eq!(a[1], [8.0, 8.0]);
        assert_eq!(a[2], [24.0, 8.0]);
        assert_eq!(a[512], [16.0, 16.0]);
        assert_eq!(a[895], [240.0, 240.0]);
    }

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

    #[test]
    fn resize_identity_and_constant() {
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([(x * 40) as u8, (y * 50) as u8, 7]));
        let out = resize_rgb8(&img, 5, 4);
        for y in 0..4 {
            for x in 0..5 {
                let i = (y * 5 + x) as usize;
                assert!((out[i] - ((x * 40) as f32 / 127.5 - 1.0)).abs() < 1e-5);
                assert!((out[20 + i] - ((y * 50) as f32 / 127.5 - 1.0)).abs() < 1e-5);
            }
        }
        let planar = resize_f32(&out, 5, 4, 5, 4);
        assert_eq!(planar, out);
        let one = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 51]));
        let out = resize_rgb8(&one, 7, 3);
        assert!(out[..21].iter().all(|v| (v - 1.0).abs() < 1e-5));
        assert!(out[21..42].iter().all(|v| (v + 1.0).abs() < 1e-5));
    }

    #[test]
    fn chained_downscale_close_to_direct() {
        let img = RgbImage::from_fn(400, 300, |x, y| {
            let v = 128.0 + 100.0 * ((x as f32 / 37.0).sin() * (y as f32 / 23.0).cos());
            image::Rgb([v as u8, (255.0 - v) as u8, 77])
        });
        let direct = resize_rgb8(&img, 100, 75);
        let mid = resize_rgb8(&img, 200, 150);
        let chained = resize_f32(&mid, 200, 150, 100, 75);
        let diff = direct.iter().zip(&chained).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 0.1, "diff {diff}");
        assert!(chained[150 * 100..].iter().take(7500).all(|v| (v - (77.0 / 127.5 - 1.0)).abs() < 1e-5));
    }

    #[test]
    fn crop_pads_black() {
        let (w, h) = (300usize, 100usize);
        let src: Vec<f32> = (0..3 * w * h).map(|i| (i % 7) as f32 / 7.0).collect();
        let t = crop_planar(&src, w, h, 20, -78);
        let n = INPUT_SIZE;
        assert_eq!(t.len(), 3 * n * n);
        assert_eq!(t[0], -1.0);
        assert_eq!(t[78 * n], src[20]);
        assert_eq!(t[(2 * n + 78 + 99) * n + 255], src[(2 * h + 99) * w + 275]);
        assert_eq!(t[(78 + 100) * n], -1.0);
        let right = crop_planar(&src, w, h, 200, 0);
        assert_eq!(right[99], src[299]);
        assert_eq!(right[100], -1.0);
    }
}
