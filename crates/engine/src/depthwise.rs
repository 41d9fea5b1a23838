//! A direct 3x3 depthwise convolution (Candle's grouped conv runs one conv per group).
//!
//! On the CPU it is a custom op over NCHW f32 data, parallel over (image, channel) planes,
//! with a fused per-channel bias and activation. Other devices fall back to `conv2d(groups=C)`.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use std::cell::Cell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::layer::{Activation, Padding, has_avx2_fma};

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
        if !(1..=2).contains(&stride) {
            candle_core::bail!("depthwise stride must be 1 or 2, got {stride}");
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
        if crate::layer::cpu_kernels(x) {
            let op = DepthwiseOp { layer: self, pad };
            return x.contiguous()?.apply_op1_no_bwd(&op);
        }
        let (t, l, b, r) = pad;
        let xp = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
        let c = self.bias.len();
        let y = xp.conv2d(&self.weight, 0, self.stride, 1, c)?;
        let y = y.broadcast_add(&self.bias_t.reshape((1, c, 1, 1))?)?;
        self.act.apply_tensor(&y)
    }

    /// The same layer for NHWC tensors on the CPU.
    pub fn to_nhwc(&self) -> Result<super::nhwc::depthwise::NhwcDepthwise> {
        super::nhwc::depthwise::NhwcDepthwise::new(&self.weight, &self.bias_t, self.stride, self.act)
    }
}

struct DepthwiseOp<'a> {
    layer: &'a Depthwise3x3,
    pad: Padding,
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
        let (n, c, h, w) = layout.shape().dims4()?;
        if c != self.layer.bias.len() {
            candle_core::bail!("depthwise3x3: input has {c} channels, layer has {}", self.layer.bias.len());
        }
        let (pt, pl, pb, pr) = self.pad;
        let s = self.layer.stride;
        let oh = (h + pt + pb - 3) / s + 1;
        let ow = (w + pl + pr - 3) / s + 1;
        let mut out = Vec::with_capacity(n * c * oh * ow);
        out.spare_capacity_mut()[..n * c * oh * ow]
            .par_chunks_mut(oh * ow)
            .with_min_len((4096 / (oh * ow)).max(1))
            .enumerate()
            .for_each(|(plane, dst)| {
                let ch = plane % c;
                let k = &self.layer.weight_cpu[ch * 9..ch * 9 + 9];
                let bias = self.layer.bias[ch];
                let img = &src[plane * h * w..(plane + 1) * h * w];
                depthwise_plane(img, (h, w), k, bias, (s, pt, pl), dst, (oh, ow), self.layer.act);
            });
        // SAFETY: every plane wrote all of its `oh * ow` values.
        unsafe { out.set_len(n * c * oh * ow) };
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

/// One channel plane: `dst[oy,ox] = act(bias + sum_k w[k] * src[oy*s+ky-pt, ox*s+kx-pl])`.
///
/// The plane is first copied into zero-padded scratch rows laid out so that each of the nine taps
/// reads the whole output (flattened, with a few spare columns per row) at one constant offset:
/// stride 1 uses the padded plane itself; stride 2 uses six phase planes (for each kernel row, the
/// even and the odd padded columns of rows `2*oy + ky`). One long vectorised loop then computes
/// the plane, and the valid columns are copied out with the activation.
#[allow(clippy::too_many_arguments)]
fn depthwise_plane(
    src: &[f32],
    (h, w): (usize, usize),
    k: &[f32],
    bias: f32,
    (s, pt, pl): (usize, usize, usize),
    dst: &mut [MaybeUninit<f32>],
    (oh, ow): (usize, usize),
    act: Activation,
) {
    let k: &[f32; 9] = k.try_into().expect("3x3 kernel");
    let geo = PlaneGeometry { h, w, s, pt, pl, oh, ow };
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA are present.
        return unsafe { depthwise_plane_avx2(src, &geo, k, bias, dst, act) };
    }
    depthwise_plane_body(src, &geo, k, bias, dst, act);
}

