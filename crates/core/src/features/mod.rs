//! Bottleneck features: the on-disk cache and batched, cancellable extraction.

pub mod cache;
pub mod dataset;
pub mod extract;

pub use cache::{CachedFeatures, FeatureCache};
pub use extract::{ExtractOutcome, Progress, extract};
