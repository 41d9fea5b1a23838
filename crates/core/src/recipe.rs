//! How a head was trained: the options of a run and how each epoch went. Training takes them and
//! model files keep them, so both import this module and neither imports the other for it.

use serde::{Deserialize, Serialize};

use crate::error::{Result, invalid};

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

impl TrainOptions {
    /// Refuses options that cannot train (called before any work starts); the error names the
    /// option, its command-line flag and what to use instead.
    pub fn validate(&self) -> Result<()> {
        let d = Self::default();
        let lr = self.learning_rate;
        if !lr.is_finite() || lr <= 0.0 {
            invalid!("the learning rate (--lr) is {lr}: use a finite number above 0, e.g. {}", d.learning_rate);
        }
        if !self.l2.is_finite() || self.l2 < 0.0 {
            invalid!("the L2 penalty (--l2) is {}: use a finite number of 0 or more, e.g. {}", self.l2, d.l2);
        }
        if !self.dropout.is_finite() || !(0.0..1.0).contains(&self.dropout) {
            invalid!(
                "the dropout (--dropout) is {}: use a number from 0 up to (not including) 1, e.g. {}",
                self.dropout,
                d.dropout
            );
        }
        if self.batch_size == 0 {
            invalid!("the batch size (--batch-size) is 0: use 1 or more, e.g. {}", d.batch_size);
        }
        if self.epochs == 0 {
            invalid!("the number of epochs (--epochs) is 0: use 1 or more, e.g. {}", d.epochs);
        }
        Ok(())
    }
}

/// Options of fine-tuning: faceres' last blocks trained with the head (see `train::fine_tune`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FineTuneOptions {
    /// How many of faceres' last blocks are trained (1..=13).
    pub blocks: usize,
    /// AdamW learning rate of the head.
    pub head_lr: f64,
    /// AdamW learning rate of the backbone blocks (lower than the head's).
    pub backbone_lr: f64,
    /// Maximum passes over the training data.
    pub epochs: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Jittered copies per training photo (random scale, shift, brightness, contrast, flip), on
    /// top of the photo and its mirror image.
    pub jitter_copies: usize,
    /// Seed for jitter, shuffling and initialisation.
    pub seed: u64,
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        // The better of the two runs measured on web-faces + utk-dev (docs/ACCURACY.md,
        // "Fine-tuning"): one block, both rates 1e-4, no jittered copies.
        Self {
            blocks: 1,
            head_lr: 1e-4,
            backbone_lr: 1e-4,
            epochs: 8,
            patience: 2,
            batch_size: 32,
            jitter_copies: 0,
            seed: 42,
        }
    }
}

impl FineTuneOptions {
    /// Refuses options that cannot train; the error names the flag and a value to use.
    pub fn validate(&self) -> Result<()> {
        let d = Self::default();
        if self.blocks == 0 || self.blocks > 13 {
            invalid!("--fine-tune-blocks is {}: faceres has 13 blocks; use 1 to 13, e.g. {}", self.blocks, d.blocks);
        }
        for (lr, flag, default) in
            [(self.head_lr, "--fine-tune-lr", d.head_lr), (self.backbone_lr, "--backbone-lr", d.backbone_lr)]
        {
            if !lr.is_finite() || lr <= 0.0 {
                invalid!("the learning rate ({flag}) is {lr}: use a finite number above 0, e.g. {default}");
            }
        }
        if self.epochs == 0 || self.batch_size == 0 {
            invalid!("fine-tuning needs at least 1 epoch and a batch size of 1 or more (--epochs, --batch-size)");
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_names_the_bad_option() {
        TrainOptions::default().validate().unwrap();
        TrainOptions { l2: 0.0, dropout: 0.0, batch_size: 1, epochs: 1, ..Default::default() }.validate().unwrap();
        let bad = |o: TrainOptions, flag: &str| {
            let text = o.validate().unwrap_err().to_string();
            assert!(text.contains(flag), "{flag}: {text}");
        };
        for lr in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
            bad(TrainOptions { learning_rate: lr, ..Default::default() }, "--lr");
        }
        for l2 in [f64::NAN, f64::INFINITY, -1e-4] {
            bad(TrainOptions { l2, ..Default::default() }, "--l2");
        }
        for dropout in [f32::NAN, 1.0, -0.1, f32::INFINITY] {
            bad(TrainOptions { dropout, ..Default::default() }, "--dropout");
        }
        bad(TrainOptions { batch_size: 0, ..Default::default() }, "--batch-size");
        bad(TrainOptions { epochs: 0, ..Default::default() }, "--epochs");
    }
}
