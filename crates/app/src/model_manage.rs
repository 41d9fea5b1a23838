//! What the user does to models in the Models tab: rename, export, delete to the trash, compare
//! two. Each is a task on the app's runtime; [`ModelManager::poll`] turns their results into
//! [`ManageEvent`]s for the app (status line, current model, list refresh).

use std::path::PathBuf;
use std::sync::Arc;

use gc_core::classify::Classifier;

use crate::model_compare::{CompareProgress, CompareTask, Comparison, compare_models};
use crate::model_store::{self, SystemTrash, Trash, name_of};
use crate::path_prompt::{PathPrompt, PromptAnswer};
use crate::tasks::{Failure, Outcome, Runtime, Task};

/// What a finished piece of model management means for the app.
#[derive(Debug)]
pub enum ManageEvent {
    /// A model was renamed: paths that pointed at `from` now point at `to`.
    Renamed {
        /// The old path.
        from: PathBuf,
        /// The new path.
        to: PathBuf,
    },
    /// A model was exported to this path.
    Exported(PathBuf),
    /// A model went to the trash.
    Deleted(PathBuf),
    /// A comparison finished (it is in [`ModelManager::comparison`]).
    Compared,
    /// No file dialog here: the path field shows instead (the text says why).
    NoDialog(String),
    /// Something failed; the text says what and what to do.
    Failed(String),
}

/// Where the export dialog task ended.
#[derive(Debug)]
pub enum SaveChoice {
    /// The user picked this path (and confirmed overwriting it, if it exists).
    Path(PathBuf),
    /// The user closed the dialog.
    Cancelled,
    /// No dialog is available (for the reason given): ask with a [`PathPrompt`] starting at this path.
    NoDialog(PathBuf, String),
}

/// The Models tab's state and tasks.
pub struct ModelManager {
    /// The model whose details show.
    pub selected: Option<PathBuf>,
    /// The name field of the selected model.
    pub rename_text: String,
    /// Why the last rename was refused.
    pub rename_error: Option<String>,
    /// The model waiting for the user to confirm its deletion.
    pub confirm_delete: Option<PathBuf>,
    /// The two models chosen for comparison.
    pub compare_pick: [Option<PathBuf>; 2],
    /// The last comparison.
    pub comparison: Option<Comparison>,
    /// Progress of the running comparison.
    pub compare_progress: Option<CompareProgress>,
    /// The path field shown where no file dialog is available, with the model it exports.
    pub export_prompt: Option<(PathBuf, PathPrompt)>,
    /// Where deletions go (the system trash; tests put a recorder here).
    pub trash: Arc<dyn Trash>,
    rename_task: Option<Task<(), Outcome<(PathBuf, PathBuf)>>>,
    export_dialog: Option<(PathBuf, Task<(), SaveChoice>)>,
    export_task: Option<Task<(), Outcome<PathBuf>>>,
    delete_task: Option<Task<(), Outcome<PathBuf>>>,
    compare_task: Option<CompareTask>,
}

impl Default for ModelManager {
    fn default() -> Self {
        Self {
            selected: None,
            rename_text: String::new(),
            rename_error: None,
            confirm_delete: None,
            compare_pick: [None, None],
            comparison: None,
            compare_progress: None,
            export_prompt: None,
            trash: Arc::new(SystemTrash),
            rename_task: None,
            export_dialog: None,
            export_task: None,
            delete_task: None,
            compare_task: None,
        }
    }
}

impl ModelManager {
    /// Shows the details of the model at `path` (its name goes into the rename field).
    pub fn select(&mut self, path: PathBuf) {
        self.rename_text = name_of(&path);
        self.rename_error = None;
        self.selected = Some(path);
    }

    /// Renames the model at `path` to `name` in the background.
    pub fn rename(&mut self, rt: &Runtime, path: PathBuf, name: String) {
        if self.rename_task.is_some() {
            return;
        }
        self.rename_error = None;
        let ctx = rt.ctx().clone();
        self.rename_task =
            Some(rt.spawn("rename-model", move |_| model_store::rename_model(&ctx, &path, &name).map(|to| (path, to))));
    }

