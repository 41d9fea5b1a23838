//! A residual separable block (BlazeFace's): `relu(pw(dw(x)) + bias + skip(x))`, where the skip
//! is `x` itself (stride 1) or its 2x2 max pool with zero channels appended (stride 2).
//!
//! The skip is written into the output first, and the pointwise GEMM then adds its products to
//! it (the micro-kernel's accumulate), so the residual costs no pass of its own. Where each GEMM
//! task covers all output channels, the task writes the skip of its own pixels just before its
//! GEMM, and the depthwise output stays in a per-thread scratch ([`super::separable::run_fused`]).

use std::mem::MaybeUninit;
use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{NhwcConv, Plan, SendPtr, run_task};
use super::depthwise::{Geometry, NhwcDepthwise, write_pixels};
use super::narrow::{NarrowPointwise, depthwise_row};
use super::separable::run_fused;
use crate::layer::{Activation, Padding};

/// A depthwise 3x3 conv, a 1x1 conv with bias, a skip connection and ReLU, over NHWC f32 tensors.
#[derive(Debug, Clone)]
pub struct ResidualSeparable {
    dw: NhwcDepthwise,
    /// The 1x1 conv, with ReLU on every channel (applied after the skip is added).
    pw: NhwcConv,
    /// The same conv for 8 to 24 output channels on AVX2, row by row ([`super::narrow`]).
    narrow: Option<NarrowPointwise>,
}

impl ResidualSeparable {
    /// Joins a depthwise conv (stride 1 or 2) and a `[C_out, C]` pointwise weight and bias; stride
    /// 1 needs `C_out == C`, stride 2 `C_out >= C` (the skip's missing channels are zeros).
    pub fn new(dw: NhwcDepthwise, pw_weight: &Tensor, pw_bias: &Tensor) -> Result<Self> {
        let c = dw.channels();
        let c_out = pw_weight.dim(0)?;
        let fits = match dw.stride() {
            1 => c_out == c,
            _ => c_out >= c,
        };
        if !fits {
            candle_core::bail!("a residual block of stride {} cannot map {c} to {c_out} channels", dw.stride());
        }
        let pw = NhwcConv::new(pw_weight, pw_bias, c, (1, 1), 1, Activation::Relu, c_out)?;
        let narrow = NarrowPointwise::new(&pw_weight.flatten_from(1)?, pw_bias)?;
        Ok(Self { dw, pw, narrow })
    }

    /// Stride of the depthwise conv (and of the skip).
    pub fn stride(&self) -> usize {
        self.dw.stride()
    }

    /// Runs the block on a contiguous NHWC f32 CPU tensor; `pad` is the depthwise conv's.
    pub fn forward(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(&ResidualOp { layer: self, pad })
    }
}

struct ResidualOp<'a> {
    layer: &'a ResidualSeparable,
    pad: Padding,
}

