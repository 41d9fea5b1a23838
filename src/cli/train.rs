//! `train`: a new head fitted on a dataset folder and saved as a model file.

use std::sync::atomic::AtomicBool;

use anyhow::Result;

use gc_core::context::Context;
use gc_core::dataset::split::SplitSpec;
use gc_core::metrics::format_report;
use gc_core::train::TrainOptions;
use gc_core::train::run::{TrainConfig, TrainEvent, train_dataset};

use super::args::TrainArgs;
use super::{cancelled_or, progress};

/// Runs `train`.
pub fn run(ctx: &Context, a: &TrainArgs, cancel: &AtomicBool) -> Result<()> {
    let cfg = TrainConfig {
        backbone: a.backbone.into(),
        face_crop: !a.no_face_crop,
        options: TrainOptions {
            learning_rate: a.lr,
            epochs: a.epochs,
            batch_size: a.batch_size,
            l2: a.l2,
            dropout: a.dropout,
            balance_classes: !a.no_balance,
            patience: a.patience,
            seed: a.seed,
            warm_start: a.warm_start,
        },
        split: SplitSpec { validation_pct: a.validation_pct, test_pct: a.test_pct },
        extract_batch: a.extract_batch,
        max_per_class: a.max_per_class,
    };
    let pb = progress::bar("features", 0);
    let mut last_epoch = None;
    let report = train_dataset(
        &a.dir,
        &cfg,
        ctx,
        &mut |e| match e {
            TrainEvent::Loading => pb.set_message("loading"),
            TrainEvent::Extracting(p) => {
                pb.set_message("features");
                progress::on_extract(&pb, &p, cancel);
            }
            TrainEvent::Epoch(s) => {
                if last_epoch.is_none() {
                    pb.finish_and_clear();
                }
                last_epoch = Some(s.epoch);
                tracing::info!(?s, "epoch");
            }
        },
        cancel,
    )
    .map_err(cancelled_or)?;
    pb.finish_and_clear();
    report.model.save(&a.out)?;
    for (path, why) in &report.failures {
        eprintln!("skipped {}: {why}", path.display());
    }
    let meta = &report.model.meta;
    eprintln!("trained for {} epochs; model written to {}", meta.history.len(), a.out.display());
    if let Some(m) = &meta.test_metrics {
        println!("test split:\n{}", format_report(m));
    }
    Ok(())
}
