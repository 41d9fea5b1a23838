//! Fine-tuning faceres: its last blocks as trainable Candle variables.
//!
//! The fast NHWC kernels of [`crate::faceres`] have no backward pass, so the blocks being trained
//! run here on stock Candle ops, which do: a 3x3 depthwise conv as nine shifted, per-channel scaled
//! copies of its input, a 1x1 conv as a matrix product, ReLU6 as `relu(x) - relu(x - 6)`. Their
//! input is the frozen network's output before the first trained block
//! ([`crate::faceres::Faceres::activations`]), which a caller computes once per photo and keeps.
//!
//! [`Tail::tensors`] gives the trained weights back under faceres' own tensor names, so
//! [`crate::faceres::Faceres::load_with`] builds the fine-tuned network on the fast kernels for prediction.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;

use crate::faceres::BLOCKS;
use crate::layer::same_padding_3x3;

/// ReLU6 from two ReLUs, so that Candle can differentiate it.
fn relu6(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? - (x - 6.0)?.relu()?
}

/// One trainable depthwise-separable block (depthwise 3x3 + ReLU6, pointwise 1x1 + ReLU6), NHWC.
struct TailBlock {
    /// 1-based block number, as in the weights' names (`block13`).
    number: usize,
    stride: usize,
    /// `[3, 3, C]`: tap `(ky, kx)` scales channel `c` (faceres' `dw.scale` folded in).
    dw_weight: Var,
    /// `[C]`.
    dw_bias: Var,
    /// `[C_in, C_out]`, so a row of pixels times it is the pointwise conv.
    pw_weight: Var,
    /// `[C_out]`.
    pw_bias: Var,
}

impl TailBlock {
    fn load(vb: &VarBuilder, number: usize) -> candle_core::Result<Self> {
        let (stride, cin, cout) = BLOCKS[number - 1];
        let b = vb.pp(format!("block{number}"));
        let dw = b.get((cin, 1, 3, 3), "dw.weight")?;
        let scale = b.get(cin, "dw.scale")?;
        let dw = dw.reshape((cin, 9))?.broadcast_mul(&scale.reshape((cin, 1))?)?;
        let dw = dw.t()?.reshape((3, 3, cin))?.contiguous()?;
        let pw = b.get((cout, cin, 1, 1), "pw.weight")?.reshape((cout, cin))?.t()?.contiguous()?;
        Ok(Self {
            number,
            stride,
            dw_weight: Var::from_tensor(&dw)?,
            dw_bias: Var::from_tensor(&b.get(cin, "dw.shift")?)?,
            pw_weight: Var::from_tensor(&pw)?,
            pw_bias: Var::from_tensor(&b.get(cout, "pw.bias")?)?,
        })
    }

