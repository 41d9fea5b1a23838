//! A direct 3x3 depthwise convolution (Candle's grouped conv runs one conv per group).
//!
//! On the CPU it is a custom op over NCHW f32 data, parallel over (image, channel) planes,
//! with a fused per-channel bias and activation. Other devices fall back to `conv2d(groups=C)`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Activation fused into the conv epilogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// No activation.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `clamp(x, 0, 6)`.
    Relu6,
}

impl Activation {
    /// Applies the activation to one value.
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::None => v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }

    /// Applies the activation to a tensor (used on non-CPU paths).
    pub fn apply_tensor(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::None => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::Relu6 => x.clamp(0f32, 6f32),
        }
    }
}

/// Padding as (top, left, bottom, right).
pub type Padding = (usize, usize, usize, usize);

/// TF "SAME" padding for a 3x3 kernel: stride 1 pads 1 everywhere, stride 2 on even input pads 0 before, 1 after.
pub fn same_padding_3x3(stride: usize, h: usize, w: usize) -> Padding {
    let pad = |n: usize| {
        let out = n.div_ceil(stride);
        let total = ((out - 1) * stride + 3).saturating_sub(n);
        (total / 2, total - total / 2)
    };
    let (t, b) = pad(h);
    let (l, r) = pad(w);
    (t, l, b, r)
}

/// A 3x3 depthwise conv layer with bias and a fused activation.
#[derive(Debug, Clone)]
pub struct Depthwise3x3 {
    weight: Tensor,
    weight_cpu: Vec<f32>,
    bias: Vec<f32>,
    bias_t: Tensor,
    stride: usize,
    act: Activation,
}

impl Depthwise3x3 {
    /// Builds the layer from a `[C,1,3,3]` weight, a `[C]` bias, stride and activation.
    pub fn new(weight: Tensor, bias: Tensor, stride: usize, act: Activation) -> Result<Self> {
        let (c, one, kh, kw) = weight.dims4()?;
        if one != 1 || kh != 3 || kw != 3 {
            candle_core::bail!("depthwise weight must be [C,1,3,3], got {:?}", weight.shape());
        }
        let weight_cpu = weight.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let bias_v = bias.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        if bias_v.len() != c {
            candle_core::bail!("depthwise bias must have {c} values, got {}", bias_v.len());
        }
        Ok(Self { weight, weight_cpu, bias: bias_v, bias_t: bias, stride, act })
    }

    /// Runs the conv on an NCHW tensor with the given padding.
    pub fn forward(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            let op = DepthwiseOp { layer: self, pad, cnhw: false };
            return x.contiguous()?.apply_op1_no_bwd(&op);
        }
        let (t, l, b, r) = pad;
        let xp = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
        let c = self.bias.len();
        let y = xp.conv2d(&self.weight, 0, self.stride, 1, c)?;
        let y = y.broadcast_add(&self.bias_t.reshape((1, c, 1, 1))?)?;
        self.act.apply_tensor(&y)
    }

    /// Runs the conv on a CNHW f32 CPU tensor (`[C, N, H, W]`), returning CNHW.
    pub fn forward_cnhw(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        x.contiguous()?.apply_op1_no_bwd(&DepthwiseOp { layer: self, pad, cnhw: true })
    }
}

struct DepthwiseOp<'a> {
    layer: &'a Depthwise3x3,
    pad: Padding,
    /// Planes are ordered channel-major (`[C, N, H, W]`) rather than image-major.
    cnhw: bool,
}

