//! 1x7 and 7x1 stride-1 convolutions as Winograd F(2, 7) over NHWC f32 activations on the CPU.
//!
//! Two neighbouring output pixels along the kernel's axis (a tile) read the 8 input pixels that
//! cover both windows: `V = B^T d` for those 8 pixels, `U = G g` for each kernel, and the pixels
//! are `Y = A^T M`. The matrices come from Toom-Cook over the points 0, ±1, ±2, ±1/2 and
//! infinity ([`Transforms`]). In f32 the outputs of Inception-v3's Mixed_6 convs stay within a
//! few 1e-6 of the direct conv's.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::super::conv::{NhwcConv, SendPtr, pad_copy};
use super::{load_f32, products, run_tiles};
use crate::layer::has_avx2_fma;
use crate::layer::{Activation, Padding};

/// Taps of the kernel.
const R: usize = 7;
/// Output pixels per tile.
const M: usize = 2;
/// Input pixels per tile, and products.
const ALPHA: usize = M + R - 1;

/// The Toom-Cook matrices of F(2, 7): `y = A^T [(G g) . (B^T d)]` is the correlation
/// `y_i = sum_k g_k d_(i+k)` of 8 inputs `d` with 7 taps `g`.
#[derive(Debug, Clone)]
pub struct Transforms {
    /// `B^T`, 8 x 8: the input transform.
    pub bt: [[f64; ALPHA]; ALPHA],
    /// `G`, 8 x 7: the kernel transform.
    pub g: [[f64; R]; ALPHA],
    /// `A^T`, 2 x 8: the output transform.
    pub at: [[f64; ALPHA]; M],
}

impl Transforms {
    /// Builds the matrices for the points 0, ±1, ±2, ±1/2 and infinity.
    ///
    /// A linear convolution `s = x * h` (2 and 7 values) is the product of two polynomials:
    /// evaluate both at the 8 points (`V_2 x`, `V_7 h`), multiply, and interpolate back
    /// (`V_8^-1`). The correlation is that map transposed: `y = V_2^T [(V_7 g) . (V_8^-T d)]`.
    pub fn new() -> Self {
        const POINTS: [f64; ALPHA - 1] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5];
        // Row i of V_n: point i's powers 0..n; the last row (infinity) picks the top coefficient.
        fn vandermonde<const N: usize>() -> [[f64; N]; ALPHA] {
            std::array::from_fn(|i| {
                std::array::from_fn(|k| match POINTS.get(i) {
                    Some(p) => p.powi(k as i32),
                    None => f64::from(u8::from(k == N - 1)),
                })
            })
        }
        let inv = invert(vandermonde::<ALPHA>());
        let v2 = vandermonde::<M>();
        Self {
            bt: std::array::from_fn(|i| std::array::from_fn(|j| inv[j][i])),
            g: vandermonde::<R>(),
            at: std::array::from_fn(|i| std::array::from_fn(|j| v2[j][i])),
        }
    }

    /// `true` when `B^T` has the structure the AVX2 input transform relies on: row 0 reads only
    /// even pixels, the last row only odd ones, and each pair of rows between (points `p`, `-p`)
    /// is `e + o` and `e - o`, where `e` reads the even pixels and `o` the odd ones.
    pub fn even_odd(&self) -> bool {
        let bt = &self.bt;
        let pairs = (1..ALPHA - 1)
            .step_by(2)
            .all(|r| (0..ALPHA).all(|j| (bt[r + 1][j] - if j % 2 == 0 { bt[r][j] } else { -bt[r][j] }).abs() < 1e-12));
        pairs && (0..ALPHA / 2).all(|j| bt[0][2 * j + 1].abs() < 1e-12 && bt[ALPHA - 1][2 * j].abs() < 1e-12)
    }
}

impl Default for Transforms {
    fn default() -> Self {
        Self::new()
    }
}

