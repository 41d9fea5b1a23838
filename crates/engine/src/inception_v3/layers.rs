//! Inception-v3's layers: a conv with BatchNorm folded in and a fused ReLU (direct, Winograd or
//! Candle's conv), and the 3x3 pools, all on NHWC activations.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::{BN_EPS, fast_path};
use crate::layer::Activation;
use crate::nhwc::conv::NhwcConv;
use crate::nhwc::pool::Pool3x3;
use crate::nhwc::winograd::{Winograd3x3, Winograd7};

// ---------------------------------------------------------------------------------------------
// Conv + folded BN + ReLU
// ---------------------------------------------------------------------------------------------

/// A convolution with BatchNorm folded in and a ReLU on its first `relu_upto` output channels.
///
/// Works on NHWC activations. Several 1x1 convs over the same input may be merged into one
/// `ConvBn` (their output channels concatenated); only the trailing channels may skip the ReLU.
#[derive(Debug, Clone)]
pub(super) struct ConvBn {
    /// Folded weights, `[c_out, c_in*kh*kw]` (OIHW flattened), contiguous.
    weight: Tensor,
    /// Folded bias, `[c_out]`.
    bias: Tensor,
    /// The packed CPU layer (present when the weights live on the CPU).
    cpu: Option<NhwcConv>,
    /// The same layer as Winograd, for the convs where it is faster.
    winograd: Option<Winograd>,
    c_in: usize,
    pub(super) c_out: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    /// Zero padding (rows, cols), applied on both sides of each axis.
    pad: (usize, usize),
    relu_upto: usize,
}

/// A conv computed as Winograd: fewer multiplies, the same GEMM kernel.
#[derive(Debug, Clone)]
enum Winograd {
    /// A 3x3 stride-1 conv as F(2x2, 3x3).
    Tiles2x2(Winograd3x3),
    /// A 1x7 or 7x1 stride-1 conv as F(2, 7).
    Pairs(Box<Winograd7>),
}

/// Reads one torchvision `BasicConv2d` and folds its BatchNorm: returns `([O, I*kh*kw], [O])`.
fn load_folded(
    vb: &VarBuilder,
    name: &str,
    c_in: usize,
    c_out: usize,
    (kh, kw): (usize, usize),
) -> candle_core::Result<(Tensor, Tensor)> {
    let vb = vb.pp(name);
    let w = vb.get((c_out, c_in, kh, kw), "conv.weight")?;
    let gamma = vb.get(c_out, "bn.weight")?;
    let beta = vb.get(c_out, "bn.bias")?;
    let mean = vb.get(c_out, "bn.running_mean")?;
    let var = vb.get(c_out, "bn.running_var")?;
    let scale = gamma.broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
    let w = w.reshape((c_out, c_in * kh * kw))?.broadcast_mul(&scale.reshape((c_out, 1))?)?;
    let b = (beta - mean.mul(&scale)?)?;
    Ok((w.contiguous()?, b.contiguous()?))
}

impl ConvBn {
    /// One `BasicConv2d` (conv + BN + ReLU).
    pub(super) fn new(
        vb: &VarBuilder,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: (usize, usize),
        stride: usize,
        pad: (usize, usize),
    ) -> candle_core::Result<Self> {
        let (weight, bias) = load_folded(vb, name, c_in, c_out, kernel)?;
        Self::from_parts(weight, bias, c_in, kernel, stride, pad, c_out)
    }

    /// Several 1x1 `BasicConv2d`s over the same input, merged in order. `linear` convs go last and
    /// get no ReLU (used for the `branch_pool` conv that runs before its average pool).
    pub(super) fn merged_1x1(
        vb: &VarBuilder,
        c_in: usize,
        relu: &[(&str, usize)],
        linear: Option<(&str, usize)>,
    ) -> candle_core::Result<Self> {
        let mut ws = Vec::new();
        let mut bs = Vec::new();
        let mut relu_upto = 0;
        for &(name, c_out) in relu {
            let (w, b) = load_folded(vb, name, c_in, c_out, (1, 1))?;
            ws.push(w);
            bs.push(b);
            relu_upto += c_out;
        }
        if let Some((name, c_out)) = linear {
            let (w, b) = load_folded(vb, name, c_in, c_out, (1, 1))?;
            ws.push(w);
            bs.push(b);
        }
        let weight = Tensor::cat(&ws, 0)?;
        let bias = Tensor::cat(&bs, 0)?;
        Self::from_parts(weight, bias, c_in, (1, 1), 1, (0, 0), relu_upto)
    }

