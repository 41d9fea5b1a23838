//! `classify`: photos in, one prediction per face out, as text, CSV, JSON lines or one JSON
//! document; the photos come from the command line and from `--files-from LIST` (or stdin).

use std::io::Read as _;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context as _, Result, bail};
use indicatif::ProgressBar;

use gc_core::calibration::{is_uncertain, threshold_for};
use gc_core::classify::{FacePrediction, ImagePrediction};
use gc_core::classify_stream::{StreamOptions, classify_stream};
use gc_core::context::Context;
use gc_core::dataset::collect_images;

use super::args::ClassifyArgs;
use super::output::{self, csv_stdout, json_line, number, path_text, probs_by_class, skipped_record};
use super::{interrupted, list_paths, load_classifier, progress};

/// One photo to classify, or a listed path that cannot be (with the reason).
type Item = (PathBuf, Option<String>);

/// Runs `classify`.
pub fn run(ctx: &Context, a: &ClassifyArgs, cancel: &AtomicBool) -> Result<()> {
    let classifier = load_classifier(&a.model, &a.crops.overrides(), ctx)?;
    let items = photos(a)?;
    let classes = classifier.classes().to_vec();
    let below = threshold_for(classifier.model.meta.calibration.as_ref(), a.uncertain_below)?;
    let mut out = Printer::new(a, &classes, below)?;
    let total = items.len();
    let pb = if total > 1 { progress::bar("classify", total as u64) } else { ProgressBar::hidden() };
    let (mut done, mut failed) = (0usize, 0usize);
    let mut write_error = None;
    let stream = items.into_iter().map(|(path, unreadable)| match unreadable {
        Some(why) => Err((path, why)),
        None => Ok(path),
    });
    let end = classify_stream(&classifier, stream, &StreamOptions::default(), cancel, |path, outcome| {
        let written = match outcome {
            Ok(p) => {
                done += 1;
                pb.suspend(|| out.photo(&p))
            }
            Err(why) => {
                failed += 1;
                pb.suspend(|| {
                    eprintln!("skipped {}: {why}", path.display());
                    out.skipped(&path, &why)
                })
            }
        };
        pb.inc(1);
        interrupt_point!("cli::classified", cancel);
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = write_error {
        return Err(e);
    }
    pb.finish_and_clear();
    out.finish()?;
    if end.cancelled {
        return Err(interrupted(format!("interrupted after {} of {total} photos", done + failed)));
    }
    if done == 0 {
        bail!("none of the {failed} files could be classified (see the reasons above)");
    }
    Ok(())
}

/// The photos of the command line (folders searched), then those of `--files-from`, in its order.
fn photos(a: &ClassifyArgs) -> Result<Vec<Item>> {
    let mut items: Vec<Item> = if a.paths.is_empty() {
        Vec::new()
    } else {
        collect_images(&a.paths)?.into_iter().map(|p| (p, None)).collect()
    };
    if let Some(list) = &a.files_from {
        for p in read_list(list)? {
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => items.extend(collect_images(&[p])?.into_iter().map(|p| (p, None))),
                Ok(m) if m.is_file() => items.push((p, None)),
                // A FIFO or a device would block or never end: never read one.
                Ok(_) => items.push((p, Some("not a regular file".into()))),
                Err(e) => items.push((p, Some(format!("cannot read it: {e}")))),
            }
        }
    }
    if items.is_empty() {
        let mut given = a.paths.clone();
        given.extend(a.files_from.iter().map(|l| if l == Path::new("-") { PathBuf::from("stdin") } else { l.clone() }));
        bail!("no image files found in {}: give photos or folders that hold photos", list_paths(&given));
    }
    Ok(items)
}

/// The paths of a list file (or stdin for `-`): one a line, empty lines skipped, a trailing `\r`
/// dropped. The bytes of a line are the path, so names that are not UTF-8 work too.
fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let mut bytes = Vec::new();
    if list == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes).context("cannot read the list of photos from stdin")?;
    } else {
        bytes = std::fs::read(list).with_context(|| {
            format!(
                "cannot read the list of photos {}: give a file with one path per line, or - for stdin",
                list.display()
            )
        })?;
    }
    Ok(bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(path_from_bytes)
        .collect())
}

#[cfg(unix)]
fn path_from_bytes(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt as _;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn path_from_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// Where the results go, in the format asked for, and the "uncertain" threshold.
struct Printer<'a> {
    /// A top probability below this is an uncertain answer.
    below: f32,
    /// The format.
    to: To<'a>,
}

