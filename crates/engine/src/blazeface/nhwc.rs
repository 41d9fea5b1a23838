//! BlazeFace's CPU path on the NHWC engine ([`crate::nhwc`]), the same engine as faceres', any
//! number of images per pass.
//!
//! The stem is an [`NhwcConv`] (5x5 stride 2, TF SAME: 1 before, 2 after) that reads the NCHW
//! input through an NHWC view (its padded copy is the transpose); each residual block is one
//! [`ResidualSeparable`] (depthwise, pointwise, skip and ReLU in one pass, the stride-2 skips'
//! pool and zero channels written straight into the output); the tail is a [`Separable`]; the
//! heads are 1x1 [`NhwcConv`]s whose NHWC outputs are already the raw rows `(y, x, anchor, 17)`,
//! so no transpose is left at the end.

use candle_core::{Result, Tensor};

use super::{INPUT_SIZE, RAW_COLS};
use crate::layer::{Activation, same_padding_3x3};
use crate::nhwc::conv::NhwcConv;
use crate::nhwc::depthwise::NhwcDepthwise;
use crate::nhwc::narrow::NarrowConv;
use crate::nhwc::residual::ResidualSeparable;
use crate::nhwc::separable::Separable;
use crate::per_core;

/// One residual block's weights: depthwise `[C,1,3,3]`, pointwise `[C_out, C]` and `[C_out]`, stride.
pub(super) struct BlockWeights<'a> {
    pub dw: &'a Tensor,
    pub pw_weight: &'a Tensor,
    pub pw_bias: &'a Tensor,
    pub stride: usize,
}

/// The layers of BlazeFace as NHWC CPU kernels.
pub(super) struct NhwcBlazeFace {
    stem: NhwcConv,
    /// The stem with all 24 channels in each tile, on AVX2 CPUs ([`NarrowConv`]).
    stem_narrow: Option<NarrowConv>,
    blocks: Vec<ResidualSeparable>,
    tail: Separable,
    head16: NhwcConv,
    head8: NhwcConv,
}

impl NhwcBlazeFace {
    /// Builds the layers from the network's tensors (shapes as in [`super::BlazeFace`]; the heads
    /// fused, `[17A, 96]`).
    pub(super) fn new(
        (stem_w, stem_b): (&Tensor, &Tensor),
        blocks: &[BlockWeights],
        (tail_dw, tail_pw, tail_b): (&Tensor, &Tensor, &Tensor),
        head16: (&Tensor, &Tensor),
        head8: (&Tensor, &Tensor),
    ) -> Result<Self> {
        let (c_out, c_in, kh, kw) = stem_w.dims4()?;
        let stem = NhwcConv::new(
            &stem_w.reshape((c_out, c_in * kh * kw))?,
            stem_b,
            c_in,
            (kh, kw),
            2,
            Activation::Relu,
            c_out,
        )?;
        let stem_narrow = NarrowConv::new(stem_w, stem_b, 2)?;
        let depthwise = |w: &Tensor, stride| {
            let zeros = Tensor::zeros(w.dim(0)?, w.dtype(), w.device())?;
            NhwcDepthwise::new(w, &zeros, stride, Activation::None)
        };
        let blocks = blocks
            .iter()
            .map(|b| ResidualSeparable::new(depthwise(b.dw, b.stride)?, b.pw_weight, b.pw_bias))
            .collect::<Result<Vec<_>>>()?;
        let c = tail_pw.dim(1)?;
        let tail_pw = NhwcConv::new(tail_pw, tail_b, c, (1, 1), 1, Activation::Relu, tail_pw.dim(0)?)?;
        let tail = Separable::new(depthwise(tail_dw, 2)?, tail_pw)?;
        let head = |(w, b): (&Tensor, &Tensor)| NhwcConv::new(w, b, w.dim(1)?, (1, 1), 1, Activation::None, 0);
        Ok(Self { stem, stem_narrow, blocks, tail, head16: head(head16)?, head8: head(head8)? })
    }

