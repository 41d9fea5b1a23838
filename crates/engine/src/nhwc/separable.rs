//! A 3x3 depthwise conv fused with the 1x1 conv that follows it (MobileNet's separable block).
//!
//! Each GEMM task computes the depthwise output of its own block of pixels into a per-thread
//! scratch and runs the pointwise GEMM on it while it is still in cache, so the depthwise output
//! never goes out to memory and back. That needs every task to cover all output channels (a
//! split of the channels would compute the depthwise output twice), and pays only where the
//! pixels outnumber the output channels; otherwise the two layers run one after the other.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::conv::{Fields, NhwcConv, Plan, SendPtr, gemm, run_task};
use super::depthwise::{Geometry, NhwcDepthwise, write_pixels};
use crate::layer::Padding;

/// A depthwise 3x3 conv and then a 1x1 conv, over NHWC f32 tensors on the CPU.
#[derive(Debug, Clone)]
pub struct Separable {
    dw: NhwcDepthwise,
    pw: NhwcConv,
}

impl Separable {
    /// Joins a depthwise conv and a stride-1 1x1 conv over its channels.
    pub fn new(dw: NhwcDepthwise, pw: NhwcConv) -> Result<Self> {
        if pw.taps() != (1, 1) || pw.stride() != 1 || pw.c_in() != dw.channels() {
            candle_core::bail!("a separable block needs a stride-1 1x1 conv over the depthwise conv's channels");
        }
        Ok(Self { dw, pw })
    }

    /// Stride of the depthwise conv.
    pub fn stride(&self) -> usize {
        self.dw.stride()
    }

    /// Runs both convs on a contiguous NHWC f32 CPU tensor; `pad` is the depthwise conv's.
    pub fn forward(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(&SeparableOp { layer: self, pad })
    }
}

struct SeparableOp<'a> {
    layer: &'a Separable,
    pad: Padding,
}

/// Spare floats after each pixel of the depthwise output (one cache line).
const PIXEL_PAD: usize = 16;

thread_local! {
    /// Per-thread scratch: the depthwise output of one task's pixels.
    static SCRATCH: Cell<Vec<MaybeUninit<f32>>> = const { Cell::new(Vec::new()) };
}

impl CustomOp1 for SeparableOp<'_> {
    fn name(&self) -> &'static str {
        "nhwc-separable"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(src), Some((a, b))) = (storage, layout.contiguous_offsets()) else {
            candle_core::bail!("nhwc-separable expects a contiguous f32 tensor")
        };
        let src = &src[a..b];
        let Separable { dw, pw } = self.layer;
        let (n, h, w, c) = layout.shape().dims4()?;
        let geo = dw.geometry((h, w, c), self.pad)?;
        let (oh, ow) = geo.out;
        let pixels = n * oh * ow;
        let c_out = pw.c_out();
        let mut out = Vec::with_capacity(pixels * c_out);
        let plan = Plan::new(pw, pixels, ow * c);
        // Where C * 4 bytes is a multiple of 2 KiB, pixels of the depthwise output lie PIXEL_PAD
        // floats further apart than their channels need, so that the micro-kernel's six pixel
        // streams do not fall three or six to the same L1 sets. (Padding every width cost 4% at
        // batch 1: up to half as much scratch again for the narrow early layers.)
        let pitch = if c.is_multiple_of(512) { c + PIXEL_PAD } else { c };
        // Fused only where the pixels outnumber the output channels: on the weight-heavy late
        // layers the scratch of a 192-pixel block outgrows L2 and fusing measured 7-9% slower.
        if plan.whole_rows() && c_out < pixels {
            // SAFETY: `out` has room for every pixel's row of C, and each task covers every
            // output channel of its pixels (`whole_rows`).
            unsafe { run_fused(dw, pw, (src, &geo, pitch), &plan, SendPtr(out.as_mut_ptr()), |_| ()) };
        } else {
            // Zeroed, so any padding between pixels is initialised too.
            let mut mid = vec![0f32; pixels * pitch];
            // SAFETY: `[f32]` and `[MaybeUninit<f32>]` have the same layout; only values are written.
            let mid_uninit = unsafe { &mut *(mid.as_mut_slice() as *mut [f32] as *mut [MaybeUninit<f32>]) };
            mid_uninit
                .par_chunks_mut(ow * pitch)
                .enumerate()
                .for_each(|(row, d)| write_pixels(dw, src, &geo, (row * ow..(row + 1) * ow, pitch), d));
            gemm(pw, &mid, &Fields::strided((oh, ow), pitch), &mut out.spare_capacity_mut()[..pixels * c_out]);
        }
        // SAFETY: the GEMM wrote every one of the `pixels * c_out` values.
        unsafe { out.set_len(pixels * c_out) };
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c_out))))
    }
}

