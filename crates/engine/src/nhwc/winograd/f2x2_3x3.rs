//! 3x3 stride-1 convolutions as Winograd F(2x2, 3x3) over NHWC f32 activations on the CPU.
//!
//! Each 2x2 block of output pixels (a tile) comes from the 4x4 input patch around it: `V = B^T d B`
//! for the patch, `U = G g G^T` for each kernel, and the pixels are `Y = A^T M A`.
//!
//! Rounding stays close to the direct conv's: the transforms only add and subtract (and `G`
//! halves), so each output sums the same products in another order.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use super::super::conv::{NhwcConv, SendPtr, pad_copy};
use super::{load_f32, products, run_tiles};
use crate::layer::has_avx2_fma;
use crate::layer::{Activation, Padding};

/// A 3x3 stride-1 conv with bias and activation, computed as Winograd F(2x2, 3x3).
#[derive(Debug, Clone)]
pub struct Winograd3x3 {
    c_in: usize,
    c_out: usize,
    /// The 16 products' weights (`U_xi`), each a 1x1 conv without bias or activation.
    products: Vec<NhwcConv>,
    bias: Vec<f32>,
    /// Clamp of the activation (`lo`, `hi`).
    bounds: (f32, f32),
}

impl Winograd3x3 {
    /// Builds the layer from a `[C_out, C_in*9]` weight (OIHW flattened) and a `[C_out]` bias;
    /// `act` applies to every output channel.
    pub fn new(weight: &Tensor, bias: &Tensor, c_in: usize, act: Activation) -> Result<Self> {
        let (w, bias, c_out) = load_f32(weight, bias, c_in, 9)?;
        // U = G g G^T per (o, c), in f64.
        const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
        let mut u = vec![0f32; 16 * c_out * c_in];
        for o in 0..c_out {
            for c in 0..c_in {
                let g = &w[(o * c_in + c) * 9..][..9];
                let mut gg = [[0f64; 3]; 4]; // G g
                for (i, row) in gg.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|k| G[i][k] * g[k * 3 + j] as f64).sum();
                    }
                }
                for i in 0..4 {
                    for j in 0..4 {
                        let v: f64 = (0..3).map(|k| gg[i][k] * G[j][k]).sum();
                        u[((i * 4 + j) * c_out + o) * c_in + c] = v as f32;
                    }
                }
            }
        }
        let products = products(&u, c_out, c_in, weight.device())?;
        Ok(Self { c_in, c_out, products, bias, bounds: act.bounds() })
    }

    /// Runs the conv on an NHWC f32 CPU tensor with the given zero padding, returning a
    /// contiguous `[N, OH, OW, C_out]` tensor.
    pub fn forward(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        x.apply_op1_no_bwd(&WinogradOp { layer: self, pad })
    }
}

struct WinogradOp<'a> {
    layer: &'a Winograd3x3,
    pad: Padding,
}

/// Where the tiles lie: `tiles` per image in `th` rows of `tw`, over a padded input of `hp x wp`
/// pixels of `c` channels, for an output of `oh x ow`.
#[derive(Clone, Copy)]
struct Grid {
    th: usize,
    tw: usize,
    hp: usize,
    wp: usize,
    c: usize,
    oh: usize,
    ow: usize,
}

impl Grid {
    /// Image, tile row and tile column of tile `t` (numbered over the batch).
    fn tile(&self, t: usize) -> (usize, usize, usize) {
        let per_image = self.th * self.tw;
        (t / per_image, t % per_image / self.tw, t % self.tw)
    }

    /// Offset in the padded input of tile `t`'s top-left input pixel.
    fn origin(&self, t: usize) -> usize {
        let (n, ty, tx) = self.tile(t);
        ((n * self.hp + 2 * ty) * self.wp + 2 * tx) * self.c
    }
}

impl CustomOp1 for WinogradOp<'_> {
    fn name(&self) -> &'static str {
        "nhwc-winograd3x3"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else { candle_core::bail!("nhwc-winograd3x3 expects f32") };
        let layer = self.layer;
        let (n, h, w, c) = layout.shape().dims4()?;
        if c != layer.c_in {
            candle_core::bail!("conv expects {} input channels, got {c}", layer.c_in);
        }
        let (t, l, b, r) = self.pad;
        if h + t + b < 3 || w + l + r < 3 {
            candle_core::bail!("input {h}x{w} is smaller than the 3x3 kernel");
        }
        let (oh, ow) = (h + t + b - 2, w + l + r - 2);
        let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
        // Every tile reads a whole 4x4 patch: an odd output size gets one more zero row or column.
        let (xp, hp, wp) = pad_copy(src, layout, (t, l, b + oh % 2, r + ow % 2));
        let grid = Grid { th, tw, hp, wp, c, oh, ow };
        let c_out = layer.c_out;
        let mut out = Vec::<f32>::with_capacity(n * oh * ow * c_out);
        let os = SendPtr(out.as_mut_ptr());
        let input = |t: usize, v: &mut [f32], ld: usize| transform_input(&xp[grid.origin(t)..], &grid, v, ld);
        // SAFETY: the output holds every tile's pixels, and only tile t writes its own.
        let output = |t: usize, m: &[f32], ld: usize| unsafe { transform_output(m, ld, layer, &grid, t, os.at(0)) };
        // SAFETY: tiles write disjoint pixels.
        unsafe { run_tiles(&layer.products, n * th * tw, input, output) };
        // SAFETY: the tiles cover the output, and each tile wrote every channel of its pixels.
        unsafe { out.set_len(n * oh * ow * c_out) };
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c_out))))
    }
}

