//! The pointwise conv of a narrow residual block (8, 16 or 24 output channels, as in BlazeFace's
//! first 16 blocks), row by row, on AVX2.
//!
//! The GEMM's micro-kernel ([`super::kernel`]) computes 16 channels at a time: 24 channels take
//! one full panel and one half-empty panel that goes through a scratch tile, and a 24-deep K
//! loop is short next to the tile's loads and stores. Here one tile holds every output channel
//! of a few pixels (4 pixels of 24 channels: twelve registers), starts from the skip and the
//! bias, and ends with the ReLU and one store, so each output value is written once.

use std::mem::MaybeUninit;

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::depthwise::{Geometry, NhwcDepthwise};

/// A 1x1 conv `[C_out, C]` with bias, plus a skip and ReLU, for `C_out` of 8, 16 or 24.
#[derive(Debug, Clone)]
pub(super) struct NarrowPointwise {
    c: usize,
    c_out: usize,
    /// `[C][C_out]`: the weights of input channel `k` for every output channel.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl NarrowPointwise {
    /// The kernel for this weight, where it has one (`C_out` of 8, 16 or 24, an AVX2 CPU).
    pub(super) fn new(weight: &Tensor, bias: &Tensor) -> Result<Option<Self>> {
        let (c_out, c) = weight.dims2()?;
        if !matches!(c_out, 8 | 16 | 24) || !crate::layer::has_avx2_fma() {
            return Ok(None);
        }
        let w = weight.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let weights = (0..c * c_out).map(|i| w[(i % c_out) * c + i / c_out]).collect();
        let bias = bias.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        if bias.len() != c_out {
            candle_core::bail!("pointwise bias has {} values for {c_out} channels", bias.len());
        }
        Ok(Some(Self { c, c_out, weights, bias }))
    }

    /// Output channels.
    pub(super) fn c_out(&self) -> usize {
        self.c_out
    }

    /// Runs the block's rows: for output row `r` of `rows` (each `width` pixels), `fill(r, a,
    /// skip)` writes the row's depthwise output (`C` floats per pixel) into `a` and, unless
    /// `skips` holds every row's skip already, the row's skip (`C_out` floats per pixel) into
    /// `skip`; the result is `relu(W a + bias + skip)`, `[rows * width, C_out]`.
    pub(super) fn run<F>(&self, rows: usize, width: usize, skips: Option<&[f32]>, fill: F) -> Result<Vec<f32>>
    where
        F: Fn(usize, &mut [MaybeUninit<f32>], &mut [f32]) + Sync,
    {
        let (c, c_out) = (self.c, self.c_out);
        if skips.is_some_and(|s| s.len() < rows * width * c_out) {
            candle_core::bail!("narrow pointwise: the skips are shorter than the output");
        }
        let mut out: Vec<f32> = Vec::with_capacity(rows * width * c_out);
        let own_skip = if skips.is_some() { 0 } else { width * c_out };
        let scratch = || (vec![MaybeUninit::<f32>::uninit(); width * c], vec![0f32; own_skip]);
        out.spare_capacity_mut()[..rows * width * c_out]
            .par_chunks_mut(width * c_out)
            .with_min_len((8192 / (width * c_out)).max(1))
            .enumerate()
            .for_each_init(scratch, |(a, skip_buf), (r, dst)| {
                fill(r, a, skip_buf);
                let skip = match skips {
                    Some(s) => &s[r * width * c_out..(r + 1) * width * c_out],
                    None => &skip_buf[..],
                };
                // SAFETY: `fill` wrote the whole depthwise row.
                let a = unsafe { &*(a.as_slice() as *const [MaybeUninit<f32>] as *const [f32]) };
                // SAFETY: AVX2 and FMA were checked in `new`; the rows hold `width` pixels each.
                unsafe {
                    match c_out {
                        8 => self.row::<1, 8>(a, skip, dst),
                        16 => self.row::<2, 6>(a, skip, dst),
                        _ => self.row::<3, 4>(a, skip, dst),
                    }
                }
            });
        // SAFETY: every row wrote all of its `width * c_out` values.
        unsafe { out.set_len(rows * width * c_out) };
        Ok(out)
    }

