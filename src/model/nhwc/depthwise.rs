//! The 3x3 depthwise convolution over NHWC f32 activations, vectorised across channels.
//!
//! Each output pixel's channels are computed in blocks of `LANES` (32, then 8, then 1) that stay
//! in registers through the nine taps; taps that fall on the padding are skipped.

use std::mem::MaybeUninit;
use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::model::depthwise::{Activation, Padding};

/// Channels per register block (four AVX registers).
const LANES: usize = 32;

/// A 3x3 depthwise conv with bias and activation over NHWC f32 tensors on the CPU.
#[derive(Debug, Clone)]
pub struct NhwcDepthwise {
    c: usize,
    stride: usize,
    /// `[tap][channel]`, tap `ky * 3 + kx`.
    weights: Vec<f32>,
    bias: Vec<f32>,
    act: Activation,
}

impl NhwcDepthwise {
    /// Builds the layer from a `[C, 1, 3, 3]` weight, a `[C]` bias, stride (1 or 2) and activation.
    pub fn new(weight: &Tensor, bias: &Tensor, stride: usize, act: Activation) -> Result<Self> {
        let (c, one, kh, kw) = weight.dims4()?;
        if one != 1 || kh != 3 || kw != 3 {
            candle_core::bail!("depthwise weight must be [C,1,3,3], got {:?}", weight.shape());
        }
        if !(1..=2).contains(&stride) {
            candle_core::bail!("depthwise stride must be 1 or 2, got {stride}");
        }
        let w = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if bias.len() != c {
            candle_core::bail!("depthwise bias must have {c} values, got {}", bias.len());
        }
        let weights = (0..9 * c).map(|i| w[(i % c) * 9 + i / c]).collect();
        Ok(Self { c, stride, weights, bias, act })
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.c
    }

    /// Stride (1 or 2).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Runs the conv on a contiguous NHWC f32 CPU tensor with the given padding.
    pub fn forward(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(&DepthwiseOp { layer: self, pad })
    }
}

struct DepthwiseOp<'a> {
    layer: &'a NhwcDepthwise,
    pad: Padding,
}

/// Sizes of one call.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    h: usize,
    w: usize,
    c: usize,
    stride: usize,
    pad: (usize, usize),
    /// Output size.
    pub(super) out: (usize, usize),
}

impl NhwcDepthwise {
    /// Checks a `[N, H, W, C]` input against the layer and returns the call's sizes.
    pub(super) fn geometry(&self, (h, w, c): (usize, usize, usize), (pt, pl, pb, pr): Padding) -> Result<Geometry> {
        if c != self.c {
            candle_core::bail!("depthwise conv: input has {c} channels, layer has {}", self.c);
        }
        if h + pt + pb < 3 || w + pl + pr < 3 {
            candle_core::bail!("depthwise conv needs at least 3x3 padded input, got {h}x{w}");
        }
        let s = self.stride;
        let out = ((h + pt + pb - 3) / s + 1, (w + pl + pr - 3) / s + 1);
        Ok(Geometry { h, w, c, stride: s, pad: (pt, pl), out })
    }
}

impl CustomOp1 for DepthwiseOp<'_> {
    fn name(&self) -> &'static str {
        "nhwc-depthwise3x3"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else { candle_core::bail!("nhwc-depthwise3x3 expects f32") };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("nhwc-depthwise3x3 expects a contiguous input")
        };
        let (n, h, w, c) = layout.shape().dims4()?;
        let geo = self.layer.geometry((h, w, c), self.pad)?;
        let (oh, ow) = geo.out;
        let mut out = Vec::with_capacity(n * oh * ow * c);
        out.spare_capacity_mut()[..n * oh * ow * c]
            .par_chunks_mut(ow * c)
            .with_min_len((16384 / (ow * c)).max(1))
            .enumerate()
            .for_each(|(row, dst)| write_pixels(self.layer, &src[a..b], &geo, (row * ow..(row + 1) * ow, c), dst));
        // SAFETY: every output row wrote all of its `ow * c` values.
        unsafe { out.set_len(n * oh * ow * c) };
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c))))
    }
}

