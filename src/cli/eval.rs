//! `eval`: a model scored on a dataset folder, as a text report, JSON or CSV.

use std::sync::atomic::AtomicBool;

use anyhow::Result;

use gc_core::classify::Classifier;
use gc_core::context::Context;
use gc_core::dataset::split::Split;
use gc_core::eval::{EvalReport, EvalScope, evaluate_dataset};
use gc_core::metrics::format_report;

use super::args::EvalArgs;
use super::output::{csv_stdout, json_document, path_text, skipped_records, with_path_bytes};
use super::{cancelled_or, progress, same_dir};

/// Runs `eval`.
pub fn run(ctx: &Context, a: &EvalArgs, cancel: &AtomicBool) -> Result<()> {
    let model_path = a.model.clone().unwrap_or_else(|| ctx.default_model());
    let classifier = Classifier::load(&model_path, ctx)?;
    let trained_here = classifier.model.meta.dataset.as_ref().is_some_and(|d| same_dir(&d.root, &a.dir));
    let scope = match a.split {
        Some(s) => EvalScope::from(s),
        None if trained_here => EvalScope::Only(Split::Test),
        None => EvalScope::All,
    };
    let pb = progress::bar("features", 0);
    let report = evaluate_dataset(
        &a.dir,
        &classifier,
        scope,
        &ctx.feature_cache(),
        16,
        &mut |p| progress::on_extract(&pb, p, cancel),
        cancel,
    )
    .map_err(cancelled_or)?;
    pb.finish_and_clear();
    for (path, why) in &report.failures {
        eprintln!("skipped {}: {why}", path.display());
    }
    if a.json {
        let wrong: Vec<serde_json::Value> = report
            .misclassified()
            .into_iter()
            .map(|s| Ok(with_path_bytes(serde_json::to_value(s)?, &s.path)))
            .collect::<Result<_>>()?;
        json_document(&serde_json::json!({
            "scope": format!("{scope:?}"),
            "model": model_path.to_string_lossy(),
            "metrics": report.metrics,
            "misclassified": wrong,
            "skipped": skipped_records(&report.failures),
        }))
    } else if a.csv {
        write_csv(&report)
    } else {
        print_text(&report);
        Ok(())
    }
}

/// One row per scored image, in the report's order: path, split, label, predicted, correct, faces,
/// then the probability of each class.
fn write_csv(report: &EvalReport) -> Result<()> {
    let mut w = csv_stdout();
    let mut header: Vec<String> = ["path", "split", "label", "predicted", "correct", "faces"].map(String::from).into();
    header.extend(report.classes.iter().map(|c| format!("p_{c}")));
    w.write_record(&header)?;
    for s in &report.scored {
        let mut row = vec![
            path_text(&s.path),
            s.split.name().to_string(),
            report.classes[s.label].clone(),
            report.classes[s.predicted].clone(),
            (s.label == s.predicted).to_string(),
            s.n_faces.to_string(),
        ];
        row.extend(s.probs.iter().map(|p| format!("{p:.5}")));
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

fn print_text(report: &EvalReport) {
    println!("{}", format_report(&report.metrics));
    let wrong = report.misclassified();
    if !wrong.is_empty() {
        println!("misclassified ({}), most confidently wrong first:", wrong.len());
        for s in wrong {
            println!(
                "  {}  true {} ({:.1}%), predicted {} ({:.1}%)",
                s.path.display(),
                report.classes[s.label],
                s.probs[s.label] * 100.0,
                report.classes[s.predicted],
                s.probs[s.predicted] * 100.0
            );
        }
    }
}