    /// One row: `MR` pixels at a time, then the rest one by one.
    ///
    /// # Safety
    /// AVX2 and FMA must be present; `NV * 8 == C_out`; `a` holds `C` floats per pixel of `dst`
    /// and `skip` `C_out`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row<const NV: usize, const MR: usize>(&self, a: &[f32], skip: &[f32], dst: &mut [MaybeUninit<f32>]) {
        let (c, c_out) = (self.c, self.c_out);
        let width = dst.len() / c_out;
        assert!(a.len() >= width * c && skip.len() >= width * c_out && NV * 8 == c_out);
        let runs = [(0, c)];
        let t = Tiles { runs: &runs, step: c, weights: &self.weights, bias: &self.bias };
        // SAFETY: every pixel's `C` values and skip lie inside `a` and `skip` (checked above).
        unsafe { t.row::<NV, MR>(a.as_ptr(), Some(skip.as_ptr()), dst) }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn row<const NV: usize, const MR: usize>(&self, _: &[f32], _: &[f32], _: &mut [MaybeUninit<f32>]) {
        unreachable!("the narrow kernel is only built on AVX2 CPUs")
    }
}

/// What the tiles of one row read: each pixel's field is `runs` (offset, length) from its origin,
/// origins `step` floats apart; the weights are `[K][C_out]`.
pub(super) struct Tiles<'a> {
    pub(super) runs: &'a [(usize, usize)],
    pub(super) step: usize,
    pub(super) weights: &'a [f32],
    pub(super) bias: &'a [f32],
}

impl Tiles<'_> {
    /// One row of output pixels, the first one's field at `a`: `MR` pixels at a time, then the
    /// rest one by one.
    ///
    /// # Safety
    /// AVX2 and FMA must be present; `NV * 8` must be the bias's length and the weights must hold
    /// `sum(len)` rows of it; every pixel's field must be readable, and `skip` (if any) must hold
    /// `C_out` floats per pixel of `dst`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row<const NV: usize, const MR: usize>(
        &self,
        a: *const f32,
        skip: Option<*const f32>,
        dst: &mut [MaybeUninit<f32>],
    ) {
        let c_out = self.bias.len();
        assert!(NV * 8 == c_out && self.weights.len() >= self.runs.iter().map(|r| r.1).sum::<usize>() * c_out);
        let width = dst.len() / c_out;
        let out = dst.as_mut_ptr().cast::<f32>();
        let mut p = 0;
        // SAFETY: pixels `p..p + MR` (or `p`) lie inside the row (the caller's contract).
        unsafe {
            while p + MR <= width {
                self.tile::<NV, MR>(a.add(p * self.step), skip.map(|s| s.add(p * c_out)), out.add(p * c_out));
                p += MR;
            }
            while p < width {
                self.tile::<NV, 1>(a.add(p * self.step), skip.map(|s| s.add(p * c_out)), out.add(p * c_out));
                p += 1;
            }
        }
    }

    /// `MR` pixels: `out = relu(bias + skip + sum_k field[k] * W[k])`.
    ///
    /// # Safety
    /// As for [`Self::row`], for these `MR` pixels.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const NV: usize, const MR: usize>(&self, a: *const f32, skip: Option<*const f32>, out: *mut f32) {
        use std::arch::x86_64::*;
        let c_out = NV * 8;
        let (mut w, bias) = (self.weights.as_ptr(), self.bias.as_ptr());
        // SAFETY (whole body): the reads and writes stay inside the caller's ranges.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); NV]; MR];
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, r) in row.iter_mut().enumerate() {
                    *r = _mm256_loadu_ps(bias.add(8 * v));
                    if let Some(s) = skip {
                        *r = _mm256_add_ps(*r, _mm256_loadu_ps(s.add(i * c_out + 8 * v)));
                    }
                }
            }
            for &(offset, len) in self.runs {
                let a = a.add(offset);
                for k in 0..len {
                    let b: [__m256; NV] = std::array::from_fn(|v| _mm256_loadu_ps(w.add(8 * v)));
                    for (i, row) in acc.iter_mut().enumerate() {
                        let x = _mm256_broadcast_ss(&*a.add(i * self.step + k));
                        for (r, &b) in row.iter_mut().zip(&b) {
                            *r = _mm256_fmadd_ps(x, b, *r);
                        }
                    }
                    w = w.add(c_out);
                }
            }
            let zero = _mm256_setzero_ps();
            for (i, row) in acc.iter().enumerate() {
                for (v, &r) in row.iter().enumerate() {
                    _mm256_storeu_ps(out.add(i * c_out + 8 * v), _mm256_max_ps(r, zero));
                }
            }
        }
    }
}

