//! Face-crop policy on top of BlazeFace: which regions of a photo get classified.

use crate::error::Result;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::preprocess::{CropMode, PreprocessSpec, Region, whole_image};
use gc_engine::blazeface::{DetectOptions, Detection, FaceDetector};
use gc_engine::weights;

/// Minimum detector score for a face. BlazeFace's own default (0.5) gives false faces on the tiles of
/// large photos (hair, hands, patterns score 0.5-0.67 on the samples); 0.7 keeps every portrait found.
pub const MIN_FACE_SCORE: f32 = 0.7;

/// Crop side as a multiple of the detector's box (square, centred).
pub const CROP_SCALE: f32 = 1.3;

/// Aligned crop side as a multiple of the eye distance (tuned on the validation splits of
/// web-faces and utk-dev; docs/ACCURACY.md).
pub const ALIGN_SIDE: f32 = 3.8;

/// Aligned crop centre below the eye midpoint, as a multiple of the eye distance (tuned with
/// [`ALIGN_SIDE`]).
pub const ALIGN_DROP: f32 = 0.8;

/// A photo whose most confident face box covers at least this share of its area is already a face
/// crop: with [`PreprocessSpec::keep_face_crops`] it is used whole, not cropped again (tuned on the
/// validation splits; docs/ACCURACY.md).
pub const FACE_CROP_COVER: f32 = 0.6;

/// Eyes closer than this share of the box width (or 2 px) are not trusted for alignment; the
/// box crop is used instead.
const MIN_EYE_SHARE: f32 = 0.15;

/// Share of the image area that a detection's box covers (the box clipped to the image).
pub fn box_cover(d: &Detection, w: u32, h: u32) -> f32 {
    let [x1, y1, x2, y2] = d.bbox;
    let (w, h) = (w as f32, h as f32);
    let cw = (x2.min(w) - x1.max(0.0)).max(0.0);
    let ch = (y2.min(h) - y1.max(0.0)).max(0.0);
    if w > 0.0 && h > 0.0 { cw * ch / (w * h) } else { 0.0 }
}

/// True when a photo is already a face crop: its best face covers at least `min_cover` of it.
pub fn is_face_crop(d: &Detection, w: u32, h: u32, min_cover: f32) -> bool {
    box_cover(d, w, h) >= min_cover
}

/// The eye-aligned square of a detection: `(square, angle)`, the square turned by `angle` radians
/// about its centre so that the eyes (keypoints 0 and 1, image pixels) are level, its side `side`
/// x the eye distance, its centre `drop` x the eye distance below the eye midpoint (along the
/// turned vertical). `None` when the eyes are too close to trust (use the box crop).
pub fn aligned_crop(d: &Detection, side: f32, drop: f32) -> Option<(Region, f32)> {
    let ([rx, ry], [lx, ly]) = (d.keypoints[0], d.keypoints[1]);
    let (dx, dy) = (lx - rx, ly - ry);
    let dist = dx.hypot(dy);
    let box_w = (d.bbox[2] - d.bbox[0]).abs();
    if !dist.is_finite() || dist < 2.0 || dist < MIN_EYE_SHARE * box_w {
        return None;
    }
    let angle = dy.atan2(dx);
    let (sin, cos) = angle.sin_cos();
    let (mx, my) = ((rx + lx) / 2.0, (ry + ly) / 2.0);
    // "Down" in the turned square is (-sin, cos) in the image.
    let (cx, cy) = (mx - sin * drop * dist, my + cos * drop * dist);
    let half = side * dist / 2.0;
    Some(([cx - half, cy - half, cx + half, cy + half], angle))
}

/// A detection lying this much (share of its own area) inside a more confident face is a part of
/// that face (an eye or mouth of a close-up scores 0.7-0.76 on web-faces), not another face.
pub const NESTED_OVERLAP: f32 = 0.5;

/// Share of `inner`'s area that lies inside `outer`.
fn covered(inner: &[f32; 4], outer: &[f32; 4]) -> f32 {
    let w = (inner[2].min(outer[2]) - inner[0].max(outer[0])).max(0.0);
    let h = (inner[3].min(outer[3]) - inner[1].max(outer[1])).max(0.0);
    let area = (inner[2] - inner[0]) * (inner[3] - inner[1]);
    if area > 0.0 { w * h / area } else { 0.0 }
}

