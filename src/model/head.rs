//! The trainable classification head on top of the frozen backbone's features.
//!
//! Either a linear softmax (`out`) on the bottleneck, as the original retrain.py, or a small MLP
//! (`hidden` + `out`) when warm-started from faceres' own gender head.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};

/// A dense layer `y = x W^T + b`.
#[derive(Debug, Clone)]
pub struct Dense {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Tensor,
}

impl Dense {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }
}

/// The classification head.
#[derive(Debug, Clone)]
pub struct Head {
    /// Optional hidden layer (relu), present for the faceres warm start.
    pub hidden: Option<Dense>,
    /// Output layer producing one logit per class.
    pub out: Dense,
}

impl Head {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.out.bias.dims1().unwrap_or(0)
    }

    /// Expected feature length.
    pub fn input_dim(&self) -> usize {
        let w = self.hidden.as_ref().map_or(&self.out.weight, |h| &h.weight);
        w.dims2().map(|d| d.1).unwrap_or(0)
    }

    /// Logits for a `[N, D]` batch, with an optional dropout mask applied to the input.
    pub fn logits(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = match &self.hidden {
            Some(d) => d.forward(x)?.relu()?,
            None => x.clone(),
        };
        self.out.forward(&h)
    }

    /// Class probabilities for a `[N, D]` batch.
    pub fn probs(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::softmax_last_dim(&self.logits(x)?)
    }

    /// Class probabilities for plain feature vectors.
    pub fn probs_of(&self, features: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.input_dim();
        if let Some(bad) = features.iter().find(|f| f.len() != d) {
            bail!(
                "feature vector has {} values but the head expects {d}: the model belongs to another backbone",
                bad.len()
            );
        }
        let dev = self.out.weight.device();
        let flat: Vec<f32> = features.iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, (features.len(), d), dev)?;
        Ok(self.probs(&x)?.to_vec2::<f32>()?)
    }

    /// Named tensors for saving.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut m = HashMap::new();
        m.insert("out.weight".into(), self.out.weight.clone());
        m.insert("out.bias".into(), self.out.bias.clone());
        if let Some(h) = &self.hidden {
            m.insert("hidden.weight".into(), h.weight.clone());
            m.insert("hidden.bias".into(), h.bias.clone());
        }
        m
    }

    /// Saves the head as safetensors.
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.tensors(), path)
            .with_context(|| format!("cannot write model weights {}", path.display()))
    }

    /// Loads a head saved by [`Head::save`], checking that shapes fit `input_dim` and `classes`.
    pub fn load(path: &Path, input_dim: usize, classes: usize, device: &Device) -> Result<Self> {
        let m = candle_core::safetensors::load(path, device)
            .with_context(|| format!("cannot read model weights {} (missing or not safetensors)", path.display()))?;
        let get = |name: &str| -> Result<Tensor> {
            m.get(name)
                .with_context(|| format!("model weights {} lack tensor '{name}'", path.display()))?
                .to_dtype(DType::F32)
                .map_err(Into::into)
        };
        let hidden = match (m.contains_key("hidden.weight"), m.contains_key("hidden.bias")) {
            (true, true) => Some(Dense { weight: get("hidden.weight")?, bias: get("hidden.bias")? }),
            _ => None,
        };
        let head = Self { hidden, out: Dense { weight: get("out.weight")?, bias: get("out.bias")? } };
        if head.input_dim() != input_dim || head.num_classes() != classes {
            bail!(
                "model weights {} are shaped for {}-d features and {} classes, but the metadata says {input_dim}-d and {classes} classes",
                path.display(),
                head.input_dim(),
                head.num_classes()
            );
        }
        Ok(head)
    }
}
