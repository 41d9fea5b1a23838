//! The micro-kernel of the NHWC convolutions: [`MR`] output pixels by [`NR`] output channels.
//!
//! The pixels' input values are read in place (each pixel has its own pointer and the K loop
//! walks runs of contiguous values from it) and broadcast; the weights come packed as `NR`-wide
//! rows. Twelve AVX registers hold the 6x16 tile of C for the whole K block.

/// Output pixels per micro-kernel call.
pub const MR: usize = 6;
/// Output channels per micro-kernel call.
pub const NR: usize = 16;

/// A run of the K loop: `len` steps that read values `offset..offset + len` from every pixel's
/// pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Offset from the pixel's window origin.
    pub offset: usize,
    /// Steps (contiguous input values).
    pub len: usize,
}

/// Bias and clamp applied to one panel of [`NR`] output channels when the last K block is stored:
/// `min(max(v + bias, lo), hi)`.
#[derive(Debug, Clone)]
pub struct PanelEpilogue {
    /// Bias per channel.
    pub bias: [f32; NR],
    /// Lower clamp per channel (0 for ReLU, `-inf` for none).
    pub lo: [f32; NR],
    /// Upper clamp per channel (6 for ReLU6, `+inf` otherwise).
    pub hi: [f32; NR],
}

/// One micro-tile: its pixels' window origins, the runs of the K block, its packed weights and
/// where its `MR x NR` block of C lives.
pub struct Tile<'a> {
    /// Window origin of each pixel.
    pub a: [*const f32; MR],
    /// The K block, as runs from each origin.
    pub runs: &'a [Run],
    /// Packed weights: one row of [`NR`] floats per K step, `sum(runs.len)` rows.
    pub b: *const f32,
    /// Top-left of the C block; row `i` (pixel) at `c + i * ldc`.
    pub c: *mut f32,
    /// Row stride of C.
    pub ldc: usize,
    /// Add what C already holds (not the first K block).
    pub accumulate: bool,
    /// Bias and clamp (the last K block).
    pub finish: Option<&'a PanelEpilogue>,
}

/// Runs one full `MR x NR` micro-tile with the fastest kernel this CPU has.
///
/// # Safety
/// Every pointer of `t.a` must be readable at every run's `offset..offset + len`; `t.b` must hold
/// `sum(len) * NR` floats; `t.c` must be valid for `MR` rows of `NR` floats at stride `t.ldc`.
pub unsafe fn run_tile(t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    if crate::layer::has_avx2_fma() {
        // SAFETY: AVX2 and FMA are present; the bounds are the caller's contract.
        return unsafe { avx2(t) };
    }
    // SAFETY: same contract.
    unsafe { portable(t) }
}

/// Plain-Rust kernel (any CPU).
///
/// # Safety
/// As for [`run_tile`].
unsafe fn portable(t: &Tile) {
    let mut acc = [[0f32; NR]; MR];
    let mut w = t.b;
    for run in t.runs {
        for j in 0..run.len {
            // SAFETY: the caller's contract covers these reads.
            let b = unsafe { std::slice::from_raw_parts(w, NR) };
            for (row, &a) in acc.iter_mut().zip(&t.a) {
                let x = unsafe { *a.add(run.offset + j) };
                for (v, &bv) in row.iter_mut().zip(b) {
                    *v += x * bv;
                }
            }
            w = w.wrapping_add(NR);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            // SAFETY: (i, j) is inside the C block.
            let dst = unsafe { &mut *t.c.add(i * t.ldc + j) };
            let mut v = if t.accumulate { v + *dst } else { v };
            if let Some(e) = t.finish {
                v = (v + e.bias[j]).max(e.lo[j]).min(e.hi[j]);
            }
            *dst = v;
        }
    }
}

/// AVX2 + FMA kernel.
///
/// # Safety
/// As for [`run_tile`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2(t: &Tile) {
    use std::arch::x86_64::*;
    // SAFETY (whole body): every read and write is inside the ranges of the caller's contract.
    unsafe {
        let mut c = [[_mm256_setzero_ps(); 2]; MR];
        let mut w = t.b;
        macro_rules! step {
            ($a:expr, $j:expr, $w:expr) => {{
                let b0 = _mm256_loadu_ps($w);
                let b1 = _mm256_loadu_ps($w.add(8));
                for i in 0..MR {
                    let x = _mm256_broadcast_ss(&*$a[i].add($j));
                    c[i][0] = _mm256_fmadd_ps(x, b0, c[i][0]);
                    c[i][1] = _mm256_fmadd_ps(x, b1, c[i][1]);
                }
            }};
        }
        for run in t.runs {
            let a: [*const f32; MR] = std::array::from_fn(|i| t.a[i].add(run.offset));
            let mut j = 0;
            while j + 4 <= run.len {
                step!(a, j, w);
                step!(a, j + 1, w.add(NR));
                step!(a, j + 2, w.add(2 * NR));
                step!(a, j + 3, w.add(3 * NR));
                w = w.add(4 * NR);
                j += 4;
            }
            while j < run.len {
                step!(a, j, w);
                w = w.add(NR);
                j += 1;
            }
        }
        for (i, row) in c.iter().enumerate() {
            for (h, &v) in row.iter().enumerate() {
                let p = t.c.add(i * t.ldc + 8 * h);
                let mut v = v;
                if t.accumulate {
                    v = _mm256_add_ps(v, _mm256_loadu_ps(p));
                }
                if let Some(e) = t.finish {
                    v = _mm256_add_ps(v, _mm256_loadu_ps(e.bias.as_ptr().add(8 * h)));
                    v = _mm256_max_ps(v, _mm256_loadu_ps(e.lo.as_ptr().add(8 * h)));
                    v = _mm256_min_ps(v, _mm256_loadu_ps(e.hi.as_ptr().add(8 * h)));
                }
                _mm256_storeu_ps(p, v);
            }
        }
    }
}
