//! gender-classifier's networks in Candle: the two feature backbones (faceres, Inception-v3), the
//! BlazeFace face detector and the trainable head, with the hand-written NHWC CPU kernels they run
//! on, the allocator and the device choice.
//!
//! This crate knows nothing of datasets, caches or windows: it turns a tensor into features,
//! detections or logits. All `unsafe` code of the workspace lives here.

pub mod blazeface;
pub mod depthwise;
pub mod device;
mod error;
pub mod faceres;
pub mod faceres_train;
pub mod head;
pub mod inception_v3;
pub mod layer;
pub mod memory;
pub mod nhwc;
pub mod per_core;
#[cfg(test)]
mod test_util;
pub mod weights;

pub use error::{Error, Result};

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which pretrained network turns a photo into a feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    /// Face-specific MobileNetV1 (1024-d), the default.
    #[default]
    Faceres,
    /// Inception-v3 (2048-d), the original's backbone.
    InceptionV3,
}

impl BackboneKind {
    /// Every backbone, in display order.
    pub const ALL: [BackboneKind; 2] = [BackboneKind::Faceres, BackboneKind::InceptionV3];

    /// Stable id used in cache keys, metadata and the CLI.
    pub fn id(self) -> &'static str {
        match self {
            BackboneKind::Faceres => "faceres",
            BackboneKind::InceptionV3 => "inception-v3",
        }
    }

    /// Length of the feature ("bottleneck") vector.
    pub fn feature_dim(self) -> usize {
        match self {
            BackboneKind::Faceres => faceres::FEATURE_DIM,
            BackboneKind::InceptionV3 => inception_v3::FEATURE_DIM,
        }
    }

    /// The weight file this backbone loads.
    pub fn weight_file(self) -> weights::WeightFile {
        match self {
            BackboneKind::Faceres => weights::FACERES,
            BackboneKind::InceptionV3 => weights::INCEPTION_V3,
        }
    }

    /// Multiply-adds per image (for GFLOP/s reporting), approximate.
    pub fn macs_per_image(self) -> f64 {
        match self {
            BackboneKind::Faceres => 0.569e9,
            BackboneKind::InceptionV3 => 5.72e9,
        }
    }

    /// Loads the backbone from `models_dir` (the folder holding the shipped weights).
    pub fn load(self, models_dir: &Path, device: &Device) -> Result<Box<dyn Backbone>> {
        let path = models_dir.join(self.weight_file().file_name);
        Ok(match self {
            BackboneKind::Faceres => Box::new(faceres::Faceres::load(&path, device)?),
            BackboneKind::InceptionV3 => Box::new(inception_v3::InceptionV3::load(&path, device)?),
        })
    }
}

impl fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for BackboneKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        BackboneKind::ALL.into_iter().find(|k| k.id() == s).ok_or_else(|| Error::UnknownBackbone(s.to_owned()))
    }
}

/// A frozen feature extractor: preprocessed NCHW batch in, `[N, feature_dim]` features out.
pub trait Backbone: Send + Sync {
    /// Which backbone this is.
    fn kind(&self) -> BackboneKind;
    /// Pooled features for a preprocessed batch.
    fn features(&self, x: &Tensor) -> candle_core::Result<Tensor>;
}
