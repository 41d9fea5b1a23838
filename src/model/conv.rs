//! Convolutions over CNHW f32 activations on the CPU, shared by faceres and Inception-v3.
//!
//! In CNHW layout (`[C, N, H, W]`) a convolution is one matrix product
//! `[C_out, C_in*kh*kw] x [C_in*kh*kw, N*OH*OW]` whose result is already CNHW, so a whole batch
//! is one GEMM, channel slices are free (`narrow` on dim 0) and channel concatenation is a flat
//! copy. 1x1 convs read their input as the GEMM's B matrix; other kernels never build an im2col
//! buffer: `ConvColumns` packs the GEMM's panels straight from the input planes, and stride-1
//! panels that lie inside the input are not packed at all but read in place. The weights are
//! packed for [`sgemm`](super::sgemm) once at load, and bias and activation are applied as the
//! GEMM stores its results.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

use super::depthwise::{Activation, Padding};
use super::sgemm::{BlockB, Epilogue, MatB, NR, PackB, PackedA, Panel, gemm};

/// A convolution with bias and activation over CNHW f32 tensors on the CPU.
#[derive(Debug, Clone)]
pub struct CnhwConv {
    packed: PackedA,
    bias: Vec<f32>,
    c_in: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    act: Activation,
    act_rows: usize,
}

impl CnhwConv {
    /// Builds the layer from a `[C_out, C_in*kh*kw]` weight (OIHW flattened) and a `[C_out]` bias.
    /// Only the first `act_rows` output channels get `act`.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        c_in: usize,
        (kh, kw): (usize, usize),
        stride: usize,
        act: Activation,
        act_rows: usize,
    ) -> Result<Self> {
        let (c_out, k) = weight.dims2()?;
        if k != c_in * kh * kw || stride == 0 {
            candle_core::bail!("conv weight {:?} does not fit {c_in} channels of {kh}x{kw}", weight.shape());
        }
        let w = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if bias.len() != c_out {
            candle_core::bail!("conv bias has {} values for {c_out} channels", bias.len());
        }
        Ok(Self { packed: PackedA::new(&w, c_out, k), bias, c_in, kh, kw, stride, act, act_rows })
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.packed.rows()
    }

    /// Output size for an `h x w` input with the given padding.
    pub fn out_hw(&self, h: usize, w: usize, (t, l, b, r): Padding) -> Result<(usize, usize)> {
        if h + t + b < self.kh || w + l + r < self.kw {
            candle_core::bail!("input {h}x{w} is smaller than the {}x{} kernel", self.kh, self.kw);
        }
        Ok(((h + t + b - self.kh) / self.stride + 1, (w + l + r - self.kw) / self.stride + 1))
    }

    /// Runs the conv on a CNHW f32 CPU tensor whose `H x W` planes are contiguous.
    pub fn forward(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        x.apply_op1_no_bwd(&ConvOp { conv: self, pad })
    }

    fn epilogue(&self) -> Epilogue<'_> {
        Epilogue { bias: &self.bias, act: self.act, act_rows: self.act_rows }
    }
}

struct ConvOp<'a> {
    conv: &'a CnhwConv,
    pad: Padding,
}

impl CustomOp1 for ConvOp<'_> {
    fn name(&self) -> &'static str {
        "cnhw-conv"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else { candle_core::bail!("cnhw-conv expects f32") };
        let conv = self.conv;
        let (c, n, h, w) = layout.shape().dims4()?;
        if c != conv.c_in {
            candle_core::bail!("conv expects {} input channels, got {c}", conv.c_in);
        }
        let st = layout.stride();
        if st[3] != 1 || st[2] != w {
            candle_core::bail!("cnhw-conv expects contiguous H x W planes, got strides {st:?}");
        }
        let (oh, ow) = conv.out_hw(h, w, self.pad)?;
        let plane = oh * ow;
        let cols = n * plane;
        let c_out = conv.c_out();
        let mut out = Vec::with_capacity(c_out * cols);
        let dst = &mut out.spare_capacity_mut()[..c_out * cols];
        let direct = conv.kh == 1 && conv.kw == 1 && conv.stride == 1 && self.pad == (0, 0, 0, 0);
        if direct && layout.is_contiguous() {
            let b = MatB { data: &src[layout.start_offset()..], ld: cols, n: cols };
            gemm(&conv.packed, &b, dst, cols, conv.epilogue());
        } else {
            let (pt, pl, _, _) = self.pad;
            let columns = ConvColumns {
                src,
                strides: (st[0], st[1], layout.start_offset()),
                taps: (conv.kh, conv.kw),
                stride: conv.stride,
                pad: (pt, pl),
                input: (h, w),
                output: (oh, ow),
                cols,
            };
            gemm(&conv.packed, &columns, dst, cols, conv.epilogue());
        }
        // SAFETY: the GEMMs above wrote every one of the `c_out * cols` values.
        unsafe { out.set_len(c_out * cols) };
        Ok((CpuStorage::F32(out), Shape::from((c_out, n, oh, ow))))
    }
}

