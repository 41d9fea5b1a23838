//! The trainable classification head on top of the frozen backbone's features.
//!
//! Either a linear softmax (`out`) on the bottleneck, as the original retrain.py, or a small MLP
//! (`hidden` + `out`) when warm-started from faceres' own gender head.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::candle_message;
use crate::{Error, Result};

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

#[cfg(test)]
impl Head {
    /// A linear head with fixed, varied weights and biases (for tests).
    pub(crate) fn fixed_linear(classes: usize, dim: usize) -> Self {
        let dev = Device::Cpu;
        let w: Vec<f32> = (0..classes * dim).map(|i| (i as f32 * 0.61).cos()).collect();
        let b: Vec<f32> = (0..classes).map(|i| 0.3 - 0.4 * i as f32).collect();
        let out =
            Dense { weight: Tensor::from_vec(w, (classes, dim), &dev).unwrap(), bias: Tensor::new(b, &dev).unwrap() };
        Self { hidden: None, out }
    }
}

/// Feature vectors scored together by [`Head::probs_of`] and by the training loop's evaluation.
pub const ROWS_PER_PASS: usize = 1024;

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

    /// Class probabilities for plain feature vectors, scored [`ROWS_PER_PASS`] at a time (the
    /// copy into a tensor stays small however many vectors come in).
    pub fn probs_of<V: AsRef<[f32]>>(&self, features: &[V]) -> Result<Vec<Vec<f32>>> {
        if features.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.input_dim();
        if let Some(bad) = features.iter().find(|f| f.as_ref().len() != d) {
            return Err(Error::Input(format!(
                "feature vector has {} values but the head expects {d}: the model belongs to another backbone",
                bad.as_ref().len()
            )));
        }
        let dev = self.out.weight.device();
        let mut probs = Vec::with_capacity(features.len());
        for rows in features.chunks(ROWS_PER_PASS) {
            let mut flat = Vec::with_capacity(rows.len() * d);
            rows.iter().for_each(|f| flat.extend_from_slice(f.as_ref()));
            let x = Tensor::from_vec(flat, (rows.len(), d), dev)?;
            probs.extend(self.probs(&x)?.to_vec2::<f32>()?);
        }
        Ok(probs)
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

    /// Saves the head as safetensors ([`Error::ModelUnwritable`] if that fails).
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.tensors(), path)
            .map_err(|source| Error::ModelUnwritable { path: path.to_path_buf(), source })
    }

    /// Loads a head saved by [`Head::save`], checking that shapes fit `input_dim` and `classes`.
    ///
    /// Errors: [`Error::ModelMissing`] or [`Error::ModelUnreadable`] when the file cannot be read,
    /// [`Error::ModelCorrupt`] when it is not safetensors, lacks a tensor or is shaped for other
    /// features or classes.
    pub fn load(path: &Path, input_dim: usize, classes: usize, device: &Device) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::model_read(path, e))?;
        let m = candle_core::safetensors::load_buffer(&bytes, device)
            .map_err(|e| Error::model_corrupt(path, format!("is not valid safetensors ({})", candle_message(&e))))?;
        let get = |name: &str| -> Result<Tensor> {
            let t = m.get(name).ok_or_else(|| Error::model_corrupt(path, format!("lacks tensor '{name}'")))?;
            Ok(t.to_dtype(DType::F32)?)
        };
        let hidden = match (m.contains_key("hidden.weight"), m.contains_key("hidden.bias")) {
            (true, true) => Some(Dense { weight: get("hidden.weight")?, bias: get("hidden.bias")? }),
            _ => None,
        };
        let head = Self { hidden, out: Dense { weight: get("out.weight")?, bias: get("out.bias")? } };
        if head.input_dim() != input_dim || head.num_classes() != classes {
            return Err(Error::model_corrupt(
                path,
                format!(
                    "is shaped for {}-d features and {} classes, but the metadata says {input_dim}-d and {classes} classes",
                    head.input_dim(),
                    head.num_classes()
                ),
            ));
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_in_passes_matches_one_tensor_and_rejects_wrong_lengths() {
        let dev = Device::Cpu;
        let head = Head::fixed_linear(2, 6);
        let n = 2 * ROWS_PER_PASS + 5;
        let feats: Vec<Vec<f32>> =
            (0..n).map(|i| (0..6).map(|k| ((i * 7 + k) as f32 * 0.13).sin()).collect()).collect();
        let got = head.probs_of(&feats).unwrap();
        let x = Tensor::from_vec(feats.concat(), (n, 6), &dev).unwrap();
        let want = head.probs(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(got.len(), n);
        let worst = got.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-6, "{worst}");
        let err = head.probs_of(&[vec![0.0f32; 5]]).unwrap_err().to_string();
        assert!(err.contains("5 values") && err.contains("expects 6"), "{err}");
    }

    #[test]
    fn load_errors_name_the_file_and_the_problem() {
        let dir = std::env::temp_dir().join(format!("gc-engine-head-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("head.safetensors");
        let head = Head::fixed_linear(2, 6);
        head.save(&path).unwrap();
        let back = Head::load(&path, 6, 2, &Device::Cpu).unwrap();
        assert_eq!((back.input_dim(), back.num_classes()), (6, 2));

        let err = Head::load(&path, 7, 2, &Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::ModelCorrupt { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()) && text.contains("7-d"), "{text}");

        let missing = dir.join("none.safetensors");
        let err = Head::load(&missing, 6, 2, &Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::ModelMissing { .. }), "{err:?}");
        assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

        std::fs::write(&path, b"not safetensors").unwrap();
        let text = Head::load(&path, 6, 2, &Device::Cpu).unwrap_err().to_string();
        assert!(text.contains("not valid safetensors"), "{text}");

        let err = head.save(&dir.join("no-such-folder/head.safetensors")).unwrap_err();
        assert!(matches!(err, Error::ModelUnwritable { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
