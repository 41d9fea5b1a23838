//! Convolutions as Winograd minimal filtering: fewer multiplies, on the same GEMM kernel.
//!
//! A tile of neighbouring output pixels reads one patch of input pixels. In the Winograd domain
//! the conv is `P` independent products, one per element `xi` of the patch's transform:
//! `M_xi[tile, o] = sum_c V_xi[tile, c] * U_xi[c, o]`, with `V` the patch's transform and `U`
//! the kernel's (done once, at load); the tile's pixels are a transform of `M`. The transforms
//! only add and scale, so the work is in the `P` products, which are GEMMs of the ordinary conv
//! kernel ([`super::conv`]) as 1x1 convs.
//!
//! - [`Winograd3x3`]: 3x3 convs as F(2x2, 3x3), 16 products per 2x2 tile (36 multiplies in the
//!   direct conv, 2.25x fewer).
//! - [`Winograd7`]: 1x7 and 7x1 convs as F(2, 7), 8 products per pair of pixels (14 in the direct
//!   conv, 1.75x fewer).
//!
//! Both run on one engine (`run_tiles`): each task takes a block of tiles and keeps it near its
//! core: it transforms the block's input, runs the `P` GEMMs one after another, and writes the
//! block's pixels. So a layer has one fork-join, not one per product, and `V` and `M` never go
//! out to memory.

mod f2_7;
mod f2x2_3x3;

use std::cell::Cell;
use std::ops::Range;

pub use f2_7::{Transforms, Winograd7};
pub use f2x2_3x3::Winograd3x3;

use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use super::conv::{NhwcConv, Plan, SendPtr, run_task};
use crate::layer::Activation;

/// Tiles per task, at most: six micro-kernel rows. A block's transformed input and products
/// (`P x (C_in + C_out)` floats per tile, 442 KB for F(2, 7) at 192 -> 192 channels) stay in L2 or
/// near it. Alone and on one core, F(2, 7) at 192 -> 192 channels on 4 images of 17x17 ran 1.31,
/// 1.41, 1.37 and 1.35x as fast as the direct conv with blocks of 24, 36, 48 and 72 tiles.
const TILES_PER_BLOCK: usize = 36;

thread_local! {
    /// Per-thread scratch: a block's transformed input and products.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// A conv's weight and bias as f32 vectors, checked against `c_in` channels of `taps` taps:
/// returns `(weight [C_out, C_in * taps], bias, C_out)`.
fn load_f32(weight: &Tensor, bias: &Tensor, c_in: usize, taps: usize) -> Result<(Vec<f32>, Vec<f32>, usize)> {
    let (c_out, k) = weight.dims2()?;
    if c_in == 0 || k != c_in * taps {
        candle_core::bail!("winograd conv weight {:?} does not fit {c_in} channels of {taps} taps", weight.shape());
    }
    let w = weight.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let bias = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    if bias.len() != c_out {
        candle_core::bail!("conv bias has {} values for {c_out} channels", bias.len());
    }
    Ok((w, bias, c_out))
}

/// The products' weights as 1x1 convs without bias or activation, from `U` laid out as
/// `[P][C_out][C_in]`.
fn products(u: &[f32], c_out: usize, c_in: usize, device: &Device) -> Result<Vec<NhwcConv>> {
    let zero = Tensor::zeros(c_out, DType::F32, device)?;
    u.chunks_exact(c_out * c_in)
        .map(|m| {
            let m = Tensor::from_slice(m, (c_out, c_in), device)?;
            NhwcConv::new(&m, &zero, c_in, (1, 1), 1, Activation::None, 0)
        })
        .collect()
}

/// Runs `tiles` tiles of a Winograd conv with the given products, in blocks shared out to the
/// threads.
///
/// `input(t, v, ld)` writes tile `t`'s transformed patch as `P` rows of `C_in` floats, `ld` apart,
/// from the start of `v`; `output(t, m, ld)` reads its `P` rows of `C_out` products the same way
/// and writes the tile's pixels.
///
/// # Safety
/// `output` must be safe to call at once from several threads for distinct tiles.
pub(super) unsafe fn run_tiles<I, O>(products: &[NhwcConv], tiles: usize, input: I, output: O)
where
    I: Fn(usize, &mut [f32], usize) + Sync,
    O: Fn(usize, &[f32], usize) + Sync,
{
    // Blocks of at most TILES_PER_BLOCK, in a multiple of the thread count.
    let threads = rayon::current_num_threads();
    let blocks = tiles.div_ceil(TILES_PER_BLOCK).next_multiple_of(threads).min(tiles);
    (0..blocks).into_par_iter().for_each(|b| {
        run_block(products, tiles * b / blocks..tiles * (b + 1) / blocks, &input, &output);
    });
}

/// One block of [`run_tiles`]: input transforms, the `P` GEMMs, output transforms.
fn run_block<I, O>(products: &[NhwcConv], tiles: Range<usize>, input: &I, output: &O)
where
    I: Fn(usize, &mut [f32], usize),
    O: Fn(usize, &[f32], usize),
{
    let Some(first) = products.first() else { return };
    let (p, ci, co, count) = (products.len(), first.c_in(), first.c_out(), tiles.len());
    if count == 0 {
        return;
    }
    let mut scratch = SCRATCH.take();
    let need = p * count * (ci + co);
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    // Both parts are written in full before they are read.
    let (v, m) = scratch[..need].split_at_mut(p * count * ci);
    // V_xi for each tile: rows of C_in at `(xi * count + i) * C_in`.
    for (i, t) in tiles.clone().enumerate() {
        input(t, &mut v[i * ci..], count * ci);
    }
    // M_xi = V_xi U_xi: rows of C_out at `(xi * count + i) * C_out`.
    let plan = Plan::new(first, count, ci);
    for (xi, conv) in products.iter().enumerate() {
        let vx = &v[xi * count * ci..][..count * ci];
        let mx = SendPtr(m[xi * count * co..][..count * co].as_mut_ptr());
        for task in 0..plan.tasks() {
            let (px, pn) = plan.task(task);
            let origins: Vec<*const f32> = px.clone().map(|i| vx[i * ci..].as_ptr()).collect();
            // SAFETY: each origin is a tile's row of C_in values of V_xi, the whole field of a
            // 1x1 conv; M_xi has `count` rows of C_out; the tasks run one after another.
            unsafe { run_task(conv, &plan, (px, pn), &origins, mx) };
        }
    }
    for (i, t) in tiles.enumerate() {
        output(t, &m[i * co..], count * co);
    }
    SCRATCH.set(scratch);
}

/// Asserts that a Winograd conv's output matches the direct conv's within 1e-4, and that the
/// ReLU clamped some outputs (so a missing epilogue would show).
#[cfg(test)]
fn assert_matches_direct(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}");
    let d = (got - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(d < 1e-4, "{what}: diff {d}");
    let zeros = got.eq(0f32).unwrap().to_dtype(DType::F32).unwrap().sum_all().unwrap();
    assert!(zeros.to_scalar::<f32>().unwrap() > 0.0, "{what}: no output was clamped");
}