impl CustomOp1 for ResidualOp<'_> {
    fn name(&self) -> &'static str {
        "nhwc-residual-separable"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(src), Some((a, b))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("nhwc-residual-separable expects a contiguous f32 tensor")
        };
        let src = &src[a..b];
        let ResidualSeparable { dw, pw, narrow } = self.layer;
        let (n, h, w, c) = layout.shape().dims4()?;
        let geo = dw.geometry((h, w, c), self.pad)?;
        let (oh, ow) = geo.out;
        let s = dw.stride();
        // The skip (the input, or its 2x2 pool) must have the depthwise output's size.
        if (h, w) != (oh * s, ow * s) {
            candle_core::bail!("residual block: a {h}x{w} input with padding {:?} gives {oh}x{ow}", self.pad);
        }
        let pixels = n * oh * ow;
        let c_out = pw.c_out();
        let skip = Skip { src, geo, s, c_out };
        if let Some(narrow) = narrow {
            let skips = (s == 1).then_some(src);
            // The depthwise conv row by row too, where its channels come in blocks of 8.
            let zeros = match c.is_multiple_of(8) {
                true => vec![0f32; w * c],
                false => Vec::new(),
            };
            let out = narrow.run(n * oh, ow, skips, |row, a, skip_row| {
                let px = row * ow..(row + 1) * ow;
                match zeros.is_empty() {
                    false => depthwise_row(dw, src, &geo, row, &zeros, a),
                    true => write_pixels(dw, src, &geo, (px.clone(), c), a),
                }
                if s != 1 {
                    // SAFETY: `[f32]` and `[MaybeUninit<f32>]` have the same layout; only values are written.
                    skip.write(px, unsafe { &mut *(skip_row as *mut [f32] as *mut [MaybeUninit<f32>]) });
                }
            })?;
            return Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, narrow.c_out()))));
        }
        let mut out: Vec<f32> = Vec::with_capacity(pixels * c_out);
        let plan = Plan::new(pw, pixels, ow * c).onto_c();
        let dst = SendPtr(out.as_mut_ptr());
        if plan.whole_rows() && c_out < pixels {
            // SAFETY: `out` has room for every pixel's row of C, each task covers every output
            // channel of its pixels, and the skip is written only into the rows of the task's own
            // pixels (tasks cover disjoint pixels), before the GEMM adds onto them.
            unsafe {
                run_fused(dw, pw, (src, &geo, c), &plan, dst, |px| skip.write(px.clone(), out_rows(dst, &px, c_out)))
            };
        } else {
            let mut mid = Vec::with_capacity(pixels * c);
            mid.spare_capacity_mut()[..pixels * c]
                .par_chunks_mut(ow * c)
                .enumerate()
                .for_each(|(row, d)| write_pixels(dw, src, &geo, (row * ow..(row + 1) * ow, c), d));
            // SAFETY: every row of the depthwise output was written.
            unsafe { mid.set_len(pixels * c) };
            out.spare_capacity_mut()[..pixels * c_out]
                .par_chunks_mut(ow * c_out)
                .enumerate()
                .for_each(|(row, d)| skip.write(row * ow..(row + 1) * ow, d));
            let mid = &mid;
            (0..plan.tasks()).into_par_iter().for_each(|task| {
                let (px, pn) = plan.task(task);
                let origins: Vec<*const f32> = px.clone().map(|p| mid.as_ptr().wrapping_add(p * c)).collect();
                // SAFETY: `mid` holds every pixel's C depthwise outputs, `out` every pixel's skip;
                // tasks at once cover disjoint (pixels, panels) blocks of C.
                unsafe { run_task(pw, &plan, (px, pn), &origins, dst) };
            });
        }
        // SAFETY: the skip and then the GEMM wrote every one of the `pixels * c_out` values.
        unsafe { out.set_len(pixels * c_out) };
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c_out))))
    }
}

/// The rows of C (`c_out` floats per pixel) of pixels `px`.
///
/// # Safety
/// `dst` must have room for `px.end * c_out` floats, and no one else may touch those rows while
/// the slice lives.
unsafe fn out_rows<'a>(dst: SendPtr, px: &Range<usize>, c_out: usize) -> &'a mut [MaybeUninit<f32>] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(dst.at(px.start * c_out).cast(), px.len() * c_out) }
}

/// Writes a block's skip connection.
struct Skip<'a> {
    src: &'a [f32],
    geo: Geometry,
    s: usize,
    c_out: usize,
}

