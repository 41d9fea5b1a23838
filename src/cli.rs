//! The command-line interface: `train`, `eval`, `classify`, `faces`, `bench`, `app`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use gc_core::classify::{Classifier, ImagePrediction};
use gc_core::context::Context;
use gc_core::dataset::collect_images;
use gc_core::dataset::split::{Split, SplitSpec};
use gc_core::eval::{EvalScope, evaluate_dataset};
use gc_core::features::extract::Progress;
use gc_core::metrics::format_report;
use gc_core::train::TrainOptions;
use gc_core::train::run::{TrainConfig, TrainEvent, train_dataset};
use gc_engine::BackboneKind;

/// Tells whether the person in a photo is a man or a woman; builds, cleans and retrains the dataset.
#[derive(Debug, Parser)]
#[command(name = "gender-classifier", version, about, long_about = None)]
pub struct Cli {
    /// Compute device: auto (the fastest present), cpu, cuda or metal (GPU ones need the matching cargo feature).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: String,
    /// Cache folder, holding `features/` and `thumbs/` (default: $GENDER_CLASSIFIER_CACHE, else the user cache dir).
    #[arg(long, global = true)]
    pub cache: Option<PathBuf>,
    /// Folder with the shipped weights and default model (default: $GENDER_CLASSIFIER_MODELS, ./models, else the build's models/).
    #[arg(long, global = true)]
    pub models: Option<PathBuf>,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do; without one, the desktop app opens.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a new head on a dataset folder (one sub-folder per class).
    Train(TrainArgs),
    /// Evaluate a model on a dataset folder.
    Eval(EvalArgs),
    /// Classify photos (files or folders, searched recursively).
    Classify(ClassifyArgs),
    /// List face detections as JSON.
    Faces(FacesArgs),
    /// Find duplicates, likely wrong labels, faceless, tiny and outlying images in a dataset folder.
    Audit(AuditArgs),
    /// Measure extraction and training speed.
    Bench(crate::bench::BenchArgs),
    /// Write faceres' own (zero-shot) gender head as a model file.
    ZeroShot {
        /// Where to write the model: one `.safetensors` file holding the weights and their description.
        #[arg(long, short, default_value = "zero-shot.safetensors")]
        out: PathBuf,
        /// Classify whole images instead of face crops.
        #[arg(long)]
        no_face_crop: bool,
    },
    /// Open the desktop app, optionally on a dataset folder.
    App {
        /// Dataset folder to open.
        dir: Option<PathBuf>,
        /// Model to load instead of the last one used (or the shipped default).
        #[arg(long)]
        model: Option<PathBuf>,
    },
}

/// `train` arguments.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Dataset folder with one sub-folder per class.
    pub dir: PathBuf,
    /// Backbone: faceres or inception-v3.
    #[arg(long, default_value = "faceres")]
    pub backbone: BackboneKind,
    /// Where to write the model: one `.safetensors` file holding the weights and their description.
    #[arg(long, short, default_value = "model.safetensors")]
    pub out: PathBuf,
    /// Do not detect and crop faces; use whole images.
    #[arg(long)]
    pub no_face_crop: bool,
    /// Learning rate.
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    pub lr: f64,
    /// Maximum epochs.
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    pub epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    pub batch_size: usize,
    /// L2 penalty.
    #[arg(long, default_value_t = TrainOptions::default().l2)]
    pub l2: f64,
    /// Dropout on the bottleneck.
    #[arg(long, default_value_t = TrainOptions::default().dropout)]
    pub dropout: f32,
    /// Do not re-weight classes to equal importance.
    #[arg(long)]
    pub no_balance: bool,
    /// Early-stopping patience in epochs (0 = off).
    #[arg(long, default_value_t = TrainOptions::default().patience)]
    pub patience: usize,
    /// Random seed.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub seed: u64,
    /// Start from faceres' own gender head (faceres only).
    #[arg(long)]
    pub warm_start: bool,
    /// Percent of images for validation.
    #[arg(long, default_value_t = SplitSpec::default().validation_pct)]
    pub validation_pct: f64,
    /// Percent of images for the test split.
    #[arg(long, default_value_t = SplitSpec::default().test_pct)]
    pub test_pct: f64,
    /// Use at most this many images per class.
    #[arg(long)]
    pub max_per_class: Option<usize>,
    /// Images per backbone forward pass.
    #[arg(long, default_value_t = 16)]
    pub extract_batch: usize,
}

