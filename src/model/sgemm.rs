//! Single-precision GEMM for frozen conv weights: `C = act(A·B + bias)`, with A packed once at load.
//!
//! BLIS-style blocking. A (the weights, `M x K`) is packed at load time into panels of [`MR`] rows;
//! B (activations or im2col columns, `K x N`, row-major) is packed per task into panels of [`NR`]
//! columns; a 6x16 micro-kernel keeps its block of C in twelve AVX registers and runs the K loop
//! with FMAs. Tasks are (row block, column block) tiles spread over rayon's threads; each keeps its
//! packed B (`KC x NC`, in L2) while it walks the row panels of A. Bias and activation are applied
//! when the last K block is stored, so C is written once per K block and never revisited.
//! Without AVX2 + FMA a portable kernel with the same packing runs instead.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::depthwise::Activation;

/// Rows of A (output channels) per micro-kernel call.
pub const MR: usize = 6;
/// Columns of B (output pixels) per micro-kernel call.
pub const NR: usize = 16;
/// Largest depth of one K block (packed B panel: `KC x NR` floats = 20 KiB, stays in L1). The
/// depth is split into equal blocks no deeper than this, so no block is a short remainder.
const KC: usize = 320;
/// Rows of A per L2-resident block (a multiple of [`MR`]).
const MC: usize = 72;
/// Columns per task (a multiple of [`NR`]); the packed `KC x NC` B block stays in L2.
const NC: usize = 128;

/// A weight matrix `[M, K]` packed into panels of [`MR`] rows: `data[panel][k][row]`, zero-padded.
#[derive(Debug, Clone)]
pub struct PackedA {
    m: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Packs a row-major `[m, k]` matrix.
    pub fn new(w: &[f32], m: usize, k: usize) -> Self {
        assert_eq!(w.len(), m * k, "weight matrix must have m*k values");
        let panels = m.div_ceil(MR);
        let mut data = vec![0f32; panels * MR * k];
        for (i, row) in w.chunks_exact(k.max(1)).enumerate().take(m) {
            let panel = &mut data[(i / MR) * MR * k..];
            for (p, &v) in row.iter().enumerate() {
                panel[p * MR + i % MR] = v;
            }
        }
        Self { m, k, data }
    }

    /// Rows (output channels).
    pub fn rows(&self) -> usize {
        self.m
    }

    /// The `kc` packed values of row panel `panel` starting at depth `p0`.
    fn panel(&self, panel: usize, p0: usize) -> &[f32] {
        &self.data[panel * MR * self.k + p0 * MR..]
    }
}

/// What happens to each output value when it is stored: `act(v + bias[row])` for rows below
/// `act_rows`, `v + bias[row]` for the rest.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a> {
    /// One bias per row of A.
    pub bias: &'a [f32],
    /// Activation for the first `act_rows` rows.
    pub act: Activation,
    /// Rows `0..act_rows` get the activation.
    pub act_rows: usize,
}

/// The right-hand matrix: `K x N` floats, row-major with row stride `ld`.
#[derive(Debug, Clone, Copy)]
pub struct MatB<'a> {
    /// The values; element `(p, j)` is `data[p * ld + j]`.
    pub data: &'a [f32],
    /// Row stride.
    pub ld: usize,
    /// Columns.
    pub n: usize,
}

/// Where the micro-kernel reads one [`NR`]-column panel of B for the current K block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    /// Packed into the task's buffer by [`PackB::pack`].
    Packed,
    /// Read in place: row `p` of the block is the [`NR`] floats at
    /// `source()[base + offsets[p]..]` (`base` is this value, `offsets` come from `pack`).
    Direct(usize),
}