/// Writes `V = B^T d B` of the 4x4 patch at the start of `src` (rows `wp * c` apart, pixels `c`
/// apart) as 16 rows of `c`, `ld` floats apart, from the start of `v`.
#[allow(clippy::needless_range_loop)] // `r` picks a row of the transform across columns of `t`.
fn transform_input(src: &[f32], grid: &Grid, v: &mut [f32], ld: usize) {
    let (c, row) = (grid.c, grid.wp * grid.c);
    assert!(src.len() >= 3 * row + 4 * c, "a 4x4 patch lies inside the padded input");
    assert!(v.len() >= 15 * ld + c, "the 16 rows lie inside V");
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 is present; the patch and the 16 rows are inside the slices (asserted).
        done = unsafe { transform_input_avx2(src.as_ptr(), row, c, v.as_mut_ptr(), ld) };
    }
    // The channels left (all of them without AVX2).
    for ch in done..c {
        let d = |y: usize, x: usize| src[y * row + x * c + ch];
        // Rows: t = B^T d, per column x.
        let t: [[f32; 4]; 4] = std::array::from_fn(|x| {
            let (d0, d1, d2, d3) = (d(0, x), d(1, x), d(2, x), d(3, x));
            [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
        });
        // Columns: V = t B.
        for r in 0..4 {
            let vr = [t[0][r] - t[2][r], t[1][r] + t[2][r], t[2][r] - t[1][r], t[1][r] - t[3][r]];
            for (j, val) in vr.into_iter().enumerate() {
                v[(4 * r + j) * ld + ch] = val;
            }
        }
    }
}

/// [`transform_input`] for the channels in whole groups of 8; returns how many it did.
///
/// # Safety
/// `src` must be readable for the 4x4 patch and `v` writable for 16 rows of `c` floats, `ld`
/// apart; the CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)] // as in `transform_input`
unsafe fn transform_input_avx2(src: *const f32, row: usize, c: usize, v: *mut f32, ld: usize) -> usize {
    use std::arch::x86_64::*;
    let mut ch = 0;
    // SAFETY (whole loop): every read is inside the patch and every write inside the 16 rows.
    unsafe {
        while ch + 8 <= c {
            let d = |y: usize, x: usize| _mm256_loadu_ps(src.add(y * row + x * c + ch));
            let mut t = [[_mm256_setzero_ps(); 4]; 4];
            for (x, tx) in t.iter_mut().enumerate() {
                let (d0, d1, d2, d3) = (d(0, x), d(1, x), d(2, x), d(3, x));
                *tx = [_mm256_sub_ps(d0, d2), _mm256_add_ps(d1, d2), _mm256_sub_ps(d2, d1), _mm256_sub_ps(d1, d3)];
            }
            for r in 0..4 {
                let vr = [
                    _mm256_sub_ps(t[0][r], t[2][r]),
                    _mm256_add_ps(t[1][r], t[2][r]),
                    _mm256_sub_ps(t[2][r], t[1][r]),
                    _mm256_sub_ps(t[1][r], t[3][r]),
                ];
                for (j, val) in vr.into_iter().enumerate() {
                    _mm256_storeu_ps(v.add((4 * r + j) * ld + ch), val);
                }
            }
            ch += 8;
        }
    }
    ch
}

/// Writes tile `t`'s output pixels `Y = A^T m A` (plus bias, clamped), where `m` holds the
/// tile's row of each of the 16 products (`ld` floats apart), into `out` (`[N, OH, OW, C_out]`).
///
/// # Safety
/// `out` must hold the whole output; no other task may write tile `t`'s pixels.
unsafe fn transform_output(m: &[f32], ld: usize, layer: &Winograd3x3, grid: &Grid, t: usize, out: *mut f32) {
    let co = layer.c_out;
    assert!(m.len() >= 15 * ld + co, "the tile's rows lie inside M");
    let (n, ty, tx) = grid.tile(t);
    let (y0, x0) = (2 * ty, 2 * tx);
    // The tile's pixels inside the output (the last row or column of tiles may stick out).
    let (rows, cols) = ((grid.oh - y0).min(2), (grid.ow - x0).min(2));
    let px: [[*mut f32; 2]; 2] = std::array::from_fn(|dy| {
        std::array::from_fn(|dx| out.wrapping_add(((n * grid.oh + y0 + dy) * grid.ow + x0 + dx) * co))
    });
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 is present; M's rows are inside `m` (asserted); the pixels written are
        // inside the output and this tile's (the caller's contract).
        done = unsafe { transform_output_avx2(m.as_ptr(), ld, layer, &px, (rows, cols)) };
    }
    let (lo, hi) = layer.bounds;
    for o in done..co {
        let v = |xi: usize| m[xi * ld + o];
        // Rows: s = A^T m, then columns: Y = s A.
        let s0: [f32; 4] = std::array::from_fn(|x| v(x) + v(4 + x) + v(8 + x));
        let s1: [f32; 4] = std::array::from_fn(|x| v(4 + x) - v(8 + x) - v(12 + x));
        for (dy, s) in [s0, s1].iter().enumerate().take(rows) {
            for (dx, val) in [s[0] + s[1] + s[2], s[1] - s[2] - s[3]].into_iter().enumerate().take(cols) {
                // SAFETY: the pixel is inside the output and this tile's.
                unsafe { *px[dy][dx].add(o) = (val + layer.bias[o]).max(lo).min(hi) };
            }
        }
    }
}