/// The im2col matrix of a CNHW input, never materialised: the GEMM asks for panels of it and
/// they are gathered straight from the input planes.
///
/// Row `c*kh*kw + ky*kw + kx` matches an OIHW weight flattened to `[O, I*kh*kw]`; column
/// `(n*OH + oy)*OW + ox` is output pixel `(oy, ox)` of image `n`.
struct ConvColumns<'a> {
    src: &'a [f32],
    /// Strides of dims 0 (channels) and 1 (images), and the start offset.
    strides: (usize, usize, usize),
    taps: (usize, usize),
    stride: usize,
    /// Padding before the rows and before the columns.
    pad: (usize, usize),
    input: (usize, usize),
    output: (usize, usize),
    cols: usize,
}

/// A run of panel columns that lie in one output row of one image.
#[derive(Clone, Copy, Default)]
struct Segment {
    /// First panel column and the number of columns.
    at: usize,
    len: usize,
    /// Offset of the image plane in the source.
    plane: usize,
    /// Input row and column of the first column's window origin (may be negative: padding).
    iy: isize,
    ix: isize,
}

impl ConvColumns<'_> {
    /// One packed row (tap `ci, ky, kx`) of a panel, run by run, with zeros for padding.
    fn gather(&self, d: &mut [f32], segments: &[Segment], ci: usize, ky: usize, kx: usize) {
        let (h, w) = self.input;
        let (s0, s) = (self.strides.0, self.stride);
        d.fill(0.0);
        for seg in segments {
            let iy = seg.iy + ky as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            // Columns u of the run read input column ix0 + u*s; keep 0 <= that < w.
            let ix0 = seg.ix + kx as isize;
            let lo = if ix0 >= 0 { 0 } else { ((-ix0) as usize).div_ceil(s) };
            let hi = if ix0 >= w as isize { 0 } else { ((w as isize - ix0) as usize).div_ceil(s).min(seg.len) };
            if lo >= hi {
                continue;
            }
            let row = seg.plane + ci * s0 + iy as usize * w;
            let first = (ix0 + (lo * s) as isize) as usize;
            let out = &mut d[seg.at + lo..seg.at + hi];
            if s == 1 {
                out.copy_from_slice(&self.src[row + first..row + first + (hi - lo)]);
            } else {
                for (u, v) in out.iter_mut().enumerate() {
                    *v = self.src[row + first + u * s];
                }
            }
        }
    }
}

