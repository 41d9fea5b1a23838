//! The one preprocessing function shared by training and prediction:
//! upright RGB pixels + a region (whole image or a face box) -> the backbone's input tensor data.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use gc_engine::BackboneKind;
use gc_engine::faceres;
use gc_engine::inception_v3;

/// Bumped whenever the pixels fed to a backbone, or the face facts cached with them, change; part of
/// every cache key. 2: face score threshold 0.7, and detections nested inside a more confident face
/// (eyes or a mouth of a close-up) are no longer counted as faces.
pub const PREPROCESS_VERSION: u32 = 2;

/// Everything that decides the backbone's input; recorded in model metadata and in cache keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// The backbone whose input is produced.
    pub backbone: BackboneKind,
    /// Whether the face is detected and cropped first (falls back to the whole image).
    pub face_crop: bool,
    /// Version of this preprocessing code.
    pub version: u32,
}

impl PreprocessSpec {
    /// The spec for a backbone at the current version.
    pub fn new(backbone: BackboneKind, face_crop: bool) -> Self {
        Self { backbone, face_crop, version: PREPROCESS_VERSION }
    }

    /// Short stable id, e.g. `faceres-v1-face`, used as a cache namespace.
    pub fn id(&self) -> String {
        format!("{}-v{}-{}", self.backbone.id(), self.version, if self.face_crop { "face" } else { "whole" })
    }

    /// Input side in pixels.
    pub fn input_size(&self) -> usize {
        match self.backbone {
            BackboneKind::Faceres => faceres::INPUT_SIZE,
            BackboneKind::InceptionV3 => inception_v3::INPUT_SIZE,
        }
    }

    /// Number of f32 values of one prepared input (3 x size x size).
    pub fn input_len(&self) -> usize {
        3 * self.input_size() * self.input_size()
    }
}

/// A box `[x1, y1, x2, y2]` in pixel-centre coordinates of the upright image (may extend past its edges).
pub type Region = [f32; 4];

/// The region covering a whole `w x h` image.
pub fn whole_image(w: u32, h: u32) -> Region {
    [0.0, 0.0, w.saturating_sub(1) as f32, h.saturating_sub(1) as f32]
}

/// Turns pixels + region into CHW f32 data for `spec`'s backbone.
///
/// Sampling follows TF `cropAndResize` (bilinear, box corners on pixel centres; outside the image is 0),
/// which for the whole image equals `resize_bilinear(align_corners=true)` as nsfwjs did for Inception-v3.
/// Regions more than 3x larger than the input are first shrunk with an antialiasing filter.
/// Normalisation: faceres gets BGR 0..255 minus the VGGFace2 means; Inception-v3 gets RGB / 255.
pub fn prepare(img: &RgbImage, region: Region, spec: &PreprocessSpec) -> Vec<f32> {
    let size = spec.input_size();
    let hwc = crop_and_resize(img, region, size);
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in hwc.iter().enumerate() {
        match spec.backbone {
            BackboneKind::Faceres => {
                for (c, mean) in faceres::BGR_MEAN.iter().enumerate() {
                    out[c * plane + i] = px[2 - c] - mean;
                }
            }
            BackboneKind::InceptionV3 => {
                for c in 0..3 {
                    out[c * plane + i] = px[c] / 255.0;
                }
            }
        }
    }
    out
}

/// Bilinear sampling of `region` into an `out x out` grid of RGB values in 0..255 (row-major HWC).
pub fn crop_and_resize(img: &RgbImage, region: Region, out: usize) -> Vec<[f32; 3]> {
    let [x1, y1, x2, y2] = region;
    let span = (x2 - x1).max(y2 - y1);
    if span > 3.0 * out as f32 && img.width() > 1 && img.height() > 1 {
        return crop_and_resize_shrunk(img, region, out, span);
    }
    let (w, h) = (img.width() as i64, img.height() as i64);
    let step = |a: f32, b: f32| if out > 1 { (b - a) / (out - 1) as f32 } else { 0.0 };
    let (sx, sy) = (step(x1, x2), step(y1, y2));
    let raw = img.as_raw();
    let px = |x: i64, y: i64| -> [f32; 3] {
        if x < 0 || y < 0 || x >= w || y >= h {
            return [0.0; 3];
        }
        let o = ((y * w + x) * 3) as usize;
        [f32::from(raw[o]), f32::from(raw[o + 1]), f32::from(raw[o + 2])]
    };
    let mut dst = Vec::with_capacity(out * out);
    for oy in 0..out {
        let fy = y1 + oy as f32 * sy;
        if fy < 0.0 || fy > (h - 1) as f32 {
            dst.extend(std::iter::repeat_n([0.0; 3], out));
            continue;
        }
        let y0 = fy.floor() as i64;
        let dy = fy - y0 as f32;
        for ox in 0..out {
            let fx = x1 + ox as f32 * sx;
            if fx < 0.0 || fx > (w - 1) as f32 {
                dst.push([0.0; 3]);
                continue;
            }
            let x0 = fx.floor() as i64;
            let dx = fx - x0 as f32;
            let (a, b, c, d) = (px(x0, y0), px(x0 + 1, y0), px(x0, y0 + 1), px(x0 + 1, y0 + 1));
            let mut v = [0f32; 3];
            for k in 0..3 {
                let top = a[k] + (b[k] - a[k]) * dx;
                let bottom = c[k] + (d[k] - c[k]) * dx;
                v[k] = top + (bottom - top) * dy;
            }
            dst.push(v);
        }
    }
    dst
}