/// Inverse of a well-conditioned 8 x 8 matrix (Gauss-Jordan with partial pivoting).
fn invert(mut a: [[f64; ALPHA]; ALPHA]) -> [[f64; ALPHA]; ALPHA] {
    let mut inv: [[f64; ALPHA]; ALPHA] = std::array::from_fn(|i| std::array::from_fn(|j| f64::from(u8::from(i == j))));
    for col in 0..ALPHA {
        let pivot = (col..ALPHA).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..ALPHA {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for row in (0..ALPHA).filter(|&r| r != col) {
            let f = a[row][col];
            for j in 0..ALPHA {
                a[row][j] -= f * a[col][j];
                inv[row][j] -= f * inv[col][j];
            }
        }
    }
    inv
}

/// A 1x7 or 7x1 stride-1 conv with bias and activation, computed as Winograd F(2, 7).
#[derive(Debug, Clone)]
pub struct Winograd7 {
    c_in: usize,
    c_out: usize,
    /// 7x1 (along the rows) rather than 1x7.
    vertical: bool,
    /// The 8 products' weights (`U_xi`), each a 1x1 conv without bias or activation.
    products: Vec<NhwcConv>,
    /// `B^T` in f32.
    bt: [[f32; ALPHA]; ALPHA],
    /// The second row of `A^T` (the first is ones but for the last, zero).
    at1: [f32; ALPHA],
    bias: Vec<f32>,
    /// Clamp of the activation (`lo`, `hi`).
    bounds: (f32, f32),
}

impl Winograd7 {
    /// Builds the layer from a `[C_out, C_in*7]` weight (OIHW flattened) and a `[C_out]` bias;
    /// `vertical` picks a 7x1 kernel over a 1x7 one; `act` applies to every output channel.
    pub fn new(weight: &Tensor, bias: &Tensor, c_in: usize, vertical: bool, act: Activation) -> Result<Self> {
        let (w, bias, c_out) = load_f32(weight, bias, c_in, R)?;
        let tr = Transforms::new();
        if !tr.even_odd() {
            candle_core::bail!("the F(2, 7) input transform lost its even/odd structure");
        }
        // U = G g per (o, c), in f64.
        let mut u = vec![0f32; ALPHA * c_out * c_in];
        for (oc, g) in w.chunks_exact(R).enumerate() {
            for (xi, row) in tr.g.iter().enumerate() {
                u[xi * c_out * c_in + oc] = row.iter().zip(g).map(|(a, &b)| a * f64::from(b)).sum::<f64>() as f32;
            }
        }
        let products = products(&u, c_out, c_in, weight.device())?;
        Ok(Self {
            c_in,
            c_out,
            vertical,
            products,
            bt: tr.bt.map(|row| row.map(|v| v as f32)),
            at1: tr.at[1].map(|v| v as f32),
            bias,
            bounds: act.bounds(),
        })
    }

    /// Runs the conv on an NHWC f32 CPU tensor with the given zero padding, returning a
    /// contiguous `[N, OH, OW, C_out]` tensor.
    pub fn forward(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        x.apply_op1_no_bwd(&Winograd7Op { layer: self, pad })
    }
}

struct Winograd7Op<'a> {
    layer: &'a Winograd7,
    pad: Padding,
}

/// Where the tiles lie: `th x tw` per image (each `2` pixels along the kernel's axis), over a
/// padded input `wp` pixels of `c` channels wide.
#[derive(Clone, Copy)]
struct Grid {
    vertical: bool,
    th: usize,
    tw: usize,
    wp: usize,
    c: usize,
}

impl Grid {
    /// Image, first output row and first output column of tile `t` (numbered over the batch).
    fn tile(&self, t: usize) -> (usize, usize, usize) {
        let per_image = self.th * self.tw;
        let (ty, tx) = (t % per_image / self.tw, t % self.tw);
        match self.vertical {
            true => (t / per_image, M * ty, tx),
            false => (t / per_image, ty, M * tx),
        }
    }

    /// Floats between neighbouring pixels along the kernel's axis, in the padded input.
    fn step(&self) -> usize {
        if self.vertical { self.wp * self.c } else { self.c }
    }
}

