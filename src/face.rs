//! Face-crop policy on top of BlazeFace: which regions of a photo get classified.

use anyhow::Result;
use candle_core::Device;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::model::blazeface::{DetectOptions, Detection, FaceDetector};
use crate::model::weights;
use crate::preprocess::{Region, whole_image};

/// Minimum detector score for a face. BlazeFace's own default (0.5) gives false faces on the tiles of
/// large photos (hair, hands, patterns score 0.5-0.67 on the samples); 0.7 keeps every portrait found.
pub const MIN_FACE_SCORE: f32 = 0.7;

/// Crop side as a multiple of the detector's box (square, centred).
pub const CROP_SCALE: f32 = 1.3;

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
    /// Loads BlazeFace from the models directory.
    pub fn load(device: &Device) -> Result<Self> {
        let path = weights::models_dir().join(weights::BLAZEFACE.file_name);
        Ok(Self {
            detector: FaceDetector::load(&path, device)?,
            options: DetectOptions { min_score: MIN_FACE_SCORE, ..DetectOptions::default() },
        })
    }

    /// All detected faces, most confident first, as square crops; the whole image if there are none.
    pub fn regions(&self, img: &RgbImage) -> Result<Vec<FaceRegion>> {
        let mut dets = self.detector.detect(img, &self.options)?;
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        if dets.is_empty() {
            return Ok(vec![FaceRegion::whole(img)]);
        }
        Ok(dets.into_iter().map(|d| FaceRegion { region: d.face_crop_box(CROP_SCALE), detection: Some(d) }).collect())
    }
}
