//! `faces`: the face detections of photos, as one JSON document.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

use gc_core::context::Context;
use gc_core::dataset::collect_images;

use super::args::FacesArgs;
use super::output::json_document;
use super::{interrupted, list_paths};

/// Runs `faces`. After Ctrl-C the document lists the photos done so far.
pub fn run(ctx: &Context, a: &FacesArgs, cancel: &AtomicBool) -> Result<()> {
    let finder = gc_core::face::FaceFinder::load(ctx)?;
    let files = collect_images(&a.paths)?;
    if files.is_empty() {
        bail!("no image files found in {}: give photos or folders that hold photos", list_paths(&a.paths));
    }
    let mut out = Vec::new();
    let mut failed = 0;
    let mut stopped = false;
    for f in &files {
        if cancel.load(Ordering::Relaxed) {
            stopped = true;
            break;
        }
        let mut record = gc_core::path_text::json_record(f);
        match gc_core::imaging::load_rgb(f).map_err(gc_core::error::Error::from).and_then(|img| {
            let regions = finder.regions(&img)?;
            Ok((img.dimensions(), regions))
        }) {
            Ok((size, regions)) => {
                let faces: Vec<_> = regions.into_iter().filter(|r| r.is_face()).collect();
                record.insert("image_size".into(), serde_json::to_value(size)?);
                record.insert("faces".into(), serde_json::to_value(faces)?);
            }
            Err(e) => {
                failed += 1;
                let why = gc_core::error::describe(&e);
                eprintln!("skipped {}: {why}", f.display());
                record.insert("error".into(), why.into());
            }
        }
        out.push(serde_json::Value::Object(record));
    }
    json_document(&out)?;
    if stopped {
        return Err(interrupted(format!("interrupted after {} of {} photos", out.len(), files.len())));
    }
    if failed == files.len() {
        bail!("none of the {failed} files could be read (see the reasons above)");
    }
    Ok(())
}
