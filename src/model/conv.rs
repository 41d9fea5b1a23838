//! Convolutions over CNHW f32 activations on the CPU, shared by faceres and Inception-v3.
//!
//! In CNHW layout (`[C, N, H, W]`) a convolution is one matrix product
//! `[C_out, C_in*kh*kw] x [C_in*kh*kw, N*OH*OW]` whose result is already CNHW, so a whole batch
//! is one GEMM, channel slices are free (`narrow` on dim 0) and channel concatenation is a flat
//! copy. 1x1 convs read their input in place; other kernels go through an im2col buffer. The
//! weights are packed for [`sgemm`](super::sgemm) once at load, and bias and activation are
//! applied as the GEMM stores its results.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::depthwise::{Activation, Padding};
use super::sgemm::{Epilogue, MatB, PackedA, gemm};

/// Largest im2col buffer (in f32 values) built at once; bigger batches run in image chunks.
const MAX_COL_VALUES: usize = 1 << 22;

/// A convolution with bias and activation over CNHW f32 tensors on the CPU.
#[derive(Debug, Clone)]
pub struct CnhwConv {
    packed: PackedA,
    bias: Vec<f32>,
    c_in: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    act: Activation,
    act_rows: usize,
}

impl CnhwConv {
    /// Builds the layer from a `[C_out, C_in*kh*kw]` weight (OIHW flattened) and a `[C_out]` bias.
    /// Only the first `act_rows` output channels get `act`.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        c_in: usize,
        (kh, kw): (usize, usize),
        stride: usize,
        act: Activation,
        act_rows: usize,
    ) -> Result<Self> {
        let (c_out, k) = weight.dims2()?;
        if k != c_in * kh * kw || stride == 0 {
            candle_core::bail!("conv weight {:?} does not fit {c_in} channels of {kh}x{kw}", weight.shape());
        }
        let w = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if bias.len() != c_out {
            candle_core::bail!("conv bias has {} values for {c_out} channels", bias.len());
        }
        Ok(Self { packed: PackedA::new(&w, c_out, k), bias, c_in, kh, kw, stride, act, act_rows })
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.packed.rows()
    }

    /// Output size for an `h x w` input with the given padding.
    pub fn out_hw(&self, h: usize, w: usize, (t, l, b, r): Padding) -> Result<(usize, usize)> {
        if h + t + b < self.kh || w + l + r < self.kw {
            candle_core::bail!("input {h}x{w} is smaller than the {}x{} kernel", self.kh, self.kw);
        }
        Ok(((h + t + b - self.kh) / self.stride + 1, (w + l + r - self.kw) / self.stride + 1))
    }

    /// Runs the conv on a CNHW f32 CPU tensor whose `H x W` planes are contiguous.
    pub fn forward(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        x.apply_op1_no_bwd(&ConvOp { conv: self, pad })
    }

    fn epilogue(&self) -> Epilogue<'_> {
        Epilogue { bias: &self.bias, act: self.act, act_rows: self.act_rows }
    }
}

struct ConvOp<'a> {
    conv: &'a CnhwConv,
    pad: Padding,
}

impl CustomOp1 for ConvOp<'_> {
    fn name(&self) -> &'static str {
        "cnhw-conv"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else { candle_core::bail!("cnhw-conv expects f32") };
        let conv = self.conv;
        let (c, n, h, w) = layout.shape().dims4()?;
        if c != conv.c_in {
            candle_core::bail!("conv expects {} input channels, got {c}", conv.c_in);
        }
        let st = layout.stride();
        if st[3] != 1 || st[2] != w {
            candle_core::bail!("cnhw-conv expects contiguous H x W planes, got strides {st:?}");
        }
        let (oh, ow) = conv.out_hw(h, w, self.pad)?;
        let plane = oh * ow;
        let cols = n * plane;
        let c_out = conv.c_out();
        let mut out = Vec::with_capacity(c_out * cols);
        let dst = &mut out.spare_capacity_mut()[..c_out * cols];
        let direct = conv.kh == 1 && conv.kw == 1 && conv.stride == 1 && self.pad == (0, 0, 0, 0);
        if direct && layout.is_contiguous() {
            let b = MatB { data: &src[layout.start_offset()..], ld: cols, n: cols };
            gemm(&conv.packed, b, dst, cols, conv.epilogue());
        } else {
            let rows = c * conv.kh * conv.kw;
            let chunk = (MAX_COL_VALUES / (rows * plane).max(1)).clamp(1, n.max(1));
            let geometry = Im2Col { kh: conv.kh, kw: conv.kw, stride: conv.stride, pad: self.pad, h, w, oh, ow };
            let mut n0 = 0;
            while n0 < n {
                let nc = chunk.min(n - n0);
                let mut col = vec![0f32; rows * nc * plane];
                geometry.fill(src, layout, n0..n0 + nc, &mut col);
                let b = MatB { data: &col, ld: nc * plane, n: nc * plane };
                gemm(&conv.packed, b, &mut dst[n0 * plane..], cols, conv.epilogue());
                n0 += nc;
            }
        }
        // SAFETY: the GEMMs above wrote every one of the `c_out * cols` values.
        unsafe { out.set_len(c_out * cols) };
        Ok((CpuStorage::F32(out), Shape::from((c_out, n, oh, ow))))
    }
}