/// Drops detections nested inside a more confident one; `dets` must be sorted by score, best first.
pub fn drop_nested(dets: Vec<Detection>) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::with_capacity(dets.len());
    for d in dets {
        if kept.iter().all(|k| covered(&d.bbox, &k.bbox) < NESTED_OVERLAP) {
            kept.push(d);
        }
    }
    kept
}

/// A region to classify: a face crop, or the whole image when no face was found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceRegion {
    /// The square crop (or whole image) in upright image pixels, before it is turned by `angle`.
    pub region: Region,
    /// Radians the crop is turned about its centre (eye alignment; 0 for box crops and whole images).
    #[serde(default)]
    pub angle: f32,
    /// The detection behind the crop; `None` for the whole-image fallback.
    pub detection: Option<Detection>,
}

impl FaceRegion {
    /// The whole-image fallback.
    pub fn whole(img: &RgbImage) -> Self {
        Self { region: whole_image(img.width(), img.height()), angle: 0.0, detection: None }
    }

    /// The same region in pixels `f` times larger (a region found in a photo decoded at a reduced
    /// scale, mapped to the full photo).
    pub fn scaled(mut self, f: f32) -> Self {
        if f != 1.0 {
            self.region = self.region.map(|v| v * f);
            if let Some(d) = &mut self.detection {
                d.bbox = d.bbox.map(|v| v * f);
                d.keypoints = d.keypoints.map(|[x, y]| [x * f, y * f]);
            }
        }
        self
    }

    /// True when this is a detected face rather than the whole image.
    pub fn is_face(&self) -> bool {
        self.detection.is_some()
    }
}

/// BlazeFace plus the crop policy.
pub struct FaceFinder {
    detector: FaceDetector,
    options: DetectOptions,
    crop: CropMode,
    keep_face_crops: bool,
}

impl FaceFinder {
    /// Loads BlazeFace from the context's models folder, onto its device.
    pub fn load(ctx: &Context) -> Result<Self> {
        Ok(Self {
            detector: FaceDetector::load(&ctx.weights(&weights::BLAZEFACE), &ctx.device)?,
            options: DetectOptions { min_score: MIN_FACE_SCORE, ..DetectOptions::default() },
            crop: CropMode::Box,
            keep_face_crops: false,
        })
    }

    /// The same finder cropping as `spec` says (box or aligned; the face-crop rule).
    pub fn with_spec(mut self, spec: &PreprocessSpec) -> Self {
        self.crop = if spec.crop() == CropMode::Aligned { CropMode::Aligned } else { CropMode::Box };
        self.keep_face_crops = spec.keep_face_crops;
        self
    }

    /// How many 256x256 inputs BlazeFace has run on so far (for profiles).
    pub fn detector_passes(&self) -> u64 {
        self.detector.passes()
    }

    /// Faces found in `img`, most confident first, parts of a face dropped (no crop policy).
    pub fn detections(&self, img: &RgbImage) -> Result<Vec<Detection>> {
        let mut dets = self.detector.detect(img, &self.options)?;
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(drop_nested(dets))
    }

    /// The region to classify for one detection under this finder's policy.
    pub fn region_of(&self, img: &RgbImage, d: Detection) -> FaceRegion {
        if self.keep_face_crops && is_face_crop(&d, img.width(), img.height(), FACE_CROP_COVER) {
            return FaceRegion { region: whole_image(img.width(), img.height()), angle: 0.0, detection: Some(d) };
        }
        let aligned = (self.crop == CropMode::Aligned).then(|| aligned_crop(&d, ALIGN_SIDE, ALIGN_DROP)).flatten();
        let (region, angle) = aligned.unwrap_or_else(|| (d.face_crop_box(CROP_SCALE), 0.0));
        FaceRegion { region, angle, detection: Some(d) }
    }