    /// Asks where to export the model at `path`: the save dialog, or the path field where there
    /// is no dialog (`no_dialog` says why, e.g. `path_field::probe_file_dialog`'s reason).
    pub fn export(&mut self, rt: &Runtime, path: PathBuf, no_dialog: Option<String>) {
        if self.export_dialog.is_some() || self.export_prompt.is_some() {
            return;
        }
        let file = format!("{}.{}", name_of(&path), model_store::MODEL_EXT);
        let task = rt.spawn("export-dialog", move |_| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            if let Some(why) = no_dialog {
                return SaveChoice::NoDialog(home.join(&file), why);
            }
            let picked = rfd::FileDialog::new()
                .set_title("Export the model")
                .set_file_name(&file)
                .add_filter("Model", &[model_store::MODEL_EXT])
                .save_file();
            picked.map_or(SaveChoice::Cancelled, SaveChoice::Path)
        });
        self.export_dialog = Some((path, task));
    }

    fn start_export(&mut self, rt: &Runtime, model: PathBuf, dest: PathBuf, overwrite: bool) {
        self.export_task = Some(rt.spawn("export-model", move |_| model_store::export_model(&model, &dest, overwrite)));
    }

    /// Asks the user to confirm moving the model at `path` to the trash.
    pub fn ask_delete(&mut self, path: PathBuf) {
        self.confirm_delete = Some(path);
    }

    /// Moves the model at `path` to the trash in the background (after the user confirmed).
    pub fn delete(&mut self, rt: &Runtime, path: PathBuf) {
        self.confirm_delete = None;
        if self.delete_task.is_some() {
            return;
        }
        let ctx = rt.ctx().clone();
        let trash = self.trash.clone();
        self.delete_task = Some(rt.spawn("delete-model", move |_| model_store::delete_model(&ctx, &*trash, &path)));
    }

    /// Compares the two picked models on the dataset at `root` (reusing the `loaded` model).
    pub fn compare(&mut self, rt: &Runtime, root: PathBuf, loaded: Option<(PathBuf, Arc<Classifier>)>) {
        let [Some(a), Some(b)] = self.compare_pick.clone() else { return };
        if let Some(t) = self.compare_task.take() {
            t.cancel();
        }
        self.comparison = None;
        self.compare_progress = None;
        let ctx = rt.ctx().clone();
        self.compare_task =
            Some(rt.spawn("compare-models", move |job| compare_models(&ctx, &root, [a, b], loaded, job)));
    }

    /// Stops a running comparison.
    pub fn cancel_compare(&mut self) {
        if let Some(t) = &self.compare_task {
            t.cancel();
        }
    }

    /// True while a comparison runs.
    pub fn is_comparing(&self) -> bool {
        self.compare_task.is_some()
    }

    /// True while a rename, export, deletion or comparison runs.
    pub fn is_busy(&self) -> bool {
        self.rename_task.is_some()
            || self.export_dialog.is_some()
            || self.export_task.is_some()
            || self.delete_task.is_some()
            || self.compare_task.is_some()
    }

    /// True while the file is being renamed, exported or deleted (its buttons wait).
    pub fn is_changing_files(&self) -> bool {
        self.rename_task.is_some() || self.export_task.is_some() || self.delete_task.is_some()
    }

    /// Draws the export path field when it is open, and starts the export of a typed path.
    pub fn show_prompt(&mut self, rt: &Runtime, ctx: &egui::Context) {
        let Some((model, prompt)) = &mut self.export_prompt else { return };
        match prompt.show(ctx) {
            Some(PromptAnswer::Chosen(dest)) => {
                let model = model.clone();
                self.start_export(rt, model, dest, false);
            }
            Some(PromptAnswer::Cancelled) => self.export_prompt = None,
            None => {}
        }
    }

    /// Collects what the tasks finished since the last frame.
    pub fn poll(&mut self, rt: &Runtime) -> Vec<ManageEvent> {
        let mut events = Vec::new();
        if let Some(r) = finished(&mut self.rename_task) {
            match r {
                Ok((from, to)) => {
                    if self.selected.as_ref() == Some(&from) {
                        self.select(to.clone());
                    }
                    for p in self.compare_pick.iter_mut().filter(|p| p.as_ref() == Some(&from)) {
                        *p = Some(to.clone());
                    }
                    events.push(ManageEvent::Renamed { from, to });
                }
                Err(e) => {
                    self.rename_error = Some(e.to_string());
                    events.push(ManageEvent::Failed(format!("Rename refused: {e}")));
                }
            }
        }
        if let Some((model, mut task)) = self.export_dialog.take() {
            match task.poll() {
                Ok(p) => match p.done {
                    Some(SaveChoice::Path(dest)) => self.start_export(rt, model, dest, true),
                    Some(SaveChoice::Cancelled) => {}
                    Some(SaveChoice::NoDialog(initial, why)) => {
                        let why = format!("No file dialog on this system ({why}): type where to save the model.");
                        let prompt = PathPrompt::new("Export model", why.clone(), &initial);
                        self.export_prompt = Some((model, prompt));
                        events.push(ManageEvent::NoDialog(why));
                    }
                    None => self.export_dialog = Some((model, task)),
                },
                Err(e) => events.push(ManageEvent::Failed(format!("The save dialog failed: {e}"))),
            }
        }
        if let Some(r) = finished(&mut self.export_task) {
            match r {
                Ok(to) => {
                    self.export_prompt = None;
                    events.push(ManageEvent::Exported(to));
                }
                Err(e) => {
                    if let Some((_, prompt)) = &mut self.export_prompt {
                        prompt.set_error(e.to_string());
                    }
                    events.push(ManageEvent::Failed(format!("Export failed: {e}")));
                }
            }
        }
        if let Some(r) = finished(&mut self.delete_task) {
            match r {
                Ok(path) => {
                    if self.selected.as_ref() == Some(&path) {
                        self.selected = None;
                    }
                    for p in self.compare_pick.iter_mut().filter(|p| p.as_ref() == Some(&path)) {
                        *p = None;
                    }
                    events.push(ManageEvent::Deleted(path));
                }
                Err(e) => events.push(ManageEvent::Failed(e.to_string())),
            }
        }
        if let Some(t) = &mut self.compare_task {
            match t.poll() {
                Ok(p) => {
                    if let Some(last) = p.progress.into_iter().last() {
                        self.compare_progress = Some(last);
                    }
                    if let Some(r) = p.done {
                        self.compare_task = None;
                        self.compare_progress = None;
                        match r {
                            Ok(c) => {
                                self.comparison = Some(c);
                                events.push(ManageEvent::Compared);
                            }
                            Err(Failure::Cancelled) => {}
                            Err(e) => events.push(ManageEvent::Failed(format!("Cannot compare: {e}"))),
                        }
                    }
                }
                Err(e) => {
                    self.compare_task = None;
                    self.compare_progress = None;
                    events.push(ManageEvent::Failed(e.to_string()));
                }
            }
        }
        events
    }
}

/// The result of `task` once it is done (the slot is emptied then); a panic becomes a failure.
fn finished<T: Send + 'static>(task: &mut Option<Task<(), Outcome<T>>>) -> Option<Outcome<T>> {
    let t = task.as_mut()?;
    let r = match t.poll() {
        Ok(p) => p.done?,
        Err(e) => Err(Failure::Failed(e.to_string())),
    };
    *task = None;
    Some(r)
}