impl CustomOp1 for Winograd7Op<'_> {
    fn name(&self) -> &'static str {
        "nhwc-winograd7"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else { candle_core::bail!("nhwc-winograd7 expects f32") };
        let layer = self.layer;
        let (n, h, w, c) = layout.shape().dims4()?;
        if c != layer.c_in {
            candle_core::bail!("conv expects {} input channels, got {c}", layer.c_in);
        }
        let (t, l, b, r) = self.pad;
        let (taps_h, taps_w) = if layer.vertical { (R, 1) } else { (1, R) };
        if h + t + b < taps_h || w + l + r < taps_w {
            candle_core::bail!("input {h}x{w} is smaller than the {taps_h}x{taps_w} kernel");
        }
        let (oh, ow) = (h + t + b + 1 - taps_h, w + l + r + 1 - taps_w);
        // Every tile reads all 8 pixels: an odd output length gets one more zero pixel.
        let (th, tw, pad) = match layer.vertical {
            true => (oh.div_ceil(M), ow, (t, l, b + oh % M, r)),
            false => (oh, ow.div_ceil(M), (t, l, b, r + ow % M)),
        };
        let (xp, hp, wp) = pad_copy(src, layout, pad);
        let grid = Grid { vertical: layer.vertical, th, tw, wp, c };
        let c_out = layer.c_out;
        let mut out = Vec::<f32>::with_capacity(n * oh * ow * c_out);
        let os = SendPtr(out.as_mut_ptr());
        let input = |t: usize, v: &mut [f32], ld: usize| {
            let (img, y0, x0) = grid.tile(t);
            transform_input(layer, &xp[((img * hp + y0) * wp + x0) * c..], grid.step(), v, ld);
        };
        let output = |t: usize, m: &[f32], ld: usize| {
            let (img, y0, x0) = grid.tile(t);
            let first = ((img * oh + y0) * ow + x0) * c_out;
            let (next, inside) = match grid.vertical {
                true => (first + ow * c_out, y0 + 1 < oh),
                false => (first + c_out, x0 + 1 < ow),
            };
            let px = [os.at(first), os.at(next)];
            // SAFETY: both pixels (the second only when inside) are in the output, and only
            // tile t writes them.
            unsafe { transform_output(layer, m, ld, &px[..1 + usize::from(inside)]) };
        };
        // SAFETY: tiles write disjoint pixels.
        unsafe { run_tiles(&layer.products, n * th * tw, input, output) };
        // SAFETY: the tiles cover the output, and each tile wrote every channel of its pixels.
        unsafe { out.set_len(n * oh * ow * c_out) };
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c_out))))
    }
}

/// Writes `V = B^T d` of the 8 pixels at the start of `src` (`step` floats apart) as 8 rows of
/// `C_in`, `ld` floats apart, from the start of `v`.
fn transform_input(layer: &Winograd7, src: &[f32], step: usize, v: &mut [f32], ld: usize) {
    let c = layer.c_in;
    assert!(src.len() >= (ALPHA - 1) * step + c, "the 8 pixels lie inside the padded input");
    assert!(v.len() >= (ALPHA - 1) * ld + c, "the 8 rows lie inside V");
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 is present; reads and writes stay inside the slices (asserted).
        done = unsafe { transform_input_avx2(&layer.bt, src.as_ptr(), step, c, v.as_mut_ptr(), ld) };
    }
    for ch in done..c {
        let d: [f32; ALPHA] = std::array::from_fn(|j| src[j * step + ch]);
        for (xi, row) in layer.bt.iter().enumerate() {
            v[xi * ld + ch] = row.iter().zip(&d).map(|(a, b)| a * b).sum();
        }
    }
}