/// A right-hand matrix `K x N` that packs itself into [`NR`]-column panels for the GEMM.
///
/// Implemented by plain row-major matrices ([`MatB`]) and by convolutions that build their
/// im2col columns straight into the panels (`conv::ConvColumns`). Panels whose rows already lie
/// as [`NR`] contiguous floats in the source can be left unpacked and read in place.
pub trait PackB: Sync {
    /// Columns (N).
    fn cols(&self) -> usize;
    /// Panics unless the source really has `k` rows.
    fn check_depth(&self, k: usize);
    /// The values that [`Panel::Direct`] panels are read from.
    fn source(&self) -> &[f32] {
        &[]
    }
    /// Prepares rows `p0..p0+kc`, columns `j0..j0+nc` as panels of [`NR`] columns: each panel is
    /// either packed into `block.packed[panel * kc * NR + p * NR + col]` (zero past column `nc`)
    /// or marked [`Panel::Direct`] in `block.how` (all [`Panel::Packed`] on entry), in which case
    /// `block.offsets` must hold the `kc` row offsets into [`PackB::source`].
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, block: &mut BlockB);
}

/// One K block of B as the micro-kernels read it (per-thread scratch of the GEMM).
#[derive(Debug, Default)]
pub struct BlockB {
    /// Packed panels, `kc * NR` floats each (holes where a panel is direct).
    pub packed: Vec<f32>,
    /// How each panel is read.
    pub how: Vec<Panel>,
    /// Row offsets of direct panels into the source.
    pub offsets: Vec<usize>,
}

impl PackB for MatB<'_> {
    fn cols(&self) -> usize {
        self.n
    }

    fn check_depth(&self, k: usize) {
        assert!(k == 0 || self.n == 0 || self.data.len() >= (k - 1) * self.ld + self.n, "B too small");
    }

    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, block: &mut BlockB) {
        // Panel by panel, so the packed panel is written sequentially; whole panel rows are
        // copied as fixed-size arrays (plain vector moves, no memcpy call).
        let src = &self.data[p0 * self.ld + j0..];
        for (jp, panel) in block.packed[..nc.div_ceil(NR) * kc * NR].chunks_exact_mut(kc * NR).enumerate() {
            let j = jp * NR;
            if j + NR <= nc {
                for (p, d) in panel.chunks_exact_mut(NR).enumerate() {
                    let d: &mut [f32; NR] = d.try_into().unwrap();
                    *d = src[p * self.ld + j..][..NR].try_into().unwrap();
                }
            } else {
                for (p, d) in panel.chunks_exact_mut(NR).enumerate() {
                    let part = &src[p * self.ld + j..p * self.ld + nc];
                    d[..part.len()].copy_from_slice(part);
                    d[part.len()..].fill(0.0);
                }
            }
        }
    }
}

/// `c[i * ldc + j] = epilogue(sum_p a[i, p] * b[p, j])` for `i < a.rows()`, `j < b.cols()`.
///
/// `c` may be uninitialised: every element in range is written before it is read.
pub fn gemm(a: &PackedA, b: &impl PackB, c: &mut [MaybeUninit<f32>], ldc: usize, ep: Epilogue) {
    let (m, k, n) = (a.m, a.k, b.cols());
    assert!(ep.bias.len() >= m, "one bias per output row");
    assert!(ldc >= n && (m == 0 || n == 0 || c.len() >= (m - 1) * ldc + n), "C too small");
    b.check_depth(k);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for i in 0..m {
            for v in &mut c[i * ldc..i * ldc + n] {
                v.write(apply(ep, i, 0.0));
            }
        }
        return;
    }
    // Tasks are column blocks over all rows, so each packed B block serves every row of A; rows
    // are split only when there are too few column blocks to keep the threads busy.
    // Column blocks of equal width (a multiple of NR, at most NC), so no task is a short tail.
    let nt = n.div_ceil(NC);
    let width = n.div_ceil(nt).div_ceil(NR) * NR;
    let nt = n.div_ceil(width);
    let want = 3 * rayon::current_num_threads();
    let mt = want.div_ceil(nt).clamp(1, m.div_ceil(MR));
    let rows_per_task = m.div_ceil(mt).div_ceil(MR) * MR;
    let mt = m.div_ceil(rows_per_task);
    let out = SendPtr(c.as_mut_ptr().cast::<f32>());
    (0..mt * nt).into_par_iter().for_each(|t| {
        let (ti, tj) = (t % mt, t / mt);
        let rows = ti * rows_per_task..(ti * rows_per_task + rows_per_task).min(m);
        let cols = tj * width..(tj * width + width).min(n);
        // SAFETY: tiles cover disjoint rectangles of C, all inside the bounds asserted above.
        unsafe { tile(a, b, out, ldc, ep, rows, cols) };
    });
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used to hand disjoint tiles of one output buffer to rayon tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