impl Skip<'_> {
    /// Writes the skip of output pixels `px` (numbered over the batch) into `dst`, `c_out` floats
    /// per pixel: the input pixel (stride 1) or the maximum of its 2x2 window, then zeros.
    fn write(&self, px: Range<usize>, dst: &mut [MaybeUninit<f32>]) {
        let (h, w, c) = self.geo.input();
        let (oh, ow) = self.geo.out;
        for (p, d) in px.zip(dst.chunks_exact_mut(self.c_out)) {
            let (d, zeros) = d.split_at_mut(c);
            if self.s == 1 {
                d.iter_mut().zip(&self.src[p * c..(p + 1) * c]).for_each(|(d, &v)| _ = d.write(v));
            } else {
                let (img, oy, ox) = (p / (oh * ow), p / ow % oh, p % ow);
                let at = |dy: usize, dx: usize| {
                    let i = ((img * h + 2 * oy + dy) * w + 2 * ox + dx) * c;
                    &self.src[i..i + c]
                };
                // (`>` rather than `f32::max`, whose NaN rule kept the loop from vectorising.)
                let max = |x: f32, y: f32| if x > y { x } else { y };
                let pairs = at(0, 0).iter().zip(at(0, 1)).zip(at(1, 0).iter().zip(at(1, 1)));
                for (d, ((&a, &b), (&e, &f))) in d.iter_mut().zip(pairs) {
                    d.write(max(max(a, b), max(e, f)));
                }
            }
            zeros.iter_mut().for_each(|z| _ = z.write(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::same_padding_3x3;
    use crate::test_util::Rng;
    use candle_core::Device;

    /// The block on Candle's own ops, NCHW, as the reference.
    fn reference(x: &Tensor, dw_w: &Tensor, pw_w: &Tensor, pw_b: &Tensor, stride: usize) -> Tensor {
        let (_, h, w, c) = x.dims4().unwrap();
        let c_out = pw_w.dim(0).unwrap();
        let (t, l, b, r) = same_padding_3x3(stride, h, w);
        let xn = x.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
        let y = xn.pad_with_zeros(2, t, b).unwrap().pad_with_zeros(3, l, r).unwrap();
        let y = y.conv2d(dw_w, 0, stride, 1, c).unwrap();
        let y = y.conv2d(&pw_w.reshape((c_out, c, 1, 1)).unwrap(), 0, 1, 1, 1).unwrap();
        let y = y.broadcast_add(&pw_b.reshape((1, c_out, 1, 1)).unwrap()).unwrap();
        let skip = match stride {
            1 => xn,
            _ => xn.max_pool2d(2).unwrap().pad_with_zeros(1, 0, c_out - c).unwrap(),
        };
        (y + skip).unwrap().relu().unwrap().permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
    }

    #[test]
    fn matches_candle_ops_with_and_without_fusion_and_with_appended_channels() {
        let mut rng = Rng::new(0x5eed_0021);
        let dev = Device::Cpu;
        // (n, h, w, c, c_out, stride): many pixels (fused), few pixels and many channels (the
        // GEMM's tasks split the channels: run in turn), stride 2 with and without new channels.
        // The plan depends on the thread count, so it is fixed.
        let cases = [
            ((2, 20, 20, 24, 24, 1), true),
            ((2, 40, 40, 24, 48, 2), true),
            ((3, 6, 6, 8, 8, 2), true),
            ((2, 7, 11, 16, 16, 1), true),
            ((1, 10, 14, 8, 16, 2), true),
            ((1, 8, 8, 12, 24, 2), false),
            ((2, 12, 10, 24, 24, 1), false),
            ((2, 12, 10, 24, 48, 2), false),
            ((1, 4, 4, 96, 96, 1), false),
            ((1, 8, 6, 48, 96, 2), false),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            for ((n, h, w, c, c_out, stride), fused) in cases {
                let x = rng.randn(0.0, 1.0, (n, h, w, c), &dev);
                let dw_w = rng.randn(0.0, 0.5, (c, 1, 3, 3), &dev);
                let pw_w = rng.randn(0.0, 1.0 / (c as f32).sqrt(), (c_out, c), &dev);
                let pw_b = rng.randn(0.0, 0.5, c_out, &dev);
                let zeros = Tensor::zeros(c, candle_core::DType::F32, &dev).unwrap();
                let dw = NhwcDepthwise::new(&dw_w, &zeros, stride, Activation::None).unwrap();
                let block = ResidualSeparable::new(dw, &pw_w, &pw_b).unwrap();
                let pixels = n * (h / stride) * (w / stride);
                let plan = Plan::new(&block.pw, pixels, w / stride * c);
                assert_eq!(plan.whole_rows() && c_out < pixels, fused, "{n}x{h}x{w}x{c} -> {c_out}");
                let narrow = matches!(c_out, 8 | 16 | 24) && crate::layer::has_avx2_fma();
                assert_eq!(block.narrow.is_some(), narrow);
                let want = reference(&x, &dw_w, &pw_w, &pw_b, stride);
                // Both paths where the narrow kernel applies: the narrow rows and the GEMM's.
                let gemm_only = ResidualSeparable { narrow: None, ..block.clone() };
                for block in [block, gemm_only] {
                    let got = block.forward(&x, same_padding_3x3(stride, h, w)).unwrap();
                    assert_eq!(got.dims(), want.dims());
                    let d = (&got - &want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                    let path = if block.narrow.is_some() { "narrow" } else { "GEMM" };
                    assert!(d < 1e-4, "{n}x{h}x{w}x{c} -> {c_out}, stride {stride}, {path}: diff {d}");
                }
                // Both signs reach the ReLU, so a missing skip or bias would show.
                let zero = want.eq(0f32).unwrap().to_dtype(candle_core::DType::F32).unwrap();
                let share = zero.mean_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(share > 0.05 && share < 0.95, "share of zeros {share}");
            }
        });
    }

    #[test]
    fn rejects_shapes_that_do_not_fit() {
        let dev = Device::Cpu;
        let z = |s: &[usize]| Tensor::zeros(s, candle_core::DType::F32, &dev).unwrap();
        let dw = |stride| NhwcDepthwise::new(&z(&[8, 1, 3, 3]), &z(&[8]), stride, Activation::None).unwrap();
        assert!(ResidualSeparable::new(dw(1), &z(&[16, 8]), &z(&[16])).is_err());
        assert!(ResidualSeparable::new(dw(2), &z(&[4, 8]), &z(&[4])).is_err());
        let block = ResidualSeparable::new(dw(2), &z(&[16, 8]), &z(&[16])).unwrap();
        // An odd side: the depthwise output is larger than the 2x2 pool's.
        let x = z(&[1, 5, 6, 8]);
        assert!(block.forward(&x, same_padding_3x3(2, 5, 6)).is_err());
        assert!(block.forward(&z(&[1, 6, 6, 4]), same_padding_3x3(2, 6, 6)).is_err());
    }
}
