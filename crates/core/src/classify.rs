//! Prediction: a file in, one class-probability vector per face out.

use std::path::{Path, PathBuf};

use crate::error::Result;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::face::FaceRegion;
use crate::metrics::argmax;
use crate::model_file::Model;
use crate::pipeline::Pipeline;

/// The prediction for one face (or the whole image when no face was found).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FacePrediction {
    /// Where the face is.
    pub region: FaceRegion,
    /// Probability per class, in the model's class order.
    pub probs: Vec<f32>,
    /// Index of the predicted class.
    pub class: usize,
}

/// Everything predicted for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePrediction {
    /// The file.
    #[serde(serialize_with = "crate::path_text::lossy")]
    pub path: PathBuf,
    /// Upright image size.
    pub image_size: (u32, u32),
    /// One entry per face, most confident face first.
    pub faces: Vec<FacePrediction>,
}

/// A model ready to classify photos.
pub struct Classifier {
    /// The pipeline matching the model's preprocessing.
    pub pipeline: Pipeline,
    /// The model.
    pub model: Model,
}

impl Classifier {
    /// Loads a model and the pipeline it was trained with.
    pub fn load(model_path: &Path, ctx: &Context) -> Result<Self> {
        let model = Model::load(model_path, &ctx.device)?;
        Self::new(model, ctx)
    }

    /// Builds the pipeline for an already-loaded model.
    pub fn new(model: Model, ctx: &Context) -> Result<Self> {
        let pipeline = Pipeline::for_model(&model, ctx)?;
        Ok(Self { pipeline, model })
    }

    /// Class names.
    pub fn classes(&self) -> &[String] {
        &self.model.meta.classes
    }

    /// Classifies a file; boxes and size are in the full photo's pixels, also where a large JPEG
    /// was decoded at a reduced scale ([`Pipeline::load_photo`]).
    pub fn classify_file(&self, path: &Path) -> Result<ImagePrediction> {
        let photo = self.pipeline.load_photo(path)?;
        let mut p = self.classify_image(&photo.image)?;
        p.path = path.to_path_buf();
        p.image_size = photo.full_size;
        p.faces = p.faces.into_iter().map(|f| FacePrediction { region: f.region.scaled(photo.scale), ..f }).collect();
        Ok(p)
    }

    /// Classifies decoded pixels (every face, or the whole image).
    pub fn classify_image(&self, img: &RgbImage) -> Result<ImagePrediction> {
        let regions = self.pipeline.regions(img)?;
        let inputs: Vec<Vec<f32>> = regions.iter().map(|r| self.pipeline.input(img, r)).collect();
        let feats = self.pipeline.features(&inputs)?;
        let probs = self.model.head.probs_of(&feats)?;
        let faces = regions
            .into_iter()
            .zip(probs)
            .map(|(region, probs)| FacePrediction { class: argmax(&probs), region, probs })
            .collect();
        Ok(ImagePrediction { path: PathBuf::new(), image_size: img.dimensions(), faces })
    }

    /// Class probabilities from cached training features (one vector per image).
    pub fn probs_of_features(&self, feats: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        Ok(self.model.head.probs_of(feats)?)
    }
}