/// [`transform_input`] for the channels in whole groups of 8; returns how many it did.
///
/// # Safety
/// `src` must be readable for 8 pixels `step` apart of `c` floats and `v` writable for 8 rows
/// `ld` apart of `c` floats; the CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_input_avx2(
    bt: &[[f32; ALPHA]; ALPHA],
    src: *const f32,
    step: usize,
    c: usize,
    v: *mut f32,
    ld: usize,
) -> usize {
    use std::arch::x86_64::*;
    let mut ch = 0;
    // SAFETY (whole loop): the caller's contract.
    // SAFETY (whole loop): the caller's contract.
    unsafe {
        // Coefficients of the even and odd input pixels of each row (see [`Transforms::even_odd`]).
        let even: [[__m256; 4]; ALPHA] = std::array::from_fn(|r| std::array::from_fn(|j| _mm256_set1_ps(bt[r][2 * j])));
        let odd: [[__m256; 4]; ALPHA] =
            std::array::from_fn(|r| std::array::from_fn(|j| _mm256_set1_ps(bt[r][2 * j + 1])));
        let dot = |k: &[__m256; 4], d: &[__m256; 4]| {
            let s = _mm256_mul_ps(k[0], d[0]);
            _mm256_fmadd_ps(k[3], d[3], _mm256_fmadd_ps(k[2], d[2], _mm256_fmadd_ps(k[1], d[1], s)))
        };
        while ch + 8 <= c {
            let de: [__m256; 4] = std::array::from_fn(|j| _mm256_loadu_ps(src.add(2 * j * step + ch)));
            let dd: [__m256; 4] = std::array::from_fn(|j| _mm256_loadu_ps(src.add((2 * j + 1) * step + ch)));
            // Row 0 has only even terms and the last row only odd ones; the rows between come in
            // pairs e + o, e - o.
            _mm256_storeu_ps(v.add(ch), dot(&even[0], &de));
            for r in (1..ALPHA - 1).step_by(2) {
                let (e, o) = (dot(&even[r], &de), dot(&odd[r], &dd));
                _mm256_storeu_ps(v.add(r * ld + ch), _mm256_add_ps(e, o));
                _mm256_storeu_ps(v.add((r + 1) * ld + ch), _mm256_sub_ps(e, o));
            }
            _mm256_storeu_ps(v.add((ALPHA - 1) * ld + ch), dot(&odd[ALPHA - 1], &dd));
            ch += 8;
        }
    }
    ch
}

/// Writes a tile's pixels `Y = A^T m` (plus bias, clamped), where `m` holds the tile's row of
/// each of the 8 products (`ld` floats apart), to `px` (one pointer per pixel inside the output).
///
/// # Safety
/// Each pointer of `px` must be valid for writes of `C_out` floats.
unsafe fn transform_output(layer: &Winograd7, m: &[f32], ld: usize, px: &[*mut f32]) {
    let co = layer.c_out;
    assert!(m.len() >= (ALPHA - 1) * ld + co, "the tile's rows lie inside M");
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 is present; M's rows are inside `m` (asserted); the pixels are the caller's.
        done = unsafe { transform_output_avx2(layer, m.as_ptr(), ld, px) };
    }
    let (lo, hi) = layer.bounds;
    for o in done..co {
        let mv = |xi: usize| m[xi * ld + o];
        let y0: f32 = (0..ALPHA - 1).map(mv).sum();
        let y1: f32 = (0..ALPHA).map(|xi| layer.at1[xi] * mv(xi)).sum();
        for (p, y) in px.iter().zip([y0, y1]) {
            // SAFETY: the caller's contract.
            unsafe { *p.add(o) = (y + layer.bias[o]).max(lo).min(hi) };
        }
    }
}

