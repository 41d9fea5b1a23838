//! The one preprocessing function shared by training and prediction:
//! upright RGB pixels + a region (whole image or a face box) -> the backbone's input tensor data.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use gc_engine::BackboneKind;
use gc_engine::faceres;
use gc_engine::inception_v3;

/// Bumped whenever the pixels fed to a backbone, or the face facts cached with them, change; part of
/// every cache key. 2: face score threshold 0.7, and detections nested inside a more confident face
/// (eyes or a mouth of a close-up) are no longer counted as faces. 3: crops aligned on the eyes,
/// photos that are already face crops kept whole, flip test-time augmentation. 4: photos over 512 px
/// whose first detector pass finds a large face get only the coarse tiles (`LARGE_FACE_SHARE`).
pub const PREPROCESS_VERSION: u32 = 4;

/// Crop mode of new models when faces are cropped: chosen on the validation splits of web-faces and
/// utk-dev (docs/ACCURACY.md, "Crops and test-time flips").
pub const DEFAULT_CROP: CropMode = CropMode::Aligned;

/// Whether new models use photos that are already face crops whole (chosen with [`DEFAULT_CROP`]).
pub const DEFAULT_KEEP_FACE_CROPS: bool = true;

/// Whether new models average each photo with its mirror image: off, since flips gained nothing
/// measurable on the validation splits and cost a second backbone pass (docs/ACCURACY.md).
pub const DEFAULT_TTA_FLIP: bool = false;

/// Which part of a photo the backbone sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropMode {
    /// The whole photo, stretched to the input square.
    Whole,
    /// A square around BlazeFace's box (`CROP_SCALE` x its larger side), axis-aligned.
    Box,
    /// A square rotated so the eyes are level, sized and centred on the eye distance.
    Aligned,
}

impl CropMode {
    /// Every mode, in CLI order.
    pub const ALL: [CropMode; 3] = [CropMode::Whole, CropMode::Box, CropMode::Aligned];

    /// Lowercase name, as the CLI and model files spell it.
    pub fn name(self) -> &'static str {
        match self {
            CropMode::Whole => "whole",
            CropMode::Box => "box",
            CropMode::Aligned => "aligned",
        }
    }
}

/// Everything that decides the backbone's input; recorded in model metadata and in cache keys.
///
/// Model files written before version 3 carry only `face_crop`; they load as a box crop (or the whole
/// image), without the face-crop rule and without flips, which is what they were trained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PreprocessSpec {
    /// The backbone whose input is produced.
    pub backbone: BackboneKind,
    /// Whether the face is detected and cropped first (falls back to the whole image).
    pub face_crop: bool,
    /// With `face_crop`: the crop is aligned on the eyes instead of BlazeFace's box.
    #[serde(default)]
    pub aligned: bool,
    /// With `face_crop`: a photo that is already a face crop (the face fills most of it) is used whole.
    #[serde(default)]
    pub keep_face_crops: bool,
    /// Features are the mean of the photo's and its mirror image's (flip test-time augmentation).
    #[serde(default)]
    pub tta_flip: bool,
    /// Version of this preprocessing code.
    pub version: u32,
}

impl PreprocessSpec {
    /// The spec new models are trained with: with `face_crop`, [`DEFAULT_CROP`] and
    /// [`DEFAULT_KEEP_FACE_CROPS`] (else the whole image); flips per [`DEFAULT_TTA_FLIP`].
    pub fn new(backbone: BackboneKind, face_crop: bool) -> Self {
        Self {
            backbone,
            face_crop,
            aligned: face_crop && DEFAULT_CROP == CropMode::Aligned,
            keep_face_crops: face_crop && DEFAULT_KEEP_FACE_CROPS,
            tta_flip: DEFAULT_TTA_FLIP,
            version: PREPROCESS_VERSION,
        }
    }

    /// The crop mode (`face_crop` and `aligned` together).
    pub fn crop(&self) -> CropMode {
        match (self.face_crop, self.aligned) {
            (false, _) => CropMode::Whole,
            (true, false) => CropMode::Box,
            (true, true) => CropMode::Aligned,
        }
    }