/// A conv of 8, 16 or 24 output channels with bias and ReLU over NHWC f32 tensors on an AVX2
/// CPU (BlazeFace's 5x5 stride-2 stem), each tile holding every output channel of its pixels.
#[derive(Debug, Clone)]
pub struct NarrowConv {
    c_in: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    /// `[K][C_out]`, `k = (ky * kw + kx) * C_in + ci`.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl NarrowConv {
    /// The layer for an OIHW weight `[C_out, C_in, kh, kw]` and bias `[C_out]`, where this CPU and
    /// `C_out` have the kernel (`None` otherwise).
    pub fn new(weight: &Tensor, bias: &Tensor, stride: usize) -> Result<Option<Self>> {
        let (c_out, c_in, kh, kw) = weight.dims4()?;
        if !matches!(c_out, 8 | 16 | 24) || !crate::layer::has_avx2_fma() {
            return Ok(None);
        }
        if stride == 0 || c_in == 0 || kh == 0 || kw == 0 {
            candle_core::bail!("narrow conv: bad weight {:?} or stride {stride}", weight.shape());
        }
        let w = weight.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        if bias.len() != c_out {
            candle_core::bail!("narrow conv bias has {} values for {c_out} channels", bias.len());
        }
        let k = c_in * kh * kw;
        let mut weights = vec![0f32; k * c_out];
        for (o, row) in w.chunks_exact(k).enumerate() {
            for ci in 0..c_in {
                for t in 0..kh * kw {
                    weights[(t * c_in + ci) * c_out + o] = row[ci * kh * kw + t];
                }
            }
        }
        Ok(Some(Self { c_in, c_out, kh, kw, stride, weights, bias }))
    }

    /// Runs the conv on an NHWC f32 CPU tensor (any strides: an NCHW tensor permuted is read as
    /// it lies), returning a contiguous `[N, OH, OW, C_out]` tensor.
    pub fn forward(&self, x: &Tensor, pad: crate::layer::Padding) -> Result<Tensor> {
        x.apply_op1_no_bwd(&NarrowConvOp { conv: self, pad })
    }
}

struct NarrowConvOp<'a> {
    conv: &'a NarrowConv,
    pad: crate::layer::Padding,
}

impl candle_core::CustomOp1 for NarrowConvOp<'_> {
    fn name(&self) -> &'static str {
        "nhwc-narrow-conv"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let candle_core::CpuStorage::F32(src) = storage else { candle_core::bail!("nhwc-narrow-conv expects f32") };
        let NarrowConv { c_in, c_out, kh, kw, stride, .. } = *self.conv;
        let (n, h, w, c) = layout.shape().dims4()?;
        let (t, l, b, r) = self.pad;
        if c != c_in || h + t + b < kh || w + l + r < kw {
            candle_core::bail!("narrow conv: input {:?} does not fit a {kh}x{kw} kernel over {c_in}", layout.shape());
        }
        let (oh, ow) = ((h + t + b - kh) / stride + 1, (w + l + r - kw) / stride + 1);
        let (padded, hp, wp) = super::conv::pad_copy(src, layout, self.pad);
        let runs: Vec<(usize, usize)> = (0..kh).map(|ky| (ky * wp * c, kw * c)).collect();
        let tiles = Tiles { runs: &runs, step: stride * c, weights: &self.conv.weights, bias: &self.conv.bias };
        let mut out: Vec<f32> = Vec::with_capacity(n * oh * ow * c_out);
        out.spare_capacity_mut()[..n * oh * ow * c_out].par_chunks_mut(ow * c_out).enumerate().for_each(
            |(row, dst)| {
                let (img, oy) = (row / oh, row % oh);
                let a = &padded[(img * hp + oy * stride) * wp * c..];
                // The row's last field ends inside the padded input.
                assert!((ow - 1) * stride * c + (kh - 1) * wp * c + kw * c <= a.len());
                #[cfg(target_arch = "x86_64")]
                // SAFETY: AVX2 and FMA were checked in `new`; every field lies inside `a` (checked).
                unsafe {
                    match c_out {
                        8 => tiles.row::<1, 8>(a.as_ptr(), None, dst),
                        16 => tiles.row::<2, 6>(a.as_ptr(), None, dst),
                        _ => tiles.row::<3, 4>(a.as_ptr(), None, dst),
                    }
                }
            },
        );
        // SAFETY: every row wrote all of its `ow * c_out` values.
        unsafe { out.set_len(n * oh * ow * c_out) };
        Ok((candle_core::CpuStorage::F32(out), candle_core::Shape::from((n, oh, ow, c_out))))
    }
}

