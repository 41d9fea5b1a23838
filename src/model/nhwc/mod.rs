//! The CPU path of both backbones in NHWC layout (`[N, H, W, C]`, channels contiguous).
//!
//! Every conv is a GEMM whose micro-kernel reads each output pixel's receptive field where it
//! lies in the input ([`conv`]); depthwise convs and pools vectorise across channels, and a
//! depthwise conv can run fused into the 1x1 conv after it ([`separable`]).

pub mod conv;
pub mod depthwise;
pub mod kernel;
pub mod pool;
pub mod separable;
