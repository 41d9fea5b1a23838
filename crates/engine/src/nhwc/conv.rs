//! Convolutions over NHWC f32 activations on the CPU, as GEMMs that read the input in place.
//!
//! Output pixel `p` and output channel `o` of a conv are `sum_k A[p, k] * W[k, o]`, where row `p`
//! of A is the pixel's receptive field. In NHWC, a field is `kh` runs of `kw * C` contiguous
//! floats (one per kernel row) at fixed offsets from its origin, so the micro-kernel reads A
//! straight from the input: no im2col, no packing of activations. Only the weights are packed,
//! once at load, into panels of [`NR`] output channels. Padding is a zero-bordered copy of the
//! input (cheap next to the conv itself); an unpadded input, or a 1x1 conv on a channel slice
//! of a wider tensor, is read where it lies.

use std::mem::MaybeUninit;
use std::ops::Range;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::kernel::{MR, NR, PanelEpilogue, Run, Tile, run_tile};
use crate::layer::{Activation, Padding};

/// Largest depth of one K block: a panel's weights for it (`KC x NR` floats, 20 KiB) stay in L1.
const KC: usize = 320;
/// Output pixels per task, at most (about [`MR`]-aligned); their fields for one K block stay in L2.
const MC: usize = 96;
/// Output pixels per block when the weights outweigh the input (their fields for one K block,
/// `192 x KC` floats, still fit in L2).
const MC_WEIGHT_HEAVY: usize = 192;
/// Output-channel panels per chunk: a task's C block for one chunk (`MC x 256` floats) stays in L2.
const PANELS_PER_CHUNK: usize = 16;

/// A convolution with bias and activation over NHWC f32 tensors on the CPU.
#[derive(Debug, Clone)]
pub struct NhwcConv {
    c_in: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    /// `[panel][k][NR]` with `k = (ky * kw + kx) * c_in + ci`, zero past `c_out`, from
    /// `weights[align..]`.
    weights: Vec<f32>,
    /// Start of the packed weights in `weights`, so that each row of [`NR`] floats is one
    /// 64-byte cache line and no load of the micro-kernel splits across two.
    align: usize,
    epilogues: Vec<PanelEpilogue>,
}

impl NhwcConv {
    /// Builds the layer from a `[C_out, C_in*kh*kw]` weight (OIHW flattened) and a `[C_out]`
    /// bias. Only the first `act_channels` output channels get `act`.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        c_in: usize,
        (kh, kw): (usize, usize),
        stride: usize,
        act: Activation,
        act_channels: usize,
    ) -> Result<Self> {
        let (c_out, k) = weight.dims2()?;
        if c_in == 0 || k != c_in * kh * kw || stride == 0 {
            candle_core::bail!("conv weight {:?} does not fit {c_in} channels of {kh}x{kw}", weight.shape());
        }
        let w = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if bias.len() != c_out {
            candle_core::bail!("conv bias has {} values for {c_out} channels", bias.len());
        }
        let panels = c_out.div_ceil(NR);
        let mut weights = vec![0f32; panels * k * NR + NR];
        let align = weights.as_ptr().align_offset(64).min(NR);
        for (o, row) in w.chunks_exact(k).enumerate() {
            let panel = &mut weights[align + (o / NR) * k * NR..];
            for ci in 0..c_in {
                for t in 0..kh * kw {
                    panel[(t * c_in + ci) * NR + o % NR] = row[ci * kh * kw + t];
                }
            }
        }
        let (lo, hi) = act.bounds();
        let epilogues = (0..panels)
            .map(|p| {
                let mut e = PanelEpilogue { bias: [0.0; NR], lo: [f32::NEG_INFINITY; NR], hi: [f32::INFINITY; NR] };
                for j in 0..NR.min(c_out - p * NR) {
                    e.bias[j] = bias[p * NR + j];
                    if p * NR + j < act_channels {
                        (e.lo[j], e.hi[j]) = (lo, hi);
                    }
                }
                e
            })
            .collect();
        Ok(Self { c_in, c_out, kh, kw, stride, weights, align, epilogues })
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.c_out
    }

    /// Input channels.
    pub fn c_in(&self) -> usize {
        self.c_in
    }

    /// Kernel size (rows, columns).
    pub fn taps(&self) -> (usize, usize) {
        (self.kh, self.kw)
    }

    /// Stride.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Output size for an `h x w` input with the given padding.
    pub fn out_hw(&self, h: usize, w: usize, (t, l, b, r): Padding) -> Result<(usize, usize)> {
        if h + t + b < self.kh || w + l + r < self.kw {
            candle_core::bail!("input {h}x{w} is smaller than the {}x{} kernel", self.kh, self.kw);
        }
        Ok(((h + t + b - self.kh) / self.stride + 1, (w + l + r - self.kw) / self.stride + 1))
    }

    /// Runs the conv on an NHWC f32 CPU tensor (`[N, H, W, C]`), returning a contiguous
    /// `[N, OH, OW, C_out]` tensor. Channel slices of a wider tensor are read in place; other
    /// strided views (such as an NCHW tensor permuted) are copied first.
    pub fn forward(&self, x: &Tensor, pad: Padding) -> Result<Tensor> {
        x.apply_op1_no_bwd(&ConvOp { conv: self, pad })
    }
}

