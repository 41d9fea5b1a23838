//! The "Classified" panel: photos dropped, pasted or picked are classified by the current model
//! on a worker thread; each shows its thumbnail and one row per face, and can be copied into the
//! dataset under its true class.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Sender;
use egui::{Color32, RichText, Sense, Vec2};

use gc_core::classify::{Classifier, ImagePrediction};

use super::commands::{Command, tooltip};
use super::tasks::{Failure, Job, Outcome, Runtime, Task};
use super::thumbnails::{Thumb, Thumbnails};
use super::widgets;

/// Where a classified photo stands.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassifyState {
    /// Waiting for a model or for the worker.
    Waiting,
    /// Being classified.
    Running,
    /// Classified.
    Done(ImagePrediction),
    /// Could not be classified; the reason in words.
    Failed(String),
}

/// One photo in the panel.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifiedPhoto {
    /// Stable id.
    pub id: u64,
    /// The file.
    pub path: PathBuf,
    /// Its state.
    pub state: ClassifyState,
    /// Class names of the model that classified it.
    pub classes: Vec<String>,
    /// Where it was copied into the dataset, if it was.
    pub added_as: Option<PathBuf>,
}

impl ClassifiedPhoto {
    /// The predicted class name of the most confident face.
    pub fn predicted(&self) -> Option<&str> {
        match &self.state {
            ClassifyState::Done(p) => p.faces.first().and_then(|f| self.classes.get(f.class)).map(String::as_str),
            _ => None,
        }
    }
}

type Request = (u64, PathBuf, Arc<Classifier>);
type Reply = (u64, Outcome<ImagePrediction>, Vec<String>);

struct Worker {
    tx: Sender<Request>,
    task: Task<Reply, ()>,
}

impl Worker {
    fn start(rt: &Runtime) -> Self {
        let (tx, requests) = crossbeam_channel::unbounded::<Request>();
        let task = rt.spawn("classify", move |job: &Job<Reply>| {
            for (id, path, classifier) in requests.iter() {
                if job.is_cancelled() {
                    return;
                }
                let r = classifier.classify_file(&path).map_err(Failure::from);
                if !job.report((id, r, classifier.classes().to_vec())) {
                    return;
                }
            }
        });
        Self { tx, task }
    }
}

/// The classified photos and their worker.
#[derive(Default)]
pub struct ClassifyPanel {
    /// Photos, newest last.
    pub items: Vec<ClassifiedPhoto>,
    /// The selected row (for the add-to-dataset key).
    pub selected: Option<usize>,
    worker: Option<Worker>,
    next_id: u64,
}

impl ClassifyPanel {
    /// Queues files for classification (skipping ones already listed and waiting).
    pub fn add_files(&mut self, files: Vec<PathBuf>) {
        for path in files {
            let id = self.next_id;
            self.next_id += 1;
            self.items.push(ClassifiedPhoto {
                id,
                path,
                state: ClassifyState::Waiting,
                classes: Vec::new(),
                added_as: None,
            });
            self.selected = Some(self.items.len() - 1);
        }
    }

    /// Number of photos still waiting or running.
    pub fn pending(&self) -> usize {
        self.items.iter().filter(|i| matches!(i.state, ClassifyState::Waiting | ClassifyState::Running)).count()
    }

    /// Sends waiting photos to the worker (when a model is loaded) and collects results.
    pub fn pump(&mut self, classifier: Option<&Arc<Classifier>>, rt: &Runtime) {
        if let Some(c) = classifier
            && self.items.iter().any(|i| i.state == ClassifyState::Waiting)
        {
            if self.worker.is_none() {
                self.worker = Some(Worker::start(rt));
            }
            if let Some(w) = &self.worker {
                for item in self.items.iter_mut().filter(|i| i.state == ClassifyState::Waiting) {
                    if w.tx.send((item.id, item.path.clone(), c.clone())).is_ok() {
                        item.state = ClassifyState::Running;
                    }
                }
            }
        }
        if let Some(w) = &mut self.worker {
            let polled = w.task.poll();
            let replies = match polled {
                Ok(p) => p.progress,
                Err(panicked) => {
                    // The worker died: fail what it held, and start a new one for the next photos.
                    for item in self.items.iter_mut().filter(|i| i.state == ClassifyState::Running) {
                        item.state = ClassifyState::Failed(panicked.to_string());
                    }
                    self.worker = None;
                    Vec::new()
                }
            };
            for (id, result, classes) in replies {
                if let Some(item) = self.items.iter_mut().find(|i| i.id == id) {
                    item.classes = classes;
                    item.state = match result {
                        Ok(p) => ClassifyState::Done(p),
                        Err(e) => ClassifyState::Failed(e.to_string()),
                    };
                }
            }
        }
    }

    /// Records that item `index` was copied into the dataset at `path`.
    pub fn mark_added(&mut self, from: &std::path::Path, path: PathBuf) {
        if let Some(item) = self.items.iter_mut().rev().find(|i| i.path == from && i.added_as.is_none()) {
            item.added_as = Some(path);
        }
    }
}

