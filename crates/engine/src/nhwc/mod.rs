//! The CPU path of both backbones in NHWC layout (`[N, H, W, C]`, channels contiguous).
//!
//! Every conv is a GEMM whose micro-kernel reads each output pixel's receptive field where it
//! lies in the input ([`conv`]); depthwise convs and pools vectorise across channels, a
//! depthwise conv can run fused into the 1x1 conv after it ([`separable`]), and a deep 3x3
//! stride-1 conv or a 1x7 or 7x1 one can run as Winograd on the same GEMMs ([`winograd`]).
//! BlazeFace's residual blocks add their skip inside the same pass ([`residual`]), and its
//! narrow layers (24 channels) run on kernels that hold every output channel at once ([`narrow`]).

pub mod conv;
pub mod depthwise;
pub mod kernel;
pub mod narrow;
pub mod pool;
pub mod residual;
pub mod separable;
pub mod winograd;

/// The kernel taps along one axis that land inside the input: `(tap, input index)` pairs.
#[derive(Clone, Copy)]
struct Taps {
    pairs: [(usize, usize); 3],
    count: usize,
}

impl Taps {
    /// Taps of a window that starts at padded index `start` over an input of `len` with `pad`
    /// zeros before it.
    #[inline(always)]
    fn new(start: usize, pad: usize, len: usize) -> Self {
        let mut t = Taps { pairs: [(0, 0); 3], count: 0 };
        for k in 0..3 {
            if let Some(i) = (start + k).checked_sub(pad).filter(|&i| i < len) {
                t.pairs[t.count] = (k, i);
                t.count += 1;
            }
        }
        t
    }

    #[inline(always)]
    fn valid(&self) -> &[(usize, usize)] {
        &self.pairs[..self.count]
    }
}
