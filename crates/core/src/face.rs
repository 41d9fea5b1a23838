//! Face-crop policy on top of BlazeFace: which regions of a photo get classified.

use crate::error::Result;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::preprocess::{Region, whole_image};
use gc_engine::blazeface::{DetectOptions, Detection, FaceDetector};
use gc_engine::weights;

/// Minimum detector score for a face. BlazeFace's own default (0.5) gives false faces on the tiles of
/// large photos (hair, hands, patterns score 0.5-0.67 on the samples); 0.7 keeps every portrait found.
pub const MIN_FACE_SCORE: f32 = 0.7;

/// Crop side as a multiple of the detector's box (square, centred).
pub const CROP_SCALE: f32 = 1.3;

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
    /// The square crop (or whole image) in upright image pixels.
    pub region: Region,
    /// The detection behind the crop; `None` for the whole-image fallback.
    pub detection: Option<Detection>,
}

impl FaceRegion {
    /// The whole-image fallback.
    pub fn whole(img: &RgbImage) -> Self {
        Self { region: whole_image(img.width(), img.height()), detection: None }
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
}

impl FaceFinder {
    /// Loads BlazeFace from the context's models folder, onto its device.
    pub fn load(ctx: &Context) -> Result<Self> {
        Ok(Self {
            detector: FaceDetector::load(&ctx.weights(&weights::BLAZEFACE), &ctx.device)?,
            options: DetectOptions { min_score: MIN_FACE_SCORE, ..DetectOptions::default() },
        })
    }

    /// All detected faces, most confident first, as square crops; the whole image if there are none.
    pub fn regions(&self, img: &RgbImage) -> Result<Vec<FaceRegion>> {
        let mut dets = self.detector.detect(img, &self.options)?;
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        let dets = drop_nested(dets);
        if dets.is_empty() {
            return Ok(vec![FaceRegion::whole(img)]);
        }
        Ok(dets.into_iter().map(|d| FaceRegion { region: d.face_crop_box(CROP_SCALE), detection: Some(d) }).collect())
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
}