impl CustomOp1 for DepthwiseOp<'_> {
    fn name(&self) -> &'static str {
        "depthwise3x3"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = match storage {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("depthwise3x3 expects f32"),
        };
        let src = match layout.contiguous_offsets() {
            Some((a, b)) => &src[a..b],
            None => candle_core::bail!("depthwise3x3 expects a contiguous input"),
        };
        let (d0, d1, h, w) = layout.shape().dims4()?;
        let (n, c) = if self.cnhw { (d1, d0) } else { (d0, d1) };
        if c != self.layer.bias.len() {
            candle_core::bail!("depthwise3x3: input has {c} channels, layer has {}", self.layer.bias.len());
        }
        let (pt, pl, pb, pr) = self.pad;
        let s = self.layer.stride;
        let oh = (h + pt + pb - 3) / s + 1;
        let ow = (w + pl + pr - 3) / s + 1;
        let mut out = vec![0f32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow).enumerate().for_each(|(plane, dst)| {
            let ch = if self.cnhw { plane / n } else { plane % c };
            let k = &self.layer.weight_cpu[ch * 9..ch * 9 + 9];
            let bias = self.layer.bias[ch];
            let img = &src[plane * h * w..(plane + 1) * h * w];
            depthwise_plane(img, h, w, k, bias, s, pt, pl, dst, oh, ow, self.layer.act);
        });
        Ok((CpuStorage::F32(out), Shape::from((d0, d1, oh, ow))))
    }
}

/// One channel plane: `dst[oy,ox] = act(bias + sum_k w[k] * src[oy*s+ky-pt, ox*s+kx-pl])`.
#[allow(clippy::too_many_arguments)]
fn depthwise_plane(
    src: &[f32],
    h: usize,
    w: usize,
    k: &[f32],
    bias: f32,
    s: usize,
    pt: usize,
    pl: usize,
    dst: &mut [f32],
    oh: usize,
    ow: usize,
    act: Activation,
) {
    dst.fill(bias);
    for oy in 0..oh {
        let row = &mut dst[oy * ow..(oy + 1) * ow];
        for ky in 0..3 {
            let iy = (oy * s + ky) as isize - pt as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            let srow = &src[iy as usize * w..(iy as usize + 1) * w];
            for kx in 0..3 {
                let wk = k[ky * 3 + kx];
                // Valid ox range: 0 <= ox*s + kx - pl < w.
                let lo = if kx >= pl { 0 } else { (pl - kx).div_ceil(s) };
                let hi_excl = (w + pl).saturating_sub(kx).div_ceil(s); // first ox with ix >= w
                let hi = hi_excl.min(ow);
                if lo >= hi {
                    continue;
                }
                let start = lo * s + kx - pl;
                if s == 1 {
                    let d = &mut row[lo..hi];
                    let sr = &srow[start..start + (hi - lo)];
                    for (o, v) in d.iter_mut().zip(sr) {
                        *o += wk * v;
                    }
                } else {
                    for (i, o) in row[lo..hi].iter_mut().enumerate() {
                        *o += wk * srow[start + i * s];
                    }
                }
            }
        }
    }
    if act != Activation::None {
        for v in dst.iter_mut() {
            *v = act.apply(*v);
        }
    }
}

/// A 1x1 convolution as a batched matmul: `[C',C] x [N,C,H*W]`, with bias and activation.
pub fn pointwise(x: &Tensor, weight2d: &Tensor, bias: &Tensor, act: Activation) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let co = weight2d.dim(0)?;
    let xs = x.contiguous()?.reshape((n, c, h * w))?;
    let y = weight2d.broadcast_left(n)?.matmul(&xs)?;
    bias_act(y, bias, act)?.reshape((n, co, h, w))
}

/// `act(y + bias[c])` for `y` of shape `[N, C, ...]`: one in-place parallel pass on the CPU (instead
/// of an add and a clamp that each allocate and run on one thread), generic ops elsewhere.
///
/// `y` must be a fresh result no other tensor shares (e.g. straight out of a matmul or conv).
pub fn bias_act(y: Tensor, bias: &Tensor, act: Activation) -> Result<Tensor> {
    let c = y.dim(1)?;
    if y.device().is_cpu() && y.dtype() == candle_core::DType::F32 && y.is_contiguous() {
        y.inplace_op1(&BiasAct { bias: bias.to_vec1::<f32>()?, act, channels: c })?;
        return Ok(y);
    }
    let mut shape = vec![1; y.rank()];
    shape[1] = c;
    act.apply_tensor(&y.broadcast_add(&bias.reshape(shape)?)?)
}

