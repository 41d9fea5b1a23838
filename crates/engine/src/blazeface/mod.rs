//! BlazeFace (human's 256x256 "front" variant): face detector with 896 anchors, box + 6 keypoint
//! decoding, greedy non-maximum suppression, and a multi-scale tiled detector for small faces.
//!
//! Spec: `blazeface.md`. TF "SAME" paddings (stem 1/2, stride-2 depthwise 0/1), residual blocks whose
//! stride-2 skips are a 2x2 max-pool plus zero channels appended at the end, and the raw outputs
//! flattened channels-last into `[896, 17]` rows `(logit, dx, dy, w, h, 6 x (kx, ky))`.
//!
//! [`FaceDetector::detect`] runs pass 1 (the whole image stretched to 256x256, as human does) and,
//! on large images, pass 2: a pyramid of overlapping square tiles, all merged with NMS. When pass 1
//! already found a face spanning [`LARGE_FACE_SHARE`] of the longer side, pass 2 runs only the
//! coarse levels that see faces of about that size.
//!
//! **Face sizes found.** On a photo whose longer side exceeds [`TILE_TRIGGER_SIDE`], with the default
//! [`DetectOptions`] (tiling on), a face at least 40 px wide and at least 1/50 of the longer side is
//! found: 40 px on a 2000x1500 photo, 80 px on a 4000x3000 one (where the [`MAX_TILES`] budget makes
//! the finest tiles coarser). Smaller faces are often found but not promised: measured on pasted
//! web-faces crops, every face down to 25 px on 2000x1500 and down to 60 px on 4000x3000, then fewer
//! (about half at 16 px on 2000x1500).
//! `tests/reference_blazeface.rs` (`tiling_finds_every_face_of_the_promised_sizes_in_large_photos`)
//! checks the promise.
//!
//! On the CPU the network runs on the NHWC engine (`blazeface/nhwc.rs`: several images per pass,
//! shared out between the cores; see [`USE_NHWC`]); the older NCHW path (the stem and each block's
//! pointwise conv + bias + skip + relu as fused kernels) is kept beside it for comparison; other
//! devices use plain candle ops.

use std::path::Path;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

mod decode;
mod detector;
mod nhwc;
mod resize;

pub use decode::{Detection, anchors, box_iou, decode, non_max_suppression};
pub use detector::{DetectOptions, FaceDetector, LARGE_FACE_SHARE};

use crate::Result;
use crate::depthwise::{Depthwise3x3, pointwise};
use crate::layer::{Activation, has_avx2_fma, same_padding_3x3};
use crate::weights::{self, BLAZEFACE};

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
/// Images per forward pass of the detector.
pub const DETECT_BATCH: usize = 16;
/// Whether the CPU runs the NHWC path (`blazeface/nhwc.rs`) rather than the older NCHW kernels
/// (3-3.7 times slower per image, measured side by side: `docs/PERFORMANCE.md`).
pub const USE_NHWC: bool = true;
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
    /// The CPU path on the NHWC engine (built when the weights are on the CPU).
    nhwc: Option<nhwc::NhwcBlazeFace>,
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
        let mut dw_weights = Vec::with_capacity(NUM_BLOCKS);
        for i in 0..NUM_BLOCKS {
            let (stride, cin, cout) = block_spec(i);
            let b = vb.pp(format!("blocks.{i}"));
            let w = b.get((cin, 1, 3, 3), "dw.weight")?;
            dw_weights.push(w.clone());
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
        let tail_dw = Depthwise3x3::new(w.clone(), zeros, 2, Activation::None)?;
        let tail_pw_weight = t.get((96, 96, 1, 1), "pw.weight")?.reshape((96, 96))?;
        let tail_pw_bias = t.get(96, "pw.bias")?;
        let (head16_weight, head16_bias) = fuse_heads(&vb.pp("head16"), 2)?;
        let (head8_weight, head8_bias) = fuse_heads(&vb.pp("head8"), 6)?;
        let nhwc = match vb.device().is_cpu() {
            true => {
                let weights: Vec<nhwc::BlockWeights> = blocks
                    .iter()
                    .zip(&dw_weights)
                    .map(|(b, dw)| nhwc::BlockWeights {
                        dw,
                        pw_weight: &b.pw_weight,
                        pw_bias: &b.pw_bias,
                        stride: b.stride,
                    })
                    .collect();
                Some(nhwc::NhwcBlazeFace::new(
                    (&stem_weight, &stem_bias),
                    &weights,
                    (&w, &tail_pw_weight, &tail_pw_bias),
                    (&head16_weight, &head16_bias),
                    (&head8_weight, &head8_bias),
                )?)
            }
            false => None,
        };
        Ok(Self {
            nhwc,
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
        match &self.nhwc {
            Some(net) if USE_NHWC && crate::layer::cpu_kernels(x) => net.forward(x),
            _ => self.forward_impl(x, crate::layer::cpu_kernels(x)),
        }
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
pub(super) fn axpy(d: &mut [f32], a: f32, x: &[f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;

    #[test]
    fn fused_cpu_kernels_match_candle_ops() {
        let mut rng = Rng::new(0x5eed_0001);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/blazeface.safetensors");
        let net = BlazeFace::load(&path, &Device::Cpu).expect("load blazeface");
        let x = rng.randn(0.0, 0.6, (2, 3, 256, 256), &Device::Cpu);
        let fused = net.forward_impl(&x, true).unwrap();
        let plain = net.forward_impl(&x, false).unwrap();
        let diff = (fused - plain).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-3, "fused vs candle ops: {diff}");
    }
}
