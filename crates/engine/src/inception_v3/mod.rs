//! Inception-v3 (torchvision `Inception3` tensor names) as a frozen 2048-d feature extractor.
//!
//! Spec: `models/MODELS.md` section 1. The network is torchvision's Inception3 (no aux head, no `fc`)
//! with one difference: the 3x3 / stride-1 / pad-1 average pools of the `branch_pool` branches
//! (Mixed_5b..5d, 6b..6e, 7b, 7c) **exclude padding** (TF semantics: divide by the number of valid
//! pixels). Input is RGB `x/255` at 299x299; the output is the mean over the final 8x8 map.
//!
//! Implementation notes (for speed on the CPU):
//! * BatchNorm (eps 1e-3) is folded into the conv weights and a per-channel bias at load time,
//!   and the ReLU is fused into the bias epilogue.
//! * Activations are kept internally in **NHWC** layout ([`super::nhwc`]). Every conv is then a
//!   GEMM that reads each output pixel's receptive field where it lies, and a branch's channel
//!   slice (`narrow` on dim 3) is read in place by the 1x1-fed convs that follow.
//! * All 1x1 convs that read the same block input are merged into one matmul and split afterwards.
//! * The `branch_pool` 1x1 conv is run *before* its average pool (both are linear and the
//!   exclude-padding weights sum to one, so they commute), which pools 32..192 channels instead of
//!   192..2048; the ReLU is applied after the pool.
//! * Non-square kernels (1x7, 7x1, 1x3, 3x1) use per-axis padding.
//!
//! On non-CPU devices (or non-f32 tensors) every custom op falls back to stock Candle ops.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::nhwc::pool::global_mean;
use super::per_core;
use super::weights::{self, INCEPTION_V3};
use super::{Backbone, BackboneKind};
use crate::Result;

/// Length of the pooled feature vector.
pub const FEATURE_DIM: usize = 2048;
/// Images that run together through the stem and Mixed_5 on the CPU (see [`Backbone::features`]).
pub const EARLY_IMAGES: usize = 2;
/// Images per chunk of Mixed_6 and 7, which the cores share out at the end of a batch. At batch 16,
/// 12 alternating repeats: chunks of 2, 4 and 8 images had medians of 11.4, 12.1 and 11.3
/// images/s, each core's whole share (no sharing) 11.0.
pub const LATE_IMAGES: usize = 4;
/// Input side in pixels.
pub const INPUT_SIZE: usize = 299;
/// BatchNorm epsilon of every `BasicConv2d` (torchvision and Keras agree on 1e-3).
pub const BN_EPS: f64 = 1e-3;

/// Intermediate maps of one forward pass, in NCHW layout (for checks against a reference).
#[derive(Debug, Clone)]
pub struct InceptionTaps {
    /// Output of `Mixed_5b`, `[N, 256, 35, 35]` at 299 input.
    pub mixed_5b: Tensor,
    /// Output of `Mixed_6e`, `[N, 768, 17, 17]` at 299 input.
    pub mixed_6e: Tensor,
    /// Output of `Mixed_7c`, `[N, 2048, 8, 8]` at 299 input.
    pub mixed_7c: Tensor,
    /// Mean of `mixed_7c` over its spatial map, `[N, 2048]` (same as [`Backbone::features`]).
    pub pool: Tensor,
}

/// `true` when the hand-written CPU kernels apply to this tensor.
fn fast_path(x: &Tensor) -> bool {
    crate::layer::cpu_kernels(x)
}

mod layers;

use layers::{ConvBn, avg_pool3x3_relu, max_pool3x3s2};

// ---------------------------------------------------------------------------------------------
// Inception blocks (all NHWC)
// ---------------------------------------------------------------------------------------------

/// `InceptionA` (Mixed_5b..5d): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1.
#[derive(Debug, Clone)]
struct BlockA {
    /// branch1x1 (64) + branch5x5_1 (48) + branch3x3dbl_1 (64) + branch_pool (linear).
    heads: ConvBn,
    b5x5_2: ConvBn,
    b3x3dbl_2: ConvBn,
    b3x3dbl_3: ConvBn,
}

