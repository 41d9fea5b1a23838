//! How a head was trained: the options of a run and how each epoch went. Training takes them and
//! model files keep them, so both import this module and neither imports the other for it.

use serde::{Deserialize, Serialize};

/// Options of head training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Maximum passes over the training data.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// L2 penalty on the weights (added to the loss).
    pub l2: f64,
    /// Dropout probability on the bottleneck during training.
    pub dropout: f32,
    /// Weight the loss so each class counts equally.
    pub balance_classes: bool,
    /// Stop after this many epochs without a better validation loss (0 = never).
    pub patience: usize,
    /// Seed for initialisation, shuffling and dropout.
    pub seed: u64,
    /// Start from faceres' own gender head (MLP 1024-256-2) instead of a fresh linear layer.
    pub warm_start: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            learning_rate: 0.01,
            epochs: 60,
            batch_size: 64,
            l2: 1e-4,
            dropout: 0.2,
            balance_classes: true,
            patience: 10,
            seed: 42,
            warm_start: false,
        }
    }
}

/// Loss and accuracy after one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f32,
    /// Training accuracy (no dropout).
    pub train_accuracy: f32,
    /// Validation loss, if there is validation data.
    pub val_loss: Option<f32>,
    /// Validation accuracy, if there is validation data.
    pub val_accuracy: Option<f32>,
}