thread_local! {
    static SCRATCH: RefCell<BlockB> = RefCell::new(BlockB::default());
}

/// One task: rows `rows` (starting on an MR boundary) by columns `cols` of C.
///
/// # Safety
/// `out` must point at a C buffer holding the whole tile at row stride `ldc`.
unsafe fn tile(
    a: &PackedA,
    b: &impl PackB,
    out: SendPtr,
    ldc: usize,
    ep: Epilogue,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    let k = a.k;
    let nc = cols.len();
    let panels = nc.div_ceil(NR);
    SCRATCH.with(|scratch| {
        let block = &mut *scratch.borrow_mut();
        block.packed.resize(KC * panels * NR, 0.0);
        let depth = k.div_ceil(k.div_ceil(KC));
        let mut p0 = 0;
        while p0 < k {
            let kc = depth.min(k - p0);
            block.how.clear();
            block.how.resize(panels, Panel::Packed);
            block.offsets.clear();
            b.pack(p0, kc, cols.start, nc, block);
            let BlockB { packed, how, offsets } = &*block;
            // Direct panels read the source in place: check every row they touch is inside it.
            let src = b.source();
            let reach = offsets.iter().max().map_or(0, |&o| o + NR);
            for &h in how.iter() {
                if let Panel::Direct(base) = h {
                    assert!(offsets.len() == kc && base + reach <= src.len(), "direct panel outside B");
                }
            }
            let (first, last) = (p0 == 0, p0 + kc == k);
            // A block of MC rows (in L2) meets every B panel (in L1) before the next block.
            for i0 in rows.clone().step_by(MC) {
                let block = i0..(i0 + MC).min(rows.end);
                let stores: [Store; MC / MR] = std::array::from_fn(|q| {
                    let i = (i0 + q * MR).min(block.end);
                    Store::new(ep, i, MR.min(block.end - i), first, last)
                });
                for (jp, &h) in how.iter().enumerate() {
                    let j = cols.start + jp * NR;
                    let nv = NR.min(cols.end - j);
                    for (i, store) in block.clone().step_by(MR).zip(&stores) {
                        let mv = MR.min(block.end - i);
                        let ap = &a.panel(i / MR, p0)[..kc * MR];
                        let c = out.0.wrapping_add(i * ldc + j);
                        // SAFETY: rows i..i+mv and columns j..j+nv lie inside this task's tile; B
                        // rows are inside `packed` (kc * NR per panel) or `src` (checked above).
                        unsafe {
                            match h {
                                Panel::Packed => {
                                    let bp = &packed[jp * kc * NR..(jp + 1) * kc * NR];
                                    micro_tile(kc, ap, PackedRows(bp.as_ptr()), c, ldc, mv, nv, store)
                                }
                                Panel::Direct(base) => {
                                    let rows = DirectRows { base: src.as_ptr().add(base), offsets: offsets.as_ptr() };
                                    // The first rows of A to meet this panel also pull the next
                                    // direct panel's rows towards L1: read in place, they are
                                    // scattered over the input where the hardware prefetcher
                                    // does not follow.
                                    match how.get(jp + 1) {
                                        Some(&Panel::Direct(next)) if i == block.start => {
                                            let next = src.as_ptr().wrapping_add(next);
                                            micro_tile(kc, ap, Prefetching { rows, next }, c, ldc, mv, nv, store)
                                        }
                                        _ => micro_tile(kc, ap, rows, c, ldc, mv, nv, store),
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p0 += kc;
        }
    });
}

/// Where the micro-kernel finds row `p` of its B panel.
trait Rows: Copy {
    /// Pointer to the [`NR`] floats of row `p`.
    ///
    /// # Safety
    /// `p` must be below the panel's depth.
    unsafe fn row(self, p: usize) -> *const f32;
}

/// A packed panel: rows are consecutive.
#[derive(Clone, Copy)]
struct PackedRows(*const f32);

impl Rows for PackedRows {
    #[inline(always)]
    unsafe fn row(self, p: usize) -> *const f32 {
        // SAFETY: the caller keeps p inside the panel.
        unsafe { self.0.add(p * NR) }
    }
}

/// A panel read in place: row `p` starts `offsets[p]` floats after `base`.
#[derive(Clone, Copy)]
struct DirectRows {
    base: *const f32,
    offsets: *const usize,
}

impl Rows for DirectRows {
    #[inline(always)]
    unsafe fn row(self, p: usize) -> *const f32 {
        // SAFETY: the caller keeps p inside the offsets table, whose rows lie in the source.
        unsafe { self.base.add(*self.offsets.add(p)) }
    }
}

/// A panel read in place that, row by row, prefetches the same rows of another such panel.
#[derive(Clone, Copy)]
struct Prefetching {
    rows: DirectRows,
    /// Base of the panel to prefetch (same row offsets).
    next: *const f32,
}

impl Rows for Prefetching {
    #[inline(always)]
    unsafe fn row(self, p: usize) -> *const f32 {
        // SAFETY: as for `DirectRows`; a prefetch never faults, whatever the address.
        unsafe {
            let off = *self.rows.offsets.add(p);
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                let at = self.next.wrapping_add(off);
                // A row of NR floats spans two cache lines unless aligned.
                _mm_prefetch::<_MM_HINT_T0>(at.cast());
                _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(NR - 1).cast());
            }
            self.rows.base.add(off)
        }
    }
}

/// How one micro-tile is stored.
struct Store {
    /// Add what C already holds (not the first K block).
    accumulate: bool,
    /// Add the bias and apply the activation (the last K block).
    finish: bool,
    bias: [f32; MR],
    act: [Activation; MR],
}

impl Store {
    fn new(ep: Epilogue, row0: usize, rows: usize, first: bool, last: bool) -> Self {
        let mut bias = [0f32; MR];
        let mut act = [Activation::None; MR];
        for r in 0..rows {
            bias[r] = ep.bias[row0 + r];
            if row0 + r < ep.act_rows {
                act[r] = ep.act;
            }
        }
        Self { accumulate: !first, finish: last, bias, act }
    }
}

fn apply(ep: Epilogue, row: usize, v: f32) -> f32 {
    let v = v + ep.bias[row];
    if row < ep.act_rows { ep.act.apply(v) } else { v }
}

/// Computes one `mv x nv` block of C (at most `MR x NR`), through a scratch tile at the edges.
///
/// # Safety
/// `c` must be valid for `mv` rows of `nv` values at stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn micro_tile(kc: usize, a: &[f32], b: impl Rows, c: *mut f32, ldc: usize, mv: usize, nv: usize, st: &Store) {
    if mv == MR && nv == NR {
        // SAFETY: a full tile is in bounds by the caller's contract.
        unsafe { kernel(kc, a, b, c, ldc, st) };
        return;
    }
    let mut tmp = [0f32; MR * NR];
    for r in 0..mv {
        for j in 0..nv {
            // SAFETY: (r, j) is inside the valid block.
            if st.accumulate {
                tmp[r * NR + j] = unsafe { *c.add(r * ldc + j) };
            }
        }
    }
    // SAFETY: the scratch tile is a full MR x NR block at stride NR.
    unsafe { kernel(kc, a, b, tmp.as_mut_ptr(), NR, st) };
    for r in 0..mv {
        for j in 0..nv {
            // SAFETY: (r, j) is inside the valid block.
            unsafe { *c.add(r * ldc + j) = tmp[r * NR + j] };
        }
    }
}

/// Dispatches to the fastest micro-kernel this CPU runs.
///
/// # Safety
/// `c` must be valid for a full `MR x NR` block at stride `ldc`; `a` holds `kc` packed steps and
/// `b` has `kc` readable rows.
#[inline]
unsafe fn kernel(kc: usize, a: &[f32], b: impl Rows, c: *mut f32, ldc: usize, st: &Store) {
    debug_assert!(a.len() >= kc * MR);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above); bounds as documented.
        return unsafe { x86::kernel_6x16(kc, a.as_ptr(), b, c, ldc, st) };
    }
    // SAFETY: same contract.
    unsafe { portable_kernel(kc, a, b, c, ldc, st) }
}

/// `true` when the AVX2 + FMA micro-kernel can run.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Plain-Rust micro-kernel (any CPU; LLVM vectorises the inner loops).
///
/// # Safety
/// As for [`kernel`].
unsafe fn portable_kernel(kc: usize, a: &[f32], b: impl Rows, c: *mut f32, ldc: usize, st: &Store) {
    let mut acc = [[0f32; NR]; MR];
    for (p, ap) in a.chunks_exact(MR).take(kc).enumerate() {
        // SAFETY: p < kc, so the row is readable by the caller's contract.
        let bp = unsafe { std::slice::from_raw_parts(b.row(p), NR) };
        for (row, &av) in acc.iter_mut().zip(ap) {
            for (v, &bv) in row.iter_mut().zip(bp) {
                *v += av * bv;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            // SAFETY: (r, j) is inside the full block by the caller's contract.
            let dst = unsafe { &mut *c.add(r * ldc + j) };
            let mut v = if st.accumulate { v + *dst } else { v };
            if st.finish {
                v = st.act[r].apply(v + st.bias[r]);
            }
            *dst = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Activation, MR, NR, Rows, Store};

    // The kernel's register layout is written for exactly this tile.
    const _: () = assert!(MR == 6 && NR == 16);

    /// The 6x16 AVX2/FMA micro-kernel: twelve accumulators, two B loads and six broadcasts per step.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` holds `kc * MR` floats, `b` has `kc` readable rows of
    /// `NR` floats, and `c` is valid for `MR` rows of `NR` floats at stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_6x16(kc: usize, a: *const f32, b: impl Rows, c: *mut f32, ldc: usize, st: &Store) {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let step = |acc: &mut [[__m256; 2]; MR], a: *const f32, p: usize| {
            // SAFETY: the callers below keep `p < kc`, so A's step and B's row are in bounds.
            unsafe {
                let row = b.row(p);
                let b0 = _mm256_loadu_ps(row);
                let b1 = _mm256_loadu_ps(row.add(8));
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(r));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                }
            }
        };
        // Four steps per iteration: fewer loop branches and address updates per FMA.
        let (mut a, mut p) = (a, 0);
        while p + 4 <= kc {
            for u in 0..4 {
                step(&mut acc, a, p + u);
                a = a.wrapping_add(MR);
            }
            p += 4;
        }
        while p < kc {
            step(&mut acc, a, p);
            a = a.wrapping_add(MR);
            p += 1;
        }
        let zero = _mm256_setzero_ps();
        let six = _mm256_set1_ps(6.0);
        for (r, row) in acc.iter().enumerate() {
            // SAFETY: row r of the block is in bounds.
            unsafe {
                let dst = c.add(r * ldc);
                let (mut v0, mut v1) = (row[0], row[1]);
                if st.accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(dst));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(dst.add(8)));
                }
                if st.finish {
                    let bias = _mm256_set1_ps(st.bias[r]);
                    v0 = _mm256_add_ps(v0, bias);
                    v1 = _mm256_add_ps(v1, bias);
                    match st.act[r] {
                        Activation::None => {}
                        Activation::Relu => {
                            v0 = _mm256_max_ps(v0, zero);
                            v1 = _mm256_max_ps(v1, zero);
                        }
                        Activation::Relu6 => {
                            v0 = _mm256_min_ps(_mm256_max_ps(v0, zero), six);
                            v1 = _mm256_min_ps(_mm256_max_ps(v1, zero), six);
                        }
                    }
                }
                _mm256_storeu_ps(dst, v0);
                _mm256_storeu_ps(dst.add(8), v1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Allocates `[a.rows(), b.cols()]` and fills it with [`gemm`].
    fn gemm_new(a: &PackedA, b: &impl PackB, ep: Epilogue) -> Vec<f32> {
        let (n, len) = (b.cols(), a.m * b.cols());
        let mut c = Vec::with_capacity(len);
        gemm(a, b, &mut c.spare_capacity_mut()[..len], n, ep);
        // SAFETY: `gemm` wrote all `a.m * n` values (ldc = n, so the block is dense).
        unsafe { c.set_len(len) };
        c
    }

    fn naive(w: &[f32], m: usize, k: usize, b: &[f32], n: usize, ep: Epilogue) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| w[i * k + p] as f64 * b[p * n + j] as f64).sum();
                out[i * n + j] = apply(ep, i, s as f32);
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn matches_naive_product_on_edge_shapes() {
        // Shapes straddling every block boundary: MR, NR, KC, MC and NC, plus tiny ones.
        for &(m, k, n) in
            &[(1, 1, 1), (5, 3, 7), (6, 16, 16), (7, 257, 17), (73, 300, 193), (130, 520, 40), (64, 27, 400)]
        {
            let w = values(m * k, 1);
            let b = values(k * n, 2);
            let bias = values(m, 3);
            for (act, act_rows) in [(Activation::None, m), (Activation::Relu, m / 2), (Activation::Relu6, m)] {
                let ep = Epilogue { bias: &bias, act, act_rows };
                let got = gemm_new(&PackedA::new(&w, m, k), &MatB { data: &b, ld: n, n }, ep);
                let want = naive(&w, m, k, &b, n, ep);
                let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
                assert!(worst < 1e-3, "{m}x{k}x{n} {act:?}: max error {worst}");
            }
        }
    }

    #[test]
    fn portable_kernel_matches_the_dispatched_one() {
        let kc = 37;
        let a = values(kc * MR, 6);
        let b = values(kc * NR, 7);
        let bias = values(MR, 8);
        let ep = Epilogue { bias: &bias, act: Activation::Relu6, act_rows: 4 };
        for (first, last) in [(true, true), (false, true), (true, false)] {
            let st = Store::new(ep, 0, MR, first, last);
            let start = values(MR * NR, 9);
            let (mut fast, mut plain) = (start.clone(), start);
            // SAFETY: both buffers are full MR x NR tiles at stride NR.
            unsafe {
                kernel(kc, &a, PackedRows(b.as_ptr()), fast.as_mut_ptr(), NR, &st);
                portable_kernel(kc, &a, PackedRows(b.as_ptr()), plain.as_mut_ptr(), NR, &st);
            }
            let worst = fast.iter().zip(&plain).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "first {first} last {last}: {worst}");
        }
    }

    #[test]
    fn respects_row_strides_of_b_and_c() {
        let (m, k, n, ldb, ldc) = (9, 20, 21, 30, 25);
        let w = values(m * k, 4);
        let b = values(k * ldb, 5);
        let bias = vec![0.5; m];
        let ep = Epilogue { bias: &bias, act: Activation::None, act_rows: 0 };
        let mut c = vec![MaybeUninit::new(f32::NAN); m * ldc];
        gemm(&PackedA::new(&w, m, k), &MatB { data: &b, ld: ldb, n }, &mut c, ldc, ep);
        for i in 0..m {
            for j in 0..ldc {
                // SAFETY: every element was initialised (NaN or written).
                let got = unsafe { c[i * ldc + j].assume_init() };
                if j < n {
                    let want = 0.5 + (0..k).map(|p| w[i * k + p] * b[p * ldb + j]).sum::<f32>();
                    assert!((got - want).abs() < 1e-4, "({i},{j}): {got} vs {want}");
                } else {
                    assert!(got.is_nan(), "({i},{j}) outside the n columns was overwritten");
                }
            }
        }
    }
}
