//! Writers for what the subcommands print on stdout: CSV through the `csv` crate (so commas,
//! quotes and newlines in file names are quoted), JSON lines flushed one by one, and the JSON
//! records that name a photo (`path`, plus `path_bytes` where the name is not UTF-8).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// A CSV writer on stdout. Call [`csv::Writer::flush`] after each unit of work so a reader (or an
/// interrupted run) sees whole rows only.
pub fn csv_stdout() -> csv::Writer<std::io::Stdout> {
    csv::WriterBuilder::new().from_writer(std::io::stdout())
}

/// Writes `value` as one line of JSON on stdout and flushes it.
pub fn json_line(value: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let mut line = serde_json::to_vec(value).context("cannot format JSON")?;
    line.push(b'\n');
    out.write_all(&line).and_then(|()| out.flush()).context("cannot write to stdout")
}

/// Prints `value` as one pretty JSON document.
pub fn json_document(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value).context("cannot format JSON")?);
    Ok(())
}

/// A path as CSV and text output write it: itself when UTF-8, else lossily.
pub fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `{"path": .., "error": ..}` (with `path_bytes` where needed) for a file that was skipped.
pub fn skipped_record(path: &Path, why: &str) -> serde_json::Value {
    let mut r = gc_core::path_text::json_record(path);
    r.insert("error".into(), why.into());
    serde_json::Value::Object(r)
}

/// [`skipped_record`] of each file.
pub fn skipped_records(failures: &[(PathBuf, String)]) -> Vec<serde_json::Value> {
    failures.iter().map(|(p, why)| skipped_record(p, why)).collect()
}

/// Adds `path_bytes` to a record whose `path` is not UTF-8 (see `gc_core::path_text`).
pub fn with_path_bytes(mut record: serde_json::Value, path: &Path) -> serde_json::Value {
    if let (Some(obj), Some(bytes)) = (record.as_object_mut(), gc_core::path_text::bytes_if_not_utf8(path)) {
        obj.insert("path_bytes".into(), bytes.into());
    }
    record
}

/// `{class: probability}` in the model's class order.
pub fn probs_by_class(classes: &[String], probs: &[f32]) -> serde_json::Map<String, serde_json::Value> {
    classes.iter().zip(probs).map(|(c, &p)| (c.clone(), number(p))).collect()
}

/// An `f32` as a JSON number with its shortest decimal form (`0.93`, not `0.9300000071525879`).
pub fn number(v: f32) -> serde_json::Value {
    v.to_string().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(serde_json::Value::Null, Into::into)
}