struct BiasAct {
    bias: Vec<f32>,
    act: Activation,
    channels: usize,
}

impl candle_core::InplaceOp1 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-act"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = storage else { candle_core::bail!("bias-act expects f32") };
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("bias-act expects a contiguous tensor")
        };
        if self.bias.len() != self.channels {
            candle_core::bail!("bias-act: {} channels but {} biases", self.channels, self.bias.len());
        }
        let plane = layout.dims()[2..].iter().product::<usize>().max(1);
        let act = self.act;
        data[a..b].par_chunks_mut(plane).with_min_len((4096 / plane).max(1)).enumerate().for_each(|(row, v)| {
            let bias = self.bias[row % self.channels];
            match act {
                Activation::None => v.iter_mut().for_each(|x| *x += bias),
                Activation::Relu => v.iter_mut().for_each(|x| *x = (*x + bias).max(0.0)),
                Activation::Relu6 => v.iter_mut().for_each(|x| *x = (*x + bias).clamp(0.0, 6.0)),
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: Padding) -> Tensor {
        let (t, l, bo, r) = pad;
        let c = w.dim(0).unwrap();
        let xp = x.pad_with_zeros(2, t, bo).unwrap().pad_with_zeros(3, l, r).unwrap();
        xp.conv2d(w, 0, stride, 1, c).unwrap().broadcast_add(&b.reshape((1, c, 1, 1)).unwrap()).unwrap()
    }

    #[test]
    fn matches_grouped_conv_for_all_strides_and_paddings() {
        let dev = Device::Cpu;
        for (stride, h, w) in [(1, 7, 9), (2, 8, 10), (2, 7, 7), (1, 1, 1)] {
            let x = Tensor::randn(0f32, 1.0, (2, 5, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1.0, (5, 1, 3, 3), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, 5, &dev).unwrap();
            let pad = same_padding_3x3(stride, h, w);
            let layer = Depthwise3x3::new(wt.clone(), b.clone(), stride, Activation::None).unwrap();
            let got = layer.forward(&x, pad).unwrap();
            let want = reference(&x, &wt, &b, stride, pad);
            assert_eq!(got.dims(), want.dims());
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-5, "stride {stride} {h}x{w}: diff {diff}");
        }
    }

    #[test]
    fn same_padding_matches_tf_rule() {
        assert_eq!(same_padding_3x3(1, 224, 224), (1, 1, 1, 1));
        assert_eq!(same_padding_3x3(2, 224, 224), (0, 0, 1, 1));
        assert_eq!(same_padding_3x3(2, 7, 7), (1, 1, 1, 1));
    }

    #[test]
    fn fused_bias_act_matches_separate_ops() {
        let dev = Device::Cpu;
        let y = (Tensor::randn(0f32, 4.0, (2, 5, 3, 7), &dev).unwrap() * 1.0).unwrap();
        let b = Tensor::randn(0f32, 2.0, 5, &dev).unwrap();
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            let want = act.apply_tensor(&y.broadcast_add(&b.reshape((1, 5, 1, 1)).unwrap()).unwrap()).unwrap();
            let got = bias_act(y.copy().unwrap(), &b, act).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-6, "{act:?}: diff {diff}");
        }
    }

    #[test]
    fn pointwise_matches_conv1x1() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 4, 5, 6), &dev).unwrap();
        let wt = Tensor::randn(0f32, 1.0, (7, 4, 1, 1), &dev).unwrap();
        let b = Tensor::randn(0f32, 1.0, 7, &dev).unwrap();
        let got = pointwise(&x, &wt.reshape((7, 4)).unwrap(), &b, Activation::None).unwrap();
        let want = x.conv2d(&wt, 0, 1, 1, 1).unwrap().broadcast_add(&b.reshape((1, 7, 1, 1)).unwrap()).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "diff {diff}");
    }
}