struct ConvOp<'a> {
    conv: &'a NhwcConv,
    pad: Padding,
}

/// Where the fields of the output pixels lie: pixel `(n, oy, ox)` has its origin at
/// `origin + n * image + oy * s * row + ox * s * pixel`, and its kernel row `ky` is the
/// `kw * C` floats from `ky * row` after that.
#[derive(Debug, Clone, Copy)]
pub(super) struct Fields {
    origin: usize,
    image: usize,
    row: usize,
    pixel: usize,
    stride: usize,
    out: (usize, usize),
}

impl Fields {
    /// The fields of a 1x1 stride-1 conv over an `[N, OH, OW, C]` input whose pixels lie
    /// `pixel` floats apart, row after row.
    pub(super) fn strided((oh, ow): (usize, usize), pixel: usize) -> Self {
        Self { origin: 0, image: oh * ow * pixel, row: ow * pixel, pixel, stride: 1, out: (oh, ow) }
    }

    fn origin_of(&self, p: usize) -> usize {
        let (oh, ow) = self.out;
        let (n, oy, ox) = (p / (oh * ow), p / ow % oh, p % ow);
        self.origin + n * self.image + oy * self.stride * self.row + ox * self.stride * self.pixel
    }
}

impl CustomOp1 for ConvOp<'_> {
    fn name(&self) -> &'static str {
        "nhwc-conv"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(src) = storage else { candle_core::bail!("nhwc-conv expects f32") };
        let conv = self.conv;
        let (n, h, w, c) = layout.shape().dims4()?;
        if c != conv.c_in {
            candle_core::bail!("conv expects {} input channels, got {c}", conv.c_in);
        }
        let st = layout.stride();
        let (oh, ow) = conv.out_hw(h, w, self.pad)?;
        // Read in place when no padding is needed and each kernel row is one contiguous run;
        // otherwise (also for any other strides, such as an NCHW tensor seen as NHWC) copy into
        // a zero-bordered contiguous input.
        let padded;
        let (data, fields) = if self.pad == (0, 0, 0, 0) && st[3] == 1 && (conv.kw == 1 || st[2] == c) {
            let f = Fields {
                origin: layout.start_offset(),
                image: st[0],
                row: st[1],
                pixel: st[2],
                stride: conv.stride,
                out: (oh, ow),
            };
            (&src[..], f)
        } else {
            let (hp, wp);
            (padded, hp, wp) = pad_copy(src, layout, self.pad);
            let f = Fields { origin: 0, image: hp * wp * c, row: wp * c, pixel: c, stride: conv.stride, out: (oh, ow) };
            (&padded[..], f)
        };
        let pixels = n * oh * ow;
        let mut out = Vec::with_capacity(pixels * conv.c_out);
        if pixels > 0 {
            // The last pixel's field ends furthest into the source.
            let end = fields.origin_of(pixels - 1) + (conv.kh - 1) * fields.row + conv.kw * c;
            assert!(end <= data.len(), "conv fields reach past the input");
            gemm(conv, data, &fields, &mut out.spare_capacity_mut()[..pixels * conv.c_out]);
        }
        // SAFETY: the GEMM wrote every one of the `pixels * c_out` values.
        unsafe { out.set_len(pixels * conv.c_out) };
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, conv.c_out))))
    }
}

