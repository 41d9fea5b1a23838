//! The desktop app (eframe/egui): open a dataset, browse and curate its photos, classify new photos,
//! retrain and evaluate.
//!
//! [`GenderApp`] holds everything; [`GenderApp::ui`] draws one frame and is used both by
//! [`eframe::App`] and by the headless tests. Buttons and keys push [`Command`]s that run after the
//! frame; disk and compute run on background threads polled every frame.

pub mod charts;
pub mod classify_panel;
pub mod commands;
pub mod confusion;
pub mod curation;
pub mod grid;
mod layout;
pub mod photos;
pub mod review;
mod review_actions;
mod review_panel;
pub mod state;
pub mod tasks;
pub mod thumbnails;
pub mod train_panel;
pub mod viewer;
pub mod widgets;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use gc_core::classify::Classifier;
use gc_core::context::Context;
use gc_core::dataset::Dataset;
use gc_core::features::extract::Progress;
use gc_core::imaging::has_image_extension;
use gc_core::metrics::Metrics;

pub use commands::{Command, Tab};
use curation::{Curation, Notice, Op};
use photos::Photos;
pub use state::Settings;
use state::{Filters, SplitFilter};
use tasks::{Failure, ModelInfo, Outcome, Picked, Predictions, Task, Waker};
use train_panel::{Finished, Training};

/// How serious a status message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something happened.
    Info,
    /// Something needs attention.
    Warning,
    /// Something failed.
    Error,
}

/// The right-hand panel's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SidePage {
    /// The selected photo.
    Photo,
    /// Photos classified from outside the dataset.
    Classified,
}

type ScanTask = Task<(), (PathBuf, Outcome<Dataset>)>;
type EvalTask = Task<Progress, Outcome<(Predictions, f64)>>;

/// The whole app state.
pub struct GenderApp {
    /// Persisted settings.
    pub settings: Settings,
    waker: Waker,
    started: bool,
    initial_dir: Option<PathBuf>,
    /// The open dataset, once scanned.
    pub photos: Option<Photos>,
    /// The folder being opened.
    pub opening: Option<PathBuf>,
    /// Why the last folder could not be opened.
    pub open_error: Option<String>,
    /// The grid's view and selection.
    pub grid: grid::Grid,
    /// Thumbnail pool and caches.
    pub thumbs: thumbnails::Thumbnails,
    /// The large view.
    pub viewer: viewer::Viewer,
    /// Moves, undo and redo of the open dataset.
    pub curation: Option<Curation>,
    /// Photos classified from outside.
    pub classify: classify_panel::ClassifyPanel,
    /// Training runs.
    pub training: Training,
    /// The dataset audit and review queue.
    pub review: review::Review,
    /// Models found on disk.
    pub models: Vec<ModelInfo>,
    /// The loaded model.
    pub classifier: Option<Arc<Classifier>>,
    /// Path of the loaded (or loading) model.
    pub model_path: Option<PathBuf>,
    /// Why the model could not be loaded.
    pub model_error: Option<String>,
    model_key: usize,
    scan: Option<ScanTask>,
    models_task: Option<Task<(), Vec<ModelInfo>>>,
    model_task: Option<Task<(), Outcome<Arc<Classifier>>>>,
    zero_shot_task: Option<Task<(), Outcome<PathBuf>>>,
    eval: Option<EvalTask>,
    /// Progress of the running prediction pass.
    pub eval_progress: Option<Progress>,
    dialog: Option<Task<(), Picked>>,
    /// The latest status message.
    pub status: Option<(Level, String)>,
    /// Every status message of this session, oldest first.
    pub log: Vec<(Level, String)>,
    pending: Vec<Command>,
    /// The central tab.
    pub tab: Tab,
    /// The right panel's page.
    pub side: SidePage,
    /// Keyboard help shown.
    pub show_help: bool,
    /// Load a model on start and when a dataset opens (tests turn this off to inject predictions).
    pub auto_load_model: bool,
    rt: tasks::Runtime,
    metrics: Option<(u64, SplitFilter, Option<Metrics>)>,
    applied_theme: Option<bool>,
    title: String,
}

