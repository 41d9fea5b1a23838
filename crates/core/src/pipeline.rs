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
use crate::features::cache::FeatureCache;
use crate::imaging::{ImageLoadError, ReducedImage, decode_rgb_reduced};
use crate::model_file::Model;
use crate::preprocess::{CropMode, PreprocessSpec, mirror_chw, prepare};
use gc_engine::faceres::Faceres;
use gc_engine::weights;
use gc_engine::{Backbone, BackboneKind};

/// The shortest longer side a photo is decoded at. The face detector promises faces of 40 px and
/// 1/50 of the longer side from 2000 px up (`gc_engine::blazeface`), so decoding a larger photo
/// down to 2000 px keeps every promised face at 40 px or more: a 12 MP photo is decoded at half
/// its size, about half the decoding work (docs/PERFORMANCE.md).
pub const MIN_DECODED_SIDE: u32 = 2000;

/// A loaded preprocessing + backbone pipeline.
pub struct Pipeline {
    /// What the pipeline produces; recorded in models and cache keys.
    pub spec: PreprocessSpec,
    backbone: Box<dyn Backbone>,
    faces: Option<FaceFinder>,
    device: Device,
    /// Images run through the backbone so far (for tests: a cached file must cost none).
    forward_passes: AtomicU64,
    /// The fingerprint of fine-tuned backbone weights, when the backbone has them: their
    /// features are cached apart from the shipped network's.
    tuned: Option<String>,
}

impl Pipeline {
    /// Loads the backbone (and the face detector when `spec.face_crop`).
    pub fn load(spec: PreprocessSpec, ctx: &Context) -> Result<Self> {
        let backbone = spec.backbone.load(&ctx.models_dir, &ctx.device)?;
        let faces = if spec.face_crop { Some(FaceFinder::load(ctx)?.with_spec(&spec)) } else { None };
        Ok(Self { spec, backbone, faces, device: ctx.device.clone(), forward_passes: AtomicU64::new(0), tuned: None })
    }

    /// The pipeline a model predicts with: its preprocessing, and its fine-tuned backbone blocks
    /// in place of the shipped ones when it has them.
    pub fn for_model(model: &Model, ctx: &Context) -> Result<Self> {
        let mut p = Self::load(model.meta.preprocess, ctx)?;
        if let Some(tuned) = &model.tuned {
            let path = ctx.weights(&weights::FACERES);
            p.backbone = Box::new(Faceres::load_with(&path, &tuned.tensors, &ctx.device)?);
            p.tuned = Some(tuned.fingerprint()?);
        }
        Ok(p)
    }

    /// The feature cache this pipeline reads and fills: `cache` itself, or for fine-tuned
    /// weights a folder of its own inside it (`tuned-<fingerprint>`).
    pub fn scoped_cache(&self, cache: &FeatureCache) -> FeatureCache {
        match &self.tuned {
            Some(id) => FeatureCache::new(cache.root().join(format!("tuned-{id}"))),
            None => cache.clone(),
        }
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
        prepare(img, region.region, region.angle, &self.spec)
    }

    /// Runs the backbone on prepared inputs; returns one feature vector per input.
    ///
    /// With `spec.tta_flip` (flip test-time augmentation) each input's mirror image runs in the same
    /// batch and the two feature vectors are averaged. For a linear softmax head this equals
    /// averaging the two logit vectors (the head is affine); for faceres' own head (dense + relu +
    /// sigmoid, the zero-shot model) it averages the pooled features that head reads. Training and
    /// prediction both come through here, so every head and backbone weight set gets the same inputs.
    pub fn features(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let size = self.spec.input_size();
        let mut flat: Vec<f32> = inputs.concat();
        let n = inputs.len();
        let rows = if self.spec.tta_flip {
            for i in inputs {
                flat.extend(mirror_chw(i, size));
            }
            2 * n
        } else {
            n
        };
        let x = Tensor::from_vec(flat, (rows, 3, size, size), &self.device)?;
        let f = self.backbone.features(&x)?;
        self.forward_passes.fetch_add(n as u64, Ordering::Relaxed);
        let mut f = f.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        if self.spec.tta_flip {
            let mirrored = f.split_off(n);
            for (a, b) in f.iter_mut().zip(&mirrored) {
                for (x, y) in a.iter_mut().zip(b) {
                    *x = (*x + y) / 2.0;
                }
            }
        }
        Ok(f)
    }

    /// How many images this pipeline has run through the backbone since it was loaded (one per
    /// prepared input, whatever the batching).
    pub fn forward_passes(&self) -> u64 {
        self.forward_passes.load(Ordering::Relaxed)
    }

    /// How many 256x256 inputs the face detector has run on so far (0 without face crops).
    pub fn detector_passes(&self) -> u64 {
        self.faces.as_ref().map_or(0, FaceFinder::detector_passes)
    }

    /// Reads and decodes a file into upright RGB pixels, as training and prediction both see it: a
    /// large JPEG is decoded at a reduced scale (inside the inverse DCT) that keeps its longer side
    /// at [`min_decoded_side`](Self::min_decoded_side) or more (with face crops: a JPEG of 4000 px
    /// or more); everything else at full size.
    /// Regions found in the image are in its pixels: multiply by `scale` for the full photo's.
    pub fn load_photo(&self, path: &Path) -> Result<ReducedImage> {
        let bytes =
            std::fs::read(path).map_err(|source| ImageLoadError::Read { path: path.display().to_string(), source })?;
        self.decode_photo(&bytes, path)
    }

    /// [`load_photo`](Self::load_photo) of bytes already read from `path` (named in messages).
    pub fn decode_photo(&self, bytes: &[u8], path: &Path) -> Result<ReducedImage> {
        Ok(decode_rgb_reduced(bytes, path, self.min_decoded_side())?)
    }

    /// The shortest longer side this pipeline decodes a photo at: [`MIN_DECODED_SIDE`] where it
    /// finds faces; the network's input side where it reads the whole photo (the scaled inverse
    /// DCT is as good a shrink as any, and a 960x1280 JPEG then decodes at a quarter of its size).
    pub fn min_decoded_side(&self) -> u32 {
        if self.spec.crop() == CropMode::Whole { self.spec.input_size() as u32 } else { MIN_DECODED_SIDE }
    }
}