/// Writes output pixels `px` (numbered over the whole batch) of the batch `src` into `dst`, the
/// `C` values of each pixel `pitch` floats after the previous pixel's (`pitch >= C`; the floats
/// in between are left as they are).
pub(super) fn write_pixels(
    layer: &NhwcDepthwise,
    src: &[f32],
    geo: &Geometry,
    (px, pitch): (Range<usize>, usize),
    dst: &mut [MaybeUninit<f32>],
) {
    #[cfg(target_arch = "x86_64")]
    if super::kernel::has_avx2_fma() {
        // SAFETY: AVX2 and FMA are present.
        return unsafe { write_pixels_avx2(layer, src, geo, (px, pitch), dst) };
    }
    write_pixels_body(layer, src, geo, (px, pitch), dst);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn write_pixels_avx2(
    layer: &NhwcDepthwise,
    src: &[f32],
    geo: &Geometry,
    (px, pitch): (Range<usize>, usize),
    dst: &mut [MaybeUninit<f32>],
) {
    write_pixels_body(layer, src, geo, (px, pitch), dst);
}

#[inline(always)]
fn write_pixels_body(
    layer: &NhwcDepthwise,
    src: &[f32],
    geo: &Geometry,
    (px, pitch): (Range<usize>, usize),
    dst: &mut [MaybeUninit<f32>],
) {
    let Geometry { h, w, c, stride, pad: (pt, pl), out: (oh, ow) } = *geo;
    let clamp = layer.act.bounds();
    // Row by row: the image and the kernel rows inside it are found once per output row.
    let mut p = px.start;
    let mut dst = dst;
    while p < px.end {
        let (row, ox0) = (p / ow, p % ow);
        let ox1 = ow.min(ox0 + px.end - p);
        let (img, oy) = (row / oh, row % oh);
        let img = &src[img * h * w * c..(img + 1) * h * w * c];
        let rows = super::Taps::new(oy * stride, pt, h);
        let (now, rest) = dst.split_at_mut(((ox1 - ox0) * pitch).min(dst.len()));
        for (ox, out) in (ox0..ox1).zip(now.chunks_mut(pitch)) {
            let out = &mut out[..c];
            let cols = super::Taps::new(ox * stride, pl, w);
            let taps = (&rows, &cols);
            let mut c0 = 0;
            c0 = channel_blocks::<LANES>(layer, img, taps, (w, c), c0, out, clamp);
            c0 = channel_blocks::<8>(layer, img, taps, (w, c), c0, out, clamp);
            channel_blocks::<1>(layer, img, taps, (w, c), c0, out, clamp);
        }
        dst = rest;
        p += ox1 - ox0;
    }
}

/// Computes channels from `c0` in whole blocks of `B` for one output pixel; returns where it
/// stopped.
#[inline(always)]
fn channel_blocks<const B: usize>(
    layer: &NhwcDepthwise,
    img: &[f32],
    (rows, cols): (&super::Taps, &super::Taps),
    (w, c): (usize, usize),
    mut c0: usize,
    out: &mut [MaybeUninit<f32>],
    (lo, hi): (f32, f32),
) -> usize {
    while c0 + B <= c {
        let mut acc: [f32; B] = layer.bias[c0..c0 + B].try_into().unwrap();
        for &(ky, iy) in rows.valid() {
            for &(kx, ix) in cols.valid() {
                let x: &[f32; B] = img[(iy * w + ix) * c + c0..][..B].try_into().unwrap();
                let k: &[f32; B] = layer.weights[(ky * 3 + kx) * c + c0..][..B].try_into().unwrap();
                for ((a, &x), &k) in acc.iter_mut().zip(x).zip(k) {
                    *a = x.mul_add(k, *a);
                }
            }
        }
        for (d, &a) in out[c0..c0 + B].iter_mut().zip(&acc) {
            d.write(a.max(lo).min(hi));
        }
        c0 += B;
    }
    c0
}