impl PackB for ConvColumns<'_> {
    fn cols(&self) -> usize {
        self.cols
    }

    fn check_depth(&self, k: usize) {
        let (oh, ow) = self.output;
        assert_eq!(self.cols % (oh * ow).max(1), 0, "columns must be whole images");
        assert!(k.is_multiple_of(self.taps.0 * self.taps.1), "depth must be channels x taps");
        let (s0, s1, off) = self.strides;
        let (h, w) = self.input;
        let (c, n) = (k / (self.taps.0 * self.taps.1), self.cols / (oh * ow).max(1));
        if c > 0 && n > 0 {
            assert!(self.src.len() >= off + (c - 1) * s0 + (n - 1) * s1 + h * w, "input too small");
        }
    }

    fn source(&self) -> &[f32] {
        self.src
    }

    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, block: &mut BlockB) {
        let (kh, kw) = self.taps;
        let (h, w) = self.input;
        let (oh, ow) = self.output;
        let (s0, s1, off) = self.strides;
        let s = self.stride;
        let (pt, pl) = (self.pad.0 as isize, self.pad.1 as isize);
        // Each panel's columns, split into runs within one output row; a panel that is one run
        // of NR columns whose windows lie inside the input for every tap gets a plain base offset.
        let panels = nc.div_ceil(NR);
        let mut runs = vec![PanelRuns::default(); panels];
        for (jp, pr) in runs.iter_mut().enumerate() {
            let j = j0 + jp * NR;
            let nv = NR.min(j0 + nc - j);
            let mut t = 0;
            while t < nv {
                let col = j + t;
                let (img, pix) = (col / (oh * ow), col % (oh * ow));
                let (oy, ox) = (pix / ow, pix % ow);
                let len = (ow - ox).min(nv - t);
                pr.segments[pr.count] = Segment {
                    at: t,
                    len,
                    plane: off + img * s1,
                    iy: (oy * s) as isize - pt,
                    ix: (ox * s) as isize - pl,
                };
                pr.count += 1;
                t += len;
            }
            if let [seg] = &pr.segments[..pr.count] {
                let right = seg.ix + ((NR - 1) * s + kw - 1) as isize;
                let bottom = seg.iy + (kh - 1) as isize;
                if seg.len == NR && seg.iy >= 0 && seg.ix >= 0 && bottom < h as isize && right < w as isize {
                    pr.whole = Some(seg.plane + seg.iy as usize * w + seg.ix as usize);
                }
            }
        }
        // With stride 1, a whole interior panel's row for tap (ci, ky, kx) is NR contiguous input
        // floats: such panels are read in place at `base + taps[p]` and not packed.
        // Row q of the im2col matrix is tap (ci, ky, kx); `taps` holds its offset from a window origin.
        let tap = |q: usize| (q / (kh * kw), q / kw % kh, q % kw);
        let taps: Vec<usize> = (p0..p0 + kc).map(tap).map(|(ci, ky, kx)| ci * s0 + ky * w + kx).collect();
        if s == 1 {
            for (h, pr) in block.how.iter_mut().zip(&runs) {
                if let Some(base) = pr.whole {
                    *h = Panel::Direct(base);
                }
            }
            block.offsets.extend_from_slice(&taps);
        }
        // Stride-1 SAME convs over whole-image planes: a column's window for a tap sits at a
        // constant offset from the column itself, so any panel row is 16 contiguous input floats
        // with the padding lanes masked off (no per-run gathering).
        let n_img = self.cols / (oh * ow).max(1);
        let masks = (s == 1 && (oh, ow) == (h, w) && (n_img <= 1 || s1 == h * w)).then(|| self.tap_masks(j0, nc));
        // Tap by tap (one packed row in every panel), so the input is read row-sequentially.
        for (p, &offset) in taps.iter().enumerate() {
            let (ci, ky, kx) = tap(p0 + p);
            for (jp, pr) in runs.iter().enumerate() {
                if block.how[jp] != Panel::Packed {
                    continue;
                }
                let d: &mut [f32; NR] = (&mut block.packed[jp * kc * NR + p * NR..][..NR]).try_into().unwrap();
                if let Some(masks) = &masks {
                    let mask = &masks[(jp * kh + ky) * kw + kx];
                    let at = (off + ci * s0 + j0 + jp * NR + ky * w + kx) as isize - pt * w as isize - pl;
                    masked_row(self.src, at, mask, d);
                    continue;
                }
                match pr.whole {
                    Some(base) => {
                        let run = &self.src[base + offset..base + offset + (NR - 1) * s + 1];
                        for (u, v) in d.iter_mut().enumerate() {
                            *v = run[u * s];
                        }
                    }
                    None => self.gather(d, &pr.segments[..pr.count], ci, ky, kx),
                }
            }
        }
    }
}

impl ConvColumns<'_> {
    /// For a stride-1 SAME conv: per panel and tap, which of the panel's columns read a real
    /// input pixel (`!0`) rather than padding (`0`); columns past `nc` read nothing.
    fn tap_masks(&self, j0: usize, nc: usize) -> Vec<[u32; NR]> {
        let (kh, kw) = self.taps;
        let (h, w) = self.input;
        let (pt, pl) = self.pad;
        let panels = nc.div_ceil(NR);
        let mut masks = vec![[0u32; NR]; panels * kh * kw];
        for (i, mask) in masks.iter_mut().enumerate() {
            let (jp, ky, kx) = (i / (kh * kw), i / kw % kh, i % kw);
            for (u, m) in mask.iter_mut().enumerate().take(NR.min(nc - jp * NR)) {
                // Column u reads input (oy + ky - pt, ox + kx - pl).
                let pix = (j0 + jp * NR + u) % (h * w);
                let (y, x) = (pix / w + ky, pix % w + kx);
                if (pt..h + pt).contains(&y) && (pl..w + pl).contains(&x) {
                    *m = !0;
                }
            }
        }
        masks
    }
}

/// `d[u] = src[at + u]` where `mask[u]` is set, else 0. Set lanes always lie inside `src`; the
/// others may not, so a window that leaves `src` is copied lane by lane.
fn masked_row(src: &[f32], at: isize, mask: &[u32; NR], d: &mut [f32; NR]) {
    if at >= 0 && at as usize + NR <= src.len() {
        let win: &[f32; NR] = src[at as usize..at as usize + NR].try_into().unwrap();
        for ((v, &x), &m) in d.iter_mut().zip(win).zip(mask) {
            *v = f32::from_bits(x.to_bits() & m);
        }
    } else {
        for (u, (v, &m)) in d.iter_mut().zip(mask).enumerate() {
            *v = if m != 0 { src[(at + u as isize) as usize] } else { 0.0 };
        }
    }
}

