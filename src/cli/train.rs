//! `train`: a new head fitted on one or more dataset folders, compared with the model it would replace on the
//! same validation photos (the guard), and saved as a model file with its model card beside it.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};

use gc_core::context::Context;
use gc_core::dataset::split::SplitSpec;
use gc_core::metrics::format_report;
use gc_core::model_card;
use gc_core::model_file::model_paths;
use gc_core::train::TrainOptions;
use gc_core::train::guard::{Guard, guard_against};
use gc_core::train::run::{TrainConfig, TrainEvent, TrainReport, train_datasets};

use super::args::TrainArgs;
use super::{cancelled_or, progress};
use gc_core::recipe::FineTuneOptions;

/// Runs `train`.
pub fn run(ctx: &Context, a: &TrainArgs, cancel: &AtomicBool) -> Result<()> {
    let cfg = TrainConfig {
        backbone: a.backbone.into(),
        face_crop: a.crops.overrides().crop != Some(gc_core::preprocess::CropMode::Whole),
        crops: a.crops.overrides(),
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
        fine_tune: a.fine_tune.then(|| FineTuneOptions {
            blocks: a.fine_tune_blocks,
            head_lr: a.fine_tune_lr,
            backbone_lr: a.backbone_lr,
            epochs: a.fine_tune_epochs,
            patience: FineTuneOptions::default().patience,
            batch_size: FineTuneOptions::default().batch_size,
            jitter_copies: a.jitter_copies,
            seed: a.seed,
        }),
    };
    let out = model_paths(&a.out).0;
    let out_exists = out.exists();
    let baseline = baseline_of(ctx, a, &out, out_exists)?;
    let pb = progress::bar("features", 0);
    let mut last_epoch = None;
    let report = train_datasets(
        &a.dirs,
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
            TrainEvent::FineTuning { epoch, done, total } => {
                if done == total {
                    tracing::debug!(epoch, photos = total, "fine-tuning epoch done");
                }
            }
            TrainEvent::Comparing(_) => {}
        },
        cancel,
    )
    .map_err(cancelled_or)?;
    pb.finish_and_clear();
    for (path, why) in &report.failures {
        eprintln!("skipped {}: {why}", path.display());
    }

    // The guard: the new model and the one it would replace, on the same validation photos.
    let guard = match &baseline {
        Some(b) => guard_with(ctx, a, &report, b, cancel)?,
        None => Guard::NotCompared("there is no model at --out and no shipped default to compare with".into()),
    };
    print_guard(&guard, &a.dirs);
    let over_out = if !out_exists {
        None
    } else if baseline.as_deref().is_some_and(|b| same_file(b, &out)) {
        Some(guard.clone())
    } else {
        let g = guard_with(ctx, a, &report, &out, cancel)?;
        print_guard(&g, &a.dirs);
        Some(g)
    };
    if let Some(c) = guard.comparison().filter(|c| c.is_worse()) {
        eprintln!("warning: {}", c.worse_sentence());
    }
    match over_out.as_ref().and_then(Guard::comparison) {
        Some(c) if c.is_worse() && !a.force => bail!(
            "nothing was written: the model already at {} is better than the new one on the same {} validation \
             photos ({:.1}% against {:.1}%). Pass --force to overwrite it anyway, or choose another --out",
            out.display(),
            c.photos(),
            c.current.accuracy * 100.0,
            c.new.accuracy * 100.0
        ),
        Some(c) if c.is_worse() => eprintln!("--force: overwriting the better model at {}", out.display()),
        _ => {}
    }
    if let Some(Guard::NotCompared(why)) = &over_out {
        eprintln!("note: the model at {} was not compared ({why}); it is replaced", out.display());
    }

    report.model.save(&a.out)?;
    let card = model_card::write_for_report(&out, &report, &guard).map_err(|e| {
        anyhow::Error::from(e)
            .context(format!("the model was written to {}, but its model card was not", out.display()))
    })?;
    let meta = &report.model.meta;
    eprintln!(
        "trained for {} epochs; model written to {} (model card {})",
        meta.history.len(),
        a.out.display(),
        card.display()
    );
    if a.fine_tune && report.model.tuned.is_none() {
        eprintln!(
            "note: no epoch of fine-tuning beat the head alone on the validation photos, so the model \
             is the head alone (faceres unchanged); try --fine-tune-blocks, --backbone-lr or more data"
        );
    }
    if let Some(c) = &meta.calibration {
        println!("calibration on the validation split: {}", c.describe());
    }
    if let Some(m) = &meta.test_metrics {
        println!("test split:\n{}", format_report(m));
    }
    Ok(())
}

/// The model the new one is compared with: `--baseline`, else the model at `--out`, else the
/// shipped default (none when there is none).
fn baseline_of(ctx: &Context, a: &TrainArgs, out: &Path, out_exists: bool) -> Result<Option<PathBuf>> {
    if let Some(b) = &a.baseline {
        let st = model_paths(b).0;
        if !st.is_file() {
            bail!(
                "--baseline {}: there is no model there; name an existing .safetensors model, or leave --baseline \
                 out to compare with the model at --out or the shipped default",
                st.display()
            );
        }
        return Ok(Some(st));
    }
    if out_exists {
        return Ok(Some(out.to_path_buf()));
    }
    let d = ctx.default_model();
    Ok(d.exists().then_some(d))
}

/// Scores `model` on the new model's validation photos and compares (with a progress bar).
fn guard_with(ctx: &Context, a: &TrainArgs, report: &TrainReport, model: &Path, cancel: &AtomicBool) -> Result<Guard> {
    let pb = progress::bar("comparing", 0);
    let g = guard_against(
        report,
        &a.dirs,
        model,
        ctx,
        a.extract_batch,
        &mut |p| progress::on_extract(&pb, p, cancel),
        cancel,
    )
    .map_err(cancelled_or)?;
    pb.finish_and_clear();
    Ok(g)
}

/// Prints a comparison (stdout: a result), or why there is none (stderr).
fn print_guard(g: &Guard, dirs: &[PathBuf]) {
    let names: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    match g {
        Guard::Compared(c) => {
            println!("compared on the same {} validation photos of {}:\n{}", c.photos(), names.join(" and "), c.lines())
        }
        Guard::NotCompared(why) => eprintln!("not compared with another model: {why}"),
    }
}

/// True when both paths name one file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}
