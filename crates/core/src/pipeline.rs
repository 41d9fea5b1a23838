//! From a file to features: decode, find faces, prepare inputs, run the backbone.
//!
//! The same [`Pipeline`] serves training (one vector per image: the most confident face, or the whole
//! image when none is found) and prediction (one vector per face).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;
use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::context::Context;
use crate::face::{FaceFinder, FaceRegion};
use crate::preprocess::{PreprocessSpec, prepare};
use gc_engine::{Backbone, BackboneKind};

/// A loaded preprocessing + backbone pipeline.
pub struct Pipeline {
    /// What the pipeline produces; recorded in models and cache keys.
    pub spec: PreprocessSpec,
    backbone: Box<dyn Backbone>,
    faces: Option<FaceFinder>,
    device: Device,
    /// Images run through the backbone so far (for tests: a cached file must cost none).
    forward_passes: AtomicU64,
}

impl Pipeline {
    /// Loads the backbone (and the face detector when `spec.face_crop`).
    pub fn load(spec: PreprocessSpec, ctx: &Context) -> Result<Self> {
        let backbone = spec.backbone.load(&ctx.models_dir, &ctx.device)?;
        let faces = if spec.face_crop { Some(FaceFinder::load(ctx)?) } else { None };
        Ok(Self { spec, backbone, faces, device: ctx.device.clone(), forward_passes: AtomicU64::new(0) })
    }

    /// The backbone kind.
    pub fn backbone_kind(&self) -> BackboneKind {
        self.spec.backbone
    }

    /// The device the networks run on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Face regions to classify in `img`, best first; the whole image (flagged) when cropping is off
    /// or no face is found.
    pub fn regions(&self, img: &RgbImage) -> Result<Vec<FaceRegion>> {
        match &self.faces {
            Some(f) => f.regions(img),
            None => Ok(vec![FaceRegion::whole(img)]),
        }
    }

    /// Prepared backbone input for one region (the shared preprocessing function).
    pub fn input(&self, img: &RgbImage, region: &FaceRegion) -> Vec<f32> {
        prepare(img, region.region, &self.spec)
    }

    /// Runs the backbone on prepared inputs; returns one feature vector per input.
    pub fn features(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let size = self.spec.input_size();
        let flat: Vec<f32> = inputs.concat();
        let x = Tensor::from_vec(flat, (inputs.len(), 3, size, size), &self.device)?;
        let f = self.backbone.features(&x)?;
        self.forward_passes.fetch_add(inputs.len() as u64, Ordering::Relaxed);
        Ok(f.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
    }

    /// How many images this pipeline has run through the backbone since it was loaded (one per
    /// prepared input, whatever the batching).
    pub fn forward_passes(&self) -> u64 {
        self.forward_passes.load(Ordering::Relaxed)
    }

    /// Decodes a file and returns its upright RGB pixels (see [`crate::imaging::load_rgb`]).
    pub fn load_image(&self, path: &Path) -> Result<RgbImage> {
        Ok(crate::imaging::load_rgb(path)?)
    }
}
