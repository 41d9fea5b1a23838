//! gender-classifier's work without a window: datasets and their move journal, features and their
//! cache, training, evaluation, the dataset audit and classification of photos.
//!
//! The networks come from [`gc_engine`]; this crate has no egui and no clap, so a program can
//! classify a folder or retrain a head with it alone.

pub mod audit;
pub mod calibration;
pub mod classify;
pub mod classify_stream;
pub mod context;
pub mod dataset;
pub mod durable;
pub mod error;
pub mod eval;
pub mod export;
pub mod face;
pub mod fault;
pub mod features;
pub mod groups;
pub mod imaging;
pub mod metrics;
pub mod model_card;
pub mod model_file;
pub mod path_text;
pub mod pipeline;
pub mod preprocess;
pub mod recipe;
pub mod resample;
pub mod similarity;
pub mod task;
pub mod train;