impl GenderApp {
    /// Like [`GenderApp::new`] on the CPU, keeping every cache (features, thumbnails, app models)
    /// under `cache_root`.
    pub fn with_cache_root(settings: Settings, dir: Option<PathBuf>, cache_root: &Path) -> Self {
        Self::new(settings, dir, Context::cpu_with_cache(cache_root))
    }

    /// A new app with `settings`, opening `dir` on the first frame (or the most recent folder); every
    /// background task runs on `ctx`'s device, with its models folder and cache root.
    pub fn new(settings: Settings, dir: Option<PathBuf>, ctx: Context) -> Self {
        let waker = Waker::default();
        let rt = tasks::runtime(ctx, &waker);
        let initial_dir = dir.or_else(|| settings.recent.first().filter(|d| d.is_dir()).cloned());
        Self {
            waker: waker.clone(),
            started: false,
            initial_dir,
            photos: None,
            opening: None,
            open_error: None,
            grid: grid::Grid::default(),
            thumbs: thumbnails::Thumbnails::new(2, Some(rt.ctx().thumbnails_dir()), &rt),
            viewer: viewer::Viewer::new(&rt),
            curation: None,
            classify: classify_panel::ClassifyPanel::default(),
            training: Training::default(),
            review: review::Review::default(),
            models: Vec::new(),
            classifier: None,
            model_path: None,
            model_error: None,
            model_key: 0,
            scan: None,
            models_task: None,
            model_task: None,
            zero_shot_task: None,
            eval: None,
            eval_progress: None,
            dialog: None,
            status: None,
            log: Vec::new(),
            pending: Vec::new(),
            tab: Tab::Photos,
            side: SidePage::Photo,
            show_help: false,
            auto_load_model: true,
            rt,
            metrics: None,
            applied_theme: None,
            settings,
            title: String::new(),
        }
    }

    /// Queues a command to run after the current frame.
    pub fn push(&mut self, c: Command) {
        self.pending.push(c);
    }

    /// The text of the latest status message.
    pub fn status_text(&self) -> &str {
        self.status.as_ref().map_or("", |(_, t)| t.as_str())
    }

    /// True while any background work runs (scan, model load, predictions, training, curation, classify).
    pub fn is_busy(&self) -> bool {
        self.scan.is_some()
            || self.models_task.is_some()
            || self.model_task.is_some()
            || self.zero_shot_task.is_some()
            || self.eval.is_some()
            || self.training.is_running()
            || self.review.is_running()
            || self.curation.as_ref().is_some_and(Curation::is_busy)
            || self.classify.pending() > 0 && self.classifier.is_some()
    }

    fn say(&mut self, level: Level, text: impl Into<String>) {
        let text = text.into();
        match level {
            Level::Info => tracing::info!("{text}"),
            Level::Warning => tracing::warn!("{text}"),
            Level::Error => tracing::error!("{text}"),
        }
        self.log.push((level, text.clone()));
        if self.log.len() > 500 {
            self.log.remove(0);
        }
        self.status = Some((level, text));
    }