/// Copies an NHWC view into a contiguous tensor with zero borders: returns it and its padded size.
pub(super) fn pad_copy(src: &[f32], layout: &Layout, (t, l, b, r): Padding) -> (Vec<f32>, usize, usize) {
    let (n, h, w, c) = layout.shape().dims4().expect("4-d NHWC");
    let st = layout.stride();
    let (hp, wp) = (h + t + b, w + l + r);
    let mut out = vec![0f32; n * hp * wp * c];
    for img in 0..n {
        for y in 0..h {
            let dst = &mut out[((img * hp + y + t) * wp + l) * c..][..w * c];
            let row = layout.start_offset() + img * st[0] + y * st[1];
            if st[3] == 1 && st[2] == c {
                dst.copy_from_slice(&src[row..row + w * c]);
            } else if st[3] == 1 {
                for (x, d) in dst.chunks_exact_mut(c).enumerate() {
                    d.copy_from_slice(&src[row + x * st[2]..][..c]);
                }
            } else {
                for (x, d) in dst.chunks_exact_mut(c).enumerate() {
                    d.iter_mut().enumerate().for_each(|(ci, d)| *d = src[row + x * st[2] + ci * st[3]]);
                }
            }
        }
    }
    (out, hp, wp)
}

/// The output buffer, shared by tasks that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);
// SAFETY: only used to hand disjoint tiles of one output buffer to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Float `i` of the buffer.
    pub(super) fn at(&self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// `out[p * c_out + o] = epilogue(sum_k A[p, k] * W[k, o])` for every output pixel `p`.
pub(super) fn gemm(conv: &NhwcConv, data: &[f32], fields: &Fields, out: &mut [MaybeUninit<f32>]) {
    let plan = Plan::new(conv, out.len() / conv.c_out, fields.row);
    let c = SendPtr(out.as_mut_ptr().cast::<f32>());
    (0..plan.tasks()).into_par_iter().for_each(|task| {
        let (px, pn) = plan.task(task);
        let origins: Vec<*const f32> = px.clone().map(|p| data.as_ptr().wrapping_add(fields.origin_of(p))).collect();
        // SAFETY: the origins' fields lie inside `data` (asserted by the caller), and `out`
        // holds every pixel's row of C.
        unsafe { run_task(conv, &plan, (px, pn), &origins, c) };
    });
}

/// How a conv's GEMM is cut into K blocks and into tasks of (pixel block, panel range).
pub(super) struct Plan {
    /// Depth of the GEMM (`kh * kw * C_in`).
    k: usize,
    /// First depth of each K block and its runs from a field's origin.
    blocks: Vec<(usize, Vec<Run>)>,
    pixels: usize,
    groups: usize,
    panels: usize,
    /// Pixel blocks and panel ranges.
    pt: usize,
    nt: usize,
    per_task: usize,
    /// The first K block adds to what C already holds (a residual written there beforehand).
    onto_c: bool,
}

impl Plan {
    /// The plan for `pixels` output pixels whose kernel rows lie `row` floats apart.
    pub(super) fn new(conv: &NhwcConv, pixels: usize, row: usize) -> Self {
        let k = conv.kh * conv.kw * conv.c_in;
        let run = conv.kw * conv.c_in;
        // K blocks of equal depth; each is cut into runs at kernel-row boundaries.
        let depth = k.div_ceil(k.div_ceil(KC));
        let blocks = (0..k)
            .step_by(depth)
            .map(|k0| {
                let k1 = (k0 + depth).min(k);
                let runs = (k0 / run..k1.div_ceil(run))
                    .map(|ky| {
                        let (lo, hi) = (k0.max(ky * run), k1.min((ky + 1) * run));
                        Run { offset: ky * row + lo - ky * run, len: hi - lo }
                    })
                    .collect();
                (k0, runs)
            })
            .collect();
        // Tasks: pixel blocks, and panel ranges when there are too few pixel blocks for the
        // threads. Every pixel block reads all the weights, and every panel range reads all the
        // pixels. When the weights are the larger of the two (the late layers at small batches),
        // pixel blocks are as large as L2 allows and the threads share the panels instead.
        // Otherwise pixel blocks come in a multiple of the thread count. Either way they hold
        // equal numbers of MR-pixel groups (give or take one), so no thread waits on a short
        // last block.
        let panels = conv.c_out.div_ceil(NR);
        let threads = rayon::current_num_threads();
        let groups = pixels.div_ceil(MR);
        let pt = if conv.c_out >= pixels {
            pixels.div_ceil(MC_WEIGHT_HEAVY)
        } else {
            pixels.div_ceil(MC).next_multiple_of(threads).min(groups)
        };
        let nt = (3 * threads).div_ceil(pt).clamp(1, panels);
        let per_task = panels.div_ceil(nt);
        let nt = panels.div_ceil(per_task);
        Self { k, blocks, pixels, groups, panels, pt, nt, per_task, onto_c: false }
    }

    /// The same plan, adding its products to the values C holds before it runs (a residual).
    pub(super) fn onto_c(self) -> Self {
        Self { onto_c: true, ..self }
    }

    /// Number of tasks.
    pub(super) fn tasks(&self) -> usize {
        self.pt * self.nt
    }

    /// `true` when every task computes all output channels of its pixels.
    pub(super) fn whole_rows(&self) -> bool {
        self.nt == 1
    }

    /// The pixels and panels of task `t`.
    pub(super) fn task(&self, t: usize) -> (Range<usize>, Range<usize>) {
        let (tp, tn) = (t / self.nt, t % self.nt);
        let start = |b: usize| (self.groups * b / self.pt * MR).min(self.pixels);
        let pn = tn * self.per_task..(tn * self.per_task + self.per_task).min(self.panels);
        (start(tp)..start(tp + 1), pn)
    }
}

/// Runs one task of `plan`: output pixels `px` (whose fields start at `origins`) by panels `pn`.
///
/// # Safety
/// Every origin's field (as the plan's runs read it) must be readable, and `c` must point at C
/// (`plan.pixels` rows of `conv.c_out` floats); tasks run at once must not share pixels and panels.
pub(super) unsafe fn run_task(
    conv: &NhwcConv,
    plan: &Plan,
    (px, pn): (Range<usize>, Range<usize>),
    origins: &[*const f32],
    c: SendPtr,
) {
    let ldc = conv.c_out;
    // Each group's pixel origins, once per task (the last group's missing pixels repeat its first).
    let groups: Vec<[*const f32; MR]> =
        origins.chunks(MR).map(|group| std::array::from_fn(|i| *group.get(i).unwrap_or(&group[0]))).collect();
    // Panels in chunks, so this task's block of C for a chunk stays in L2 across K blocks.
    for chunk in pn.clone().step_by(PANELS_PER_CHUNK).map(|p| p..(p + PANELS_PER_CHUNK).min(pn.end)) {
        for (bi, (k0, runs)) in plan.blocks.iter().enumerate() {
            let (first, last) = (bi == 0, bi + 1 == plan.blocks.len());
            let depth = plan.blocks.get(bi + 1).map_or(plan.k, |b| b.0) - k0;
            for panel in chunk.clone() {
                let b = conv.weights[conv.align + (panel * plan.k + k0) * NR..].as_ptr();
                let nv = NR.min(conv.c_out - panel * NR);
                // The weights of the panel after this one (in this K block, or the chunk's first
                // of the next): each of its rows is one cache line. Fetching a share of them with
                // each group keeps the panel's first group from waiting on memory, which matters
                // where the weights are read once per layer (few pixels, wide layers).
                let next = match (panel + 1 < chunk.end, plan.blocks.get(bi + 1)) {
                    (true, _) => Some((panel + 1) * plan.k + k0),
                    (false, Some((k1, _))) => Some(chunk.start * plan.k + k1),
                    (false, None) => None,
                };
                let finish = last.then(|| &conv.epilogues[panel]);
                let share = depth.div_ceil(groups.len());
                for (g, &a) in groups.iter().enumerate() {
                    let pixel = px.start + g * MR;
                    if let Some(next) = next {
                        let from = (g * share).min(depth);
                        // (A pointer, not a slice: the next K block may be shallower than this one,
                        // and a prefetch past the weights is harmless.)
                        let rows = conv.weights.as_ptr().wrapping_add(conv.align + (next + from) * NR);
                        prefetch_rows(rows, NR, share.min(depth - from));
                    }
                    if first {
                        // The first K block writes C's lines for the first time: ask for the next
                        // group's lines now, so that its stores find them in cache.
                        let next = (pixel + MR).min(px.end);
                        prefetch_rows(c.at(next * ldc + panel * NR), ldc, (px.end - next).min(MR));
                    }
                    let accumulate = !first || plan.onto_c;
                    let tile = Tile { a, runs, b, c: c.at(pixel * ldc + panel * NR), ldc, accumulate, finish };
                    // SAFETY: the fields are readable and C's block lies in this task's pixels
                    // and panel (the caller's contract); `b` holds this block's rows of the
                    // panel; edges go through a scratch tile.
                    unsafe { run_partial(&tile, (px.end - pixel).min(MR), nv) };
                }
            }
        }
    }
}

/// Asks the CPU to bring the first cache line of each of `rows` rows (`ld` floats apart) into L1.
fn prefetch_rows(p: *const f32, ld: usize, rows: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in 0..rows {
        // SAFETY: a prefetch is only a hint; it never faults, whatever the address.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.wrapping_add(i * ld).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, ld, rows);
}

/// Runs a micro-tile of which only `mv` pixels and `nv` channels are real.
///
/// # Safety
/// As for [`run_tile`], except that C need only be valid for `mv` rows of `nv` values.
unsafe fn run_partial(t: &Tile, mv: usize, nv: usize) {
    if mv == MR && nv == NR {
        // SAFETY: a full tile, as the caller guarantees.
        return unsafe { run_tile(t) };
    }
    let mut tmp = [0f32; MR * NR];
    for i in 0..mv {
        for j in 0..nv {
            if t.accumulate {
                // SAFETY: (i, j) is a real element of C.
                tmp[i * NR + j] = unsafe { *t.c.add(i * t.ldc + j) };
            }
        }
    }
    let scratch = Tile { c: tmp.as_mut_ptr(), ldc: NR, runs: t.runs, ..*t };
    // SAFETY: the scratch tile is a full MR x NR block.
    unsafe { run_tile(&scratch) };
    for i in 0..mv {
        for j in 0..nv {
            // SAFETY: (i, j) is a real element of C.
            unsafe { *t.c.add(i * t.ldc + j) = tmp[i * NR + j] };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;
    use candle_core::Device;

    /// Stock Candle conv on the NCHW view, as the reference (ReLU on every channel).
    fn reference(x: &Tensor, w: &Tensor, b: &Tensor, c_in: usize, k: (usize, usize), s: usize, pad: Padding) -> Tensor {
        let (t, l, bo, r) = pad;
        let c_out = w.dim(0).unwrap();
        let xn = x.permute((0, 3, 1, 2)).unwrap().pad_with_zeros(2, t, bo).unwrap().pad_with_zeros(3, l, r).unwrap();
        let w4 = w.reshape((c_out, c_in, k.0, k.1)).unwrap();
        let y = xn.contiguous().unwrap().conv2d(&w4, 0, s, 1, 1).unwrap();
        let y = y.broadcast_add(&b.reshape((1, c_out, 1, 1)).unwrap()).unwrap().relu().unwrap();
        y.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn matches_candle_conv_for_kernels_strides_paddings_and_layouts() {
        let mut rng = Rng::new(0x5eed_000a);
        let dev = Device::Cpu;
        // (kernel, stride, padding, h, w, c_in, c_out)
        let cases = [
            ((3, 3), 2, (0, 0, 1, 1), 8, 8, 4, 13),
            ((3, 3), 2, (0, 0, 0, 0), 9, 9, 4, 13),
            ((3, 3), 1, (1, 1, 1, 1), 8, 7, 4, 16),
            ((1, 7), 1, (0, 3, 0, 3), 9, 9, 4, 13),
            ((7, 1), 1, (3, 0, 3, 0), 9, 10, 4, 13),
            ((5, 5), 1, (2, 2, 2, 2), 7, 7, 4, 33),
            ((1, 1), 1, (0, 0, 0, 0), 6, 6, 4, 13),
            // Two and three K blocks (depth 360 and 700), and thousands of pixels.
            ((3, 3), 1, (1, 1, 1, 1), 6, 9, 40, 20),
            ((1, 1), 1, (0, 0, 0, 0), 5, 7, 700, 37),
            ((3, 3), 1, (0, 0, 0, 0), 40, 41, 3, 37),
            ((3, 3), 2, (0, 0, 1, 1), 5, 41, 4, 13),
        ];
        for (k, s, pad, h, w, c_in, c_out) in cases {
            // Weights of variance 1/depth keep the outputs near 1 at every depth, so that one
            // absolute tolerance fits all cases (sums of 700 unit products reach 1e-4 rounding).
            let depth = c_in * k.0 * k.1;
            let wt = rng.randn(0.0, 1.0 / (depth as f32).sqrt(), (c_out, depth), &dev);
            let b = rng.randn(0.0, 1.0, c_out, &dev);
            let conv = NhwcConv::new(&wt, &b, c_in, k, s, Activation::Relu, c_out).unwrap();
            // Batch 2 as: a contiguous tensor, a channel slice of a wider one (offset and pixel
            // stride), and an NCHW tensor seen as NHWC.
            let wide = rng.randn(0.0, 1.0, (2, h, w, c_in + 5), &dev);
            let nchw = rng.randn(0.0, 1.0, (2, c_in, h, w), &dev);
            let slice = wide.narrow(3, 2, c_in).unwrap();
            for x in [slice.contiguous().unwrap(), slice, nchw.permute((0, 2, 3, 1)).unwrap()] {
                let got = conv.forward(&x, pad).unwrap();
                let want = reference(&x, &wt, &b, c_in, k, s, pad);
                let d = max_diff(&got, &want);
                assert!(d < 1e-4, "kernel {k:?} stride {s} pad {pad:?} {c_in}->{c_out}: diff {d}");
            }
        }
    }

    #[test]
    fn activation_covers_only_the_leading_channels() {
        let mut rng = Rng::new(0x5eed_000b);
        let dev = Device::Cpu;
        let x = rng.randn(0.0, 1.0, (1, 4, 4, 6), &dev);
        let wt = rng.randn(0.0, 1.0, (20, 6), &dev);
        let b = rng.randn(0.0, 1.0, 20, &dev);
        let conv = NhwcConv::new(&wt, &b, 6, (1, 1), 1, Activation::Relu6, 18).unwrap();
        let got = conv.forward(&x, (0, 0, 0, 0)).unwrap();
        let linear =
            NhwcConv::new(&wt, &b, 6, (1, 1), 1, Activation::None, 0).unwrap().forward(&x, (0, 0, 0, 0)).unwrap();
        let want = Tensor::cat(
            &[linear.narrow(3, 0, 18).unwrap().clamp(0f32, 6f32).unwrap(), linear.narrow(3, 18, 2).unwrap()],
            3,
        )
        .unwrap();
        assert_eq!(max_diff(&got, &want), 0.0);
        // The linear channels really do go negative, so the check above can fail.
        assert!(linear.narrow(3, 18, 2).unwrap().min_all().unwrap().to_scalar::<f32>().unwrap() < 0.0);
    }

    #[test]
    fn rejects_wrong_channel_count_tiny_input_and_bad_weights() {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((2, 3 * 9), DType::F32, &dev).unwrap();
        let bias = Tensor::zeros(2, DType::F32, &dev).unwrap();
        let conv = NhwcConv::new(&wt, &bias, 3, (3, 3), 1, Activation::None, 0).unwrap();
        let x = Tensor::zeros((1, 5, 5, 4), DType::F32, &dev).unwrap();
        assert!(conv.forward(&x, (0, 0, 0, 0)).is_err());
        let x = Tensor::zeros((1, 2, 2, 3), DType::F32, &dev).unwrap();
        assert!(conv.forward(&x, (0, 0, 0, 0)).is_err());
        assert!(NhwcConv::new(&wt, &bias, 4, (3, 3), 1, Activation::None, 0).is_err());
        assert!(
            NhwcConv::new(&wt, &Tensor::zeros(3, DType::F32, &dev).unwrap(), 3, (3, 3), 1, Activation::None, 0)
                .is_err()
        );
    }
}