/// Output pixels of one row that [`depthwise_row`] computes together: six accumulators (and the
/// nine taps of a block of 8 channels) fill the sixteen AVX registers, and six chains of nine
/// dependent FMAs keep the FMA units busy where two left them waiting on latency.
const DW_PIXELS: usize = 6;

/// The 3x3 depthwise conv of output row `row` (numbered over the batch) for `C` a multiple of 8
/// on an AVX2 CPU, into `dst` (`C` floats per pixel, `OW` pixels). Rows on the padding are read
/// from `zeros` (at least `W * C` zeros).
pub(super) fn depthwise_row(
    dw: &NhwcDepthwise,
    src: &[f32],
    geo: &Geometry,
    row: usize,
    zeros: &[f32],
    dst: &mut [MaybeUninit<f32>],
) {
    let (h, w, c) = geo.input();
    let (oh, ow) = geo.out;
    let (pt, pl) = geo.pad();
    let s = dw.stride();
    let (weights, bias, act) = dw.parts();
    let (img, oy) = (row / oh, row % oh);
    assert!(c.is_multiple_of(8) && crate::layer::has_avx2_fma(), "depthwise row kernel: C={c} or no AVX2");
    assert!(zeros.len() >= w * c && dst.len() >= ow * c && src.len() >= (img + 1) * h * w * c);
    // Every window reaches at most column `(ow - 1) * s + 2 - pl`, which SAME padding keeps under `w + 1`;
    // columns past the input are skipped below.
    let rows: [*const f32; 3] = std::array::from_fn(|ky| match (oy * s + ky).checked_sub(pt).filter(|&iy| iy < h) {
        Some(iy) => src[(img * h + iy) * w * c..].as_ptr(),
        None => zeros.as_ptr(),
    });
    let k = DwKernel { rows, w, c, pl, weights, bias, bounds: act.bounds() };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2 and FMA are present; each row pointer holds `w * c` floats (checked above), and
    // `dst` holds the row's `ow * c` outputs.
    unsafe {
        match s {
            1 => k.row::<1>(ow, dst.as_mut_ptr().cast()),
            _ => k.row::<2>(ow, dst.as_mut_ptr().cast()),
        }
    }
}

/// One output row's inputs and weights for [`depthwise_row`].
struct DwKernel<'a> {
    /// The three input rows of the window (a row of zeros on the padding).
    rows: [*const f32; 3],
    w: usize,
    c: usize,
    pl: usize,
    /// `[tap][channel]`.
    weights: &'a [f32],
    bias: &'a [f32],
    bounds: (f32, f32),
}

