//! The detector's resampling: an RGB photo (or a planar float image) resized with PIL's
//! antialiased bilinear filter into planar `[3, h, w]` network inputs in -1..1, and 256x256 tiles
//! cut from them.

use std::ops::Range;

use image::RgbImage;
use rayon::prelude::*;

use super::{INPUT_SIZE, axpy};
use crate::layer::has_avx2_fma;

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

/// `buf[i] = sum_k ws[k] * rows[k][cols.start + i]` over u8 rows (vertical filter taps), for the
/// bytes `cols` of each row.
#[inline(always)]
fn vertical_u8(src: &[u8], stride: usize, cols: Range<usize>, lo: usize, ws: &[f32], buf: &mut [f32]) {
    buf.fill(0.0);
    for (k, &wk) in ws.iter().enumerate() {
        let row = &src[(lo + k) * stride + cols.start..(lo + k) * stride + cols.end];
        for (b, &p) in buf.iter_mut().zip(row) {
            *b += wk * p as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn vertical_u8_avx2(src: &[u8], stride: usize, cols: Range<usize>, lo: usize, ws: &[f32], buf: &mut [f32]) {
    vertical_u8(src, stride, cols, lo, ws, buf)
}

/// [`vertical_u8`] with the AVX2 build where the CPU has it.
fn vertical_u8_any(simd: bool, src: &[u8], stride: usize, cols: Range<usize>, lo: usize, ws: &[f32], buf: &mut [f32]) {
    if simd {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 support was checked at runtime.
        unsafe {
            return vertical_u8_avx2(src, stride, cols, lo, ws, buf);
        }
    }
    vertical_u8(src, stride, cols, lo, ws, buf);
}

/// Resizes (stretching) an RGB image to `ow x oh`, returning planar `[3, oh, ow]` values
/// `pixel / 127.5 - 1`. Separable antialiased bilinear (vertical then horizontal), parallel over rows.
pub(super) fn resize_rgb8(img: &RgbImage, ow: u32, oh: u32) -> Vec<f32> {
    let (w, ow, oh) = (img.width() as usize, ow as usize, oh as usize);
    let src = img.as_raw();
    let cx = filter_coeffs(w, ow);
    let cy = filter_coeffs(img.height() as usize, oh);
    let simd = has_avx2_fma();
    for_each_out_row(oh, ow, w * 3, |oy, buf, r, g, b| {
        let (lo, ws) = &cy[oy];
        vertical_u8_any(simd, src, w * 3, 0..w * 3, *lo, ws, buf);
        horizontal_rgb(buf, 0, &cx, (r, g, b));
    })
}

/// One output row from a vertically filtered row `buf` (RGB, from source column `c0` on): output
/// pixel `i` from taps `cx[i]`, as `value / 127.5 - 1`.
#[inline(always)]
fn horizontal_rgb(buf: &[f32], c0: usize, cx: &[(usize, Vec<f32>)], (r, g, b): (&mut [f32], &mut [f32], &mut [f32])) {
    for (ox, (lo, ws)) in cx.iter().enumerate() {
        let mut acc = [0f32; 3];
        for (p, &wk) in buf[(lo - c0) * 3..(lo - c0 + ws.len()) * 3].chunks_exact(3).zip(ws) {
            acc[0] += wk * p[0];
            acc[1] += wk * p[1];
            acc[2] += wk * p[2];
        }
        r[ox] = acc[0] / 127.5 - 1.0;
        g[ox] = acc[1] / 127.5 - 1.0;
        b[ox] = acc[2] / 127.5 - 1.0;
    }
}

/// The 256x256 tile at `(ox, oy)` of `img` resized (stretched) to `sw x sh`, planar, black (-1)
/// past the scaled image: the values of [`crop_planar`] of [`resize_rgb8`], at the cost of the
/// tile's pixels only (the source rows and columns they read).
pub(super) fn resize_rgb8_window(img: &RgbImage, sw: u32, sh: u32, ox: i64, oy: i64) -> Vec<f32> {
    let n = INPUT_SIZE;
    let (w, sw, sh) = (img.width() as usize, sw as i64, sh as usize);
    // The tile's columns inside the scaled image, and the source columns they read.
    let (x0, x1) = (ox.clamp(0, sw) as usize, (ox + n as i64).clamp(0, sw) as usize);
    if x1 <= x0 || oy >= sh as i64 || oy + (n as i64) <= 0 {
        return vec![-1f32; 3 * n * n];
    }
    let cx = filter_coeffs(w, sw as usize);
    let cy = filter_coeffs(img.height() as usize, sh);
    let cx = &cx[x0..x1];
    let c0 = cx[0].0;
    let c1 = cx.iter().map(|(lo, ws)| lo + ws.len()).max().unwrap_or(c0);
    let dx = (x0 as i64 - ox) as usize;
    let src = img.as_raw();
    let simd = has_avx2_fma();
    for_each_out_row(n, n, (c1 - c0) * 3, |ty, buf, r, g, b| {
        let sy = oy + ty as i64;
        for row in [&mut *r, &mut *g, &mut *b] {
            row.fill(-1.0);
        }
        if sy < 0 || sy >= sh as i64 {
            return;
        }
        let (lo, ws) = &cy[sy as usize];
        vertical_u8_any(simd, src, w * 3, c0 * 3..c1 * 3, *lo, ws, buf);
        let end = dx + cx.len();
        horizontal_rgb(buf, c0, cx, (&mut r[dx..end], &mut g[dx..end], &mut b[dx..end]));
    })
}

/// Resizes a planar `[3, h, w]` image to `[3, oh, ow]` (same filter as [`resize_rgb8`]).
pub(super) fn resize_f32(src: &[f32], w: u32, h: u32, ow: u32, oh: u32) -> Vec<f32> {
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
pub(super) fn crop_planar(src: &[f32], w: usize, h: usize, ox: i64, oy: i64) -> Vec<f32> {
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
    fn a_windowed_resize_equals_the_crop_of_the_whole_resize() {
        let img = RgbImage::from_fn(600, 450, |x, y| {
            let v = 128.0 + 100.0 * ((x as f32 / 17.0).sin() * (y as f32 / 29.0).cos());
            image::Rgb([v as u8, (x % 256) as u8, (y * 7 % 256) as u8])
        });
        // Inside, past each edge, larger than the scaled image, upscaled, and wholly outside.
        let cases = [
            (400, 300, 50, 20),
            (400, 300, -100, -30),
            (400, 300, 300, 200),
            (200, 150, -28, -53),
            (900, 700, 500, 10),
            (400, 300, 400, 0),
            (400, 300, 0, -256),
        ];
        for (sw, sh, ox, oy) in cases {
            let want = crop_planar(&resize_rgb8(&img, sw, sh), sw as usize, sh as usize, ox, oy);
            let got = resize_rgb8_window(&img, sw, sh, ox, oy);
            assert!(got == want, "{sw}x{sh} at ({ox}, {oy})");
        }
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
