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

/// A right-hand matrix `K x N` that packs itself into [`NR`]-column panels for the GEMM.
///
/// Implemented by plain row-major matrices ([`MatB`]) and by convolutions that build their
/// im2col columns straight into the panels (`conv::ConvColumns`).
pub trait PackB: Sync {
    /// Columns (N).
    fn cols(&self) -> usize;
    /// Panics unless the source really has `k` rows.
    fn check_depth(&self, k: usize);
    /// Writes rows `p0..p0+kc`, columns `j0..j0+nc` as panels of [`NR`] columns:
    /// `dst[panel * kc * NR + p * NR + col]`, zero past column `nc`.
    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]);
}

impl PackB for MatB<'_> {
    fn cols(&self) -> usize {
        self.n
    }

    fn check_depth(&self, k: usize) {
        assert!(k == 0 || self.n == 0 || self.data.len() >= (k - 1) * self.ld + self.n, "B too small");
    }

    fn pack(&self, p0: usize, kc: usize, j0: usize, nc: usize, dst: &mut [f32]) {
        // Row by row: each source row is read sequentially and spread over the panels.
        let panels = nc.div_ceil(NR);
        for p in 0..kc {
            let row = &self.data[(p0 + p) * self.ld + j0..][..nc];
            for jp in 0..panels {
                let d = &mut dst[jp * kc * NR + p * NR..][..NR];
                let part = &row[jp * NR..(jp * NR + NR).min(nc)];
                if part.len() == NR {
                    d.copy_from_slice(part);
                } else {
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
    static PACKED_B: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
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
    PACKED_B.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.resize(KC * panels * NR, 0.0);
        let depth = k.div_ceil(k.div_ceil(KC));
        let mut p0 = 0;
        while p0 < k {
            let kc = depth.min(k - p0);
            b.pack(p0, kc, cols.start, nc, &mut buf);
            let (first, last) = (p0 == 0, p0 + kc == k);
            // A block of MC rows (in L2) meets every B panel (in L1) before the next block.
            for i0 in rows.clone().step_by(MC) {
                let block = i0..(i0 + MC).min(rows.end);
                let stores: [Store; MC / MR] = std::array::from_fn(|q| {
                    let i = (i0 + q * MR).min(block.end);
                    Store::new(ep, i, MR.min(block.end - i), first, last)
                });
                for jp in 0..panels {
                    let bp = &buf[jp * kc * NR..(jp + 1) * kc * NR];
                    let j = cols.start + jp * NR;
                    let nv = NR.min(cols.end - j);
                    for (i, store) in block.clone().step_by(MR).zip(&stores) {
                        let mv = MR.min(block.end - i);
                        let ap = &a.panel(i / MR, p0)[..kc * MR];
                        // SAFETY: rows i..i+mv and columns j..j+nv lie inside this task's tile.
                        unsafe { micro_tile(kc, ap, bp, out.0.add(i * ldc + j), ldc, mv, nv, store) };
                    }
                }
            }
            p0 += kc;
        }
    });
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
unsafe fn micro_tile(kc: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, mv: usize, nv: usize, st: &Store) {
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
/// `c` must be valid for a full `MR x NR` block at stride `ldc`; `a` and `b` hold `kc` packed steps.
#[inline]
unsafe fn kernel(kc: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, st: &Store) {
    debug_assert!(a.len() >= kc * MR && b.len() >= kc * NR);
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above); bounds as documented.
        return unsafe { x86::kernel_6x16(kc, a.as_ptr(), b.as_ptr(), c, ldc, st) };
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
unsafe fn portable_kernel(kc: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, st: &Store) {
    let mut acc = [[0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
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

    use super::{Activation, MR, NR, Store};

    // The kernel's register layout is written for exactly this tile.
    const _: () = assert!(MR == 6 && NR == 16);

    /// The 6x16 AVX2/FMA micro-kernel: twelve accumulators, two B loads and six broadcasts per step.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` holds `kc * MR` floats, `b` holds `kc * NR`, and `c`
    /// is valid for `MR` rows of `NR` floats at stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_6x16(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, st: &Store) {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            // SAFETY: `kc` steps of MR / NR floats are in bounds.
            unsafe {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(r));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                }
                a = a.add(MR);
                b = b.add(NR);
            }
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
                kernel(kc, &a, &b, fast.as_mut_ptr(), NR, &st);
                portable_kernel(kc, &a, &b, plain.as_mut_ptr(), NR, &st);
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
