//! The "Classified" panel: photos dropped, pasted or picked are classified by the current model
//! on a worker thread; each shows its thumbnail and one row per face, and can be copied into the
//! dataset under its true class.

use std::path::PathBuf;
use std::sync::Arc;

use crossbeam_channel::Sender;
use egui::{Color32, FontId, Pos2, Rect, RichText, Sense, Stroke, StrokeKind, Vec2};

use gc_core::calibration::{DEFAULT_UNCERTAIN_BELOW, is_uncertain};
use gc_core::classify::{Classifier, ImagePrediction};

use super::commands::{Command, tooltip};
use super::tasks::{Failure, Job, Outcome, Runtime, Task};
use super::thumbnails::{Thumb, Thumbnails};
use super::widgets;
use crate::Level;

/// The tallest a classified photo is drawn in its card, in points.
pub const CARD_IMAGE_MAX_HEIGHT: f32 = 240.0;

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
    /// Ids queued since the last summary in the status bar.
    batch: Vec<u64>,
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
            self.batch.push(id);
            self.selected = Some(self.items.len() - 1);
        }
    }

    /// Number of photos still waiting or running.
    pub fn pending(&self) -> usize {
        self.items.iter().filter(|i| matches!(i.state, ClassifyState::Waiting | ClassifyState::Running)).count()
    }

    /// Sends waiting photos to the worker (when a model is loaded) and collects results; once the
    /// last photo queued is done, returns the status line that says so.
    pub fn pump(&mut self, classifier: Option<&Arc<Classifier>>, rt: &Runtime) -> Option<(Level, String)> {
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
        if self.batch.is_empty() || self.pending() > 0 {
            return None;
        }
        let batch = std::mem::take(&mut self.batch);
        let done: Vec<&ClassifiedPhoto> = self.items.iter().filter(|i| batch.contains(&i.id)).collect();
        (!done.is_empty()).then(|| batch_summary(&done))
    }

    /// Records that item `index` was copied into the dataset at `path`.
    pub fn mark_added(&mut self, from: &std::path::Path, path: PathBuf) {
        if let Some(item) = self.items.iter_mut().rev().find(|i| i.path == from && i.added_as.is_none()) {
            item.added_as = Some(path);
        }
    }
}

/// The status line of a finished batch: "Classified 4 photo(s): 3 male, 1 female", plus the first
/// failure's reason when some could not be classified.
pub fn batch_summary(done: &[&ClassifiedPhoto]) -> (Level, String) {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for class in done.iter().filter_map(|i| i.predicted()) {
        match counts.iter_mut().find(|(c, _)| *c == class) {
            Some((_, n)) => *n += 1,
            None => counts.push((class, 1)),
        }
    }
    let ok: usize = counts.iter().map(|(_, n)| n).sum();
    let mut text = format!("Classified {ok} photo(s)");
    if !counts.is_empty() {
        let parts: Vec<String> = counts.iter().map(|(c, n)| format!("{n} {c}")).collect();
        text += &format!(": {}", parts.join(", "));
    }
    let failed: Vec<&str> = done
        .iter()
        .filter_map(|i| match &i.state {
            ClassifyState::Failed(e) => Some(e.as_str()),
            _ => None,
        })
        .collect();
    match failed.first() {
        None => (Level::Info, text),
        Some(first) => (Level::Warning, format!("{text}; {} could not be classified: {first}", failed.len())),
    }
}

/// Draws the panel. `dataset_classes` is empty when no dataset is open.
pub fn show(
    ui: &mut egui::Ui,
    panel: &mut ClassifyPanel,
    thumbs: &mut Thumbnails,
    dataset_classes: &[String],
    model_ready: bool,
    uncertain_below: &mut f32,
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
    uncertain_control(ui, uncertain_below);
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
                if card(ui, item, index, thumbs, dataset_classes, *uncertain_below, commands) {
                    select = Some(index);
                }
            });
        }
    });
    if select.is_some() {
        panel.selected = select;
    }
}