    /// Raw outputs `[N, 896, 17]` for inputs `[N, 3, 256, 256]` in -1..1, the images shared
    /// out between the cores ([`per_core::map_balanced`]): each core runs the early layers
    /// (128x128 and 64x64 maps) on one image at a time, whose maps then stay in its cache, and the
    /// rest on [`LATE_IMAGES`] images at once.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, c, h, w) = x.dims4()?;
        if c != 3 || h != INPUT_SIZE || w != INPUT_SIZE {
            candle_core::bail!("blazeface expects [N,3,256,256], got {:?}", x.shape());
        }
        per_core::map_balanced(x, 1, LATE_IMAGES, |x| self.early(&x.permute((0, 2, 3, 1))?), |x| self.late(x))
    }

    /// The stem and the blocks before [`LATE_FROM`] on NHWC inputs `[N, 256, 256, 3]` (any strides:
    /// an NCHW batch permuted is read as it lies).
    fn early(&self, x: &Tensor) -> Result<Tensor> {
        let (_, h, w, c) = x.dims4()?;
        if c != 3 || h != INPUT_SIZE || w != INPUT_SIZE {
            candle_core::bail!("blazeface expects 256x256 RGB inputs, got NHWC {:?}", x.shape());
        }
        // 5x5 stride 2, TF SAME on 256: 1 before, 2 after.
        let x = match &self.stem_narrow {
            Some(stem) => stem.forward(x, (1, 1, 2, 2))?,
            None => self.stem.forward(x, (1, 1, 2, 2))?,
        };
        Self::run_blocks(x, &self.blocks[..LATE_FROM])
    }

    /// The blocks from [`LATE_FROM`] on, the tail and the heads: raw rows `[N, 896, 17]`.
    fn late(&self, x: &Tensor) -> Result<Tensor> {
        let x = Self::run_blocks(x.clone(), &self.blocks[LATE_FROM..])?;
        let (n, h, w, _) = x.dims4()?;
        let t = self.tail.forward(&x, same_padding_3x3(2, h, w))?;
        let r16 = self.head16.forward(&x, (0, 0, 0, 0))?;
        let r8 = self.head8.forward(&t, (0, 0, 0, 0))?;
        // Each pixel's channels are its anchors' rows: (y, x, anchor) order already.
        let rows = |r: &Tensor| -> Result<Tensor> {
            let (_, h, w, c) = r.dims4()?;
            r.reshape((n, h * w * c / RAW_COLS, RAW_COLS))
        };
        Tensor::cat(&[rows(&r16)?, rows(&r8)?], 1)
    }

    fn run_blocks(mut x: Tensor, blocks: &[ResidualSeparable]) -> Result<Tensor> {
        for b in blocks {
            let (_, h, w, _) = x.dims4()?;
            x = b.forward(&x, same_padding_3x3(b.stride(), h, w))?;
        }
        Ok(x)
    }
}

