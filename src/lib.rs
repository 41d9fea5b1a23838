//! gender-classifier: tells whether the person in a photo is a man or a woman, and helps build,
//! clean and retrain the dataset behind that call. Candle for every network.

pub mod model;
pub mod imaging;
pub mod preprocess;
pub mod dataset;
pub mod face;
pub mod features;
pub mod pipeline;
pub mod classify;
pub mod eval;
pub mod model_file;
pub mod train;
pub mod device;
pub mod app;
pub mod bench;
pub mod cli;