    /// Sets the crop mode.
    pub fn set_crop(&mut self, crop: CropMode) {
        self.face_crop = crop != CropMode::Whole;
        self.aligned = crop == CropMode::Aligned;
    }

    /// This spec with another crop mode.
    pub fn with_crop(mut self, crop: CropMode) -> Self {
        self.set_crop(crop);
        self
    }

    /// Short stable id, e.g. `faceres-v3-aligned-keep-flip`, used as a cache namespace. It names the
    /// current code's version (whatever version a loaded model recorded), since the current code
    /// makes the pixels; `face` is the box crop.
    pub fn id(&self) -> String {
        let crop = match self.crop() {
            CropMode::Whole => "whole",
            CropMode::Box => "face",
            CropMode::Aligned => "aligned",
        };
        let keep = if self.keep_face_crops && self.face_crop { "-keep" } else { "" };
        let flip = if self.tta_flip { "-flip" } else { "" };
        format!("{}-v{}-{crop}{keep}{flip}", self.backbone.id(), PREPROCESS_VERSION)
    }

    /// Short words for people, e.g. `aligned face crops, flip-averaged`.
    pub fn describe(&self) -> String {
        let mut s = match self.crop() {
            CropMode::Whole => "whole images".to_owned(),
            CropMode::Box => "face crops".to_owned(),
            CropMode::Aligned => "eye-aligned face crops".to_owned(),
        };
        if self.face_crop && self.keep_face_crops {
            s.push_str(" (photos that are already face crops kept whole)");
        }
        if self.tta_flip {
            s.push_str(", flip-averaged");
        }
        s
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

/// Choices that replace a spec's own crop mode, face-crop rule or flips (`None` keeps the spec's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CropOverrides {
    /// The crop mode.
    pub crop: Option<CropMode>,
    /// Whether photos that are already face crops are used whole.
    pub keep_face_crops: Option<bool>,
    /// Flip test-time augmentation.
    pub tta_flip: Option<bool>,
}

impl CropOverrides {
    /// `spec` with these choices applied.
    pub fn apply(&self, mut spec: PreprocessSpec) -> PreprocessSpec {
        if let Some(c) = self.crop {
            spec.set_crop(c);
        }
        if let Some(k) = self.keep_face_crops {
            spec.keep_face_crops = k;
        }
        if let Some(t) = self.tta_flip {
            spec.tta_flip = t;
        }
        spec
    }
}

/// A box `[x1, y1, x2, y2]` in pixel-centre coordinates of the upright image (may extend past its edges).
pub type Region = [f32; 4];

/// The region covering a whole `w x h` image.
pub fn whole_image(w: u32, h: u32) -> Region {
    [0.0, 0.0, w.saturating_sub(1) as f32, h.saturating_sub(1) as f32]
}

/// Turns pixels + a region rotated by `angle` radians about its centre into CHW f32 data for
/// `spec`'s backbone; the one preprocessing function of training and prediction.
///
/// Sampling follows TF `cropAndResize` (bilinear, box corners on pixel centres; outside the image is 0),
/// which for the whole image equals `resize_bilinear(align_corners=true)` as nsfwjs did for Inception-v3.
/// With an angle, the same grid is turned about the region's centre ([`crop_and_resize_rotated`]).
/// Regions more than 3x larger than the input are first shrunk with an antialiasing filter.
/// Normalisation: faceres gets BGR 0..255 minus the VGGFace2 means; Inception-v3 gets RGB / 255.
pub fn prepare(img: &RgbImage, region: Region, angle: f32, spec: &PreprocessSpec) -> Vec<f32> {
    let size = spec.input_size();
    let hwc = crop_and_resize_rotated(img, region, angle, size);
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

/// The mirror image (left-right) of prepared CHW data with `size x size` planes.
pub fn mirror_chw(input: &[f32], size: usize) -> Vec<f32> {
    let mut out = input.to_vec();
    for row in out.chunks_exact_mut(size.max(1)) {
        row.reverse();
    }
    out
}

/// [`crop_and_resize`] of `region` turned by `angle` radians about its centre (positive turns the
/// crop's x axis towards the image's +y, i.e. clockwise on screen). Angle 0 is [`crop_and_resize`].
pub fn crop_and_resize_rotated(img: &RgbImage, region: Region, angle: f32, out: usize) -> Vec<[f32; 3]> {
    if angle == 0.0 { crop_and_resize(img, region, out) } else { sample_rotated(img, region, angle, out) }
}

/// An output grid mapped into the image: pixel `(ox, oy)` samples `origin + ox * col + oy * row`.
#[derive(Debug, Clone, Copy)]
struct Grid {
    origin: [f32; 2],
    col: [f32; 2],
    row: [f32; 2],
}

/// The grid of `region` turned by `angle` about its centre, `out` samples a side.
fn rotated_grid(region: Region, angle: f32, out: usize) -> Grid {
    let [x1, y1, x2, y2] = region;
    let step = |a: f32, b: f32| if out > 1 { (b - a) / (out - 1) as f32 } else { 0.0 };
    let (sx, sy) = (step(x1, x2), step(y1, y2));
    let (sin, cos) = angle.sin_cos();
    let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let (rx, ry) = (x1 - cx, y1 - cy);
    Grid {
        origin: [cx + cos * rx - sin * ry, cy + sin * rx + cos * ry],
        col: [cos * sx, sin * sx],
        row: [-sin * sy, cos * sy],
    }
}

/// The general sampler behind [`crop_and_resize_rotated`] (any angle, 0 included).
fn sample_rotated(img: &RgbImage, region: Region, angle: f32, out: usize) -> Vec<[f32; 3]> {
    let grid = rotated_grid(region, angle, out);
    let span = (region[2] - region[0]).max(region[3] - region[1]);
    if span > 3.0 * out as f32 && img.width() > 1 && img.height() > 1 {
        // Shrink the part of the image under the turned square, then sample the shrunk copy.
        let last = out.saturating_sub(1) as f32;
        let corners = [0.0, last].map(|a| [0.0, last].map(|b| grid_point(&grid, a, b)));
        let xs = corners.iter().flatten().map(|p| p[0]);
        let ys = corners.iter().flatten().map(|p| p[1]);
        let (lo_x, hi_x) = xs.fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(v), h.max(v)));
        let (lo_y, hi_y) = ys.fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(v), h.max(v)));
        let (small, [cx1, cy1], [fx, fy]) = shrink_under(img, [lo_x, lo_y, hi_x, hi_y], out, span);
        let mapped = Grid {
            origin: [(grid.origin[0] - cx1) * fx, (grid.origin[1] - cy1) * fy],
            col: [grid.col[0] * fx, grid.col[1] * fy],
            row: [grid.row[0] * fx, grid.row[1] * fy],
        };
        return sample_grid(&small, &mapped, out);
    }
    sample_grid(img, &grid, out)
}