    /// All detected faces, most confident first, as square crops; the whole image if there are none.
    /// A photo that is already a face crop (with `keep_face_crops`) gives one region: all of it.
    pub fn regions(&self, img: &RgbImage) -> Result<Vec<FaceRegion>> {
        let dets = self.detections(img)?;
        if dets.is_empty() {
            return Ok(vec![FaceRegion::whole(img)]);
        }
        if self.keep_face_crops && is_face_crop(&dets[0], img.width(), img.height(), FACE_CROP_COVER) {
            // Other detections in a photo that one face fills are parts of it or cut-off strangers.
            return Ok(vec![self.region_of(img, dets[0].clone())]);
        }
        Ok(dets.into_iter().map(|d| self.region_of(img, d)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(score: f32, bbox: [f32; 4]) -> Detection {
        Detection { score, bbox, keypoints: [[0.0; 2]; 6] }
    }

    #[test]
    fn parts_of_a_face_are_dropped_but_neighbours_stay() {
        let face = det(0.95, [12.0, 33.0, 384.0, 544.0]);
        let mouth = det(0.75, [110.0, 355.0, 295.0, 540.0]); // fully inside
        let eye_edge = det(0.76, [-9.0, 110.0, 228.0, 347.0]); // 91% inside
        let neighbour = det(0.9, [400.0, 40.0, 700.0, 400.0]); // beside, no overlap
        let kept = drop_nested(vec![face.clone(), neighbour.clone(), eye_edge, mouth]);
        assert_eq!(kept, vec![face, neighbour]);
    }

    fn eyes(right: [f32; 2], left: [f32; 2], bbox: [f32; 4]) -> Detection {
        let mut d = det(0.9, bbox);
        d.keypoints[0] = right;
        d.keypoints[1] = left;
        d
    }

    #[test]
    fn level_eyes_give_an_upright_square_below_their_midpoint() {
        let d = eyes([40.0, 50.0], [60.0, 50.0], [30.0, 35.0, 70.0, 85.0]);
        let (r, angle) = aligned_crop(&d, 3.0, 0.5).unwrap();
        assert_eq!(angle, 0.0);
        // Eye distance 20: side 60, centre 10 px below (50, 50).
        let want = [20.0, 30.0, 80.0, 90.0];
        assert!(r.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4), "{r:?}");
    }

    #[test]
    fn tilted_eyes_turn_the_square_and_move_its_centre_along_the_turned_vertical() {
        // The left eye (image right) lower by as much as it is further right: 45 degrees.
        let d = eyes([40.0, 40.0], [60.0, 60.0], [20.0, 20.0, 80.0, 80.0]);
        let (r, angle) = aligned_crop(&d, 3.0, 0.5).unwrap();
        assert!((angle - std::f32::consts::FRAC_PI_4).abs() < 1e-5, "{angle}");
        let dist = 20.0 * 2f32.sqrt();
        let (cx, cy) = ((r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0);
        // Down in the turned square is (-sin, cos): towards the image's lower left.
        let step = 0.5 * dist / 2f32.sqrt();
        assert!((cx - (50.0 - step)).abs() < 1e-3 && (cy - (50.0 + step)).abs() < 1e-3, "({cx}, {cy})");
        assert!((r[2] - r[0] - 3.0 * dist).abs() < 1e-3);
    }

    #[test]
    fn eyes_too_close_to_trust_fall_back_to_the_box() {
        let d = det(0.9, [0.0, 0.0, 100.0, 100.0]); // keypoints all at the origin
        assert!(aligned_crop(&d, 3.0, 0.5).is_none());
        let d = eyes([45.0, 40.0], [50.0, 40.0], [0.0, 0.0, 100.0, 100.0]); // 5% of the box width
        assert!(aligned_crop(&d, 3.0, 0.5).is_none());
    }

    #[test]
    fn a_face_filling_the_photo_is_already_a_crop() {
        let tight = det(0.9, [20.0, 30.0, 180.0, 190.0]); // 160x160 of 200x200: 64%
        assert!((box_cover(&tight, 200, 200) - 0.64).abs() < 1e-4);
        assert!(is_face_crop(&tight, 200, 200, FACE_CROP_COVER));
        let small = det(0.9, [100.0, 100.0, 180.0, 180.0]); // 80x80 of 800x600
        assert!(!is_face_crop(&small, 800, 600, FACE_CROP_COVER));
        // Only the part inside the photo counts.
        let off = det(0.9, [-300.0, -300.0, 100.0, 100.0]);
        assert!((box_cover(&off, 200, 200) - 0.25).abs() < 1e-4);
    }
}