/// [`transform_output`] for the channels in whole groups of 8; returns how many it did.
///
/// # Safety
/// As for [`transform_output`], with `m` readable for 8 rows `ld` apart of `C_out` floats, on a
/// CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_output_avx2(layer: &Winograd7, m: *const f32, ld: usize, px: &[*mut f32]) -> usize {
    use std::arch::x86_64::*;
    let co = layer.c_out;
    let mut o = 0;
    // SAFETY (whole loop): the caller's contract.
    unsafe {
        let (lo, hi) = (_mm256_set1_ps(layer.bounds.0), _mm256_set1_ps(layer.bounds.1));
        while o + 8 <= co {
            let mv: [__m256; ALPHA] = std::array::from_fn(|xi| _mm256_loadu_ps(m.add(xi * ld + o)));
            let bias = _mm256_loadu_ps(layer.bias.as_ptr().add(o));
            let mut y0 = bias;
            let mut y1 = bias;
            for (xi, &m) in mv.iter().enumerate() {
                if xi + 1 < ALPHA {
                    y0 = _mm256_add_ps(y0, m);
                }
                y1 = _mm256_fmadd_ps(_mm256_set1_ps(layer.at1[xi]), m, y1);
            }
            for (p, y) in px.iter().zip([y0, y1]) {
                _mm256_storeu_ps(p.add(o), _mm256_min_ps(_mm256_max_ps(y, lo), hi));
            }
            o += 8;
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::super::assert_matches_direct;
    use super::*;
    use crate::test_util::Rng;
    use candle_core::{DType, Device};

    #[test]
    fn transforms_compute_the_correlation() {
        let tr = Transforms::new();
        let d: [f64; ALPHA] = std::array::from_fn(|i| (i as f64 * 0.37 + 0.1).sin());
        let g: [f64; R] = std::array::from_fn(|k| (k as f64 * 1.3 - 0.5).cos());
        let u: [f64; ALPHA] = std::array::from_fn(|xi| (0..R).map(|k| tr.g[xi][k] * g[k]).sum());
        let v: [f64; ALPHA] = std::array::from_fn(|xi| (0..ALPHA).map(|j| tr.bt[xi][j] * d[j]).sum());
        for (i, at) in tr.at.iter().enumerate() {
            let got: f64 = (0..ALPHA).map(|xi| at[xi] * u[xi] * v[xi]).sum();
            let want: f64 = (0..R).map(|k| g[k] * d[i + k]).sum();
            assert!((got - want).abs() < 1e-12, "output {i}: {got} vs {want}");
        }
        // The first row of A^T is ones but for infinity's column, as the output transform assumes,
        // and B^T splits into even and odd pixels, as the AVX2 input transform does.
        assert_eq!(tr.at[0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        assert!(tr.even_odd());
        let mut skewed = tr.clone();
        skewed.bt[2][1] += 0.5;
        assert!(!skewed.even_odd());
    }

    #[test]
    fn matches_the_direct_conv_both_ways_for_odd_and_even_sizes_and_blocks() {
        let mut rng = Rng::new(0x5eed_0005);
        let dev = Device::Cpu;
        // (h, w, c_in, c_out, vertical, batch)
        let cases = [
            (17, 17, 16, 24, false, 1),
            (17, 17, 16, 24, true, 2),
            (6, 9, 5, 13, false, 2),
            (9, 4, 11, 40, true, 1),
            // 4 images of 17 x 9 tiles: many blocks, some of them partly past an image's end.
            (17, 17, 32, 48, true, 4),
        ];
        for (h, w, c_in, c_out, vertical, n) in cases {
            let taps = if vertical { (7, 1) } else { (1, 7) };
            let pad = if vertical { (3, 0, 3, 0) } else { (0, 3, 0, 3) };
            let wt = rng.randn(0.0, 1.0 / (7.0 * c_in as f32).sqrt(), (c_out, c_in * 7), &dev);
            let b = rng.randn(0.0, 1.0, c_out, &dev);
            let direct = NhwcConv::new(&wt, &b, c_in, taps, 1, Activation::Relu, c_out).unwrap();
            let wino = Winograd7::new(&wt, &b, c_in, vertical, Activation::Relu).unwrap();
            let wide = rng.randn(0.0, 1.0, (n, h, w, c_in + 3), &dev);
            for x in [wide.narrow(3, 1, c_in).unwrap().contiguous().unwrap(), wide.narrow(3, 1, c_in).unwrap()] {
                for pad in [pad, (0, 0, 0, 0)] {
                    let what = format!("{h}x{w} {c_in}->{c_out} vertical {vertical} pad {pad:?}");
                    assert_matches_direct(&wino.forward(&x, pad).unwrap(), &direct.forward(&x, pad).unwrap(), &what);
                }
            }
        }
    }

    #[test]
    fn rejects_wrong_channels_short_input_and_bad_weights() {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((2, 21), DType::F32, &dev).unwrap();
        let bias = Tensor::zeros(2, DType::F32, &dev).unwrap();
        let conv = Winograd7::new(&wt, &bias, 3, false, Activation::None).unwrap();
        assert!(conv.forward(&Tensor::zeros((1, 5, 9, 4), DType::F32, &dev).unwrap(), (0, 0, 0, 0)).is_err());
        assert!(conv.forward(&Tensor::zeros((1, 9, 6, 3), DType::F32, &dev).unwrap(), (0, 0, 0, 0)).is_err());
        assert!(Winograd7::new(&wt, &bias, 4, false, Activation::None).is_err());
        assert!(Winograd7::new(&wt, &Tensor::zeros(3, DType::F32, &dev).unwrap(), 3, true, Activation::None).is_err());
    }
}