/// The image point of output pixel `(ox, oy)`.
fn grid_point(g: &Grid, ox: f32, oy: f32) -> [f32; 2] {
    [g.origin[0] + ox * g.col[0] + oy * g.row[0], g.origin[1] + ox * g.col[1] + oy * g.row[1]]
}

/// `v` moved onto 0 or `max` when it lies within 1e-3 outside them (float rounding), else `v`.
fn snap_to(v: f32, max: f32) -> f32 {
    const EPS: f32 = 1e-3;
    if v < 0.0 && v > -EPS {
        0.0
    } else if v > max && v < max + EPS {
        max
    } else {
        v
    }
}

/// Bilinear samples of `img` on `grid`, `out x out` (row-major HWC); points outside the image are 0.
fn sample_grid(img: &RgbImage, grid: &Grid, out: usize) -> Vec<[f32; 3]> {
    let (w, h) = (img.width() as i64, img.height() as i64);
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
        for ox in 0..out {
            let [fx, fy] = grid_point(grid, ox as f32, oy as f32);
            // Rounding of the turned grid must not push an edge sample just off the image.
            let (fx, fy) = (snap_to(fx, (w - 1) as f32), snap_to(fy, (h - 1) as f32));
            if fx < 0.0 || fy < 0.0 || fx > (w - 1) as f32 || fy > (h - 1) as f32 {
                dst.push([0.0; 3]);
                continue;
            }
            let (x0, y0) = (fx.floor() as i64, fy.floor() as i64);
            let (dx, dy) = (fx - x0 as f32, fy - y0 as f32);
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
    let (small, [cx1, cy1], [fx, fy]) = shrink_under(img, region, out, span);
    let mapped = [(x1 - cx1) * fx, (y1 - cy1) * fy, (x2 - cx1) * fx, (y2 - cy1) * fy];
    crop_and_resize(&small, mapped, out)
}

/// The part of the image under the bounds `[x1, y1, x2, y2]` (clipped to the image), shrunk with a
/// triangle filter so that a region spanning `span` pixels becomes about `2 * out` across; with
/// the corner it was cut at and the scale from image pixels to the shrunk copy's, per axis.
fn shrink_under(img: &RgbImage, bounds: [f32; 4], out: usize, span: f32) -> (RgbImage, [f32; 2], [f32; 2]) {
    let [x1, y1, x2, y2] = bounds;
    let (w, h) = (img.width() as f32, img.height() as f32);
    let cx1 = x1.max(0.0).floor().min(w - 1.0);
    let cy1 = y1.max(0.0).floor().min(h - 1.0);
    let cx2 = x2.min(w - 1.0).ceil().max(cx1);
    let cy2 = y2.min(h - 1.0).ceil().max(cy1);
    let (sw, sh) = ((cx2 - cx1) as u32 + 1, (cy2 - cy1) as u32 + 1);
    let scale = (2.0 * out as f32 / span).min(1.0);
    let tw = ((sw as f32 * scale).round() as u32).max(2);
    let th = ((sh as f32 * scale).round() as u32).max(2);
    let small = crate::resample::resize_rect(img, [cx1 as u32, cy1 as u32, sw, sh], tw, th);
    let fx = (tw - 1) as f32 / (sw.max(2) - 1) as f32;
    let fy = (th - 1) as f32 / (sh.max(2) - 1) as f32;
    (small, [cx1, cy1], [fx, fy])
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
        let f = prepare(&img, whole_image(3, 3), 0.0, &PreprocessSpec::new(BackboneKind::Faceres, false));
        let plane = 224 * 224;
        assert_eq!(f.len(), 3 * plane);
        assert!((f[0] - (50.0 - 103.939)).abs() < 1e-4, "channel 0 is blue");
        assert!((f[2 * plane] - (200.0 - 123.68)).abs() < 1e-4, "channel 2 is red");
        let i = prepare(&img, whole_image(3, 3), 0.0, &PreprocessSpec::new(BackboneKind::InceptionV3, false));
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

    /// A deterministic textured image (no two neighbouring pixels alike).
    fn texture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 37 + y * 11) as u8, (x * 5 + y * 53) as u8, ((x ^ y) * 29) as u8]))
    }

    #[test]
    fn the_turned_sampler_at_angle_zero_is_the_box_crop() {
        let img = texture(50, 40);
        for region in [[3.5, 2.0, 40.2, 38.7], [-6.0, -4.0, 30.0, 32.0], whole_image(50, 40)] {
            let old = crop_and_resize(&img, region, 17);
            let new = sample_rotated(&img, region, 0.0, 17);
            let worst =
                old.iter().zip(&new).flat_map(|(a, b)| (0..3).map(move |k| (a[k] - b[k]).abs())).fold(0.0, f32::max);
            assert!(worst < 1e-3, "{region:?}: differs by {worst}");
        }
        // The antialiased path for regions much larger than the output.
        let big = texture(900, 700);
        let region = [-20.0, 10.0, 880.0, 690.0];
        let old = crop_and_resize(&big, region, 32);
        let new = sample_rotated(&big, region, 0.0, 32);
        // The last row and column sit on the shrunk copy's edge, where the box sampler can lose a
        // sample to float rounding (black) that the turned sampler snaps back onto the image.
        let inner = |i: usize| i % 32 < 31 && i / 32 < 31;
        let (old, new) = (&old, &new);
        let worst = (0..old.len())
            .filter(|&i| inner(i))
            .flat_map(|i| (0..3).map(move |k| (old[i][k] - new[i][k]).abs()))
            .fold(0.0, f32::max);
        assert!(worst < 0.5, "shrunk path differs by {worst}");
    }

    #[test]
    fn a_quarter_turn_reads_the_image_sideways() {
        // Turned by +90 degrees, output pixel (ox, oy) samples image pixel (10 - oy, ox).
        let img = texture(11, 11);
        let out = crop_and_resize_rotated(&img, whole_image(11, 11), std::f32::consts::FRAC_PI_2, 11);
        for oy in 0..11u32 {
            for ox in 0..11u32 {
                let want = img.get_pixel(10 - oy, ox).0.map(f32::from);
                let got = out[(oy * 11 + ox) as usize];
                for k in 0..3 {
                    assert!((got[k] - want[k]).abs() < 1e-2, "({ox},{oy}): {got:?} vs {want:?}");
                }
            }
        }
        // A small turn keeps the centre pixel where it was and moves the corners.
        let out = crop_and_resize_rotated(&img, whole_image(11, 11), 0.3, 11);
        let centre = img.get_pixel(5, 5).0.map(f32::from);
        assert!((0..3).all(|k| (out[5 * 11 + 5][k] - centre[k]).abs() < 1e-3));
        assert_eq!(out[0], [0.0; 3], "the turned corner lies outside the image");
    }

    #[test]
    fn a_large_turned_region_is_antialiased() {
        let img = RgbImage::from_fn(2000, 2000, |x, y| if (x + y) % 2 == 0 { Rgb([255; 3]) } else { Rgb([0; 3]) });
        let out = crop_and_resize_rotated(&img, [400.0, 400.0, 1600.0, 1600.0], 0.5, 64);
        let max_dev = out.iter().map(|p| (p[0] - 127.5).abs()).fold(0.0, f32::max);
        assert!(max_dev < 40.0, "max deviation {max_dev}");
    }

    #[test]
    fn the_mirror_reverses_every_row_of_every_channel() {
        let chw: Vec<f32> = (0..27).map(|v| v as f32).collect(); // 3 channels of 3x3
        let m = mirror_chw(&chw, 3);
        assert_eq!(&m[..6], &[2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
        assert_eq!(mirror_chw(&m, 3), chw, "mirroring twice is the identity");
        let spec = PreprocessSpec::new(BackboneKind::Faceres, false);
        let img = texture(20, 10);
        let flipped = image::imageops::flip_horizontal(&img);
        let a = prepare(&img, whole_image(20, 10), 0.0, &spec);
        let b = prepare(&flipped, whole_image(20, 10), 0.0, &spec);
        let worst = mirror_chw(&a, 224).iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-3, "the mirrored input is the input of the mirrored photo ({worst})");
    }

    #[test]
    fn old_model_files_load_as_box_crops_and_every_choice_has_its_own_cache_id() {
        let old: PreprocessSpec =
            serde_json::from_str(r#"{"backbone":"faceres","face_crop":true,"version":2}"#).unwrap();
        assert_eq!(old.crop(), CropMode::Box);
        assert!(!old.keep_face_crops && !old.tta_flip);
        let whole: PreprocessSpec =
            serde_json::from_str(r#"{"backbone":"faceres","face_crop":false,"version":2}"#).unwrap();
        assert_eq!(whole.crop(), CropMode::Whole);
        let base = PreprocessSpec::new(BackboneKind::Faceres, true);
        let mut ids = std::collections::HashSet::new();
        for crop in CropMode::ALL {
            for keep in [false, true] {
                for flip in [false, true] {
                    let o = CropOverrides { crop: Some(crop), keep_face_crops: Some(keep), tta_flip: Some(flip) };
                    let s = o.apply(base);
                    assert_eq!((s.crop(), s.tta_flip), (crop, flip));
                    let back: PreprocessSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
                    assert_eq!(back, s, "round trip");
                    ids.insert(s.id());
                }
            }
        }
        // The face-crop rule means nothing for whole images: 2 + 4 + 4 distinct ids.
        assert_eq!(ids.len(), 10, "{ids:?}");
    }
}