impl BlockA {
    fn new(vb: &VarBuilder, c_in: usize, pool_features: usize) -> candle_core::Result<Self> {
        Ok(Self {
            heads: ConvBn::merged_1x1(
                vb,
                c_in,
                &[("branch1x1", 64), ("branch5x5_1", 48), ("branch3x3dbl_1", 64)],
                Some(("branch_pool", pool_features)),
            )?,
            b5x5_2: ConvBn::new(vb, "branch5x5_2", 48, 64, (5, 5), 1, (2, 2))?,
            b3x3dbl_2: ConvBn::new(vb, "branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1))?,
            b3x3dbl_3: ConvBn::new(vb, "branch3x3dbl_3", 96, 96, (3, 3), 1, (1, 1))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.heads.forward(x)?;
        let pool_c = self.heads.c_out - 176;
        let b1 = y.narrow(3, 0, 64)?;
        let b5 = self.b5x5_2.forward(&y.narrow(3, 64, 48)?)?;
        let b3 = self.b3x3dbl_3.forward(&self.b3x3dbl_2.forward(&y.narrow(3, 112, 64)?)?)?;
        let bp = avg_pool3x3_relu(&y.narrow(3, 176, pool_c)?)?;
        Tensor::cat(&[b1, b5, b3, bp], 3)
    }
}

/// `InceptionB` (Mixed_6a): 3x3/s2 | 1x1->3x3->3x3/s2 | maxpool/s2.
#[derive(Debug, Clone)]
struct BlockB {
    b3x3: ConvBn,
    b3x3dbl_1: ConvBn,
    b3x3dbl_2: ConvBn,
    b3x3dbl_3: ConvBn,
}

impl BlockB {
    fn new(vb: &VarBuilder, c_in: usize) -> candle_core::Result<Self> {
        Ok(Self {
            b3x3: ConvBn::new(vb, "branch3x3", c_in, 384, (3, 3), 2, (0, 0))?,
            b3x3dbl_1: ConvBn::new(vb, "branch3x3dbl_1", c_in, 64, (1, 1), 1, (0, 0))?,
            b3x3dbl_2: ConvBn::new(vb, "branch3x3dbl_2", 64, 96, (3, 3), 1, (1, 1))?,
            b3x3dbl_3: ConvBn::new(vb, "branch3x3dbl_3", 96, 96, (3, 3), 2, (0, 0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let b3 = self.b3x3.forward(x)?;
        let d = self.b3x3dbl_3.forward(&self.b3x3dbl_2.forward(&self.b3x3dbl_1.forward(x)?)?)?;
        let bp = max_pool3x3s2(x)?;
        Tensor::cat(&[b3, d, bp], 3)
    }
}

/// `InceptionC` (Mixed_6b..6e): 1x1 | 1x1->1x7->7x1 | 1x1->7x1->1x7->7x1->1x7 | avgpool->1x1.
#[derive(Debug, Clone)]
struct BlockC {
    /// branch1x1 (192) + branch7x7_1 (c7) + branch7x7dbl_1 (c7) + branch_pool (192, linear).
    heads: ConvBn,
    c7: usize,
    b7x7: [ConvBn; 2],
    b7x7dbl: [ConvBn; 4],
}

impl BlockC {
    fn new(vb: &VarBuilder, c7: usize) -> candle_core::Result<Self> {
        let row = (1, 7);
        let col = (7, 1);
        let (prow, pcol) = ((0, 3), (3, 0));
        Ok(Self {
            heads: ConvBn::merged_1x1(
                vb,
                768,
                &[("branch1x1", 192), ("branch7x7_1", c7), ("branch7x7dbl_1", c7)],
                Some(("branch_pool", 192)),
            )?,
            c7,
            b7x7: [
                ConvBn::new(vb, "branch7x7_2", c7, c7, row, 1, prow)?,
                ConvBn::new(vb, "branch7x7_3", c7, 192, col, 1, pcol)?,
            ],
            b7x7dbl: [
                ConvBn::new(vb, "branch7x7dbl_2", c7, c7, col, 1, pcol)?,
                ConvBn::new(vb, "branch7x7dbl_3", c7, c7, row, 1, prow)?,
                ConvBn::new(vb, "branch7x7dbl_4", c7, c7, col, 1, pcol)?,
                ConvBn::new(vb, "branch7x7dbl_5", c7, 192, row, 1, prow)?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let c7 = self.c7;
        let y = self.heads.forward(x)?;
        let b1 = y.narrow(3, 0, 192)?;
        let mut b7 = y.narrow(3, 192, c7)?;
        for conv in &self.b7x7 {
            b7 = conv.forward(&b7)?;
        }
        let mut bd = y.narrow(3, 192 + c7, c7)?;
        for conv in &self.b7x7dbl {
            bd = conv.forward(&bd)?;
        }
        let bp = avg_pool3x3_relu(&y.narrow(3, 192 + 2 * c7, 192)?)?;
        Tensor::cat(&[b1, b7, bd, bp], 3)
    }
}

/// `InceptionD` (Mixed_7a): 1x1->3x3/s2 | 1x1->1x7->7x1->3x3/s2 | maxpool/s2.
#[derive(Debug, Clone)]
struct BlockD {
    /// branch3x3_1 (192) + branch7x7x3_1 (192).
    heads: ConvBn,
    b3x3_2: ConvBn,
    b7x7x3: [ConvBn; 3],
}

impl BlockD {
    fn new(vb: &VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            heads: ConvBn::merged_1x1(vb, 768, &[("branch3x3_1", 192), ("branch7x7x3_1", 192)], None)?,
            b3x3_2: ConvBn::new(vb, "branch3x3_2", 192, 320, (3, 3), 2, (0, 0))?,
            b7x7x3: [
                ConvBn::new(vb, "branch7x7x3_2", 192, 192, (1, 7), 1, (0, 3))?,
                ConvBn::new(vb, "branch7x7x3_3", 192, 192, (7, 1), 1, (3, 0))?,
                ConvBn::new(vb, "branch7x7x3_4", 192, 192, (3, 3), 2, (0, 0))?,
            ],
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.heads.forward(x)?;
        let b3 = self.b3x3_2.forward(&y.narrow(3, 0, 192)?)?;
        let mut b7 = y.narrow(3, 192, 192)?;
        for conv in &self.b7x7x3 {
            b7 = conv.forward(&b7)?;
        }
        let bp = max_pool3x3s2(x)?;
        Tensor::cat(&[b3, b7, bp], 3)
    }
}

/// `InceptionE` (Mixed_7b, 7c): 1x1 | 1x1->(1x3, 3x1) | 1x1->3x3->(1x3, 3x1) | avgpool->1x1.
#[derive(Debug, Clone)]
struct BlockE {
    /// branch1x1 (320) + branch3x3_1 (384) + branch3x3dbl_1 (448) + branch_pool (192, linear).
    heads: ConvBn,
    b3x3_2a: ConvBn,
    b3x3_2b: ConvBn,
    b3x3dbl_2: ConvBn,
    b3x3dbl_3a: ConvBn,
    b3x3dbl_3b: ConvBn,
}

impl BlockE {
    fn new(vb: &VarBuilder, c_in: usize) -> candle_core::Result<Self> {
        Ok(Self {
            heads: ConvBn::merged_1x1(
                vb,
                c_in,
                &[("branch1x1", 320), ("branch3x3_1", 384), ("branch3x3dbl_1", 448)],
                Some(("branch_pool", 192)),
            )?,
            b3x3_2a: ConvBn::new(vb, "branch3x3_2a", 384, 384, (1, 3), 1, (0, 1))?,
            b3x3_2b: ConvBn::new(vb, "branch3x3_2b", 384, 384, (3, 1), 1, (1, 0))?,
            b3x3dbl_2: ConvBn::new(vb, "branch3x3dbl_2", 448, 384, (3, 3), 1, (1, 1))?,
            b3x3dbl_3a: ConvBn::new(vb, "branch3x3dbl_3a", 384, 384, (1, 3), 1, (0, 1))?,
            b3x3dbl_3b: ConvBn::new(vb, "branch3x3dbl_3b", 384, 384, (3, 1), 1, (1, 0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.heads.forward(x)?;
        let b1 = y.narrow(3, 0, 320)?;
        let t = y.narrow(3, 320, 384)?;
        let b3a = self.b3x3_2a.forward(&t)?;
        let b3b = self.b3x3_2b.forward(&t)?;
        let d = self.b3x3dbl_2.forward(&y.narrow(3, 704, 448)?)?;
        let da = self.b3x3dbl_3a.forward(&d)?;
        let db = self.b3x3dbl_3b.forward(&d)?;
        let bp = avg_pool3x3_relu(&y.narrow(3, 1152, 192)?)?;
        Tensor::cat(&[b1, b3a, b3b, da, db, bp], 3)
    }
}

// ---------------------------------------------------------------------------------------------
// The network
// ---------------------------------------------------------------------------------------------

/// The Inception-v3 feature extractor (frozen, BatchNorm folded at load time).
///
/// Input: NCHW RGB in `0..1` (`x/255`), normally `[N, 3, 299, 299]`. Output: `[N, 2048]`.
#[derive(Debug, Clone)]
pub struct InceptionV3 {
    stem: [ConvBn; 3],
    conv3b: ConvBn,
    conv4a: ConvBn,
    mixed5: [BlockA; 3],
    mixed6a: BlockB,
    mixed6: [BlockC; 4],
    mixed7a: BlockD,
    mixed7: [BlockE; 2],
}

impl InceptionV3 {
    /// Loads and checks the weights file (sha256, then every tensor's shape).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let vb = weights::load_checked(path, &INCEPTION_V3, device)?;
        weights::with_file_context(Self::from_vb(vb), path)
    }

    /// Builds the network from a `VarBuilder` over the torchvision `Inception3` tensor names,
    /// folding each BatchNorm into its conv.
    pub fn from_vb(vb: VarBuilder) -> candle_core::Result<Self> {
        let conv = |name: &str, c_in, c_out, k, s, p| ConvBn::new(&vb, name, c_in, c_out, (k, k), s, (p, p));
        Ok(Self {
            stem: [
                conv("Conv2d_1a_3x3", 3, 32, 3, 2, 0)?,
                conv("Conv2d_2a_3x3", 32, 32, 3, 1, 0)?,
                conv("Conv2d_2b_3x3", 32, 64, 3, 1, 1)?,
            ],
            conv3b: conv("Conv2d_3b_1x1", 64, 80, 1, 1, 0)?,
            conv4a: conv("Conv2d_4a_3x3", 80, 192, 3, 1, 0)?,
            mixed5: [
                BlockA::new(&vb.pp("Mixed_5b"), 192, 32)?,
                BlockA::new(&vb.pp("Mixed_5c"), 256, 64)?,
                BlockA::new(&vb.pp("Mixed_5d"), 288, 64)?,
            ],
            mixed6a: BlockB::new(&vb.pp("Mixed_6a"), 288)?,
            mixed6: [
                BlockC::new(&vb.pp("Mixed_6b"), 128)?,
                BlockC::new(&vb.pp("Mixed_6c"), 160)?,
                BlockC::new(&vb.pp("Mixed_6d"), 160)?,
                BlockC::new(&vb.pp("Mixed_6e"), 192)?,
            ],
            mixed7a: BlockD::new(&vb.pp("Mixed_7a"))?,
            mixed7: [BlockE::new(&vb.pp("Mixed_7b"), 1280)?, BlockE::new(&vb.pp("Mixed_7c"), 2048)?],
        })
    }

    /// Runs the trunk on NCHW input; returns the NHWC maps after Mixed_5b, Mixed_6e and Mixed_7c.
    fn trunk(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (m5b, m5d) = self.early(x)?;
        let (m6e, m7c) = self.late(&m5d)?;
        Ok((m5b, m6e, m7c))
    }

    /// Stem and Mixed_5b..5d on NCHW input; returns the NHWC maps after Mixed_5b and Mixed_5d.
    fn early(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let (_, c, _, _) = x.dims4()?;
        if c != 3 {
            candle_core::bail!("inception-v3 expects RGB input [N, 3, H, W], got {:?}", x.shape());
        }
        // An NHWC view of the NCHW input: the first conv copies it into place.
        let mut x = x.to_dtype(DType::F32)?.permute((0, 2, 3, 1))?;
        for conv in &self.stem {
            x = conv.forward(&x)?;
        }
        x = max_pool3x3s2(&x)?;
        x = self.conv4a.forward(&self.conv3b.forward(&x)?)?;
        x = max_pool3x3s2(&x)?;
        let m5b = self.mixed5[0].forward(&x)?;
        let m5d = self.mixed5[2].forward(&self.mixed5[1].forward(&m5b)?)?;
        Ok((m5b, m5d))
    }

    /// Mixed_6a..7c on the NHWC map after Mixed_5d; returns the maps after Mixed_6e and Mixed_7c.
    fn late(&self, m5d: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let mut x = self.mixed6a.forward(m5d)?;
        for block in &self.mixed6 {
            x = block.forward(&x)?;
        }
        let m6e = x;
        x = self.mixed7a.forward(&m6e)?;
        for block in &self.mixed7 {
            x = block.forward(&x)?;
        }
        Ok((m6e, x))
    }

    /// `[N, H, W, C] -> [N, C]` spatial mean.
    fn pool(m7c: &Tensor) -> candle_core::Result<Tensor> {
        global_mean(m7c)
    }

    /// Runs the network and also returns the Mixed_5b / Mixed_6e / Mixed_7c maps (NCHW).
    pub fn forward_with_taps(&self, x: &Tensor) -> candle_core::Result<InceptionTaps> {
        let (m5b, m6e, m7c) = self.trunk(x)?;
        let pool = Self::pool(&m7c)?;
        let nchw = |t: Tensor| t.permute((0, 3, 1, 2))?.contiguous();
        Ok(InceptionTaps { mixed_5b: nchw(m5b)?, mixed_6e: nchw(m6e)?, mixed_7c: nchw(m7c)?, pool })
    }
}

impl Backbone for InceptionV3 {
    fn kind(&self) -> BackboneKind {
        BackboneKind::InceptionV3
    }

    /// On the CPU the stem and Mixed_5 run [`EARLY_IMAGES`] at a time: their maps are large
    /// (the stem's reach 5.5 MB per image), so a few images keep them in cache and every buffer
    /// below the allocator's mmap threshold. Mixed_6 and 7 then run on all of a core's images at
    /// once ([`per_core::map_balanced`]), reading each weight matrix (up to 6 MB per block) once
    /// per core rather than once per image.
    fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if fast_path(x) {
            return per_core::map_balanced(
                x,
                EARLY_IMAGES,
                LATE_IMAGES / EARLY_IMAGES,
                |x| Ok(self.early(x)?.1),
                |m5d| Self::pool(&self.late(m5d)?.1),
            );
        }
        let (_, _, m7c) = self.trunk(x)?;
        Self::pool(&m7c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    fn random_conv(
        rng: &mut Rng,
        c_in: usize,
        c_out: usize,
        k: (usize, usize),
        s: usize,
        p: (usize, usize),
        relu: usize,
    ) -> ConvBn {
        let dev = Device::Cpu;
        let w = rng.randn(0.0, 1.0, (c_out, c_in * k.0 * k.1), &dev);
        let b = rng.randn(0.0, 1.0, c_out, &dev);
        ConvBn::from_parts(w, b, c_in, k, s, p, relu).unwrap()
    }

    #[test]
    fn cpu_conv_matches_generic_conv() {
        let mut rng = Rng::new(0x5eed_000c);
        let dev = Device::Cpu;
        let cases = [
            ((3, 3), 2, (0, 0), 9, 9),
            ((3, 3), 1, (1, 1), 8, 7),
            ((1, 7), 1, (0, 3), 9, 9),
            ((7, 1), 1, (3, 0), 9, 10),
            ((1, 3), 1, (0, 1), 5, 5),
            ((3, 1), 1, (1, 0), 5, 5),
            ((5, 5), 1, (2, 2), 7, 7),
            ((1, 1), 1, (0, 0), 6, 6),
            ((3, 3), 2, (0, 0), 8, 8),
        ];
        for (k, s, p, h, w) in cases {
            // A channel slice of a wider NHWC tensor (read in place or copied), and an NCHW
            // tensor seen as NHWC (gathered), both with batch 2.
            let big = rng.randn(0.0, 1.0, (2, h, w, 6), &dev);
            let nchw = rng.randn(0.0, 1.0, (2, 4, h, w), &dev);
            for x in [big.narrow(3, 2, 4).unwrap(), nchw.permute((0, 2, 3, 1)).unwrap()] {
                let conv = random_conv(&mut rng, 4, 5, k, s, p, 3);
                let got = conv.forward_cpu(&x).unwrap();
                let want = conv.forward_generic(&x).unwrap();
                let d = max_diff(&got, &want);
                assert!(d < 1e-4, "kernel {k:?} stride {s} pad {p:?}: diff {d}");
            }
        }
    }

    /// A batch of images in one call of the CPU kernels gives each image what it gets alone (and
    /// what the generic path gives), for each kernel family `ConvBn` picks: the direct GEMM (2 -> 4,
    /// 1x1 and 3x3 stride 2), Winograd F(2x2, 3x3) (3x3 stride 1 with c_in >= 32, c_out >= 64) and
    /// F(2, 7) (1x7, 7x1). Images 17x15 make several GEMM tasks and Winograd blocks per image.
    #[test]
    fn batch_matches_single_images() {
        let mut rng = Rng::new(0x5eed_000d);
        let dev = Device::Cpu;
        let n = 5;
        // (c_in, c_out, kernel, stride, padding)
        let cases = [
            (2, 4, (3, 3), 1, (1, 1)),
            (2, 4, (1, 1), 1, (0, 0)),
            (6, 8, (3, 3), 2, (0, 0)),
            (32, 64, (3, 3), 1, (1, 1)),
            (8, 16, (1, 7), 1, (0, 3)),
            (8, 16, (7, 1), 1, (3, 0)),
        ];
        for (c_in, c_out, k, s, p) in cases {
            let what = format!("{c_in}->{c_out} kernel {k:?} stride {s}");
            let conv = random_conv(&mut rng, c_in, c_out, k, s, p, c_out);
            let x = rng.randn(0.0, 1.0, (n, 17, 15, c_in), &dev);
            let batch = conv.forward_cpu(&x).unwrap();
            assert_eq!(batch.dim(0).unwrap(), n, "{what}");
            let generic = conv.forward_generic(&x).unwrap();
            // Sums of up to 288 unit products: compare relative to the output's scale.
            let scale = generic.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1.0);
            let d = max_diff(&batch, &generic) / scale;
            assert!(d < 1e-5, "{what}: batch of {n} vs generic path: relative diff {d}");
            for i in 0..n {
                let one = conv.forward_cpu(&x.narrow(0, i, 1).unwrap()).unwrap();
                let d = max_diff(&batch.narrow(0, i, 1).unwrap(), &one) / scale;
                assert!(d < 1e-6, "{what}: image {i} of a batch of {n} vs alone: relative diff {d}");
            }
        }
    }

    #[test]
    fn avg_pool_excludes_padding() {
        let mut rng = Rng::new(0x5eed_000e);
        let dev = Device::Cpu;
        let x = rng.randn(0.0, 1.0, (2, 6, 5, 3), &dev);
        let got = avg_pool3x3_relu(&x).unwrap().permute((0, 3, 1, 2)).unwrap();
        // Generic reference on NCHW: pad, sum, divide by the valid count.
        let ones = Tensor::ones((1, 1, 6, 5), DType::F32, &dev).unwrap();
        let sum = |t: &Tensor| {
            (t.pad_with_zeros(2, 1, 1).unwrap().pad_with_zeros(3, 1, 1).unwrap().avg_pool2d_with_stride(3, 1).unwrap()
                * 9.0)
                .unwrap()
        };
        let want = sum(&x.permute((0, 3, 1, 2)).unwrap()).broadcast_div(&sum(&ones)).unwrap().relu().unwrap();
        assert!(max_diff(&got, &want) < 1e-5);
        // The device-agnostic path (taken for non-f32 tensors) agrees.
        let generic = avg_pool3x3_relu(&x.to_dtype(DType::F64).unwrap()).unwrap().to_dtype(DType::F32).unwrap();
        assert!(max_diff(&got, &generic.permute((0, 3, 1, 2)).unwrap()) < 1e-5);
        // Corner of an all-ones map is 1 (4/4), not 4/9.
        let ones_nhwc = ones.permute((0, 2, 3, 1)).unwrap();
        let one = avg_pool3x3_relu(&ones_nhwc).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(one.iter().all(|v| (v - 1.0).abs() < 1e-6));
    }

    #[test]
    fn max_pool_matches_candle() {
        let mut rng = Rng::new(0x5eed_000f);
        let dev = Device::Cpu;
        for (h, w) in [(7, 7), (8, 9), (3, 3)] {
            let x = rng.randn(0.0, 1.0, (2, h, w, 3), &dev);
            let got = max_pool3x3s2(&x).unwrap();
            let want = x.permute((0, 3, 1, 2)).unwrap().max_pool2d_with_stride(3, 2).unwrap();
            let want = want.permute((0, 2, 3, 1)).unwrap();
            assert_eq!(max_diff(&got, &want), 0.0);
            let generic = max_pool3x3s2(&x.to_dtype(DType::F64).unwrap()).unwrap().to_dtype(DType::F32).unwrap();
            assert_eq!(max_diff(&got, &generic), 0.0);
        }
    }
}