    /// The block on an NHWC map `[N, H, W, C]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let (t, l, b, r) = same_padding_3x3(self.stride, h, w);
        let s = self.stride;
        let (ho, wo) = ((h + t + b - 3) / s + 1, (w + l + r - 3) / s + 1);
        // Stride 2: pad to even sides, so that rows `ky + 2i` are row `i + ky / 2` of phase `ky % 2`.
        let (extra_h, extra_w) = ((h + t + b) % s, (w + l + r) % s);
        let x = x.pad_with_zeros(1, t, b + extra_h)?.pad_with_zeros(2, l, r + extra_w)?;
        let (hp, wp) = (h + t + b + extra_h, w + l + r + extra_w);
        let x = x.reshape((n, hp / s, s, wp / s, s, c))?;
        let weight = self.dw_weight.as_tensor();
        let mut acc: Option<Tensor> = None;
        for ky in 0..3 {
            for kx in 0..3 {
                let tap = x
                    .narrow(1, ky / s, ho)?
                    .narrow(2, ky % s, 1)?
                    .narrow(3, kx / s, wo)?
                    .narrow(4, kx % s, 1)?
                    .reshape((n, ho, wo, c))?;
                let term = tap.broadcast_mul(&weight.get(ky)?.get(kx)?)?;
                acc = Some(match acc {
                    Some(a) => (a + term)?,
                    None => term,
                });
            }
        }
        let dw = relu6(&acc.expect("nine taps").broadcast_add(self.dw_bias.as_tensor())?)?;
        let cout = self.pw_bias.as_tensor().dim(0)?;
        let pw = dw.reshape((n * ho * wo, c))?.matmul(self.pw_weight.as_tensor())?;
        relu6(&pw.broadcast_add(self.pw_bias.as_tensor())?)?.reshape((n, ho, wo, cout))
    }

    /// The block's weights under faceres' names and shapes.
    fn tensors(&self, out: &mut HashMap<String, Tensor>) -> candle_core::Result<()> {
        let p = format!("block{}", self.number);
        let dw = self.dw_weight.as_tensor();
        let c = dw.dim(2)?;
        let pw = self.pw_weight.as_tensor();
        let (cin, cout) = pw.dims2()?;
        let dw_weight = dw.reshape((9, c))?.t()?.reshape((c, 1, 3, 3))?.contiguous()?;
        out.insert(format!("{p}.dw.weight"), dw_weight);
        out.insert(format!("{p}.dw.scale"), Tensor::ones(c, DType::F32, dw.device())?);
        out.insert(format!("{p}.dw.shift"), self.dw_bias.as_tensor().copy()?);
        out.insert(format!("{p}.pw.weight"), pw.t()?.reshape((cout, cin, 1, 1))?.contiguous()?);
        out.insert(format!("{p}.pw.bias"), self.pw_bias.as_tensor().copy()?);
        Ok(())
    }
}

/// faceres' last blocks as trainable variables, with the global mean after them.
pub struct Tail {
    blocks: Vec<TailBlock>,
}

impl Tail {
    /// The last `count` blocks (1..=13), starting from the weights in `vb` (faceres' names).
    pub fn load(vb: &VarBuilder, count: usize) -> candle_core::Result<Self> {
        if count == 0 || count > BLOCKS.len() {
            candle_core::bail!("faceres has {} blocks; cannot train the last {count}", BLOCKS.len());
        }
        let first = BLOCKS.len() - count + 1;
        let blocks = (first..=BLOCKS.len()).map(|n| TailBlock::load(vb, n)).collect::<candle_core::Result<_>>()?;
        Ok(Self { blocks })
    }

    /// 0-based index of the first trained block: the frozen part's output feeds it.
    pub fn first_block(&self) -> usize {
        self.blocks[0].number - 1
    }

    /// The trainable variables.
    pub fn vars(&self) -> Vec<Var> {
        let mut v = Vec::with_capacity(4 * self.blocks.len());
        for b in &self.blocks {
            v.extend([&b.dw_weight, &b.dw_bias, &b.pw_weight, &b.pw_bias].map(|x| x.clone()));
        }
        v
    }

    /// Pooled features `[N, 1024]` of NHWC activations `[N, H, W, C]` from [`crate::faceres::Faceres::activations`].
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        x.mean((1, 2))
    }

    /// The current weights under faceres' tensor names (for [`crate::faceres::Faceres::load_with`]).
    pub fn tensors(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for b in &self.blocks {
            b.tensors(&mut out)?;
        }
        Ok(out)
    }
}

/// Checks that `name` is a tensor of one of faceres' blocks with the shape faceres expects
/// (for fine-tuned weights read from a model file); the error says what does not fit.
pub fn check_tensor(name: &str, dims: &[usize]) -> Result<(), String> {
    let bad = || format!("'{name}' is not a tensor of faceres' blocks");
    let (block, rest) = name.strip_prefix("block").and_then(|r| r.split_once('.')).ok_or_else(bad)?;
    let number: usize = block.parse().map_err(|_| bad())?;
    let &(_, cin, cout) = BLOCKS.get(number.wrapping_sub(1)).ok_or_else(bad)?;
    let expected: Vec<usize> = match rest {
        "dw.weight" => vec![cin, 1, 3, 3],
        "dw.scale" | "dw.shift" => vec![cin],
        "pw.weight" => vec![cout, cin, 1, 1],
        "pw.bias" => vec![cout],
        _ => return Err(bad()),
    };
    if dims != expected.as_slice() {
        return Err(format!("'{name}' has shape {dims:?}, faceres expects {expected:?}"));
    }
    Ok(())
}

