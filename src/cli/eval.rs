//! `eval`: a model scored on a dataset folder, as a text report, JSON or CSV.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::Result;

use gc_core::calibration::{UncertainSummary, threshold_for};
use gc_core::context::Context;
use gc_core::dataset::Dataset;
use gc_core::dataset::split::Split;
use gc_core::eval::{EvalReport, EvalScope, evaluate_dataset};
use gc_core::groups::{GroupReport, Groups, by_group};
use gc_core::metrics::format_report;

use super::args::EvalArgs;
use super::output::{csv_stdout, json_document, path_text, skipped_records, with_path_bytes};
use super::{cancelled_or, load_classifier, progress, same_dir};

/// Runs `eval`.
pub fn run(ctx: &Context, a: &EvalArgs, cancel: &AtomicBool) -> Result<()> {
    let model_path = a.model.clone().unwrap_or_else(|| ctx.default_model());
    let classifier = load_classifier(&Some(model_path.clone()), &a.crops.overrides(), ctx)?;
    let below = threshold_for(classifier.model.meta.calibration.as_ref(), a.uncertain_below)?;
    let trained_here = classifier.model.meta.trained_on().iter().any(|d| same_dir(&d.root, &a.dir));
    let scope = match a.split {
        Some(s) => EvalScope::from(s),
        None if trained_here => EvalScope::Only(Split::Test),
        None => EvalScope::All,
    };
    // Read the groups first: a CSV that does not match the folder fails before any photo is scored.
    let groups = a.groups.as_deref().map(|g| load_groups(g, &a.dir)).transpose()?;
    if let Some(g) = groups.as_ref().filter(|g| !g.unparsed.is_empty()) {
        tracing::warn!("{} file name(s) under {} do not parse as UTKFace names", g.unparsed.len(), a.dir.display());
    }
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
    let uncertain = UncertainSummary::of(report.scored.iter().map(|s| (s.probs.as_slice(), s.label)), below);
    // The groups cover exactly the scored photos, so they share the scope of the metrics.
    let by = groups
        .as_ref()
        .map(|g| by_group(g, &report.classes, report.scored.iter().map(|s| (s.path.as_path(), s.label, s.predicted))));
    if a.json {
        let wrong: Vec<serde_json::Value> = report
            .misclassified()
            .into_iter()
            .map(|s| Ok(with_path_bytes(serde_json::to_value(s)?, &s.path)))
            .collect::<Result<_>>()?;
        let mut doc = serde_json::json!({
            "scope": format!("{scope:?}"),
            "model": model_path.to_string_lossy(),
            "metrics": report.metrics,
            "uncertain": uncertain,
            "misclassified": wrong,
            "skipped": skipped_records(&report.failures),
        });
        if let Some(r) = &by {
            doc["groups"] = r.to_json();
            doc["groups_overall"] = serde_json::to_value(&r.overall)?;
            doc["ungrouped"] = r.ungrouped.iter().map(|p| path_text(p)).collect();
        }
        json_document(&doc)
    } else if a.csv {
        write_csv(&report, groups.as_ref())
    } else {
        print_text(&report, scope, by.as_ref(), &uncertain);
        Ok(())
    }
}

/// The groups of `--groups`: `utkface` (from the file names under `dir`) or a CSV file.
fn load_groups(spec: &Path, dir: &Path) -> Result<Groups> {
    let files: Vec<PathBuf> = Dataset::scan(dir)?.items.into_iter().map(|i| i.path).collect();
    if spec.as_os_str().eq_ignore_ascii_case("utkface") {
        return Ok(Groups::from_utkface_names(dir, files.iter().map(PathBuf::as_path)));
    }
    if !spec.is_file() {
        anyhow::bail!("--groups {}: no such file; give `utkface` or a CSV file `path,<column>,...`", spec.display());
    }
    Ok(Groups::from_csv(spec, dir, &files)?)
}

/// One row per scored image, in the report's order: path, split, label, predicted, correct, faces,
/// the probability of each class, then the group columns (empty where a photo has no group).
fn write_csv(report: &EvalReport, groups: Option<&Groups>) -> Result<()> {
    let mut w = csv_stdout();
    let mut header: Vec<String> = ["path", "split", "label", "predicted", "correct", "faces"].map(String::from).into();
    header.extend(report.classes.iter().map(|c| format!("p_{c}")));
    let columns = groups.map_or(&[][..], |g| g.columns.as_slice());
    // A group column named like a fixed one gets a `group_` prefix, so no two columns share a name.
    let named: Vec<String> =
        columns.iter().map(|c| if header.contains(c) { format!("group_{c}") } else { c.clone() }).collect();
    header.extend(named);
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
        if let Some(g) = groups {
            match g.of(&s.path) {
                Some(values) => row.extend(values.iter().cloned()),
                None => row.extend(columns.iter().map(|_| String::new())),
            }
        }
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

fn print_text(report: &EvalReport, scope: EvalScope, by: Option<&GroupReport>, uncertain: &UncertainSummary) {
    let scope = match scope {
        EvalScope::All => "all photos".to_string(),
        EvalScope::Only(s) => format!("the {} split", s.name()),
    };
    println!("{}", format_report(&report.metrics));
    println!("{}", uncertain.describe());
    println!("measured on {scope}\n");
    if let Some(r) = by {
        println!("accuracy by group ({scope}):\n{}", r.format());
    }
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
