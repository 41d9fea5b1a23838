//! The CPU path of both backbones in NHWC layout (`[N, H, W, C]`, channels contiguous).
//!
//! Every conv is a GEMM whose micro-kernel reads each output pixel's receptive field where it
//! lies in the input ([`conv`]); depthwise convs and pools vectorise across channels.

pub mod conv;
pub mod depthwise;
pub mod kernel;
pub mod pool;
pub mod separable;