/// `eval` arguments.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Dataset folder with one sub-folder per class.
    pub dir: PathBuf,
    /// Model file (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Which images: all, train, validation or test (default: test if DIR is the model's training folder, else all).
    #[arg(long)]
    pub split: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `classify` arguments.
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// Image files or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Model file (default: the shipped default model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Classify whole images (no face detection).
    #[arg(long)]
    pub no_face_crop: bool,
    /// Print JSON.
    #[arg(long, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV.
    #[arg(long)]
    pub csv: bool,
}

/// `audit` arguments.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Dataset folder with one sub-folder per class.
    pub dir: PathBuf,
    /// Backbone whose features are compared: faceres or inception-v3.
    #[arg(long, default_value = "faceres")]
    pub backbone: BackboneKind,
    /// Use whole images instead of face crops.
    #[arg(long)]
    pub no_face_crop: bool,
    /// Folds of the out-of-fold training that ranks likely wrong labels.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Show findings the user already kept in the app's review.
    #[arg(long)]
    pub include_kept: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `faces` arguments.
#[derive(Debug, Args)]
pub struct FacesArgs {
    /// Image files or folders.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// The cancel flag shared with the Ctrl-C handler.
pub fn install_ctrlc() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    if let Err(e) = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst)) {
        tracing::warn!("cannot install the Ctrl-C handler: {e}");
    }
    flag
}

/// A reader that closes stdout (`| head`) ends the process quietly, as it does any Unix filter,
/// instead of a panic in `println!`.
fn quiet_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: restoring the default action of one signal, before any other thread writes to stdout.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// A fault point that stands in for the user's Ctrl-C, so that a test interrupts a run at a known
/// place instead of racing a signal against the work: where `FAILPOINTS` sets `$name` to
/// `return(sigint)` (`cli::progress=2*off->return(sigint)` fires on the third call), the process
/// sends itself SIGINT, which goes through the real handler of [`install_ctrlc`], and waits until
/// that handler has set `$cancel`, so the next check of the flag stops the run. Nothing is compiled
/// in unless the tests build the binary with the `fail` crate's `failpoints` feature.
///
/// The points: `cli::progress` after each chunk of feature extraction reports progress (`train`,
/// `eval`, `audit`; the first call is the report before any chunk), `cli::classified` after each
/// photo of `classify`.
macro_rules! interrupt_point {
    ($name:literal, $cancel:expr) => {
        let fire = || -> bool {
            fail::fail_point!($name, |arg: Option<String>| arg.as_deref() == Some("sigint"));
            false
        };
        if fire() {
            interrupt_self($cancel);
        }
    };
}

/// Sends this process SIGINT and waits (at most 10 s) until the Ctrl-C handler has set `cancel`.
fn interrupt_self(cancel: &AtomicBool) {
    #[cfg(unix)]
    // SAFETY: `raise` sends a signal to this thread; the handler that `install_ctrlc` installed
    // only writes to a pipe, which the ctrlc crate's thread reads before it sets the flag.
    unsafe {
        libc::raise(libc::SIGINT);
    }
    #[cfg(not(unix))]
    cancel.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cancel.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn progress_bar(label: &str) -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(label.to_string());
    pb
}

fn update_bar(pb: &ProgressBar, p: &Progress) {
    pb.set_length(p.total as u64);
    pb.set_position(p.done as u64);
}

/// What every subcommand does when feature extraction reports progress.
fn on_extract_progress(pb: &ProgressBar, p: &Progress, cancel: &AtomicBool) {
    update_bar(pb, p);
    interrupt_point!("cli::progress", cancel);
}

/// Runs a parsed command line (everything except `app`).
pub fn run(cli: &Cli, ctx: &Context) -> Result<()> {
    quiet_on_closed_stdout();
    let cancel = install_ctrlc();
    match cli.command.as_ref().expect("app handled by main") {
        Command::Train(a) => train(ctx, a, &cancel),
        Command::Eval(a) => eval(ctx, a, &cancel),
        Command::Classify(a) => classify(ctx, a, &cancel),
        Command::Faces(a) => faces(ctx, a, &cancel),
        Command::Audit(a) => audit(ctx, a, &cancel),
        Command::Bench(a) => crate::bench::run(a, ctx),
        Command::ZeroShot { out, no_face_crop } => {
            gc_core::train::run::zero_shot_model(ctx, !no_face_crop)?.save(out)?;
            eprintln!("zero-shot model written to {}", out.display());
            Ok(())
        }
        Command::App { .. } => unreachable!("the app is started by main"),
    }
}