impl DwKernel<'_> {
    /// # Safety
    /// AVX2 and FMA must be present; each row must hold `w * c` floats and `out` `ow * c`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row<const S: usize>(&self, ow: usize, out: *mut f32) {
        use std::arch::x86_64::*;
        let (w, c, pl) = (self.w, self.c, self.pl);
        // Interior pixels: the window's three columns all lie inside the input.
        let in_lo = pl.div_ceil(S).min(ow);
        let in_hi = ((w + pl).saturating_sub(3) / S + 1).min(ow).max(in_lo);
        // SAFETY (whole body): interior pixels read columns `ox * S - pl ..= ox * S - pl + 2 < w`,
        // edge pixels only the columns inside `0..w`; every write is one of the row's pixels.
        unsafe {
            let (lo, hi) = (_mm256_set1_ps(self.bounds.0), _mm256_set1_ps(self.bounds.1));
            for cb in (0..c).step_by(8) {
                let taps: [__m256; 9] = std::array::from_fn(|t| _mm256_loadu_ps(self.weights.as_ptr().add(t * c + cb)));
                let b = _mm256_loadu_ps(self.bias.as_ptr().add(cb));
                for ox in (0..in_lo).chain(in_hi..ow) {
                    let mut acc = b;
                    for (ky, r) in self.rows.iter().enumerate() {
                        for (kx, tap) in taps[ky * 3..ky * 3 + 3].iter().enumerate() {
                            if let Some(ix) = (ox * S + kx).checked_sub(pl).filter(|&ix| ix < w) {
                                acc = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(ix * c + cb)), *tap, acc);
                            }
                        }
                    }
                    _mm256_storeu_ps(out.add(ox * c + cb), _mm256_min_ps(_mm256_max_ps(acc, lo), hi));
                }
                let mut ox = in_lo;
                while ox + DW_PIXELS <= in_hi {
                    self.group::<DW_PIXELS, S>(ox * S - pl, cb, &taps, b, (lo, hi), out.add(ox * c + cb));
                    ox += DW_PIXELS;
                }
                while ox < in_hi {
                    self.group::<1, S>(ox * S - pl, cb, &taps, b, (lo, hi), out.add(ox * c + cb));
                    ox += 1;
                }
            }
        }
    }

    /// `N` interior pixels whose first window starts at input column `col`, channels `cb..cb + 8`.
    ///
    /// # Safety
    /// As for [`Self::row`], with the `N` windows inside the input.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn group<const N: usize, const S: usize>(
        &self,
        col: usize,
        cb: usize,
        taps: &[std::arch::x86_64::__m256; 9],
        b: std::arch::x86_64::__m256,
        (lo, hi): (std::arch::x86_64::__m256, std::arch::x86_64::__m256),
        out: *mut f32,
    ) {
        use std::arch::x86_64::*;
        let c = self.c;
        // SAFETY: the caller's contract.
        unsafe {
            let mut acc = [b; N];
            for (ky, r) in self.rows.iter().enumerate() {
                let r = r.add(col * c + cb);
                // Column j feeds pixel i through tap kx = j - i * S.
                for j in 0..(N - 1) * S + 3 {
                    let x = _mm256_loadu_ps(r.add(j * c));
                    for (i, a) in acc.iter_mut().enumerate() {
                        if j >= i * S && j - i * S < 3 {
                            *a = _mm256_fmadd_ps(x, taps[ky * 3 + j - i * S], *a);
                        }
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(i * c), _mm256_min_ps(_mm256_max_ps(*a, lo), hi));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;
    use candle_core::Device;

    #[test]
    fn narrow_conv_matches_candle_conv_on_nchw_views() {
        if !crate::layer::has_avx2_fma() {
            return;
        }
        let mut rng = Rng::new(0x5eed_0023);
        let dev = Device::Cpu;
        // (kernel, stride, padding, h, w, c_in, c_out): BlazeFace's stem on a small odd-sized input,
        // and narrower layers whose rows end in fewer pixels than a tile.
        let cases = [
            (5, 2, (1, 1, 2, 2), 18, 14, 3, 24),
            (3, 1, (1, 1, 1, 1), 7, 9, 4, 16),
            (3, 2, (0, 0, 1, 1), 10, 13, 5, 8),
        ];
        for (k, s, pad, h, w, c_in, c_out) in cases {
            let wt = rng.randn(0.0, 0.3, (c_out, c_in, k, k), &dev);
            let bias = rng.randn(0.0, 0.5, c_out, &dev);
            let conv = NarrowConv::new(&wt, &bias, s).unwrap().expect("an AVX2 CPU and a narrow layer");
            let x = rng.randn(0.0, 1.0, (2, c_in, h, w), &dev);
            let got = conv.forward(&x.permute((0, 2, 3, 1)).unwrap(), pad).unwrap();
            let (t, l, b, r) = pad;
            let want = x.pad_with_zeros(2, t, b).unwrap().pad_with_zeros(3, l, r).unwrap();
            let want = want.conv2d(&wt, 0, s, 1, 1).unwrap();
            let want = want.broadcast_add(&bias.reshape((1, c_out, 1, 1)).unwrap()).unwrap().relu().unwrap();
            let want = want.permute((0, 2, 3, 1)).unwrap();
            assert_eq!(got.dims(), want.dims());
            let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(d < 1e-4, "{k}x{k} stride {s}, {c_in} -> {c_out}: diff {d}");
        }
        let wt = Tensor::zeros((24, 3, 5, 5), candle_core::DType::F32, &dev).unwrap();
        let bias = Tensor::zeros(24, candle_core::DType::F32, &dev).unwrap();
        let conv = NarrowConv::new(&wt, &bias, 2).unwrap().unwrap();
        assert!(
            conv.forward(&Tensor::zeros((1, 8, 8, 4), candle_core::DType::F32, &dev).unwrap(), (0, 0, 0, 0)).is_err()
        );
        assert!(NarrowConv::new(&wt.narrow(0, 0, 20).unwrap(), &bias, 2).unwrap().is_none());
    }
}