    pub(super) fn from_parts(
        weight: Tensor,
        bias: Tensor,
        c_in: usize,
        (kh, kw): (usize, usize),
        stride: usize,
        pad: (usize, usize),
        relu_upto: usize,
    ) -> candle_core::Result<Self> {
        let (c_out, k) = weight.dims2()?;
        if k != c_in * kh * kw {
            candle_core::bail!("conv weight has {k} columns, expected {}", c_in * kh * kw);
        }
        let cpu = match weight.device().is_cpu() {
            true => Some(NhwcConv::new(&weight, &bias, c_in, (kh, kw), stride, Activation::Relu, relu_upto)?),
            false => None,
        };
        // Winograd pays where its GEMMs are deep and wide enough. Alone on one core, as F(2x2, 3x3):
        // Conv2d_4a (80 -> 192) 1.48x, Mixed_5's 64 -> 96 1.34x and 96 -> 96 1.62x, Mixed_7's
        // 448 -> 384 1.47x (4 images; 1 image on two cores 1.21x), Conv2d_2b (32 -> 64) 1.10x,
        // but Conv2d_2a (32 -> 32) 1.01x; as F(2, 7), Mixed_6's 1x7 and 7x1 convs 1.33-1.41x.
        let square_pays = c_in >= 32 && c_out >= 64;
        let winograd = match (cpu.is_some() && relu_upto == c_out, (kh, kw, stride)) {
            (true, (3, 3, 1)) if square_pays => {
                Some(Winograd::Tiles2x2(Winograd3x3::new(&weight, &bias, c_in, Activation::Relu)?))
            }
            (true, (7, 1, 1) | (1, 7, 1)) => {
                Some(Winograd::Pairs(Box::new(Winograd7::new(&weight, &bias, c_in, kh == 7, Activation::Relu)?)))
            }
            _ => None,
        };
        Ok(Self { weight, bias, cpu, winograd, c_in, c_out, kh, kw, stride, pad, relu_upto })
    }

    /// Runs the layer on an NHWC tensor, returning NHWC.
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, _, c) = x.dims4()?;
        if c != self.c_in {
            candle_core::bail!("conv expects {} input channels, got {c}", self.c_in);
        }
        if fast_path(x) { self.forward_cpu(x) } else { self.forward_generic(x) }
    }

    /// CPU path: one GEMM over the input in place (or Winograd's, where it pays), with a fused
    /// bias/ReLU epilogue.
    pub(super) fn forward_cpu(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let Some(cpu) = &self.cpu else { return self.forward_generic(x) };
        let (ph, pw) = self.pad;
        match &self.winograd {
            Some(Winograd::Tiles2x2(wino)) => wino.forward(x, (ph, pw, ph, pw)),
            Some(Winograd::Pairs(wino)) => wino.forward(x, (ph, pw, ph, pw)),
            None => cpu.forward(x, (ph, pw, ph, pw)),
        }
    }

    /// Device-agnostic path built from stock Candle ops (also the reference for the CPU kernels).
    pub(super) fn forward_generic(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (ph, pw) = self.pad;
        let mut xn = x.permute((0, 3, 1, 2))?;
        if ph > 0 {
            xn = xn.pad_with_zeros(2, ph, ph)?;
        }
        if pw > 0 {
            xn = xn.pad_with_zeros(3, pw, pw)?;
        }
        let w4 = self.weight.reshape((self.c_out, self.c_in, self.kh, self.kw))?;
        let y = xn.contiguous()?.conv2d(&w4, 0, self.stride, 1, 1)?;
        let y = y.broadcast_add(&self.bias.reshape((1, self.c_out, 1, 1))?)?;
        let y = relu_leading(&y, 1, self.relu_upto)?;
        y.permute((0, 2, 3, 1))?.contiguous()
    }
}

/// ReLU on the first `upto` entries of `dim`, identity on the rest.
fn relu_leading(y: &Tensor, dim: usize, upto: usize) -> candle_core::Result<Tensor> {
    let total = y.dim(dim)?;
    if upto >= total {
        y.relu()
    } else if upto == 0 {
        Ok(y.clone())
    } else {
        Tensor::cat(&[y.narrow(dim, 0, upto)?.relu()?, y.narrow(dim, upto, total - upto)?], dim)
    }
}

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

/// 3x3 / stride 1 / pad 1 average pool that EXCLUDES padding (divides by the valid-pixel count),
/// followed by a ReLU, on NHWC.
pub(super) fn avg_pool3x3_relu(x: &Tensor) -> candle_core::Result<Tensor> {
    if fast_path(x) {
        return Pool3x3::MeanSameRelu.forward(x);
    }
    let x = x.permute((0, 3, 1, 2))?;
    let (_, _, h, w) = x.dims4()?;
    let sums = (x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?.avg_pool2d_with_stride(3, 1)? * 9.0)?;
    let count: Vec<f32> = (0..h)
        .flat_map(|y| {
            let ry = (y + 2).min(h) - y.saturating_sub(1);
            (0..w).map(move |x| (ry * ((x + 2).min(w) - x.saturating_sub(1))) as f32)
        })
        .collect();
    let count = Tensor::from_vec(count, (1, 1, h, w), x.device())?.to_dtype(x.dtype())?;
    sums.broadcast_div(&count)?.relu()?.permute((0, 2, 3, 1))?.contiguous()
}

/// 3x3 / stride 2 max pool without padding, on NHWC.
pub(super) fn max_pool3x3s2(x: &Tensor) -> candle_core::Result<Tensor> {
    if fast_path(x) {
        return Pool3x3::MaxStride2.forward(x);
    }
    x.permute((0, 3, 1, 2))?.max_pool2d_with_stride(3, 2)?.permute((0, 2, 3, 1))?.contiguous()
}