/// The output formats.
enum To<'a> {
    /// A line per face for people.
    Text { classes: &'a [String] },
    /// A row per face, flushed per photo.
    Csv { classes: &'a [String], w: Box<csv::Writer<std::io::Stdout>> },
    /// A JSON object per photo, flushed per photo.
    Jsonl { classes: &'a [String] },
    /// One document at the end (also after Ctrl-C, then with the photos done).
    Json { classes: &'a [String], images: Vec<serde_json::Value>, skipped: Vec<serde_json::Value> },
}

impl<'a> Printer<'a> {
    fn new(a: &ClassifyArgs, classes: &'a [String], below: f32) -> Result<Self> {
        let to = if a.csv {
            let mut w = csv_stdout();
            let mut header: Vec<String> =
                ["path", "face", "x1", "y1", "x2", "y2", "face_score", "predicted"].map(String::from).into();
            header.extend(classes.iter().map(|c| format!("p_{c}")));
            header.push("uncertain".into());
            w.write_record(&header)?;
            w.flush()?;
            To::Csv { classes, w: Box::new(w) }
        } else if a.jsonl {
            To::Jsonl { classes }
        } else if a.json {
            To::Json { classes, images: Vec::new(), skipped: Vec::new() }
        } else {
            To::Text { classes }
        };
        Ok(Self { below, to })
    }

    fn photo(&mut self, p: &ImagePrediction) -> Result<()> {
        let below = self.below;
        match &mut self.to {
            To::Text { classes } => print_text(p, classes, below),
            To::Csv { classes, w } => {
                for (i, f) in p.faces.iter().enumerate() {
                    let (b, s) = f.region.detection.as_ref().map_or(([0.0; 4], 0.0), |d| (d.bbox, d.score));
                    let mut row = vec![path_text(&p.path), i.to_string()];
                    row.extend(b.iter().map(|v| format!("{v:.1}")));
                    row.push(format!("{s:.4}"));
                    row.push(classes[f.class].clone());
                    row.extend(f.probs.iter().map(|v| format!("{v:.5}")));
                    row.push(is_uncertain(&f.probs, below).to_string());
                    w.write_record(&row)?;
                }
                w.flush()?;
            }
            To::Jsonl { classes } => json_line(&jsonl_record(p, classes, below))?,
            To::Json { images, .. } => images.push(output::with_path_bytes(json_record(p, below)?, &p.path)),
        }
        Ok(())
    }

    fn skipped(&mut self, path: &Path, why: &str) -> Result<()> {
        match &mut self.to {
            To::Jsonl { .. } => json_line(&skipped_record(path, why))?,
            To::Json { skipped, .. } => skipped.push(skipped_record(path, why)),
            To::Text { .. } | To::Csv { .. } => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<()> {
        if let To::Json { classes, images, skipped } = self.to {
            output::json_document(&serde_json::json!({
                "classes": classes,
                "uncertain_below": self.below,
                "images": images,
                "skipped": skipped,
            }))?;
        }
        Ok(())
    }
}

/// A photo's prediction as JSON, with `uncertain` on the photo (its first face) and on each face.
fn json_record(p: &ImagePrediction, below: f32) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(p)?;
    if let Some(faces) = v.get_mut("faces").and_then(|f| f.as_array_mut()) {
        for (f, face) in faces.iter_mut().zip(&p.faces) {
            f["uncertain"] = is_uncertain(&face.probs, below).into();
        }
    }
    v["uncertain"] = photo_uncertain(p, below).into();
    Ok(v)
}

/// True when the photo's answer (its most confident face) is uncertain; false without faces.
fn photo_uncertain(p: &ImagePrediction, below: f32) -> bool {
    p.faces.first().is_some_and(|f| is_uncertain(&f.probs, below))
}

/// The JSON line of a photo: its path, size, the class of its most confident face by name, whether
/// that answer is uncertain, and per face the box (null for the whole image), the detection
/// score, the probability per class and whether it is uncertain.
fn jsonl_record(p: &ImagePrediction, classes: &[String], below: f32) -> serde_json::Value {
    let mut r = gc_core::path_text::json_record(&p.path);
    let top = p.faces.first();
    r.insert("image_size".into(), serde_json::json!([p.image_size.0, p.image_size.1]));
    r.insert("predicted".into(), top.map(|f| classes[f.class].clone()).into());
    r.insert("probability".into(), top.map_or(serde_json::Value::Null, |f| number(f.probs[f.class])));
    r.insert("uncertain".into(), photo_uncertain(p, below).into());
    let faces: Vec<serde_json::Value> = p
        .faces
        .iter()
        .map(|f| {
            let d = f.region.detection.as_ref();
            serde_json::json!({
                "box": d.map(|d| d.bbox.map(number)),
                "face_score": d.map(|d| number(d.score)),
                "predicted": classes[f.class],
                "probs": probs_by_class(classes, &f.probs),
                "uncertain": is_uncertain(&f.probs, below),
            })
        })
        .collect();
    r.insert("faces".into(), faces.into());
    serde_json::Value::Object(r)
}

/// The answer for one face as people read it: "female 93.1%", or "uncertain (leans female 56.0%)".
fn answer_text(f: &FacePrediction, classes: &[String], below: f32) -> String {
    let (class, p) = (&classes[f.class], f.probs[f.class] * 100.0);
    if is_uncertain(&f.probs, below) {
        format!("uncertain (leans {class} {p:.1}%)")
    } else {
        format!("{class} {p:.1}%")
    }
}

fn print_text(p: &ImagePrediction, classes: &[String], below: f32) {
    let n = p.faces.len();
    for (i, f) in p.faces.iter().enumerate() {
        let what = match &f.region.detection {
            Some(d) => {
                let b = d.bbox;
                format!(
                    "face {}/{n} at [{:.0},{:.0},{:.0},{:.0}] (score {:.2})",
                    i + 1,
                    b[0],
                    b[1],
                    b[2],
                    b[3],
                    d.score
                )
            }
            None => "whole image (no face found)".to_string(),
        };
        println!("{}: {}  {what}", p.path.display(), answer_text(f, classes, below));
    }
}