/// The geometry of one im2col: kernel, stride, padding, input and output sizes.
struct Im2Col {
    kh: usize,
    kw: usize,
    stride: usize,
    pad: Padding,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

impl Im2Col {
    /// Fills `col` (`[C*kh*kw, len(images)*OH*OW]`, zeroed) from the CNHW input for `images`.
    ///
    /// Row `c*kh*kw + ky*kw + kx` matches an OIHW weight flattened to `[O, I*kh*kw]`.
    fn fill(&self, src: &[f32], layout: &Layout, images: std::ops::Range<usize>, col: &mut [f32]) {
        let (oh, ow, h, w, s) = (self.oh, self.ow, self.h, self.w, self.stride);
        let (pt, pl, _, _) = self.pad;
        let st = layout.stride();
        let (s0, s1, off) = (st[0], st[1], layout.start_offset());
        let nc = images.len();
        let plane = oh * ow;
        let taps = self.kh * self.kw;
        // Valid output columns for a kernel column kx: 0 <= ox*s + kx - pl < w.
        let col_range = |kx: usize| {
            let lo = if kx >= pl { 0 } else { (pl - kx).div_ceil(s) };
            let hi = (w + pl).saturating_sub(kx).div_ceil(s).min(ow);
            (lo, hi)
        };
        col.par_chunks_mut(plane).with_min_len((4096 / plane.max(1)).max(1)).enumerate().for_each(|(idx, dst)| {
            let (r, ni) = (idx / nc, images.start + idx % nc);
            let (ci, ky, kx) = (r / taps, (r % taps) / self.kw, r % self.kw);
            let img = &src[off + ci * s0 + ni * s1..][..h * w];
            let (lo, hi) = col_range(kx);
            if lo >= hi {
                return;
            }
            let start = lo * s + kx - pl;
            for oy in 0..oh {
                let iy = (oy * s + ky) as isize - pt as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                let srow = &img[iy as usize * w..][..w];
                let drow = &mut dst[oy * ow + lo..oy * ow + hi];
                if s == 1 {
                    drow.copy_from_slice(&srow[start..start + (hi - lo)]);
                } else {
                    for (i, d) in drow.iter_mut().enumerate() {
                        *d = srow[start + i * s];
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Stock Candle conv on the NCHW view, as the reference.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, c_in: usize, k: (usize, usize), s: usize, pad: Padding) -> Tensor {
        let (t, l, bo, r) = pad;
        let c_out = w.dim(0).unwrap();
        let xn = x.transpose(0, 1).unwrap().pad_with_zeros(2, t, bo).unwrap().pad_with_zeros(3, l, r).unwrap();
        let w4 = w.reshape((c_out, c_in, k.0, k.1)).unwrap();
        let y = xn.contiguous().unwrap().conv2d(&w4, 0, s, 1, 1).unwrap();
        let y = y.broadcast_add(&b.reshape((1, c_out, 1, 1)).unwrap()).unwrap().relu().unwrap();
        y.transpose(0, 1).unwrap().contiguous().unwrap()
    }

    #[test]
    fn matches_candle_conv_for_kernels_strides_and_paddings() {
        let dev = Device::Cpu;
        let cases = [
            ((3, 3), 2, (0, 0, 1, 1), 8, 8),
            ((3, 3), 2, (0, 0, 0, 0), 9, 9),
            ((3, 3), 1, (1, 1, 1, 1), 8, 7),
            ((1, 7), 1, (0, 3, 0, 3), 9, 9),
            ((7, 1), 1, (3, 0, 3, 0), 9, 10),
            ((5, 5), 1, (2, 2, 2, 2), 7, 7),
            ((1, 1), 1, (0, 0, 0, 0), 6, 6),
        ];
        for (k, s, pad, h, w) in cases {
            // A narrowed (offset) input with batch 2 exercises the strided path.
            let big = Tensor::randn(0f32, 1.0, (6, 2, h, w), &dev).unwrap();
            for x in [big.narrow(0, 2, 4).unwrap(), big.narrow(0, 2, 4).unwrap().contiguous().unwrap()] {
                let wt = Tensor::randn(0f32, 1.0, (13, 4 * k.0 * k.1), &dev).unwrap();
                let b = Tensor::randn(0f32, 1.0, 13, &dev).unwrap();
                let conv = CnhwConv::new(&wt, &b, 4, k, s, Activation::Relu, 13).unwrap();
                let got = conv.forward(&x, pad).unwrap();
                let want = reference(&x, &wt, &b, 4, k, s, pad);
                assert_eq!(got.dims(), want.dims());
                let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-4, "kernel {k:?} stride {s} pad {pad:?}: diff {d}");
            }
        }
    }

    #[test]
    fn rejects_wrong_channel_count_and_tiny_input() {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((2, 3 * 9), DType::F32, &dev).unwrap();
        let conv = CnhwConv::new(&wt, &Tensor::zeros(2, DType::F32, &dev).unwrap(), 3, (3, 3), 1, Activation::None, 0)
            .unwrap();
        let x = Tensor::zeros((4, 1, 5, 5), DType::F32, &dev).unwrap();
        assert!(conv.forward(&x, (0, 0, 0, 0)).is_err());
        let x = Tensor::zeros((3, 1, 2, 2), DType::F32, &dev).unwrap();
        assert!(conv.forward(&x, (0, 0, 0, 0)).is_err());
    }
}
