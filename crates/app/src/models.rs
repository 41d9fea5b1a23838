//! Models as the app holds them: the list found on disk (in the user's data folder), the loaded
//! classifier, and the tasks that list, load, make (zero-shot) and run one over the open dataset.
//! Renaming, exporting, deleting and comparing are in [`ModelManager`] (`model_manage.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gc_core::classify::Classifier;
use gc_core::eval::{EvalScope, evaluate_dataset};
use gc_core::features::extract::Progress;

use crate::model_manage::{ManageEvent, ModelManager};
use crate::model_store::{self, Migration, name_of};
use crate::tasks::{self, Failure, ModelInfo, Outcome, Predictions, Runtime, Task};

/// What listing the models found: the list, and what was moved out of the dataset's old folder.
pub type Listing = (Vec<ModelInfo>, Migration);

/// A prediction pass over the dataset: its predictions and how long it took.
pub type EvalTask = Task<Progress, Outcome<(Predictions, f64)>>;

/// What the models' background work brought, for the app to act on.
#[derive(Debug)]
pub enum ModelEvent {
    /// The list of models on disk was refreshed.
    Listed,
    /// The chosen model is loaded and current.
    Loaded,
    /// Loading or listing failed, or a task stopped; the text says why.
    Failed(String),
    /// Writing the zero-shot head finished.
    ZeroShot(Outcome<PathBuf>),
    /// Predictions of the whole dataset are ready.
    Predicted {
        /// One row per photo.
        predictions: Predictions,
        /// Seconds the pass took.
        secs: f64,
        /// The last progress report (how many came from the cache).
        progress: Option<Progress>,
    },
    /// The prediction pass was cancelled or failed.
    Predicting(Failure),
    /// Models were moved out of the dataset's old models folder (or could not be).
    Migrated(Migration),
    /// A rename, export, deletion or comparison finished.
    Managed(ManageEvent),
}

/// The models on disk, the current one, and their background work.
pub struct ModelsState {
    /// Models found on disk.
    pub list: Vec<ModelInfo>,
    /// The loaded model.
    pub classifier: Option<Arc<Classifier>>,
    /// Path of the loaded (or loading) model.
    pub path: Option<PathBuf>,
    /// Why the model could not be loaded.
    pub error: Option<String>,
    /// Changes whenever the current model changes (views key their caches on it).
    pub key: usize,
    /// Load a model on start and when a dataset opens (tests turn this off to inject predictions).
    pub auto_load: bool,
    /// Progress of the running prediction pass.
    pub eval_progress: Option<Progress>,
    /// The shipped default model's path (known once the first listing started).
    pub shipped_path: Option<PathBuf>,
    /// Rename, export, delete, compare.
    pub manage: ModelManager,
    /// Listing the models on disk.
    pub list_task: Option<Task<(), Listing>>,
    /// Loading the chosen model.
    pub load_task: Option<Task<(), Outcome<Arc<Classifier>>>>,
    /// Writing faceres' zero-shot head as a model.
    pub zero_shot_task: Option<Task<(), Outcome<PathBuf>>>,
    /// Predicting the open dataset.
    pub eval: Option<EvalTask>,
}

impl Default for ModelsState {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            classifier: None,
            path: None,
            error: None,
            key: 0,
            auto_load: true,
            eval_progress: None,
            shipped_path: None,
            manage: ModelManager::default(),
            list_task: None,
            load_task: None,
            zero_shot_task: None,
            eval: None,
        }
    }
}

impl ModelsState {
    /// In the background: moves the models of the dataset at `root` out of its old models folder
    /// into the data folder, then lists the shipped model and those of the data folder (and `extra`).
    pub fn refresh(&mut self, rt: &Runtime, root: Option<PathBuf>, extra: Option<PathBuf>) {
        let ctx = rt.ctx().clone();
        self.shipped_path = Some(ctx.default_model());
        self.list_task = Some(rt.spawn("list-models", move |_| {
            let moved = root.as_ref().map(|r| model_store::migrate_legacy_models(&ctx, r)).unwrap_or_default();
            let extra = extra.map(|p| moved.new_path(&p).map_or(p.clone(), Path::to_path_buf));
            (tasks::list_models(&ctx, root.as_deref(), extra.as_deref()), moved)
        }));
    }

    /// Starts loading the model at `path`; it becomes current when loaded ([`ModelEvent::Loaded`]).
    pub fn load(&mut self, rt: &Runtime, path: PathBuf) {
        if let Some(e) = self.eval.take() {
            e.cancel();
        }
        self.eval_progress = None;
        self.classifier = None;
        self.error = None;
        self.path = Some(path.clone());
        let ctx = rt.ctx().clone();
        self.load_task = Some(rt.spawn("load-model", move |_| tasks::load_shared(&path, &ctx)));
    }