    /// Handles dropped (or pasted) paths: a folder opens as a dataset, photos get classified.
    pub fn drop_paths(&mut self, paths: Vec<PathBuf>) {
        let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = paths.into_iter().partition(|p| p.is_dir());
        if let Some(d) = dirs.into_iter().next() {
            self.push(Command::OpenDataset(d));
        }
        let (images, others): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|p| has_image_extension(p));
        if !others.is_empty() {
            self.say(
                Level::Warning,
                format!(
                    "{} is not a photo (supported: {}); it was ignored",
                    others[0].display(),
                    gc_core::imaging::IMAGE_EXTENSIONS.join(", ")
                ),
            );
        }
        if !images.is_empty() {
            self.push(Command::ClassifyFiles(images));
        }
    }

    /// Draws one frame (used by eframe and by the tests).
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if !self.started {
            self.start(&ctx);
        }
        if self.applied_theme != Some(self.settings.dark_mode) {
            ctx.set_theme(if self.settings.dark_mode { egui::Theme::Dark } else { egui::Theme::Light });
            self.applied_theme = Some(self.settings.dark_mode);
        }
        self.poll(&ctx);
        self.thumbs.begin_frame(&ctx);
        self.read_input(&ctx);
        if let Some(p) = &self.photos {
            self.grid.refresh(p, &self.settings.filters, self.settings.sort);
        }
        let cursor_path = self.cursor_path();
        self.viewer.show_path(cursor_path.as_deref(), self.classifier.as_ref(), self.model_key);
        self.viewer.pump(&ctx);

        layout::draw(self, ui);

        let thumbs_busy = self.thumbs.end_frame();
        let commands = std::mem::take(&mut self.pending);
        for c in commands {
            self.run(c, &ctx);
        }
        self.update_title(&ctx);
        if thumbs_busy || self.is_busy() || self.viewer.is_busy() || self.dialog.is_some() {
            ctx.request_repaint_after(Duration::from_millis(150));
        }
    }

    fn cursor_path(&self) -> Option<PathBuf> {
        if self.tab == Tab::Review {
            return self.review.current().map(|f| f.members[0].path.clone());
        }
        let p = self.photos.as_ref()?;
        self.grid.cursor.and_then(|id| p.by_id(id)).map(|e| e.path.clone())
    }

    fn start(&mut self, ctx: &egui::Context) {
        self.started = true;
        self.waker.set_context(ctx);
        if let Some(d) = self.initial_dir.take() {
            self.push(Command::OpenDataset(d));
        } else {
            self.refresh_models();
        }
        let model = self.settings.model.clone().filter(|p| p.exists()).or_else(|| {
            let d = self.rt.ctx().default_model();
            d.exists().then_some(d)
        });
        if let Some(m) = model.filter(|_| self.auto_load_model) {
            self.load_model(m);
        }
    }

    fn update_title(&mut self, ctx: &egui::Context) {
        let title = match &self.photos {
            Some(p) => format!(
                "{} — Gender classifier",
                p.root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.root.display().to_string())
            ),
            None => "Gender classifier".to_string(),
        };
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    // ------------------------------------------------------------------------------------------
    // Input

    fn read_input(&mut self, ctx: &egui::Context) {
        let text_focus = ctx.egui_wants_keyboard_input();
        let (mut cmds, dropped, pasted) = ctx.input_mut(|i| {
            let cmds = commands::take_shortcut_commands(i, text_focus);
            let dropped: Vec<PathBuf> = i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect();
            let mut pasted = Vec::new();
            if !text_focus {
                for e in &i.events {
                    if let egui::Event::Paste(text) = e {
                        pasted.extend(parse_pasted_paths(text));
                    }
                }
            }
            (cmds, dropped, pasted)
        });
        // Keys that act on the grid only make sense while it is shown.
        cmds.retain(|c| self.key_applies(c));
        self.pending.extend(cmds);
        if !dropped.is_empty() {
            self.drop_paths(dropped);
        }
        if !pasted.is_empty() {
            self.drop_paths(pasted);
        }
    }

    fn key_applies(&self, c: &Command) -> bool {
        match c {
            Command::RelabelMale
            | Command::RelabelFemale
            | Command::RelabelClass(_)
            | Command::Exclude
            | Command::Next
            | Command::Previous
            | Command::Up
            | Command::Down
            | Command::ExtendNext
            | Command::ExtendPrevious
            | Command::SelectAll => {
                self.photos.is_some()
                    && (self.tab == Tab::Photos || self.tab == Tab::Review && self.review.current().is_some())
            }
            Command::ReviewKeep | Command::ReviewRelabelSuggested => {
                self.tab == Tab::Review && self.review.current().is_some()
            }
            Command::ClearSelection => true,
            Command::AddClassifiedAsPredicted => self.side == SidePage::Classified && self.settings.show_right_panel,
            _ => true,
        }
    }

    // ------------------------------------------------------------------------------------------
    // Background work

    fn poll(&mut self, ctx: &egui::Context) {
        // Dataset scan.
        if let Some(t) = &mut self.scan {
            match t.poll() {
                Ok(p) => {
                    if let Some((dir, result)) = p.done {
                        self.scan = None;
                        self.opening = None;
                        match result {
                            Ok(ds) => self.dataset_opened(ds),
                            Err(e) => {
                                self.open_error = Some(e.to_string());
                                self.say(Level::Error, format!("Cannot open {}: {e}", dir.display()));
                            }
                        }
                    }
                }
                Err(e) => {
                    self.scan = None;
                    self.opening = None;
                    self.say(Level::Error, e.to_string());
                }
            }
        }
        // Model list.
        if let Some(t) = &mut self.models_task
            && let Ok(p) = t.poll().map_err(|_| ())
            && let Some(list) = p.done
        {
            self.models = list;
            self.models_task = None;
            if self.model_path.is_none() && self.model_task.is_none() && self.auto_load_model {
                // No model chosen yet: take the newest one of this dataset (or the shipped one).
                let newest = self.models.iter().find(|m| !m.shipped && m.meta.is_ok()).or_else(|| self.models.first());
                if let Some(m) = newest.map(|m| m.path.clone()) {
                    self.load_model(m);
                } else if self.photos.is_some() {
                    self.say(
                        Level::Warning,
                        "No model yet: press Train new model, or use the zero-shot head (top bar) to start predicting",
                    );
                }
            }
        }
        // Model loading.
        if let Some(t) = &mut self.model_task {
            let r = t.poll();
            match r {
                Ok(p) => {
                    if let Some(result) = p.done {
                        self.model_task = None;
                        match result {
                            Ok(c) => {
                                self.classifier = Some(c);
                                self.model_error = None;
                                self.model_key += 1;
                                if self.photos.is_some() {
                                    self.start_eval();
                                }
                            }
                            Err(e) => {
                                self.model_error = Some(e.to_string());
                                self.say(Level::Error, e.to_string());
                            }
                        }
                    }
                }
                Err(e) => {
                    self.model_task = None;
                    self.say(Level::Error, e.to_string());
                }
            }
        }
        // Zero-shot model.
        if let Some(t) = &mut self.zero_shot_task
            && let Ok(p) = t.poll().map_err(|_| ())
            && let Some(result) = p.done
        {
            self.zero_shot_task = None;
            match result {
                Ok(path) => {
                    self.say(Level::Info, format!("Saved faceres' zero-shot head as {}", path.display()));
                    self.push(Command::ChooseModel(path));
                    self.refresh_models();
                }
                Err(e) => self.say(Level::Error, format!("Cannot make the zero-shot model: {e}")),
            }
        }
        // Predictions.
        if let Some(t) = &mut self.eval {
            match t.poll() {
                Ok(p) => {
                    if let Some(last) = p.progress.into_iter().last() {
                        self.eval_progress = Some(last);
                    }
                    if let Some(result) = p.done {
                        self.eval = None;
                        let progress = self.eval_progress.take();
                        match result {
                            Ok((preds, secs)) => self.predictions_ready(&preds, secs, progress),
                            Err(Failure::Cancelled) => self.say(Level::Info, "Predictions cancelled"),
                            Err(e) => self.say(Level::Error, format!("Cannot predict the dataset: {e}")),
                        }
                    }
                }
                Err(e) => {
                    self.eval = None;
                    self.eval_progress = None;
                    self.say(Level::Error, e.to_string());
                }
            }
        }
        // Audit for the review.
        if let Some(r) = self.review.poll(self.photos.as_ref()) {
            self.audit_finished(r);
        }
        // Training.
        if let Some(f) = self.training.poll() {
            self.training_finished(f);
        }
        // File dialogs.
        if let Some(t) = &mut self.dialog {
            match t.poll() {
                Ok(p) => {
                    if let Some(picked) = p.done {
                        self.dialog = None;
                        match picked {
                            Picked::Folder(Some(d)) => self.push(Command::OpenDataset(d)),
                            Picked::Folder(None) => {}
                            Picked::Files(f) if !f.is_empty() => self.push(Command::ClassifyFiles(f)),
                            Picked::Files(_) => {}
                        }
                    }
                }
                Err(_) => {
                    self.dialog = None;
                    self.say(
                        Level::Error,
                        "The file dialog could not be shown: drop folders or photos onto the window instead",
                    );
                }
            }
        }
        // Curation.
        let mut notices = Vec::new();
        if let (Some(cur), Some(photos)) = (&mut self.curation, &mut self.photos) {
            let thumbs = &mut self.thumbs;
            let viewer = &mut self.viewer;
            notices = cur.pump(photos, |from, to| {
                thumbs.renamed(from, to);
                viewer.renamed(from, to);
            });
        }
        for n in notices {
            match n {
                Notice::Info(t) => self.say(Level::Info, t),
                Notice::Error(t) => self.say(Level::Error, t),
                Notice::CopiedIn { from, to } => {
                    if let Some(p) = &mut self.photos {
                        p.add(to.clone());
                    }
                    self.classify.mark_added(&from, to);
                }
            }
        }
        // Classification of outside photos.
        self.classify.pump(self.classifier.as_ref(), &self.rt);
        let _ = ctx;
    }

    fn dataset_opened(&mut self, ds: Dataset) {
        let root = ds.root.clone();
        let n = ds.items.len();
        let photos = Photos::from_dataset(&ds);
        self.settings.remember_folder(&root);
        self.grid.reset();
        self.thumbs.forget_failures();
        self.open_error = None;
        self.curation = Some(Curation::open(&root, &self.rt));
        let (counts, _) = photos.counts();
        let summary: Vec<String> = photos.classes.iter().zip(&counts).map(|(c, n)| format!("{n} {c}")).collect();
        self.photos = Some(photos);
        self.metrics = None;
        if n == 0 {
            self.say(
                Level::Warning,
                format!(
                    "{} has class folders ({}) but no photos yet: add photos to them",
                    root.display(),
                    summary.join(", ")
                ),
            );
        } else {
            self.say(Level::Info, format!("Opened {}: {}", root.display(), summary.join(", ")));
        }
        self.refresh_models();
        if self.classifier.is_some() && n > 0 {
            self.start_eval();
        }
    }

    fn predictions_ready(&mut self, preds: &Predictions, secs: f64, progress: Option<Progress>) {
        let Some(photos) = &mut self.photos else {
            return;
        };
        photos.set_predictions(preds);
        let mut text = format!("Predicted {} photos in {}", preds.rows.len(), widgets::human_duration(secs));
        if let Some(p) = progress.filter(|p| p.from_cache > 0) {
            text += &format!(" ({} from the feature cache)", p.from_cache);
        }
        if preds.failures.is_empty() {
            self.say(Level::Info, text);
        } else {
            let (path, why) = &preds.failures[0];
            self.say(
                Level::Warning,
                format!("{text}; {} photo(s) could not be read, e.g. {}: {why}", preds.failures.len(), path.display()),
            );
        }
    }

    fn training_finished(&mut self, f: Finished) {
        match f {
            Finished::Model(path, report) => {
                let acc = report.model.meta.test_metrics.as_ref().map(|m| m.accuracy);
                if self.review.decisions.changed() > 0 && self.review.accuracy_after.is_none() {
                    self.review.accuracy_after = acc;
                }
                if let Some(p) = &mut self.photos {
                    p.set_predictions(&Predictions::from_report(&report));
                }
                let mut text = format!("Training finished: saved {}", path.display());
                if let Some(a) = acc {
                    text += &format!(" (test accuracy {:.1}%)", a * 100.0);
                }
                if !report.failures.is_empty() {
                    text += &format!("; {} unreadable photo(s) were skipped", report.failures.len());
                }
                self.say(Level::Info, text);
                self.settings.model = Some(path.clone());
                self.refresh_models();
                self.load_model(path);
            }
            Finished::Cancelled => self.say(
                Level::Info,
                "Training cancelled: nothing was saved (features computed so far are cached, so the next run is faster)",
            ),
            Finished::Failed(e) => self.say(Level::Error, format!("Training failed: {e}")),
        }
    }

    fn refresh_models(&mut self) {
        let root = self.photos.as_ref().map(|p| p.root.clone());
        let extra = self.settings.model.clone();
        let ctx = self.rt.ctx().clone();
        self.models_task =
            Some(self.rt.spawn("list-models", move |_| tasks::list_models(&ctx, root.as_deref(), extra.as_deref())));
    }

    fn load_model(&mut self, path: PathBuf) {
        if let Some(e) = self.eval.take() {
            e.cancel();
        }
        self.eval_progress = None;
        self.classifier = None;
        self.model_error = None;
        self.model_path = Some(path.clone());
        self.settings.model = Some(path.clone());
        if let Some(p) = &mut self.photos {
            p.clear_predictions();
        }
        let ctx = self.rt.ctx().clone();
        self.model_task =
            Some(self.rt.spawn("load-model", move |_| tasks::load_shared(&path, &ctx).map_err(Failure::from)));
    }

    fn start_eval(&mut self) {
        let (Some(c), Some(p)) = (&self.classifier, &self.photos) else {
            return;
        };
        if self.training.is_running() {
            return;
        }
        if let Some(e) = self.eval.take() {
            e.cancel();
        }
        let c = c.clone();
        let root = p.root.clone();
        let cache = self.rt.ctx().feature_cache();
        self.eval_progress = None;
        self.eval = Some(self.rt.spawn("predict-dataset", move |job| {
            let start = std::time::Instant::now();
            tasks::predict_dataset(&root, &c, &cache, &mut |p| _ = job.report(p.clone()), job.cancel_flag())
                .map(|p| (p, start.elapsed().as_secs_f64()))
                .map_err(Failure::from)
        }));
    }

    /// The metrics of the current predictions (cached per change).
    pub fn current_metrics(&mut self) -> Option<Metrics> {
        let photos = self.photos.as_ref()?;
        let split = self.settings.eval_split;
        if let Some((g, s, m)) = &self.metrics
            && *g == photos.generation
            && *s == split
        {
            return m.clone();
        }
        let m = photos.metrics(split);
        self.metrics = Some((photos.generation, split, m.clone()));
        m
    }

    // ------------------------------------------------------------------------------------------
    // Commands

    fn run(&mut self, c: Command, ctx: &egui::Context) {
        let Some(c) = self.review_command(c) else {
            return;
        };
        match c {
            Command::OpenFolderDialog => {
                if self.dialog.is_none() {
                    let start = self.photos.as_ref().map(|p| p.root.clone());
                    self.dialog = Some(tasks::pick_folder(&self.rt, start));
                }
            }
            Command::ClassifyFilesDialog => {
                if self.dialog.is_none() {
                    self.dialog = Some(tasks::pick_files(&self.rt));
                }
            }
            Command::OpenDataset(dir) => self.open_dataset(dir),
            Command::Rescan => {
                if let Some(p) = &self.photos {
                    let d = p.root.clone();
                    self.open_dataset(d);
                }
            }
            Command::ClassifyFiles(files) => {
                let n = files.len();
                self.classify.add_files(files);
                self.side = SidePage::Classified;
                self.settings.show_right_panel = true;
                if self.classifier.is_none() && self.model_task.is_none() {
                    self.say(
                        Level::Warning,
                        "No model loaded: choose one in the top bar, train one, or use the zero-shot head; the photos wait until then",
                    );
                } else {
                    self.say(Level::Info, format!("Classifying {n} photo(s)…"));
                }
            }
            Command::RelabelMale => self.relabel_named("male"),
            Command::RelabelFemale => self.relabel_named("female"),
            Command::RelabelClass(i) => {
                let n = self.photos.as_ref().map_or(0, |p| p.classes.len());
                if i < n {
                    self.relabel(i);
                } else {
                    self.say(Level::Warning, format!("This dataset has {n} classes; key {} has no class", i + 1));
                }
            }
            Command::Exclude => {
                if let (Some(p), Some(cur)) = (&self.photos, &mut self.curation) {
                    let ids = self.grid.selected_ids(p);
                    if !ids.is_empty() {
                        cur.request(Op::Exclude(ids));
                    }
                }
            }
            Command::Undo => {
                if let Some(cur) = &mut self.curation {
                    cur.request(Op::Undo);
                }
            }
            Command::Redo => {
                if let Some(cur) = &mut self.curation {
                    cur.request(Op::Redo);
                }
            }
            Command::Next
            | Command::Previous
            | Command::Down
            | Command::Up
            | Command::ExtendNext
            | Command::ExtendPrevious => {
                if let Some(p) = &self.photos {
                    let cols = self.grid.columns.max(1) as isize;
                    let (d, extend) = match c {
                        Command::Next => (1, false),
                        Command::Previous => (-1, false),
                        Command::Down => (cols, false),
                        Command::Up => (-cols, false),
                        Command::ExtendNext => (1, true),
                        _ => (-1, true),
                    };
                    self.grid.move_cursor(p, d, extend);
                    self.side = SidePage::Photo;
                }
            }
            Command::SelectAll => {
                if let Some(p) = &self.photos {
                    self.grid.select_all(p);
                }
            }
            Command::ClearSelection => {
                if self.show_help {
                    self.show_help = false;
                } else {
                    self.grid.clear_selection();
                }
            }
            Command::AddClassifiedAsPredicted => {
                let Some(i) = self.classify.selected else {
                    return;
                };
                let Some(class) = self.classify.items.get(i).and_then(|it| it.predicted().map(str::to_string)) else {
                    self.say(Level::Warning, "Select a classified photo first (click its thumbnail)");
                    return;
                };
                self.push(Command::AddClassified { index: i, class });
            }
            Command::AddClassified { index, class } => self.add_classified(index, &class),
            Command::StartTraining => self.start_training(),
            Command::CancelTasks => {
                if self.training.is_running() {
                    self.training.cancel();
                    self.say(Level::Info, "Cancelling training…");
                }
                if let Some(e) = &self.eval {
                    e.cancel();
                }
                self.review.cancel();
            }
            Command::ChooseModel(path) => {
                if self.model_path.as_ref() != Some(&path) || self.classifier.is_none() {
                    self.load_model(path);
                }
            }
            Command::UseZeroShotModel => {
                if self.zero_shot_task.is_none() {
                    let dir = self
                        .photos
                        .as_ref()
                        .map_or(self.rt.ctx().cache_root.join("models"), |p| tasks::dataset_models_dir(&p.root));
                    let ctx = self.rt.ctx().clone();
                    self.zero_shot_task = Some(
                        self.rt.spawn("zero-shot", move |_| tasks::save_zero_shot(&dir, &ctx).map_err(Failure::from)),
                    );
                }
            }
            Command::Evaluate => {
                if self.classifier.is_none() {
                    self.say(Level::Warning, "No model loaded: choose, train or make one first");
                } else {
                    self.start_eval();
                }
            }
            Command::FilterConfusionCell { row, col, split } => {
                self.settings.filters =
                    Filters { class: Some(row.clone()), predicted: Some(col.clone()), split, ..Filters::default() };
                self.tab = Tab::Photos;
                self.say(
                    Level::Info,
                    format!("Showing {row} photos predicted {col} ({})", split.label().to_lowercase()),
                );
            }
            Command::ClearFilters => self.settings.filters = Filters::default(),
            Command::ShowTab(t) => self.tab = t,
            Command::ToggleHelp => self.show_help = !self.show_help,
            Command::ToggleRightPanel => self.settings.show_right_panel = !self.settings.show_right_panel,
            Command::ReviewSuspects => self.start_review(),
            Command::ReviewKeep | Command::ReviewRelabelSuggested | Command::ReviewKeepOnly(_) => {}
        }
        let _ = ctx;
    }

    fn open_dataset(&mut self, dir: PathBuf) {
        if self.training.is_running() {
            self.say(Level::Warning, "Wait for the training to finish (or cancel it) before opening another folder");
            return;
        }
        if let Some(e) = self.eval.take() {
            e.cancel();
        }
        self.eval_progress = None;
        self.opening = Some(dir.clone());
        self.open_error = None;
        self.scan = Some(self.rt.spawn("scan", move |_| {
            let r = tasks::scan_dataset(&dir).map_err(Failure::from);
            (dir, r)
        }));
    }

    fn relabel_named(&mut self, name: &str) {
        let Some(p) = &self.photos else { return };
        match p.classes.iter().position(|c| c.eq_ignore_ascii_case(name)) {
            Some(i) => self.relabel(i),
            None => {
                let keys: Vec<String> = p.classes.iter().enumerate().map(|(i, c)| format!("{} = {c}", i + 1)).collect();
                self.say(
                    Level::Warning,
                    format!("This dataset has no '{name}' folder; use the number keys ({})", keys.join(", ")),
                );
            }
        }
    }

    fn relabel(&mut self, class: usize) {
        if let (Some(p), Some(cur)) = (&self.photos, &mut self.curation) {
            let ids = self.grid.selected_ids(p);
            if !ids.is_empty() {
                cur.request(Op::Relabel { ids, class });
            }
        }
    }

    fn add_classified(&mut self, index: usize, class: &str) {
        let Some(item) = self.classify.items.get(index) else {
            return;
        };
        if item.added_as.is_some() {
            return;
        }
        let Some(cur) = &mut self.curation else {
            self.say(Level::Warning, "Open a dataset first to add photos to it");
            return;
        };
        cur.request(Op::CopyIn { from: item.path.clone(), class: class.to_string() });
    }

    fn start_training(&mut self) {
        if self.training.is_running() {
            return;
        }
        let Some(p) = &self.photos else {
            self.say(Level::Warning, "Open a dataset folder first (one sub-folder per class)");
            return;
        };
        let ds_check = {
            let (counts, _) = p.counts();
            counts.iter().filter(|&&n| n > 0).count() >= 2
        };
        if !ds_check {
            self.say(
                Level::Error,
                "Training needs photos in at least two class folders: add photos to the other class",
            );
            return;
        }
        if let Some(e) = self.eval.take() {
            e.cancel();
        }
        self.eval_progress = None;
        let root = p.root.clone();
        self.training.start(&root, &self.settings.train, &self.rt);
        self.tab = Tab::Training;
        self.say(Level::Info, format!("Training on {}…", root.display()));
    }
}