/// A `VarBuilder` over faceres' weights with some tensors replaced (fine-tuned blocks).
pub fn with_overrides(
    base: HashMap<String, Tensor>,
    overrides: &HashMap<String, Tensor>,
    device: &Device,
) -> VarBuilder<'static> {
    let mut all = base;
    for (k, v) in overrides {
        all.insert(k.clone(), v.clone());
    }
    VarBuilder::from_tensors(all, DType::F32, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backbone;
    use crate::faceres::Faceres;
    use crate::weights::{self, FACERES};

    fn input(n: usize) -> Tensor {
        let data: Vec<f32> = (0..n * 3 * 224 * 224).map(|i| ((i * 7919) % 255) as f32 - 120.0).collect();
        Tensor::from_vec(data, (n, 3, 224, 224), &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn frozen_part_then_tail_equals_the_whole_network() {
        let path = weights::models_dir().join(FACERES.file_name);
        let net = Faceres::load(&path, &Device::Cpu).unwrap();
        let vb = weights::load_checked(&path, &FACERES, &Device::Cpu).unwrap();
        let x = input(3);
        let whole = net.features(&x).unwrap();
        for count in [1, 2, 8] {
            let tail = Tail::load(&vb, count).unwrap();
            let act = net.activations(&x, tail.first_block()).unwrap();
            let split = tail.forward(&act).unwrap();
            let scale = whole.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(max_diff(&whole, &split) < 1e-3 * scale.max(1.0), "last {count} blocks differ");
        }
    }

    #[test]
    fn tuned_weights_round_trip_through_faceres_names() {
        let path = weights::models_dir().join(FACERES.file_name);
        let vb = weights::load_checked(&path, &FACERES, &Device::Cpu).unwrap();
        let tail = Tail::load(&vb, 2).unwrap();
        // Change the weights the way a training step would, then rebuild the network from them.
        for v in tail.vars() {
            v.set(&(v.as_tensor() * 0.9).unwrap()).unwrap();
        }
        let base = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let tuned = Faceres::from_vb(with_overrides(base, &tail.tensors().unwrap(), &Device::Cpu)).unwrap();
        let x = input(2);
        let act = tuned.activations(&x, tail.first_block()).unwrap();
        let expected = tail.forward(&act).unwrap();
        let got = tuned.features(&x).unwrap();
        let plain = Faceres::load(&path, &Device::Cpu).unwrap().features(&x).unwrap();
        assert!(max_diff(&expected, &got) < 1e-3, "fast kernels disagree with the tail");
        assert!(max_diff(&plain, &got) > 1e-2, "the new weights were not used");
    }

    #[test]
    fn the_tail_has_gradients_for_every_variable() {
        let path = weights::models_dir().join(FACERES.file_name);
        let vb = weights::load_checked(&path, &FACERES, &Device::Cpu).unwrap();
        let tail = Tail::load(&vb, 2).unwrap();
        let net = Faceres::load(&path, &Device::Cpu).unwrap();
        let act = net.activations(&input(2), tail.first_block()).unwrap();
        let loss = tail.forward(&act).unwrap().sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        for (i, v) in tail.vars().iter().enumerate() {
            let g = grads.get(v.as_tensor()).expect("a gradient for each variable");
            assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0, "variable {i}");
        }
        assert!(Tail::load(&vb, 0).is_err() && Tail::load(&vb, 14).is_err());
    }

    #[test]
    fn model_file_tensors_are_checked_by_name_and_shape() {
        assert!(check_tensor("block13.pw.weight", &[1024, 1024, 1, 1]).is_ok());
        assert!(check_tensor("block12.dw.weight", &[512, 1, 3, 3]).is_ok());
        assert!(check_tensor("block12.dw.weight", &[1024, 1, 3, 3]).unwrap_err().contains("shape"));
        for bad in ["block14.pw.bias", "block0.pw.bias", "conv0.weight", "block13.pw.other", "blockx.pw.bias"] {
            assert!(check_tensor(bad, &[1024]).unwrap_err().contains("not a tensor"), "{bad}");
        }
    }
}