/// Draws the panel. `dataset_classes` is empty when no dataset is open.
pub fn show(
    ui: &mut egui::Ui,
    panel: &mut ClassifyPanel,
    thumbs: &mut Thumbnails,
    dataset_classes: &[String],
    model_ready: bool,
    commands: &mut Vec<Command>,
) {
    ui.horizontal(|ui| {
        ui.heading("Classified photos");
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .add_enabled(!panel.items.is_empty(), egui::Button::new("Clear"))
                .on_hover_text("Empty this list (files are untouched)")
                .clicked()
            {
                panel.items.clear();
                panel.selected = None;
            }
            if ui.button("Classify…").on_hover_text(tooltip(ui.ctx(), &Command::ClassifyFilesDialog)).clicked() {
                commands.push(Command::ClassifyFilesDialog);
            }
        });
    });
    if panel.items.is_empty() {
        ui.add_space(12.0);
        widgets::hint(
            ui,
            "Drop photos onto the window, paste a file path, or use Classify… to see what the current model says. \
             Group photos get one row per face.",
        );
        return;
    }
    if !model_ready && panel.pending() > 0 {
        widgets::warning(ui, "Waiting for a model: choose one in the top bar, train one, or use the zero-shot head.");
    }
    ui.separator();
    let mut select = None;
    egui::ScrollArea::vertical().id_salt("classified-scroll").auto_shrink([false, false]).show(ui, |ui| {
        for (index, item) in panel.items.iter().enumerate().rev() {
            let selected = panel.selected == Some(index);
            let frame = egui::Frame::group(ui.style()).fill(if selected {
                ui.visuals().selection.bg_fill.gamma_multiply(0.35)
            } else {
                ui.visuals().faint_bg_color
            });
            frame.show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal_top(|ui| {
                    let size = Vec2::splat(72.0);
                    let (r, thumb_resp) = ui.allocate_exact_size(size, Sense::click());
                    match thumbs.get(&item.path) {
                        Thumb::Ready(t) => {
                            widgets::paint_texture_fit(ui, r, t);
                        }
                        Thumb::Loading => {
                            ui.painter().rect_filled(r, 4.0, ui.visuals().extreme_bg_color);
                        }
                        Thumb::Failed(_) => widgets::paint_broken(ui, r),
                    }
                    if thumb_resp
                        .on_hover_text("Select (A adds the selected photo under its predicted class)")
                        .clicked()
                    {
                        select = Some(index);
                    }
                    ui.vertical(|ui| {
                        let name = item.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        ui.label(RichText::new(name).strong()).on_hover_text(item.path.display().to_string());
                        match &item.state {
                            ClassifyState::Waiting => {
                                ui.weak("waiting for a model…");
                            }
                            ClassifyState::Running => {
                                ui.horizontal(|ui| {
                                    ui.spinner();
                                    ui.weak("classifying…");
                                });
                            }
                            ClassifyState::Failed(e) => {
                                ui.colored_label(ui.visuals().error_fg_color, e);
                            }
                            ClassifyState::Done(p) => {
                                if p.faces.iter().all(|f| !f.region.is_face()) {
                                    ui.weak("no face found: the whole photo was classified");
                                }
                                for (k, face) in p.faces.iter().enumerate() {
                                    let class = item.classes.get(face.class).map_or("?", String::as_str);
                                    let conf = face.probs.get(face.class).copied().unwrap_or(0.0);
                                    ui.horizontal(|ui| {
                                        if p.faces.len() > 1 {
                                            ui.label(format!("Face {}", k + 1));
                                        }
                                        widgets::confidence_bar(ui, class, conf, 150.0);
                                    });
                                }
                            }
                        }
                        if let Some(added) = &item.added_as {
                            ui.colored_label(
                                Color32::from_rgb(90, 170, 90),
                                format!("Added to the dataset as {}", added.display()),
                            );
                        } else if !dataset_classes.is_empty() && matches!(item.state, ClassifyState::Done(_)) {
                            ui.horizontal_wrapped(|ui| {
                                ui.weak("Add to dataset as:");
                                for class in dataset_classes {
                                    let cmd = Command::AddClassified { index, class: class.clone() };
                                    let is_pred = item.predicted() == Some(class.as_str());
                                    let text =
                                        if is_pred { RichText::new(class).strong() } else { RichText::new(class) };
                                    let mut hover = cmd.describe();
                                    if is_pred {
                                        hover = format!(
                                            "{hover} ({})",
                                            super::commands::shortcut_text(
                                                ui.ctx(),
                                                &Command::AddClassifiedAsPredicted
                                            )
                                            .unwrap_or_default()
                                        );
                                    }
                                    if ui.button(text).on_hover_text(hover).clicked() {
                                        commands.push(cmd);
                                    }
                                }
                            });
                        }
                    });
                });
            });
        }
    });
    if select.is_some() {
        panel.selected = select;
    }
}
