//! Fast antialiased shrinking of 8-bit RGB: the triangle filter of `image::imageops::resize`, with
//! the same weights, the same order of sums and the same rounding (so the same bytes), run on the
//! raw rows of a sub-rectangle instead of pixel by pixel through `GenericImageView`.
//!
//! `image::imageops::resize` of a 960x1280 photo to 224x299 took 16.5 ms in a release build; this
//! takes about a tenth of that (docs/PERFORMANCE.md, "Where a default classify spends its time").

use image::RgbImage;

/// One output sample's taps: the first input index and the normalised weights.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// The triangle-filter taps from `in_size` samples to `out_size`, computed exactly as
/// `image::imageops::sample::{vertical_sample, horizontal_sample}` do.
fn triangle_taps(in_size: u32, out_size: u32) -> Vec<Taps> {
    let ratio = in_size as f32 / out_size as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    let support = sratio; // the triangle kernel's support is 1
    (0..out_size)
        .map(|o| {
            let centre = (o as f32 + 0.5) * ratio;
            let left = ((centre - support).floor() as i64).clamp(0, i64::from(in_size) - 1);
            let right = ((centre + support).ceil() as i64).clamp(left + 1, i64::from(in_size));
            let centre = centre - 0.5;
            let mut weights: Vec<f32> = (left..right)
                .map(|i| {
                    let x = ((i as f32 - centre) / sratio).abs();
                    if x < 1.0 { 1.0 - x } else { 0.0 }
                })
                .collect();
            let sum: f32 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= sum);
            Taps { first: left as usize, weights }
        })
        .collect()
}

/// The `sw x sh` rectangle of `img` at `(x0, y0)` (inside the image) shrunk or stretched to
/// `tw x th` with a triangle filter: byte for byte what `image::imageops::resize(&crop, tw, th,
/// FilterType::Triangle)` gives for that crop. Vertical pass first, then horizontal, as there.
pub fn resize_rect(img: &RgbImage, [x0, y0, sw, sh]: [u32; 4], tw: u32, th: u32) -> RgbImage {
    debug_assert!(x0 + sw <= img.width() && y0 + sh <= img.height() && sw > 0 && sh > 0);
    let stride = img.width() as usize * 3;
    let raw = img.as_raw();
    let row_len = sw as usize * 3;
    let (rows, cols) = (triangle_taps(sh, th), triangle_taps(sw, tw));
    let mut out = Vec::with_capacity(tw as usize * th as usize * 3);
    let mut column = vec![0f32; row_len];
    for taps in &rows {
        column.fill(0.0);
        for (k, &w) in taps.weights.iter().enumerate() {
            let start = (y0 as usize + taps.first + k) * stride + x0 as usize * 3;
            for (acc, &p) in column.iter_mut().zip(&raw[start..start + row_len]) {
                *acc += f32::from(p) * w;
            }
        }
        for taps in &cols {
            let mut t = [0f32; 3];
            let px = &column[taps.first * 3..(taps.first + taps.weights.len()) * 3];
            for (p, &w) in px.chunks_exact(3).zip(&taps.weights) {
                t[0] += p[0] * w;
                t[1] += p[1] * w;
                t[2] += p[2] * w;
            }
            out.extend(t.map(|v| v.clamp(0.0, 255.0).round() as u8));
        }
    }
    RgbImage::from_raw(tw, th, out).expect("tw * th * 3 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{FilterType, crop_imm, resize};

    fn texture(w: u32, h: u32, seed: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503) ^ seed).wrapping_mul(2_246_822_519);
            image::Rgb([(v >> 24) as u8, (v >> 16) as u8, ((x * 7 + y * 3) % 256) as u8])
        })
    }

    #[test]
    fn gives_the_same_bytes_as_the_image_crate() {
        let img = texture(331, 257, 7);
        for (rect, tw, th) in [
            ([0, 0, 331, 257], 64, 50),
            ([13, 29, 200, 150], 41, 77),
            ([100, 0, 231, 257], 231, 257), // same size: a copy through the filter
            ([5, 5, 40, 30], 90, 70),       // stretched
            ([330, 256, 1, 1], 3, 2),
            ([0, 0, 331, 1], 10, 1),
        ] {
            let [x, y, w, h] = rect;
            let want = resize(&crop_imm(&img, x, y, w, h).to_image(), tw, th, FilterType::Triangle);
            let got = resize_rect(&img, rect, tw, th);
            assert_eq!(got.dimensions(), (tw, th), "{rect:?}");
            assert!(got == want, "{rect:?} -> {tw}x{th} differs from image::imageops::resize");
        }
    }

    #[test]
    fn a_constant_image_stays_constant() {
        let img = RgbImage::from_pixel(500, 400, image::Rgb([12, 200, 255]));
        let out = resize_rect(&img, [50, 60, 400, 300], 37, 29);
        assert!(out.pixels().all(|p| p.0 == [12, 200, 255]));
    }
}