/// [`transform_output`] for the channels in whole groups of 8; returns how many it did.
///
/// # Safety
/// `m` must hold the 16 rows (`ld` apart) of `C_out` floats; `px[dy][dx]` for `dy < rows` and
/// `dx < cols` must be writable output pixels; on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn transform_output_avx2(
    m: *const f32,
    ld: usize,
    layer: &Winograd3x3,
    px: &[[*mut f32; 2]; 2],
    (rows, cols): (usize, usize),
) -> usize {
    use std::arch::x86_64::*;
    let co = layer.c_out;
    let mut o = 0;
    // SAFETY (whole loop): the caller's contract.
    unsafe {
        let (lo, hi) = (_mm256_set1_ps(layer.bounds.0), _mm256_set1_ps(layer.bounds.1));
        while o + 8 <= co {
            let v = |xi: usize| _mm256_loadu_ps(m.add(xi * ld + o));
            let bias = _mm256_loadu_ps(layer.bias.as_ptr().add(o));
            let s0: [__m256; 4] = std::array::from_fn(|x| _mm256_add_ps(_mm256_add_ps(v(x), v(4 + x)), v(8 + x)));
            let s1: [__m256; 4] = std::array::from_fn(|x| _mm256_sub_ps(_mm256_sub_ps(v(4 + x), v(8 + x)), v(12 + x)));
            for (dy, s) in [s0, s1].iter().enumerate().take(rows) {
                let y =
                    [_mm256_add_ps(_mm256_add_ps(s[0], s[1]), s[2]), _mm256_sub_ps(_mm256_sub_ps(s[1], s[2]), s[3])];
                for (dx, val) in y.into_iter().enumerate().take(cols) {
                    let val = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(val, bias), lo), hi);
                    _mm256_storeu_ps(px[dy][dx].add(o), val);
                }
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
    fn matches_the_direct_conv_for_odd_and_even_sizes_paddings_and_blocks() {
        let mut rng = Rng::new(0x5eed_0006);
        let dev = Device::Cpu;
        // (h, w, c_in, c_out, padding, batch)
        let cases = [
            (8, 8, 16, 24, (1, 1, 1, 1), 1),
            (7, 9, 5, 13, (1, 1, 1, 1), 2),
            (9, 7, 64, 40, (0, 0, 0, 0), 1),
            // 3 images of 23x23 tiles: many blocks, some of them across two images.
            (46, 45, 8, 16, (1, 1, 1, 1), 3),
        ];
        for (h, w, c_in, c_out, pad, n) in cases {
            let wt = rng.randn(0.0, 1.0 / (9.0 * c_in as f32).sqrt(), (c_out, c_in * 9), &dev);
            let b = rng.randn(0.0, 1.0, c_out, &dev);
            let direct = NhwcConv::new(&wt, &b, c_in, (3, 3), 1, Activation::Relu, c_out).unwrap();
            let wino = Winograd3x3::new(&wt, &b, c_in, Activation::Relu).unwrap();
            let wide = rng.randn(0.0, 1.0, (n, h, w, c_in + 3), &dev);
            for x in [wide.narrow(3, 1, c_in).unwrap().contiguous().unwrap(), wide.narrow(3, 1, c_in).unwrap()] {
                let what = format!("{h}x{w} {c_in}->{c_out} pad {pad:?}");
                assert_matches_direct(&wino.forward(&x, pad).unwrap(), &direct.forward(&x, pad).unwrap(), &what);
            }
        }
    }

    #[test]
    fn rejects_wrong_channels_tiny_input_and_bad_weights() {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((2, 27), DType::F32, &dev).unwrap();
        let bias = Tensor::zeros(2, DType::F32, &dev).unwrap();
        let conv = Winograd3x3::new(&wt, &bias, 3, Activation::None).unwrap();
        assert!(conv.forward(&Tensor::zeros((1, 5, 5, 4), DType::F32, &dev).unwrap(), (0, 0, 0, 0)).is_err());
        assert!(conv.forward(&Tensor::zeros((1, 2, 2, 3), DType::F32, &dev).unwrap(), (0, 0, 0, 0)).is_err());
        assert!(Winograd3x3::new(&wt, &bias, 4, Activation::None).is_err());
        assert!(Winograd3x3::new(&wt, &Tensor::zeros(3, DType::F32, &dev).unwrap(), 3, Activation::None).is_err());
    }
}
