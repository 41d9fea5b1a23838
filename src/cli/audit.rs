//! `audit`: the findings on a dataset folder, as text, JSON or CSV.

use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};

use gc_core::audit::{AuditReport, FindingKind};
use gc_core::context::Context;

use super::args::AuditArgs;
use super::output::{csv_stdout, json_document, path_text};
use super::{cancelled_or, progress};

/// Runs `audit`.
pub fn run(ctx: &Context, a: &AuditArgs, cancel: &AtomicBool) -> Result<()> {
    if a.folds < 2 {
        bail!("--folds must be at least 2");
    }
    let opts = gc_core::audit::AuditOptions { folds: a.folds, ..Default::default() };
    let pb = progress::bar("features", 0);
    let mut report = gc_core::audit::audit_dataset(
        &a.dir,
        gc_core::preprocess::PreprocessSpec::new(a.backbone.into(), !a.no_face_crop),
        &opts,
        ctx,
        &mut |p| progress::on_extract(&pb, p, cancel),
        cancel,
    )
    .map_err(cancelled_or)?;
    pb.finish_and_clear();
    if !a.include_kept {
        let log = gc_core::audit::review::ReviewLog::open(&a.dir)?;
        report.findings.retain(|f| !log.is_kept(f));
    }
    if a.json {
        json_document(&report)
    } else if a.csv {
        write_csv(&report)
    } else {
        print!("{}", gc_core::audit::format_text(&report));
        Ok(())
    }
}

/// The kind's id as JSON writes it (`likely-wrong-label`).
fn kind_id(kind: FindingKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_else(|| format!("{kind:?}"))
}

/// One row per image of each finding, most important finding first; the images of one group share
/// its `finding` number.
fn write_csv(report: &AuditReport) -> Result<()> {
    let mut w = csv_stdout();
    w.write_record(["finding", "kind", "score", "path", "class", "suggested_class", "reason", "sha256"])?;
    for (i, f) in report.findings.iter().enumerate() {
        for m in &f.members {
            w.write_record([
                i.to_string(),
                kind_id(f.kind),
                format!("{:.4}", f.score),
                path_text(&m.path),
                m.class.clone(),
                f.suggested_class.clone().unwrap_or_default(),
                f.reason.clone(),
                m.sha256.clone(),
            ])?;
        }
    }
    w.flush()?;
    Ok(())
}
