//! gender-classifier: tells whether the person in a photo is a man or a woman, and helps build,
//! clean and retrain the dataset behind that call. Candle for every network.

pub mod app;
pub mod audit;
pub mod bench;
pub mod classify;
pub mod cli;
pub mod dataset;
pub mod device;
pub mod eval;
pub mod face;
pub mod features;
pub mod imaging;
pub mod memory;
pub mod model;
pub mod model_file;
pub mod pipeline;
pub mod preprocess;
pub mod train;
