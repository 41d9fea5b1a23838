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
        Self::from_safetensors(path, &bytes, input_dim, classes, device)
    }

    /// Builds a head from the bytes of a safetensors file read from `path` (named in errors),
    /// checking every shape against `input_dim` and `classes` as [`Head::load`] does.
    pub fn from_safetensors(
        path: &Path,
        bytes: &[u8],
        input_dim: usize,
        classes: usize,
        device: &Device,
    ) -> Result<Self> {
        let m = candle_core::safetensors::load_buffer(bytes, device)
            .map_err(|e| Error::model_corrupt(path, format!("is not valid safetensors ({})", candle_message(&e))))?;
        let get = |name: &str| -> Result<Tensor> {
            let t = m.get(name).ok_or_else(|| Error::model_corrupt(path, format!("lacks tensor '{name}'")))?;
            Ok(t.to_dtype(DType::F32)?)
        };
        let hidden = match (m.contains_key("hidden.weight"), m.contains_key("hidden.bias")) {
            (true, true) => Some(Dense { weight: get("hidden.weight")?, bias: get("hidden.bias")? }),
            (false, false) => None,
            (true, false) => return Err(Error::model_corrupt(path, "has 'hidden.weight' but lacks 'hidden.bias'")),
            (false, true) => return Err(Error::model_corrupt(path, "has 'hidden.bias' but lacks 'hidden.weight'")),
        };
        let head = Self { hidden, out: Dense { weight: get("out.weight")?, bias: get("out.bias")? } };
        head.check_shapes(input_dim, classes).map_err(|why| Error::model_corrupt(path, why))?;
        Ok(head)
    }

    /// Checks that every tensor is shaped to take `input_dim`-d features to `classes` logits,
    /// so that scoring can never fail on a shape; the error says what does not fit.
    pub fn check_shapes(&self, input_dim: usize, classes: usize) -> std::result::Result<(), String> {
        let shape = |t: &Tensor| format!("{:?}", t.dims());
        let (w, b) = (&self.out.weight, &self.out.bias);
        let (Ok((rows, inner)), Ok(n)) = (w.dims2(), b.dims1()) else {
            return Err(format!(
                "has output tensors of shapes {} and {}, not a matrix and a vector",
                shape(w),
                shape(b)
            ));
        };
        if rows != n {
            return Err(format!("has an output layer with {rows} rows but {n} biases"));
        }
        let features = match &self.hidden {
            None => inner,
            Some(h) => {
                let (Ok((units, features)), Ok(hb)) = (h.weight.dims2(), h.bias.dims1()) else {
                    return Err(format!(
                        "has hidden-layer tensors of shapes {} and {}, not a matrix and a vector",
                        shape(&h.weight),
                        shape(&h.bias)
                    ));
                };
                if units != hb || units != inner {
                    return Err(format!(
                        "has a hidden layer of {units} units with {hb} biases feeding an output layer that takes {inner} inputs"
                    ));
                }
                features
            }
        };
        if features != input_dim || n != classes {
            return Err(format!(
                "is shaped for {features}-d features and {n} classes, but the metadata says {input_dim}-d and {classes} classes"
            ));
        }
        Ok(())
    }

    /// Name of the first tensor (in name order) that holds a NaN or infinite value, if any.
    pub fn non_finite_tensor(&self) -> Result<Option<String>> {
        let mut named: Vec<(String, Tensor)> = self.tensors().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in named {
            let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if values.iter().any(|v| !v.is_finite()) {
                return Ok(Some(name));
            }
        }
        Ok(None)
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

        // An output layer whose inputs do not match the hidden layer's units would fail in matmul.
        let dev = Device::Cpu;
        let mut mlp = Head::fixed_linear(2, 4);
        mlp.hidden = Some(Dense {
            weight: Tensor::zeros((3, 6), DType::F32, &dev).unwrap(),
            bias: Tensor::zeros(3, DType::F32, &dev).unwrap(),
        });
        mlp.save(&path).unwrap();
        let text = Head::load(&path, 6, 2, &dev).unwrap_err().to_string();
        assert!(
            text.contains("3 units") && text.contains("takes 4 inputs") && text.contains(&path.display().to_string()),
            "{text}"
        );
        mlp.hidden.as_mut().unwrap().weight = Tensor::zeros((4, 6), DType::F32, &dev).unwrap();
        mlp.hidden.as_mut().unwrap().bias = Tensor::zeros(4, DType::F32, &dev).unwrap();
        mlp.save(&path).unwrap();
        assert_eq!(Head::load(&path, 6, 2, &dev).unwrap().input_dim(), 6);
        let text = Head::load(&path, 4, 2, &dev).unwrap_err().to_string();
        assert!(text.contains("6-d features") && text.contains("says 4-d"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn non_finite_weights_are_found_by_name() {
        let dev = Device::Cpu;
        let mut head = Head::fixed_linear(2, 3);
        assert_eq!(head.non_finite_tensor().unwrap(), None);
        head.out.bias = Tensor::new(&[0.0f32, f32::NAN], &dev).unwrap();
        assert_eq!(head.non_finite_tensor().unwrap().as_deref(), Some("out.bias"));
        head.out.bias = Tensor::new(&[0.0f32, 0.0], &dev).unwrap();
        head.out.weight = Tensor::new(&[[0.0f32, f32::INFINITY, 0.0], [0.0, 0.0, 0.0]], &dev).unwrap();
        assert_eq!(head.non_finite_tensor().unwrap().as_deref(), Some("out.weight"));
    }
}