/// The runs of one panel's columns (see [`ConvColumns::pack`]).
#[derive(Clone, Copy, Default)]
struct PanelRuns {
    segments: [Segment; NR],
    count: usize,
    /// Input offset of the first window when the panel is one interior run of NR columns.
    whole: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Stock Candle conv on the NCHW view, as the reference.
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, c_in: usize, k: (usize, usize), s: usize, pad: Padding) -> Tensor {
        let (t, l, bo, r) = pad;
        let c_out = w.dim(0).unwrap();
        let xn = x.transpose(0, 1).unwrap().pad_with_zeros(2, t, bo).unwrap().pad_with_zeros(3, l, r).unwrap();
        let w4 = w.reshape((c_out, c_in, k.0, k.1)).unwrap();
        let y = xn.contiguous().unwrap().conv2d(&w4, 0, s, 1, 1).unwrap();
        let y = y.broadcast_add(&b.reshape((1, c_out, 1, 1)).unwrap()).unwrap().relu().unwrap();
        y.transpose(0, 1).unwrap().contiguous().unwrap()
    }

    #[test]
    fn matches_candle_conv_for_kernels_strides_and_paddings() {
        let dev = Device::Cpu;
        let cases = [
            ((3, 3), 2, (0, 0, 1, 1), 8, 8),
            ((3, 3), 2, (0, 0, 0, 0), 9, 9),
            ((3, 3), 1, (1, 1, 1, 1), 8, 7),
            ((1, 7), 1, (0, 3, 0, 3), 9, 9),
            ((7, 1), 1, (3, 0, 3, 0), 9, 10),
            ((5, 5), 1, (2, 2, 2, 2), 7, 7),
            ((1, 1), 1, (0, 0, 0, 0), 6, 6),
            // Rows wider than a panel: interior panels are read in place.
            ((3, 3), 1, (1, 1, 1, 1), 5, 40),
            ((3, 3), 1, (0, 0, 0, 0), 6, 35),
            ((1, 7), 1, (0, 3, 0, 3), 3, 37),
            ((3, 3), 2, (0, 0, 1, 1), 5, 41),
        ];
        for (k, s, pad, h, w) in cases {
            // A narrowed (offset) input with batch 2 exercises the strided path.
            let big = Tensor::randn(0f32, 1.0, (6, 2, h, w), &dev).unwrap();
            for x in [big.narrow(0, 2, 4).unwrap(), big.narrow(0, 2, 4).unwrap().contiguous().unwrap()] {
                let wt = Tensor::randn(0f32, 1.0, (13, 4 * k.0 * k.1), &dev).unwrap();
                let b = Tensor::randn(0f32, 1.0, 13, &dev).unwrap();
                let conv = CnhwConv::new(&wt, &b, 4, k, s, Activation::Relu, 13).unwrap();
                let got = conv.forward(&x, pad).unwrap();
                let want = reference(&x, &wt, &b, 4, k, s, pad);
                assert_eq!(got.dims(), want.dims());
                let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                assert!(d < 1e-4, "kernel {k:?} stride {s} pad {pad:?}: diff {d}");
            }
        }
    }

    #[test]
    fn interior_stride_one_panels_are_read_in_place() {
        let src = vec![0f32; 2 * 6 * 40];
        let columns = ConvColumns {
            src: &src,
            strides: (6 * 40, 0, 0),
            taps: (3, 3),
            stride: 1,
            pad: (1, 1),
            input: (6, 40),
            output: (6, 40),
            cols: 6 * 40,
        };
        let (kc, nc) = (18, 80);
        let mut block = BlockB { packed: vec![0f32; kc * nc], how: vec![Panel::Packed; 5], offsets: Vec::new() };
        columns.pack(0, kc, 40, nc, &mut block);
        let BlockB { how, offsets, .. } = block;
        // Output row 1 (columns 40..80): the panel at x = 16..32 touches no padding; the one at
        // x = 0 does, and the one at 32 spans rows 1 and 2.
        assert_eq!(how[1], Panel::Direct(16 - 1));
        assert_eq!(how[0], Panel::Packed);
        assert_eq!(how[2], Panel::Packed);
        assert_eq!(offsets.len(), kc);
        assert_eq!(offsets[..4], [0, 1, 2, 40]);
        assert_eq!(offsets[9], 6 * 40);
    }

    #[test]
    fn rejects_wrong_channel_count_and_tiny_input() {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((2, 3 * 9), DType::F32, &dev).unwrap();
        let conv = CnhwConv::new(&wt, &Tensor::zeros(2, DType::F32, &dev).unwrap(), 3, (3, 3), 1, Activation::None, 0)
            .unwrap();
        let x = Tensor::zeros((4, 1, 5, 5), DType::F32, &dev).unwrap();
        assert!(conv.forward(&x, (0, 0, 0, 0)).is_err());
        let x = Tensor::zeros((3, 1, 2, 2), DType::F32, &dev).unwrap();
        assert!(conv.forward(&x, (0, 0, 0, 0)).is_err());
    }
}