/// Runs `plan`'s tasks with the depthwise conv fused in: each task writes the depthwise output of
/// its pixels into a per-thread scratch (pixels `pitch` floats apart), calls `before(pixels)`
/// (where a plan that adds onto C writes those pixels' rows of C first), then runs its GEMM on the
/// scratch while it is still in cache.
///
/// # Safety
/// `dst` must have room for every pixel's row of C, each task of `plan` must cover every output
/// channel of its pixels (`Plan::whole_rows`), and `before` may touch only the rows of C of the
/// pixels it is given.
pub(super) unsafe fn run_fused(
    dw: &NhwcDepthwise,
    pw: &NhwcConv,
    (src, geo, pitch): (&[f32], &Geometry, usize),
    plan: &Plan,
    dst: SendPtr,
    before: impl Fn(Range<usize>) + Sync,
) {
    (0..plan.tasks()).into_par_iter().for_each(|task| {
        let (px, pn) = plan.task(task);
        let mut scratch = SCRATCH.take();
        scratch.clear();
        scratch.resize(px.len() * pitch, MaybeUninit::uninit());
        write_pixels(dw, src, geo, (px.clone(), pitch), &mut scratch);
        before(px.clone());
        let base = scratch.as_ptr().cast::<f32>();
        let origins: Vec<*const f32> = (0..px.len()).map(|i| base.wrapping_add(i * pitch)).collect();
        // SAFETY: `write_pixels` initialised the scratch, which holds each pixel's C depthwise
        // outputs (the whole field of a 1x1 conv); `dst` has room for every pixel's row of C and
        // tasks cover disjoint pixels (the caller's contract).
        unsafe { run_task(pw, plan, (px, pn), &origins, dst) };
        SCRATCH.set(scratch);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Activation, same_padding_3x3};
    use crate::test_util::Rng;
    use candle_core::Device;

    #[test]
    fn fused_block_equals_the_two_convs_in_turn_with_and_without_fusion() {
        let mut rng = Rng::new(0x5eed_0008);
        let dev = Device::Cpu;
        // Many pixels (each task covers every channel: fused) and a few pixels with many
        // channels (channels split across tasks: run in turn), each also at 512 channels, where
        // pixels lie a padded pitch apart. The plan depends on the thread count, so it is fixed.
        let cases = [
            ((2, 20, 21, 40, 24, 1), true),
            ((1, 6, 5, 8, 64, 2), false),
            ((1, 6, 6, 512, 16, 1), true),
            ((1, 4, 4, 512, 64, 1), false),
        ];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            for ((n, h, w, c, c_out, stride), fused) in cases {
                let x = rng.randn(0.0, 1.0, (n, h, w, c), &dev);
                let dw_w = rng.randn(0.0, 1.0, (c, 1, 3, 3), &dev);
                let dw_b = rng.randn(0.0, 1.0, c, &dev);
                let pw_w = rng.randn(0.0, 1.0, (c_out, c), &dev);
                let pw_b = rng.randn(0.0, 1.0, c_out, &dev);
                let dw = NhwcDepthwise::new(&dw_w, &dw_b, stride, Activation::Relu6).unwrap();
                let pw = NhwcConv::new(&pw_w, &pw_b, c, (1, 1), 1, Activation::Relu6, c_out).unwrap();
                let pad = same_padding_3x3(stride, h, w);
                let want = pw.forward(&dw.forward(&x, pad).unwrap(), (0, 0, 0, 0)).unwrap();
                let (_, oh, ow, _) = want.dims4().unwrap();
                let pixels = n * oh * ow;
                assert_eq!(Plan::new(&pw, pixels, ow * c).whole_rows() && c_out < pixels, fused);
                let got = Separable::new(dw, pw).unwrap().forward(&x, pad).unwrap();
                assert_eq!(got.dims(), want.dims());
                let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert_eq!(d, 0.0, "{n}x{h}x{w}x{c} -> {c_out}, stride {stride}");
            }
        });
    }

    #[test]
    fn rejects_a_pointwise_conv_that_does_not_fit() {
        let dev = Device::Cpu;
        let dw = NhwcDepthwise::new(
            &Tensor::zeros((4, 1, 3, 3), candle_core::DType::F32, &dev).unwrap(),
            &Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap(),
            1,
            Activation::None,
        )
        .unwrap();
        let conv = |c_in: usize, k: usize| {
            let wt = Tensor::zeros((8, c_in * k * k), candle_core::DType::F32, &dev).unwrap();
            NhwcConv::new(
                &wt,
                &Tensor::zeros(8, candle_core::DType::F32, &dev).unwrap(),
                c_in,
                (k, k),
                1,
                Activation::None,
                8,
            )
            .unwrap()
        };
        assert!(Separable::new(dw.clone(), conv(5, 1)).is_err());
        assert!(Separable::new(dw.clone(), conv(4, 3)).is_err());
        assert!(Separable::new(dw, conv(4, 1)).is_ok());
    }
}