/// First block (0-based) that runs on several images at once: its maps are 32x32 and smaller.
const LATE_FROM: usize = 15;
/// Images per chunk of the late layers.
const LATE_IMAGES: usize = 4;

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Instant;

    use candle_core::{D, DType, Device, IndexOp};
    use rayon::prelude::*;

    use super::super::{BlazeFace, NUM_ANCHORS};
    use super::*;
    use crate::test_util::Rng;

    fn net() -> BlazeFace {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/blazeface.safetensors");
        BlazeFace::load(&path, &Device::Cpu).expect("load blazeface")
    }

    /// The tfjs reference input (a real photo, astronaut.png, `[1,3,256,256]` in -1..1).
    fn photo() -> Tensor {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/reference/blazeface_ref.safetensors");
        let mut t = candle_core::safetensors::load(&path, &Device::Cpu)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let x = t.remove("input").expect("reference input").to_dtype(DType::F32).unwrap();
        x.reshape((1, 3, INPUT_SIZE, INPUT_SIZE)).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn nhwc_path_matches_candle_ops_on_a_batch_of_different_inputs() {
        let net = net();
        let cpu = net.nhwc.as_ref().expect("the CPU path is built on the CPU");
        let mut rng = Rng::new(0x5eed_0022);
        let photo = photo();
        // A real photo, the same photo mirrored and darkened, noise, and the photo's negative:
        // four different inputs through every stride-2 block (skips with a pool, then zero
        // channels appended) and both heads; four images share out between two cores (the early
        // layers one image at a time, the late ones on chunks of images).
        let mirrored = (photo.flip(&[3]).unwrap() * 0.7).unwrap();
        let noise = rng.randn(0.0, 0.6, (1, 3, INPUT_SIZE, INPUT_SIZE), &Device::Cpu).clamp(-1f32, 1f32).unwrap();
        let negative = photo.neg().unwrap();
        let x = Tensor::cat(&[&photo, &mirrored, &noise, &negative], 0).unwrap();
        let got = cpu.forward(&x).unwrap();
        let want = net.forward_impl(&x, false).unwrap();
        assert_eq!(got.dims(), &[4, NUM_ANCHORS, RAW_COLS]);
        // Every column to 2e-4 of max(1, |value|) (measured: 6e-5): the raw values reach a few
        // hundred (boxes in 256-input pixels, background logits), where f32 sums in another order
        // differ by up to 1e-3 (as they do between the NCHW kernels and candle's ops).
        let scale = want.abs().unwrap().maximum(1f32).unwrap();
        let rel = ((&got - &want).unwrap().abs().unwrap() / scale).unwrap().max_all().unwrap();
        let rel = rel.to_scalar::<f32>().unwrap();
        assert!(rel < 2e-4, "NHWC against candle ops: relative difference up to {rel}");
        // The public entry takes this path, and each image alone gives its rows of the batch.
        assert_eq!(max_diff(&net.forward_raw(&x).unwrap(), &got), 0.0);
        for i in 0..4 {
            let one = cpu.forward(&x.i(i..i + 1).unwrap()).unwrap();
            let d = max_diff(&one, &got.i(i..i + 1).unwrap());
            assert!(d < 1e-4, "image {i} alone against in the batch: {d}");
        }
        // The outputs differ from image to image, and the photo has a confident face: the check
        // compares outputs that depend on the input.
        let best = want.i((.., .., 0)).unwrap().max(D::Minus1).unwrap().to_vec1::<f32>().unwrap();
        assert!(best[0] > 2.0, "the photo's best logit {}", best[0]);
        assert!(max_diff(&want.i(0).unwrap(), &want.i(1).unwrap()) > 0.1);
    }

    #[test]
    fn nhwc_path_rejects_wrong_input_shapes() {
        let net = net();
        let z = |s: (usize, usize, usize, usize)| Tensor::zeros(s, DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward_raw(&z((1, 4, 256, 256))).is_err());
        assert!(net.forward_raw(&z((1, 3, 128, 256))).is_err());
        assert!(net.nhwc.as_ref().unwrap().forward(&z((1, 256, 256, 1))).is_err());
    }

    /// One way to run a batch, for the timing below.
    type RunBatch<'a> = Box<dyn Fn() + Sync + 'a>;

    /// Side-by-side timing of the NHWC path against the NCHW kernels it replaces, alternating, in
    /// one process: `cargo test --locked -p gc-engine blazeface::nhwc::tests::bench -- --ignored
    /// --nocapture`. The NCHW path runs as the detector ran it (one image per pass, the images in
    /// parallel); the NHWC path as it runs now (the images in one pass).
    #[test]
    #[ignore]
    fn bench_nhwc_against_nchw() {
        // As the binary does (`main`): freed activation buffers stay in the heap, so the timings
        // below do not count fresh pages.
        crate::memory::keep_freed_buffers();
        let net = net();
        let cpu = net.nhwc.as_ref().unwrap();
        let photo = photo();
        let rounds: usize = std::env::var("BLAZE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
        for batch in [1usize, 4, 8] {
            let x = Tensor::cat(&vec![&photo; batch], 0).unwrap();
            let layers = |x: &Tensor| cpu.late(&cpu.early(&x.permute((0, 2, 3, 1))?)?);
            let paths: Vec<(&str, RunBatch)> = vec![
                (
                    "NCHW, images in parallel",
                    Box::new(|| {
                        (0..batch).into_par_iter().for_each(|i| {
                            net.forward_impl(&x.i(i..i + 1).unwrap(), true).unwrap();
                        })
                    }),
                ),
                ("NHWC, whole batch per layer", Box::new(|| _ = crate::per_core::on_pool(|| layers(&x).unwrap()))),
                (
                    "NHWC, images in turn",
                    Box::new(|| {
                        crate::per_core::on_pool(|| {
                            (0..batch).for_each(|i| _ = layers(&x.i(i..i + 1).unwrap()).unwrap())
                        })
                    }),
                ),
                ("NHWC, images per core", Box::new(|| _ = cpu.forward(&x).unwrap())),
            ];
            let mut times = vec![Vec::new(); paths.len()];
            paths.iter().for_each(|(_, f)| f());
            for _ in 0..rounds {
                for ((_, f), t) in paths.iter().zip(&mut times) {
                    let s = Instant::now();
                    f();
                    t.push(s.elapsed().as_secs_f64() * 1e3 / batch as f64);
                }
            }
            let base = times[0].clone();
            let median = |v: &[f64]| {
                let mut v = v.to_vec();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            for ((name, _), t) in paths.iter().zip(&times) {
                println!(
                    "batch {batch}: {name:28} {:6.2} ms/image (median of {rounds}), {:.2}x the NCHW path",
                    median(t),
                    median(&base) / median(t)
                );
            }
        }
    }
}