fn cancelled_or(e: gc_core::error::Error) -> anyhow::Error {
    let e = anyhow::Error::from(e);
    // The chain keeps the typed `Cancelled`, which `main` turns into exit code 130.
    if gc_core::error::is_cancelled(e.as_ref()) { e.context("interrupted") } else { e }
}

fn train(ctx: &Context, a: &TrainArgs, cancel: &AtomicBool) -> Result<()> {
    let cfg = TrainConfig {
        backbone: a.backbone,
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
    let pb = progress_bar("features");
    let mut last_epoch = None;
    let report = train_dataset(
        &a.dir,
        &cfg,
        ctx,
        &mut |e| match e {
            TrainEvent::Loading => pb.set_message("loading"),
            TrainEvent::Extracting(p) => {
                pb.set_message("features");
                on_extract_progress(&pb, &p, cancel);
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

fn parse_scope(s: &str) -> Result<EvalScope> {
    Ok(match s {
        "all" => EvalScope::All,
        "train" => EvalScope::Only(Split::Train),
        "validation" => EvalScope::Only(Split::Validation),
        "test" => EvalScope::Only(Split::Test),
        other => bail!("unknown split '{other}': use all, train, validation or test"),
    })
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn eval(ctx: &Context, a: &EvalArgs, cancel: &AtomicBool) -> Result<()> {
    let model_path = a.model.clone().unwrap_or_else(|| ctx.default_model());
    let classifier = Classifier::load(&model_path, ctx)?;
    let trained_here = classifier.model.meta.dataset.as_ref().is_some_and(|d| same_dir(&d.root, &a.dir));
    let scope = match &a.split {
        Some(s) => parse_scope(s)?,
        None if trained_here => EvalScope::Only(Split::Test),
        None => EvalScope::All,
    };
    let pb = progress_bar("features");
    let report = evaluate_dataset(
        &a.dir,
        &classifier,
        scope,
        &ctx.feature_cache(),
        16,
        &mut |p| on_extract_progress(&pb, p, cancel),
        cancel,
    )
    .map_err(cancelled_or)?;
    pb.finish_and_clear();
    for (path, why) in &report.failures {
        eprintln!("skipped {}: {why}", path.display());
    }
    if a.json {
        let wrong: Vec<_> = report.misclassified();
        let out = serde_json::json!({
            "scope": format!("{scope:?}"),
            "model": model_path.to_string_lossy(),
            "metrics": report.metrics,
            "misclassified": wrong,
            "skipped": skipped_records(&report.failures),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
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
    Ok(())
}

fn load_classifier(model: &Option<PathBuf>, no_face_crop: bool, ctx: &Context) -> Result<Classifier> {
    let path = model.clone().unwrap_or_else(|| ctx.default_model());
    let mut m = gc_core::model_file::Model::load(&path, &ctx.device)?;
    if no_face_crop {
        m.meta.preprocess.face_crop = false;
    }
    Ok(Classifier::new(m, ctx)?)
}

fn classify(ctx: &Context, a: &ClassifyArgs, cancel: &AtomicBool) -> Result<()> {
    let classifier = load_classifier(&a.model, a.no_face_crop, ctx)?;
    let files = collect_images(&a.paths)?;
    if files.is_empty() {
        bail!("no image files found in {}: give photos or folders that hold photos", list_paths(&a.paths));
    }
    let classes = classifier.classes().to_vec();
    let mut results = Vec::new();
    let mut failed = 0;
    if a.csv {
        println!(
            "path,face,x1,y1,x2,y2,face_score,predicted,{}",
            classes.iter().map(|c| format!("p_{c}")).collect::<Vec<_>>().join(",")
        );
    }
    let mut interrupted = false;
    for f in &files {
        if cancel.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        match classifier.classify_file(f) {
            Ok(p) => {
                if a.csv {
                    print_csv(&p, &classes);
                } else if !a.json {
                    print_human(&p, &classes);
                }
                results.push(with_path_bytes(serde_json::to_value(&p)?, &p.path));
            }
            Err(e) => {
                failed += 1;
                eprintln!("skipped {}: {}", f.display(), gc_core::error::describe(&e));
            }
        }
        interrupt_point!("cli::classified", cancel);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "classes": classes, "images": results }))?);
    }
    if interrupted {
        return Err(anyhow::Error::from(gc_core::error::Cancelled).context(format!(
            "interrupted after {} of {} photos",
            results.len() + failed,
            files.len()
        )));
    }
    if results.is_empty() {
        bail!("none of the {failed} files could be classified (see the reasons above)");
    }
    Ok(())
}

/// `[{"path": .., "error": ..}]` for files that were skipped, with `path_bytes` where needed.
fn skipped_records(failures: &[(PathBuf, String)]) -> Vec<serde_json::Value> {
    let record = |(p, why): &(PathBuf, String)| {
        let mut r = gc_core::path_text::json_record(p);
        r.insert("error".into(), why.clone().into());
        serde_json::Value::Object(r)
    };
    failures.iter().map(record).collect()
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Adds `path_bytes` to a record whose `path` is not UTF-8 (see `gc_core::path_text`).
fn with_path_bytes(mut record: serde_json::Value, path: &Path) -> serde_json::Value {
    if let (Some(obj), Some(bytes)) = (record.as_object_mut(), gc_core::path_text::bytes_if_not_utf8(path)) {
        obj.insert("path_bytes".into(), bytes.into());
    }
    record
}

fn print_human(p: &ImagePrediction, classes: &[String]) {
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
        println!("{}: {} {:.1}%  {what}", p.path.display(), classes[f.class], f.probs[f.class] * 100.0);
    }
}

fn print_csv(p: &ImagePrediction, classes: &[String]) {
    for (i, f) in p.faces.iter().enumerate() {
        let (b, s) = match &f.region.detection {
            Some(d) => (d.bbox, d.score),
            None => ([0.0; 4], 0.0),
        };
        let path = p.path.display().to_string().replace('"', "\"\"");
        let probs: Vec<String> = f.probs.iter().map(|v| format!("{v:.5}")).collect();
        println!(
            "\"{path}\",{i},{:.1},{:.1},{:.1},{:.1},{s:.4},{},{}",
            b[0],
            b[1],
            b[2],
            b[3],
            classes[f.class],
            probs.join(",")
        );
    }
}

fn audit(ctx: &Context, a: &AuditArgs, cancel: &AtomicBool) -> Result<()> {
    if a.folds < 2 {
        bail!("--folds must be at least 2");
    }
    let opts = gc_core::audit::AuditOptions { folds: a.folds, ..Default::default() };
    let pb = progress_bar("features");
    let mut report = gc_core::audit::audit_dataset(
        &a.dir,
        gc_core::preprocess::PreprocessSpec::new(a.backbone, !a.no_face_crop),
        &opts,
        ctx,
        &mut |p| on_extract_progress(&pb, p, cancel),
        cancel,
    )
    .map_err(cancelled_or)?;
    pb.finish_and_clear();
    if !a.include_kept {
        let log = gc_core::audit::review::ReviewLog::open(&a.dir)?;
        report.findings.retain(|f| !log.is_kept(f));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", gc_core::audit::format_text(&report));
    }
    Ok(())
}

fn faces(ctx: &Context, a: &FacesArgs, cancel: &AtomicBool) -> Result<()> {
    let finder = gc_core::face::FaceFinder::load(ctx)?;
    let files = collect_images(&a.paths)?;
    if files.is_empty() {
        bail!("no image files found in {}: give photos or folders that hold photos", list_paths(&a.paths));
    }
    let mut out = Vec::new();
    let mut failed = 0;
    for f in &files {
        if cancel.load(Ordering::Relaxed) {
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
    println!("{}", serde_json::to_string_pretty(&out).context("cannot format JSON")?);
    if cancel.load(Ordering::Relaxed) {
        return Err(anyhow::Error::from(gc_core::error::Cancelled).context(format!(
            "interrupted after {} of {} photos",
            out.len(),
            files.len()
        )));
    }
    if failed == files.len() {
        bail!("none of the {failed} files could be read (see the reasons above)");
    }
    Ok(())
}