/// Paths in pasted text: one per line, quotes and `file://` removed; only existing paths.
pub fn parse_pasted_paths(text: &str) -> Vec<PathBuf> {
    text.lines()
        .map(|l| l.trim().trim_matches(|c| c == '"' || c == '\''))
        .map(|l| l.strip_prefix("file://").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

impl eframe::App for GenderApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        GenderApp::ui(self, ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, state::SETTINGS_KEY, &self.settings);
    }

    fn on_exit(&mut self) {
        self.training.cancel();
        if let Some(e) = &self.eval {
            e.cancel();
        }
    }
}

/// Opens the app window, optionally on a dataset folder and with a model given on the command line;
/// its tasks run with `ctx` (device, models folder, cache root).
pub fn run_native(ctx: Context, dir: Option<PathBuf>, model: Option<PathBuf>) -> Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Gender classifier")
            .with_app_id("gender-classifier")
            .with_inner_size([1440.0, 900.0])
            .with_min_inner_size([960.0, 600.0])
            .with_drag_and_drop(true),
        persist_window: true,
        ..Default::default()
    };
    let dir = match dir {
        Some(d) if !d.is_dir() => {
            anyhow::bail!("{} is not a folder: give a dataset folder with one sub-folder per class", d.display())
        }
        d => d,
    };
    eframe::run_native(
        "gender-classifier",
        options,
        Box::new(move |cc| {
            let mut settings: Settings =
                cc.storage.and_then(|s| eframe::get_value(s, state::SETTINGS_KEY)).unwrap_or_default();
            if model.is_some() {
                settings.model = model;
            }
            Ok(Box::new(GenderApp::new(settings, dir, ctx)))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the app window: {e} (is a display available?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_text_becomes_existing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a b.jpg");
        std::fs::write(&f, b"x").unwrap();
        let text = format!("\"{}\"\nfile://{}\n/nope/x.jpg\n", f.display(), dir.path().display());
        assert_eq!(parse_pasted_paths(&text), vec![f, dir.path().to_path_buf()]);
    }
}
