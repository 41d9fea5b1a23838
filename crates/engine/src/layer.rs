//! What the two kernel families share: the activation fused into a conv's epilogue, padding, and
//! the one check of which CPU kernels can run.
//!
//! Both the NCHW layers (`depthwise`, the networks) and the NHWC engine (`nhwc`) import this
//! module, and it imports neither.

use std::cell::Cell;

use candle_core::{DType, Result, Tensor};

/// Activation fused into the conv epilogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// No activation.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `clamp(x, 0, 6)`.
    Relu6,
}

impl Activation {
    /// Applies the activation to one value.
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::None => v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }

    /// The clamp `(lo, hi)` with `apply(v) == v.max(lo).min(hi)`.
    pub fn bounds(self) -> (f32, f32) {
        match self {
            Activation::None => (f32::NEG_INFINITY, f32::INFINITY),
            Activation::Relu => (0.0, f32::INFINITY),
            Activation::Relu6 => (0.0, 6.0),
        }
    }

    /// Applies the activation to a tensor (used on non-CPU paths).
    pub fn apply_tensor(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::None => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::Relu6 => x.clamp(0f32, 6f32),
        }
    }
}

/// Padding as (top, left, bottom, right).
pub type Padding = (usize, usize, usize, usize);

/// TF "SAME" padding for a 3x3 kernel: stride 1 pads 1 everywhere, stride 2 on even input pads 0 before, 1 after.
pub fn same_padding_3x3(stride: usize, h: usize, w: usize) -> Padding {
    let pad = |n: usize| {
        let out = n.div_ceil(stride);
        let total = ((out - 1) * stride + 3).saturating_sub(n);
        (total / 2, total - total / 2)
    };
    let (t, b) = pad(h);
    let (l, r) = pad(w);
    (t, l, b, r)
}

/// `true` when the AVX2 + FMA kernels can run.
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

thread_local! {
    static CANDLE_OPS_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// `true` when the hand-written CPU kernels may run on `x`: an f32 tensor on the CPU, outside
/// [`with_candle_ops`]. Everywhere else (a GPU, another dtype) the layers use Candle's own ops.
pub fn cpu_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && !CANDLE_OPS_ONLY.get()
}

/// Runs `f` with every layer on Candle's own ops, the path a GPU takes, even on the CPU; the
/// choice is made on the calling thread, so other threads keep their kernels. Tests use it to
/// prove the GPU path where no GPU is lent.
pub fn with_candle_ops<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the previous choice when dropped, so a panic in `f` does not leave it set.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CANDLE_OPS_ONLY.set(self.0);
        }
    }
    let _restore = Restore(CANDLE_OPS_ONLY.replace(true));
    f()
}
