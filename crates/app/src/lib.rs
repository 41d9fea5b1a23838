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
pub mod dataset_view;
mod evaluation_tab;
pub mod grid;
pub mod group_table;
mod input;
mod layout;
mod left_panel;
mod model_actions;
pub mod model_compare;
pub mod model_manage;
mod model_panel;
pub mod model_store;
pub mod models;
mod native;
pub mod path_field;
pub mod path_prompt;
pub mod photos;
pub mod review;
mod review_actions;
mod review_panel;
pub mod shell;
pub mod state;
pub mod tasks;
pub mod thumbnails;
pub mod train_guard;
pub mod train_panel;
pub mod viewer;
pub mod widgets;

use std::path::{Path, PathBuf};

use std::time::Duration;

use gc_core::context::Context;
use gc_core::features::extract::Progress;
use gc_core::metrics::Metrics;
use photos::Photos;

pub use commands::{Command, Tab};
use curation::{Notice, Op};
use dataset_view::DatasetView;
pub use input::parse_pasted_paths;
use models::ModelsState;
pub use native::{Launch, WindowError, run_native, settings_from_storage, window_icon};
use shell::Shell;
use state::Filters;
pub use state::Settings;
use tasks::{Predictions, Waker};
use train_panel::Training;

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

/// The whole app state: settings, the runtime its tasks run on, and one part per area of the window,
/// each owning its own state and tasks.
pub struct GenderApp {
    /// Persisted settings.
    pub settings: Settings,
    /// The open dataset: photos, grid, thumbnails, the large view, curation.
    pub data: DatasetView,
    /// Models on disk, the loaded one, predictions of the dataset.
    pub models: ModelsState,
    /// Photos classified from outside.
    pub classify: classify_panel::ClassifyPanel,
    /// Training runs.
    pub training: Training,
    /// The dataset audit and review queue.
    pub review: review::Review,
    /// Status, command queue, tabs, dialogs.
    pub shell: Shell,
    /// Whether file dialogs can be shown, and the path field in their place.
    pub dialogs: path_field::FileDialogs,
    rt: tasks::Runtime,
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
            data: DatasetView::new(&rt, initial_dir),
            models: ModelsState::default(),
            classify: classify_panel::ClassifyPanel::default(),
            training: Training::default(),
            review: review::Review::default(),
            shell: Shell::new(waker),
            dialogs: path_field::FileDialogs::default(),
            rt,
            settings,
        }
    }

    /// Queues a command to run after the current frame.
    pub fn push(&mut self, c: Command) {
        self.shell.pending.push(c);
    }

    /// The device the app's networks run on.
    pub fn device(&self) -> candle_core::Device {
        self.rt.ctx().device.clone()
    }

    /// The text of the latest status message.
    pub fn status_text(&self) -> &str {
        self.shell.status.as_ref().map_or("", |(_, t)| t.as_str())
    }

    /// True while any background work runs (scan, model load, predictions, training, curation, classify).
    pub fn is_busy(&self) -> bool {
        self.data.is_busy()
            || self.models.is_busy()
            || self.training.is_running()
            || self.review.is_running()
            || self.classify.pending() > 0 && self.models.classifier.is_some()
    }

    fn say(&mut self, level: Level, text: impl Into<String>) {
        self.shell.say(level, text.into());
    }

    /// Draws one frame (used by eframe and by the tests).
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        if !self.shell.started {
            self.start(&ctx);
        }
        if self.shell.applied_theme != Some(self.settings.dark_mode) {
            ctx.set_theme(if self.settings.dark_mode { egui::Theme::Dark } else { egui::Theme::Light });
            self.shell.applied_theme = Some(self.settings.dark_mode);
        }
        self.poll(&ctx);
        self.data.thumbs.begin_frame(&ctx);
        self.read_input(&ctx);
        if let Some(p) = &self.data.photos {
            self.data.grid.refresh(p, &self.settings.filters, self.settings.sort);
        }
        let cursor_path = self.cursor_path();
        self.data.viewer.show_path(cursor_path.as_deref(), self.models.classifier.as_ref(), self.models.key);
        self.data.viewer.pump(&ctx);

        layout::draw(self, ui);

        let thumbs_busy = self.data.thumbs.end_frame();
        let commands = std::mem::take(&mut self.shell.pending);
        for c in commands {
            self.run(c, &ctx);
        }
        self.update_title(&ctx);
        if thumbs_busy || self.is_busy() || self.data.viewer.is_busy() || self.shell.dialog.is_some() {
            ctx.request_repaint_after(Duration::from_millis(150));
        }
    }

    fn cursor_path(&self) -> Option<PathBuf> {
        if self.shell.tab == Tab::Review {
            return self.review.current().map(|f| f.members[0].path.clone());
        }
        let p = self.data.photos.as_ref()?;
        self.data.grid.cursor.and_then(|id| p.by_id(id)).map(|e| e.path.clone())
    }

    fn start(&mut self, ctx: &egui::Context) {
        self.shell.started = true;
        self.shell.waker.set_context(ctx);
        if let Some(d) = self.data.initial_dir.take() {
            self.push(Command::OpenDataset(d));
        } else {
            self.refresh_models();
        }
        let model = self.settings.model.clone().filter(|p| p.exists()).or_else(|| {
            let d = self.rt.ctx().default_model();
            d.exists().then_some(d)
        });
        if let Some(m) = model.filter(|_| self.models.auto_load) {
            self.load_model(m);
        }
    }

    fn update_title(&mut self, ctx: &egui::Context) {
        let title = match &self.data.photos {
            Some(p) => format!(
                "{} — Gender classifier",
                p.root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.root.display().to_string())
            ),
            None => "Gender classifier".to_string(),
        };
        if title != self.shell.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.shell.title = title;
        }
    }

    // ------------------------------------------------------------------------------------------
    // Background work

    fn poll(&mut self, ctx: &egui::Context) {
        // Dataset scan.
        match self.data.poll_scan() {
            Some(Ok(photos)) => self.dataset_opened(photos),
            Some(Err(e)) => self.say(Level::Error, e),
            None => {}
        }
        // Models: the list, loading, the zero-shot head, predictions of the dataset.
        for event in self.models.poll(&self.rt) {
            self.model_event(event);
        }
        // Audit for the review.
        if let Some(r) = self.review.poll(self.data.photos.as_ref()) {
            self.audit_finished(r);
        }
        // Training.
        if let Some(f) = self.training.poll() {
            self.training_finished(f);
        }
        self.poll_dialog();
        // Curation.
        let mut notices = Vec::new();
        if let (Some(cur), Some(photos)) = (&mut self.data.curation, &mut self.data.photos) {
            let thumbs = &mut self.data.thumbs;
            let viewer = &mut self.data.viewer;
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
                    if let Some(p) = &mut self.data.photos {
                        p.add(to.clone());
                    }
                    self.classify.mark_added(&from, to);
                }
            }
        }
        // Classification of outside photos; the status says when a batch is done.
        if let Some((level, text)) = self.classify.pump(self.models.classifier.as_ref(), &self.rt) {
            self.say(level, text);
        }
        let _ = ctx;
    }

    fn dataset_opened(&mut self, photos: Photos) {
        let root = photos.root.clone();
        let n = photos.entries.len();
        self.settings.remember_folder(&root);
        let summary = self.data.adopt(&self.rt, photos);
        if n == 0 {
            self.say(
                Level::Warning,
                format!("{} has class folders ({}) but no photos yet: add photos to them", root.display(), summary),
            );
        } else {
            self.say(Level::Info, format!("Opened {}: {}", root.display(), summary));
        }
        self.refresh_models();
        if self.models.classifier.is_some() && n > 0 {
            self.start_eval();
        }
    }

    fn predictions_ready(&mut self, preds: &Predictions, secs: f64, progress: Option<Progress>) {
        let Some(photos) = &mut self.data.photos else {
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

    fn start_eval(&mut self) {
        if self.training.is_running() {
            return;
        }
        if let Some(p) = &self.data.photos {
            self.models.predict(&self.rt, p.root.clone());
        }
    }

    /// The metrics of the current predictions (cached per change).
    pub fn current_metrics(&mut self) -> Option<Metrics> {
        self.data.metrics(self.settings.eval_split)
    }

    // ------------------------------------------------------------------------------------------
    // Commands

    fn run(&mut self, c: Command, ctx: &egui::Context) {
        let Some(c) = self.review_command(c) else {
            return;
        };
        match c {
            Command::OpenFolderDialog => self.open_folder_dialog(),
            Command::ClassifyFilesDialog => self.classify_files_dialog(),
            Command::OpenDataset(dir) => self.open_dataset(dir),
            Command::Rescan => {
                if let Some(p) = &self.data.photos {
                    let d = p.root.clone();
                    self.open_dataset(d);
                }
            }
            Command::ClassifyFiles(files) => {
                let n = files.len();
                self.classify.add_files(files);
                self.shell.side = SidePage::Classified;
                self.settings.show_right_panel = true;
                if self.models.classifier.is_none() && self.models.load_task.is_none() {
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
                let n = self.data.photos.as_ref().map_or(0, |p| p.classes.len());
                if i < n {
                    self.relabel(i);
                } else {
                    self.say(Level::Warning, format!("This dataset has {n} classes; key {} has no class", i + 1));
                }
            }
            Command::Exclude => {
                if let (Some(p), Some(cur)) = (&self.data.photos, &mut self.data.curation) {
                    let ids = self.data.grid.selected_ids(p);
                    if !ids.is_empty() {
                        cur.request(Op::Exclude(ids));
                    }
                }
            }
            Command::Undo => {
                if let Some(cur) = &mut self.data.curation {
                    cur.request(Op::Undo);
                }
            }
            Command::Redo => {
                if let Some(cur) = &mut self.data.curation {
                    cur.request(Op::Redo);
                }
            }
            Command::Next
            | Command::Previous
            | Command::Down
            | Command::Up
            | Command::ExtendNext
            | Command::ExtendPrevious => {
                if let Some(p) = &self.data.photos {
                    let cols = self.data.grid.columns.max(1) as isize;
                    let (d, extend) = match c {
                        Command::Next => (1, false),
                        Command::Previous => (-1, false),
                        Command::Down => (cols, false),
                        Command::Up => (-cols, false),
                        Command::ExtendNext => (1, true),
                        _ => (-1, true),
                    };
                    self.data.grid.move_cursor(p, d, extend);
                    self.shell.side = SidePage::Photo;
                }
            }
            Command::SelectAll => {
                if let Some(p) = &self.data.photos {
                    self.data.grid.select_all(p);
                }
            }
            Command::ClearSelection => {
                if self.shell.show_help {
                    self.shell.show_help = false;
                } else {
                    self.data.grid.clear_selection();
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
                if let Some(e) = &self.models.eval {
                    e.cancel();
                }
                self.review.cancel();
            }
            Command::ChooseModel(path) => {
                if self.models.path.as_ref() != Some(&path) || self.models.classifier.is_none() {
                    self.load_model(path);
                }
            }
            Command::UseZeroShotModel => self.models.make_zero_shot(&self.rt, self.rt.ctx().trained_models_dir()),
            Command::Evaluate => {
                if self.models.classifier.is_none() {
                    self.say(Level::Warning, "No model loaded: choose, train or make one first");
                } else {
                    self.start_eval();
                }
            }
            Command::FilterConfusionCell { row, col, split } => {
                self.settings.filters =
                    Filters { class: Some(row.clone()), predicted: Some(col.clone()), split, ..Filters::default() };
                self.shell.tab = Tab::Photos;
                self.say(
                    Level::Info,
                    format!("Showing {row} photos predicted {col} ({})", split.label().to_lowercase()),
                );
            }
            Command::ClearFilters => self.settings.filters = Filters::default(),
            Command::ShowTab(t) => self.shell.tab = t,
            Command::ToggleHelp => self.shell.show_help = !self.shell.show_help,
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
        if let Some(e) = self.models.eval.take() {
            e.cancel();
        }
        self.models.eval_progress = None;
        self.data.open(&self.rt, dir);
    }

    fn relabel_named(&mut self, name: &str) {
        let Some(p) = &self.data.photos else { return };
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
        if let (Some(p), Some(cur)) = (&self.data.photos, &mut self.data.curation) {
            let ids = self.data.grid.selected_ids(p);
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
        let Some(cur) = &mut self.data.curation else {
            self.say(Level::Warning, "Open a dataset first to add photos to it");
            return;
        };
        cur.request(Op::CopyIn { from: item.path.clone(), class: class.to_string() });
    }

    fn start_training(&mut self) {
        if self.training.is_running() {
            return;
        }
        let Some(p) = &self.data.photos else {
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
        if let Some(e) = self.models.eval.take() {
            e.cancel();
        }
        self.models.eval_progress = None;
        let root = p.root.clone();
        let current = self.models.path.clone().or_else(|| self.settings.model.clone());
        self.training.start(&root, &self.settings.train, current, &self.rt);
        self.shell.tab = Tab::Training;
        self.say(Level::Info, format!("Training on {}…", root.display()));
    }
}
