//! The 3x3 depthwise convolution over NHWC f32 activations, vectorised across channels.
//!
//! Two paths compute the same values:
//! - the generic one takes each output pixel's channels in blocks of `LANES` (32, then 8, then
//!   1) that stay in registers through the nine taps, skipping taps on the padding;
//! - on AVX2 CPUs, where `C` is a multiple of 8, the row kernel (`rows_avx2`) takes two
//!   neighbouring pixels of a row at once, 8 channels at a time, so that each input column it
//!   loads feeds both (with stride 1). It reads the rows below ahead of time, since its order of
//!   reads is one the hardware prefetchers do not follow. Edge pixels take the generic path.
//!
//! In faceres at batch 16, the row kernel took the network from 70.4 to 79.2 images/s (medians
//! of 32 alternating repeats); at batch 1 the two measured even (69.7 and 68.5).

use std::mem::MaybeUninit;
use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::layer::{Activation, Padding};

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
    /// Per block of 8 channels, the bias and then the nine taps (8 floats each), for the AVX2
    /// path; empty where `C` is not a multiple of 8.
    packed: Vec<f32>,
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
        let weights: Vec<f32> = (0..9 * c).map(|i| w[(i % c) * 9 + i / c]).collect();
        let packed = match c.is_multiple_of(8) {
            true => (0..c / 8)
                .flat_map(|cb| (0..10).map(move |t| (cb, t)))
                .flat_map(|(cb, t)| match t {
                    0 => &bias[cb * 8..][..8],
                    t => &weights[(t - 1) * c + cb * 8..][..8],
                })
                .copied()
                .collect(),
            false => Vec::new(),
        };
        Ok(Self { c, stride, weights, bias, packed, act })
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.c
    }

    /// Stride (1 or 2).
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The weights `[tap][channel]` (tap `ky * 3 + kx`), the bias and the activation.
    pub(super) fn parts(&self) -> (&[f32], &[f32], Activation) {
        (&self.weights, &self.bias, self.act)
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

impl Geometry {
    /// Input size `(H, W, C)`.
    pub(super) fn input(&self) -> (usize, usize, usize) {
        (self.h, self.w, self.c)
    }

    /// Padding before the input: `(top, left)`.
    pub(super) fn pad(&self) -> (usize, usize) {
        self.pad
    }
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
    if crate::layer::has_avx2_fma() {
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
    // Stride 2 over fewer than 256 channels measured faster one pixel at a time, whose reads
    // follow memory order (faceres at batch 16: 79.2 against 74.4 images/s, medians of 32
    // alternating repeats).
    if layer.packed.is_empty() || (geo.stride == 2 && geo.c < 256) {
        return write_pixels_body(layer, src, geo, (px, pitch), dst);
    }
    // SAFETY: AVX2 and FMA are present (this function's contract).
    unsafe {
        match geo.stride {
            1 => rows_avx2::<1>(layer, src, geo, (px, pitch), dst),
            _ => rows_avx2::<2>(layer, src, geo, (px, pitch), dst),
        }
    }
}

/// Output pixels along one row that [`rows_avx2`] computes together: with stride 1 they share
/// two of their three input columns, so each of those loaded columns feeds both.
const RUN: usize = 2;

thread_local! {
    /// A row of zeros that stands in for input rows on the padding (never written).
    static ZEROS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The AVX2 path for `C` a multiple of 8, row by row. A row's interior pixels (whose columns
/// all lie inside the image) run [`RUN`] at a time through [`interior`], with rows on the padding
/// read from a row of zeros; its edge pixels take the generic path.
///
/// # Safety
/// AVX2 and FMA must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2<const S: usize>(
    layer: &NhwcDepthwise,
    src: &[f32],
    geo: &Geometry,
    (px, pitch): (Range<usize>, usize),
    dst: &mut [MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    let Geometry { h, w, c, pad: (pt, pl), out: (oh, ow), .. } = *geo;
    assert!(src.len() >= px.end.div_ceil(oh * ow) * h * w * c, "depthwise input too short");
    assert!(px.is_empty() || dst.len() >= (px.len() - 1) * pitch + c, "depthwise output too short");
    // Interior output columns: from the first whose window starts inside the image to the
    // last whose window ends inside it.
    let in_lo = pl.div_ceil(S);
    let in_hi = ((w + pl).saturating_sub(3) / S + 1).min(ow).max(in_lo);
    let (lo, hi) = layer.act.bounds();
    ZEROS.with_borrow_mut(|zeros| {
        if zeros.len() < w * c {
            *zeros = vec![0.0; w * c];
        }
        // SAFETY (whole body): interior pixels read columns `ox * S - pl ..` three wide of rows
        // inside `src` (checked above) or of the zero row (`w * C` floats), and write `C`
        // values `pitch` apart inside `dst` (checked above); edge pixels go through the
        // bounds-checked generic path.
        unsafe {
            let (vlo, vhi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
            let out = dst.as_mut_ptr().cast::<f32>();
            let mut p = px.start;
            while p < px.end {
                let (row, ox0) = (p / ow, p % ow);
                let ox1 = ow.min(ox0 + px.end - p);
                let (img, oy) = (row / oh, row % oh);
                let rows: [*const f32; 3] =
                    std::array::from_fn(|ky| match (oy * S + ky).checked_sub(pt).filter(|&iy| iy < h) {
                        Some(iy) => src.as_ptr().add((img * h + iy) * w * c),
                        None => zeros.as_ptr(),
                    });
                let at = |ox: usize| out.add((p - px.start + ox - ox0) * pitch);
                // The input rows that the next output row reads and this one does not: each
                // pixel of this row fetches its share of them into L2 ahead of time, since the
                // runs read several pixels' channels at once, an order the hardware's
                // prefetchers do not follow.
                let ahead: [Option<*const f32>; S] = std::array::from_fn(|i| {
                    let iy = ((oy + 1) * S + 3 - S + i).checked_sub(pt).filter(|&iy| iy < h && oy + 1 < oh)?;
                    Some(src.as_ptr().add((img * h + iy) * w * c))
                });
                let share = (w * c).div_ceil(ow);
                let k = (layer.packed.as_ptr(), c);
                let fetch = |ox: usize, n: usize| {
                    for r in ahead.iter().flatten() {
                        for l in (ox * share..((ox + n) * share).min(w * c)).step_by(16) {
                            _mm_prefetch::<_MM_HINT_T1>(r.add(l).cast());
                        }
                    }
                };
                let mut ox = ox0;
                while ox < ox1 {
                    if ox < in_lo || ox >= in_hi {
                        let d = std::slice::from_raw_parts_mut(at(ox).cast::<MaybeUninit<f32>>(), c);
                        write_pixels_body(layer, src, geo, (p + ox - ox0..p + ox - ox0 + 1, pitch), d);
                        fetch(ox, 1);
                        ox += 1;
                        continue;
                    }
                    let first = (ox * S - pl) * c;
                    let rows = rows.map(|r| r.add(first));
                    let n = match ox + RUN <= in_hi.min(ox1) {
                        true => RUN,
                        false => 1,
                    };
                    fetch(ox, n);
                    match n {
                        RUN => interior::<RUN, S>(rows, k, (at(ox), pitch), (vlo, vhi)),
                        _ => interior::<1, S>(rows, k, (at(ox), pitch), (vlo, vhi)),
                    }
                    ox += n;
                }
                p += ox1 - ox0;
            }
        }
    });
}

/// `N` output pixels of one row (`S` input columns apart), every channel, 8 at a time: `rows`
/// point at the first input column of each kernel row, `k` holds the packed weights (per block
/// of 8 channels: bias, then the nine taps), and pixel `i` goes `i * pitch` floats after `out`.
///
/// # Safety
/// AVX2 and FMA must be present; `C` must be a multiple of 8; each row must hold
/// `(N - 1) * S + 3` columns of `C` floats from its pointer, and `out` room for the `N` pixels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn interior<const N: usize, const S: usize>(
    rows: [*const f32; 3],
    (k, c): (*const f32, usize),
    (out, pitch): (*mut f32, usize),
    (lo, hi): (std::arch::x86_64::__m256, std::arch::x86_64::__m256),
) {
    use std::arch::x86_64::*;
    // SAFETY: the caller's contract.
    unsafe {
        for cb in (0..c).step_by(8) {
            let wp = k.add(cb * 10);
            let mut acc = [_mm256_loadu_ps(wp); N];
            for (ky, row) in rows.iter().enumerate() {
                let taps: [__m256; 3] = std::array::from_fn(|kx| _mm256_loadu_ps(wp.add(8 + (ky * 3 + kx) * 8)));
                let row = row.add(cb);
                // Column j feeds output i through tap kx = j - i * S.
                for j in 0..(N - 1) * S + 3 {
                    let x = _mm256_loadu_ps(row.add(j * c));
                    for (kx, &tap) in taps.iter().enumerate() {
                        if j >= kx && (j - kx) % S == 0 && (j - kx) / S < N {
                            let i = (j - kx) / S;
                            acc[i] = _mm256_fmadd_ps(x, tap, acc[i]);
                        }
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.add(i * pitch + cb), _mm256_min_ps(_mm256_max_ps(*a, lo), hi));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::same_padding_3x3;
    use crate::test_util::Rng;
    use candle_core::Device;

    /// The AVX2 row kernel against the generic per-pixel path, over pixel ranges that start and
    /// end inside rows and a pitch wider than the channels. (On a CPU without AVX2 both sides
    /// run the generic path.)
    #[test]
    fn row_kernel_matches_the_generic_path() {
        let mut rng = Rng::new(0x5eed_0009);
        let dev = Device::Cpu;
        let cases = [
            (1, 7, 9, 8),
            (2, 8, 10, 256),
            (2, 7, 7, 512),
            (1, 1, 1, 16),
            (1, 14, 14, 512),
            (2, 5, 6, 256),
            (1, 2, 3, 24),
        ];
        for (stride, h, w, c) in cases {
            let n = 2;
            let x = rng.randn(0.0, 1.0, (n, h, w, c), &dev).flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let wt = rng.randn(0.0, 1.0, (c, 1, 3, 3), &dev);
            let b = rng.randn(0.0, 1.0, c, &dev);
            let layer = NhwcDepthwise::new(&wt, &b, stride, Activation::Relu6).unwrap();
            let geo = layer.geometry((h, w, c), same_padding_3x3(stride, h, w)).unwrap();
            let pixels = n * geo.out.0 * geo.out.1;
            let pitch = c + 8;
            for px in [0..pixels, 1..pixels - 1, pixels / 3..pixels / 3 + 5] {
                let px = px.start..px.end.min(pixels).max(px.start);
                let mut want = vec![MaybeUninit::new(f32::NAN); px.len() * pitch];
                let mut got = want.clone();
                write_pixels_body(&layer, &x, &geo, (px.clone(), pitch), &mut want);
                write_pixels(&layer, &x, &geo, (px.clone(), pitch), &mut got);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    // SAFETY: both buffers were initialised with NaN and partly overwritten.
                    let (g, w) = unsafe { (g.assume_init(), w.assume_init()) };
                    if i % pitch < c {
                        assert!((g - w).abs() < 1e-5, "stride {stride} {h}x{w}x{c} {px:?}: value {i}: {g} vs {w}");
                    } else {
                        assert!(g.is_nan(), "stride {stride} {h}x{w}x{c}: wrote padding at {i}");
                    }
                }
            }
        }
    }
}