/// Sizes and offsets of one depthwise plane.
struct PlaneGeometry {
    h: usize,
    w: usize,
    s: usize,
    pt: usize,
    pl: usize,
    oh: usize,
    ow: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn depthwise_plane_avx2(
    src: &[f32],
    geo: &PlaneGeometry,
    k: &[f32; 9],
    bias: f32,
    dst: &mut [MaybeUninit<f32>],
    act: Activation,
) {
    depthwise_plane_body(src, geo, k, bias, dst, act);
}

#[inline(always)]
fn depthwise_plane_body(
    src: &[f32],
    geo: &PlaneGeometry,
    k: &[f32; 9],
    bias: f32,
    dst: &mut [MaybeUninit<f32>],
    act: Activation,
) {
    let PlaneGeometry { h, w, s, pt, pl, oh, ow } = *geo;
    let wp = (ow - 1) * s + 3;
    // Scratch row width and the offset of each tap, in scratch values.
    let (width, offsets) = match s {
        1 => (wp, [0, 1, 2, wp, wp + 1, wp + 2, 2 * wp, 2 * wp + 1, 2 * wp + 2]),
        _ => {
            // Phase plane q (0..6) is at q * oh * width: q = 2*ky for evens, 2*ky + 1 for odds.
            let width = ow + 1;
            let p = |q: usize| q * oh * width;
            (width, [p(0), p(1), p(0) + 1, p(2), p(3), p(2) + 1, p(4), p(5), p(4) + 1])
        }
    };
    let flat = oh * width;
    let scratch_len = if s == 1 { (oh + 2) * wp + 2 } else { 6 * flat + 2 };
    // The scratch is taken out of the thread-local (not used inside a `with` closure), so that
    // this body is compiled with the caller's target features (AVX2 + FMA).
    let mut buf = SCRATCH.with(|cell| cell.take());
    {
        if buf.len() < scratch_len + flat {
            buf.resize(scratch_len + flat, 0.0);
        }
        let (pad, rest) = buf.split_at_mut(scratch_len);
        let out = &mut rest[..flat];
        // Padded row py holds source row py - pt; padded column px holds source column px - pl.
        // Every value a valid output reads is written below (source or zero); stale values
        // only reach the spare columns, which are never copied out.
        let src_row = |py: usize| py.checked_sub(pt).filter(|&iy| iy < h).map(|iy| &src[iy * w..(iy + 1) * w]);
        let (lo, hi) = (pl.min(wp), (w + pl).min(wp));
        if s == 1 {
            for py in 0..oh + 2 {
                let prow = &mut pad[py * wp..(py + 1) * wp];
                match src_row(py) {
                    Some(row) => {
                        prow[..lo].fill(0.0);
                        prow[lo..hi].copy_from_slice(&row[lo - pl..hi - pl]);
                        prow[hi..].fill(0.0);
                    }
                    None => prow.fill(0.0),
                }
            }
        } else {
            for ky in 0..3 {
                let (evens, odds) = pad[2 * ky * flat..(2 * ky + 2) * flat].split_at_mut(flat);
                for oy in 0..oh {
                    let e = &mut evens[oy * width..(oy + 1) * width];
                    let o = &mut odds[oy * width..(oy + 1) * width];
                    // Source column c lands in padded column c + pl: evens when c + pl is even.
                    let Some(row) = src_row(2 * oy + ky) else {
                        e.fill(0.0);
                        o.fill(0.0);
                        continue;
                    };
                    e.fill(0.0);
                    o.fill(0.0);
                    let row = &row[..hi - pl];
                    let (first, second) = if pl % 2 == 0 {
                        (&mut e[pl / 2..], &mut o[pl / 2..])
                    } else {
                        (&mut o[pl / 2..], &mut e[pl / 2 + 1..])
                    };
                    let pairs = row.chunks_exact(2);
                    if let ([last], Some(d)) = (pairs.remainder(), first.get_mut(row.len() / 2)) {
                        *d = *last;
                    }
                    for ((pair, f), g) in pairs.zip(first.iter_mut()).zip(second.iter_mut()) {
                        *f = pair[0];
                        *g = pair[1];
                    }
                }
            }
        }
        let t = |i: usize| &pad[offsets[i]..offsets[i] + flat];
        let (a0, a1, a2, b0, b1, b2, c0, c1, c2) = (t(0), t(1), t(2), t(3), t(4), t(5), t(6), t(7), t(8));
        for x in 0..flat {
            let top = k[0] * a0[x] + k[1] * a1[x] + k[2] * a2[x];
            let mid = k[3] * b0[x] + k[4] * b1[x] + k[5] * b2[x];
            let bot = k[6] * c0[x] + k[7] * c1[x] + k[8] * c2[x];
            out[x] = bias + top + mid + bot;
        }
        for oy in 0..oh {
            let row = &out[oy * width..oy * width + ow];
            let d = &mut dst[oy * ow..(oy + 1) * ow];
            match act {
                Activation::None => d.iter_mut().zip(row).for_each(|(d, &v)| _ = d.write(v)),
                Activation::Relu => d.iter_mut().zip(row).for_each(|(d, &v)| _ = d.write(v.max(0.0))),
                Activation::Relu6 => d.iter_mut().zip(row).for_each(|(d, &v)| _ = d.write(v.clamp(0.0, 6.0))),
            }
        }
    }
    SCRATCH.with(|cell| cell.replace(buf));
}

thread_local! {
    /// Per-thread scratch: the padded (or phase-split) input plane, then the flat output.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
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
    if crate::layer::cpu_kernels(&y) && y.is_contiguous() {
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
    use crate::layer::same_padding_3x3;
    use crate::test_util::Rng;
    use candle_core::Device;

    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: Padding) -> Tensor {
        let (t, l, bo, r) = pad;
        let c = w.dim(0).unwrap();
        let xp = x.pad_with_zeros(2, t, bo).unwrap().pad_with_zeros(3, l, r).unwrap();
        xp.conv2d(w, 0, stride, 1, c).unwrap().broadcast_add(&b.reshape((1, c, 1, 1)).unwrap()).unwrap()
    }

    #[test]
    fn matches_grouped_conv_in_both_layouts_for_all_strides_and_paddings() {
        let mut rng = Rng::new(0x5eed_0002);
        let dev = Device::Cpu;
        let cases = [(1, 7, 9), (2, 8, 10), (2, 7, 7), (1, 1, 1), (1, 30, 33), (2, 31, 30), (2, 112, 112), (1, 2, 3)];
        // 5 channels run one at a time; 45 run as blocks of 32, 8 and then single channels; 48
        // (a multiple of 8) runs on the AVX2 kernel where the CPU has one.
        for ((stride, h, w), c) in cases.into_iter().flat_map(|case| [(case, 5), (case, 45), (case, 48)]) {
            let x = rng.randn(0.0, 1.0, (2, c, h, w), &dev);
            let wt = rng.randn(0.0, 1.0, (c, 1, 3, 3), &dev);
            let b = rng.randn(0.0, 1.0, c, &dev);
            let pad = same_padding_3x3(stride, h, w);
            let want = reference(&x, &wt, &b, stride, pad);
            let max_diff = |got: Tensor, want: &Tensor| {
                assert_eq!(got.dims(), want.dims());
                (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
            };
            let plain = Depthwise3x3::new(wt.clone(), b.clone(), stride, Activation::None).unwrap();
            let diff = max_diff(plain.forward(&x, pad).unwrap(), &want);
            assert!(diff < 1e-5, "stride {stride} {h}x{w}: diff {diff}");
            // NHWC, with the activation fused.
            let relu6 = Depthwise3x3::new(wt, b, stride, Activation::Relu6).unwrap().to_nhwc().unwrap();
            let want = Activation::Relu6.apply_tensor(&want).unwrap();
            let nhwc = x.permute((0, 2, 3, 1)).unwrap();
            let got = relu6.forward(&nhwc, pad).unwrap().permute((0, 3, 1, 2)).unwrap();
            let diff = max_diff(got, &want);
            assert!(diff < 1e-5, "NHWC stride {stride} {h}x{w} x{c}: diff {diff}");
        }
    }

    #[test]
    fn rejects_strides_other_than_one_and_two() {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((2, 1, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap();
        assert!(Depthwise3x3::new(wt, b, 3, Activation::None).is_err());
    }

    #[test]
    fn same_padding_matches_tf_rule() {
        assert_eq!(same_padding_3x3(1, 224, 224), (1, 1, 1, 1));
        assert_eq!(same_padding_3x3(2, 224, 224), (0, 0, 1, 1));
        assert_eq!(same_padding_3x3(2, 7, 7), (1, 1, 1, 1));
    }

    #[test]
    fn fused_bias_act_matches_separate_ops() {
        let mut rng = Rng::new(0x5eed_0003);
        let dev = Device::Cpu;
        let y = (rng.randn(0.0, 4.0, (2, 5, 3, 7), &dev) * 1.0).unwrap();
        let b = rng.randn(0.0, 2.0, 5, &dev);
        for act in [Activation::None, Activation::Relu, Activation::Relu6] {
            let want = act.apply_tensor(&y.broadcast_add(&b.reshape((1, 5, 1, 1)).unwrap()).unwrap()).unwrap();
            let got = bias_act(y.copy().unwrap(), &b, act).unwrap();
            let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-6, "{act:?}: diff {diff}");
        }
    }

    #[test]
    fn pointwise_matches_conv1x1() {
        let mut rng = Rng::new(0x5eed_0004);
        let dev = Device::Cpu;
        let x = rng.randn(0.0, 1.0, (3, 4, 5, 6), &dev);
        let wt = rng.randn(0.0, 1.0, (7, 4, 1, 1), &dev);
        let b = rng.randn(0.0, 1.0, 7, &dev);
        let got = pointwise(&x, &wt.reshape((7, 4)).unwrap(), &b, Activation::None).unwrap();
        let want = x.conv2d(&wt, 0, 1, 1, 1).unwrap().broadcast_add(&b.reshape((1, 7, 1, 1)).unwrap()).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-4, "diff {diff}");
    }
}