/// Shrinks the part of the image under a large region with a triangle filter, then samples it.
fn crop_and_resize_shrunk(img: &RgbImage, region: Region, out: usize, span: f32) -> Vec<[f32; 3]> {
    let [x1, y1, x2, y2] = region;
    let (w, h) = (img.width() as f32, img.height() as f32);
    let cx1 = x1.max(0.0).floor().min(w - 1.0);
    let cy1 = y1.max(0.0).floor().min(h - 1.0);
    let cx2 = x2.min(w - 1.0).ceil().max(cx1);
    let cy2 = y2.min(h - 1.0).ceil().max(cy1);
    let (sw, sh) = ((cx2 - cx1) as u32 + 1, (cy2 - cy1) as u32 + 1);
    let scale = (2.0 * out as f32 / span).min(1.0);
    let tw = ((sw as f32 * scale).round() as u32).max(2);
    let th = ((sh as f32 * scale).round() as u32).max(2);
    let sub = image::imageops::crop_imm(img, cx1 as u32, cy1 as u32, sw, sh).to_image();
    let small = image::imageops::resize(&sub, tw, th, image::imageops::FilterType::Triangle);
    let fx = (tw - 1) as f32 / (sw.max(2) - 1) as f32;
    let fy = (th - 1) as f32 / (sh.max(2) - 1) as f32;
    let mapped = [(x1 - cx1) * fx, (y1 - cy1) * fy, (x2 - cx1) * fx, (y2 - cy1) * fy];
    crop_and_resize(&small, mapped, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn whole_image_resize_hits_the_corners() {
        let mut img = RgbImage::from_pixel(10, 8, Rgb([0, 0, 0]));
        img.put_pixel(0, 0, Rgb([255, 0, 0]));
        img.put_pixel(9, 7, Rgb([0, 0, 255]));
        let out = crop_and_resize(&img, whole_image(10, 8), 5);
        assert_eq!(out[0], [255.0, 0.0, 0.0]);
        assert_eq!(out[24], [0.0, 0.0, 255.0]);
    }

    #[test]
    fn faceres_input_is_bgr_minus_mean_and_inception_is_rgb_unit() {
        let img = RgbImage::from_pixel(3, 3, Rgb([200, 100, 50]));
        let f = prepare(&img, whole_image(3, 3), &PreprocessSpec::new(BackboneKind::Faceres, false));
        let plane = 224 * 224;
        assert_eq!(f.len(), 3 * plane);
        assert!((f[0] - (50.0 - 103.939)).abs() < 1e-4, "channel 0 is blue");
        assert!((f[2 * plane] - (200.0 - 123.68)).abs() < 1e-4, "channel 2 is red");
        let i = prepare(&img, whole_image(3, 3), &PreprocessSpec::new(BackboneKind::InceptionV3, false));
        assert!((i[0] - 200.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn large_regions_are_antialiased_not_aliased() {
        // A 1-pixel checkerboard averages to mid-grey when shrunk properly.
        let img = RgbImage::from_fn(2000, 2000, |x, y| if (x + y) % 2 == 0 { Rgb([255; 3]) } else { Rgb([0; 3]) });
        let out = crop_and_resize(&img, whole_image(2000, 2000), 64);
        let mean: f32 = out.iter().map(|p| p[0]).sum::<f32>() / out.len() as f32;
        let max_dev = out.iter().map(|p| (p[0] - 127.5).abs()).fold(0.0, f32::max);
        assert!((mean - 127.5).abs() < 5.0 && max_dev < 40.0, "mean {mean}, max deviation {max_dev}");
    }

    #[test]
    fn region_outside_the_image_is_black_and_1x1_works() {
        let img = RgbImage::from_pixel(1, 1, Rgb([9, 9, 9]));
        let out = crop_and_resize(&img, [-5.0, -5.0, 5.0, 5.0], 11);
        assert_eq!(out[0], [0.0; 3]);
        assert_eq!(out[5 * 11 + 5], [9.0; 3]);
        let whole = crop_and_resize(&img, whole_image(1, 1), 4);
        assert!(whole.iter().all(|p| *p == [9.0; 3]));
    }
}