    /// Predicts every photo of the dataset at `root` with the current model (restarting a running pass).
    pub fn predict(&mut self, rt: &Runtime, root: PathBuf) {
        let Some(c) = self.classifier.clone() else {
            return;
        };
        if let Some(e) = self.eval.take() {
            e.cancel();
        }
        let cache = rt.ctx().feature_cache();
        self.eval_progress = None;
        self.eval = Some(rt.spawn("predict-dataset", move |job| {
            let start = std::time::Instant::now();
            evaluate_dataset(
                &root,
                &c,
                EvalScope::All,
                &cache,
                16,
                &mut |p| _ = job.report(p.clone()),
                job.cancel_flag(),
            )
            .map(|report| (Predictions::from_eval(report, &c), start.elapsed().as_secs_f64()))
            .map_err(Failure::from)
        }));
    }

    /// Writes faceres' zero-shot head as a model under `dir` in the background.
    pub fn make_zero_shot(&mut self, rt: &Runtime, dir: PathBuf) {
        if self.zero_shot_task.is_none() {
            let ctx = rt.ctx().clone();
            self.zero_shot_task = Some(rt.spawn("zero-shot", move |_| tasks::save_zero_shot(&dir, &ctx)));
        }
    }

    /// The model to load when none was chosen: the newest one trained on the open dataset, else
    /// the first listed (the shipped default).
    pub fn newest(&self) -> Option<PathBuf> {
        self.list.iter().find(|m| m.trained_here).or_else(|| self.list.first()).map(|m| m.path.clone())
    }

    /// The entry of the list for `path`.
    pub fn info(&self, path: &Path) -> Option<&ModelInfo> {
        self.list.iter().find(|m| m.path == path)
    }

    /// "Model: default (shipped, head on web-faces)": the current model by name and how it was
    /// made, for the status bar.
    pub fn status_text(&self) -> String {
        let Some(path) = &self.path else {
            return "Model: none (choose one in the top bar)".into();
        };
        let name = name_of(path);
        if self.load_task.is_some() {
            return format!("Model: loading {name}…");
        }
        if self.error.is_some() {
            return format!("Model: {name} (not loaded)");
        }
        let shipped = self.shipped_path.as_ref() == Some(path) || self.info(path).is_some_and(|m| m.shipped);
        match (&self.classifier, self.info(path)) {
            (Some(c), _) => format!("Model: {name} ({})", model_store::how_trained(&c.model.meta, shipped)),
            (None, Some(m)) => format!("Model: {name} ({})", m.how_trained()),
            (None, None) => format!("Model: {name}"),
        }
    }

    /// Collects what the tasks finished since the last frame.
    pub fn poll(&mut self, rt: &Runtime) -> Vec<ModelEvent> {
        let mut events: Vec<ModelEvent> = self.manage.poll(rt).into_iter().map(ModelEvent::Managed).collect();
        if let Some(t) = &mut self.list_task {
            match t.poll() {
                Ok(p) => {
                    if let Some((list, moved)) = p.done {
                        self.list = list;
                        self.list_task = None;
                        if let Some(s) = self.manage.selected.clone().filter(|s| self.info(s).is_none()) {
                            self.manage.selected = moved.new_path(&s).map(Path::to_path_buf);
                        }
                        if !moved.is_empty() {
                            events.push(ModelEvent::Migrated(moved));
                        }
                        events.push(ModelEvent::Listed);
                    }
                }
                Err(e) => {
                    self.list_task = None;
                    events.push(ModelEvent::Failed(e.to_string()));
                }
            }
        }
        if let Some(t) = &mut self.load_task {
            match t.poll() {
                Ok(p) => match p.done {
                    Some(Ok(c)) => {
                        self.load_task = None;
                        self.classifier = Some(c);
                        self.error = None;
                        self.key += 1;
                        events.push(ModelEvent::Loaded);
                    }
                    Some(Err(e)) => {
                        self.load_task = None;
                        self.error = Some(e.to_string());
                        events.push(ModelEvent::Failed(e.to_string()));
                    }
                    None => {}
                },
                Err(e) => {
                    self.load_task = None;
                    events.push(ModelEvent::Failed(e.to_string()));
                }
            }
        }
        if let Some(t) = &mut self.zero_shot_task {
            match t.poll() {
                Ok(p) => {
                    if let Some(r) = p.done {
                        self.zero_shot_task = None;
                        events.push(ModelEvent::ZeroShot(r));
                    }
                }
                Err(e) => {
                    self.zero_shot_task = None;
                    events.push(ModelEvent::ZeroShot(Err(Failure::Failed(e.to_string()))));
                }
            }
        }
        if let Some(t) = &mut self.eval {
            match t.poll() {
                Ok(p) => {
                    if let Some(last) = p.progress.into_iter().last() {
                        self.eval_progress = Some(last);
                    }
                    if let Some(result) = p.done {
                        self.eval = None;
                        let progress = self.eval_progress.take();
                        events.push(match result {
                            Ok((predictions, secs)) => ModelEvent::Predicted { predictions, secs, progress },
                            Err(e) => ModelEvent::Predicting(e),
                        });
                    }
                }
                Err(e) => {
                    self.eval = None;
                    self.eval_progress = None;
                    events.push(ModelEvent::Predicting(Failure::Failed(e.to_string())));
                }
            }
        }
        events
    }

    /// True while any of the models' tasks runs.
    pub fn is_busy(&self) -> bool {
        self.list_task.is_some()
            || self.load_task.is_some()
            || self.zero_shot_task.is_some()
            || self.eval.is_some()
            || self.manage.is_busy()
    }
}