/// One classified photo: its name, the photo with a box around every face found, one bar per
/// face, and the buttons that copy it into the dataset. Returns true when the photo was clicked.
fn card(
    ui: &mut egui::Ui,
    item: &ClassifiedPhoto,
    index: usize,
    thumbs: &mut Thumbnails,
    dataset_classes: &[String],
    uncertain_below: f32,
    commands: &mut Vec<Command>,
) -> bool {
    let name = item.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    ui.add(egui::Label::new(RichText::new(name).strong()).truncate()).on_hover_text(item.path.display().to_string());
    let thumb = thumbs.get(&item.path);
    let aspect = match (&item.state, &thumb) {
        (ClassifyState::Done(p), _) if p.image_size.0 > 0 => p.image_size.1 as f32 / p.image_size.0 as f32,
        (_, Thumb::Ready(t)) if t.size.x > 0.0 => t.size.y / t.size.x,
        _ => 0.75,
    };
    let width = ui.available_width();
    let size = Vec2::new(width, (width * aspect).clamp(48.0, CARD_IMAGE_MAX_HEIGHT));
    let (rect, resp) = ui.allocate_exact_size(size, Sense::click());
    match thumb {
        Thumb::Ready(t) => {
            let shown = widgets::paint_texture_fit(ui, rect, t);
            if let ClassifyState::Done(p) = &item.state {
                paint_face_boxes(ui, shown, p, &item.classes);
            }
        }
        Thumb::Loading => {
            ui.painter().rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
        }
        Thumb::Failed(_) => widgets::paint_broken(ui, rect),
    }
    let clicked = resp.on_hover_text("Select (A adds the selected photo under its predicted class)").clicked();
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
                    let w = ui.available_width().min(320.0);
                    if is_uncertain(&face.probs, uncertain_below) {
                        uncertain_bar(ui, class, conf, w);
                    } else {
                        widgets::confidence_bar(ui, class, conf, w);
                    }
                });
            }
        }
    }
    if let Some(added) = &item.added_as {
        ui.colored_label(Color32::from_rgb(90, 170, 90), format!("Added to the dataset as {}", added.display()));
    } else if !dataset_classes.is_empty() && matches!(item.state, ClassifyState::Done(_)) {
        ui.horizontal_wrapped(|ui| {
            ui.weak("Add to dataset as:");
            for class in dataset_classes {
                let cmd = Command::AddClassified { index, class: class.clone() };
                let is_pred = item.predicted() == Some(class.as_str());
                let text = if is_pred { RichText::new(class).strong() } else { RichText::new(class) };
                let mut hover = cmd.describe();
                if is_pred {
                    let key = super::commands::shortcut_text(ui.ctx(), &Command::AddClassifiedAsPredicted);
                    hover = format!("{hover} ({})", key.unwrap_or_default());
                }
                if ui.button(text).on_hover_text(hover).clicked() {
                    commands.push(cmd);
                }
            }
        });
    }
    clicked
}

/// Label of the threshold control (also its accessible name).
pub const UNCERTAIN_LABEL: &str = "Uncertain below";

/// The threshold under which an answer is shown as uncertain, as a percentage the user drags.
fn uncertain_control(ui: &mut egui::Ui, below: &mut f32) {
    ui.horizontal(|ui| {
        let l = ui.label(UNCERTAIN_LABEL);
        let mut pct = *below * 100.0;
        let r = ui
            .add(egui::DragValue::new(&mut pct).range(0.0..=100.0).speed(0.5).max_decimals(1).suffix("%"))
            .labelled_by(l.id)
            .on_hover_text(format!(
                "A face whose most likely class has a probability below this is shown as \"uncertain\" \
                 (0% = never). Default {:.0}%, chosen on validation photos: see docs/ACCURACY.md. The model \
                 reads apparent gender presentation as labelled in its training data, not identity.",
                DEFAULT_UNCERTAIN_BELOW * 100.0
            ));
        if r.changed() {
            *below = (pct / 100.0).clamp(0.0, 1.0);
        }
    });
}

/// The bar of an uncertain answer: grey, saying which class it leans to.
fn uncertain_bar(ui: &mut egui::Ui, class: &str, confidence: f32, width: f32) -> egui::Response {
    let text = format!("uncertain (leans {class} {:.1}%)", confidence * 100.0);
    ui.add(
        egui::ProgressBar::new(confidence.clamp(0.0, 1.0))
            .desired_width(width)
            .fill(ui.visuals().widgets.inactive.bg_fill)
            .text(RichText::new(text).color(ui.visuals().strong_text_color()).italics()),
    )
}

/// Draws a numbered box, in its class colour, around every detected face of `pred` over the photo
/// drawn at `shown` (faces classified as the whole photo get no box).
fn paint_face_boxes(ui: &egui::Ui, shown: Rect, pred: &ImagePrediction, classes: &[String]) {
    if pred.image_size.0 == 0 {
        return;
    }
    let scale = shown.width() / pred.image_size.0 as f32;
    let painter = ui.painter_at(shown);
    let numbered = pred.faces.len() > 1;
    for (k, face) in pred.faces.iter().enumerate() {
        let Some(d) = &face.region.detection else { continue };
        let b = d.bbox;
        let r = Rect::from_min_max(
            Pos2::new(shown.left() + b[0] * scale, shown.top() + b[1] * scale),
            Pos2::new(shown.left() + b[2] * scale, shown.top() + b[3] * scale),
        );
        let class = classes.get(face.class).map_or("?", String::as_str);
        let color = widgets::class_color(class);
        painter.rect_stroke(r, 2.0, Stroke::new(2.0, color), StrokeKind::Outside);
        if numbered {
            let galley = painter.layout_no_wrap(format!("{}", k + 1), FontId::proportional(12.0), Color32::WHITE);
            let pos = Pos2::new(r.left(), (r.top() - galley.size().y - 2.0).max(shown.top()));
            painter.rect_filled(Rect::from_min_size(pos, galley.size() + Vec2::new(6.0, 2.0)), 2.0, color);
            painter.galley(pos + Vec2::new(3.0, 1.0), galley, Color32::WHITE);
        }
    }
}
