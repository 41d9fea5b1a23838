//! The large view of the selected photo: decoded and classified (every face) on a worker thread
//! that always works on the latest selection only; face boxes are drawn with class and confidence.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use egui::{
    Color32, ColorImage, FontId, Pos2, Rect, RichText, Stroke, StrokeKind, TextureHandle, TextureOptions, Vec2,
};

use gc_core::classify::{Classifier, ImagePrediction};

use super::tasks::{Failure, Job, Outcome, Runtime, Task};
use super::widgets;

/// Longest side of the preview texture, in pixels.
const PREVIEW_PX: u32 = 1280;

struct Request {
    path: PathBuf,
    classifier: Option<Arc<Classifier>>,
}

enum Reply {
    Image { path: PathBuf, result: Outcome<(ColorImage, (u32, u32), u64)> },
    Faces { path: PathBuf, result: Outcome<(ImagePrediction, Vec<String>)> },
}

/// What is known about the per-face prediction of the shown photo.
#[derive(Debug, Clone, PartialEq)]
pub enum Faces {
    /// No model is loaded.
    NoModel,
    /// Being computed.
    Running,
    /// Every face with its class probabilities, and the model's class names.
    Done(ImagePrediction, Vec<String>),
    /// Could not be computed.
    Failed(String),
}

/// The photo being shown.
pub struct Shown {
    /// The file.
    pub path: PathBuf,
    /// The decoded image, once ready.
    pub texture: Option<TextureHandle>,
    /// Upright size in pixels.
    pub image_size: Option<(u32, u32)>,
    /// File size in bytes.
    pub file_size: Option<u64>,
    /// Why it cannot be shown.
    pub error: Option<String>,
    /// Faces and their predictions.
    pub faces: Faces,
}

type Slot = Arc<(Mutex<Option<Request>>, Condvar)>;

/// The viewer and its worker.
pub struct Viewer {
    slot: Slot,
    task: Task<Reply, ()>,
    /// The photo shown now.
    pub shown: Option<Shown>,
    model_key: usize,
}

impl Viewer {
    /// Starts the worker task.
    pub fn new(rt: &Runtime) -> Self {
        let slot: Slot = Arc::new((Mutex::new(None), Condvar::new()));
        let s = slot.clone();
        let task = rt.spawn("preview", move |job: &Job<Reply>| worker(&s, job));
        Self { slot, task, shown: None, model_key: 0 }
    }

    /// Shows `path` (no-op when it is already shown with the same model).
    /// `model_key` changes whenever the current model changes.
    pub fn show_path(&mut self, path: Option<&Path>, classifier: Option<&Arc<Classifier>>, model_key: usize) {
        let same = match (&self.shown, path) {
            (Some(s), Some(p)) => s.path == p && self.model_key == model_key,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        self.model_key = model_key;
        let Some(path) = path else {
            self.shown = None;
            return;
        };
        let keep_texture = self.shown.as_ref().filter(|s| s.path == path).and_then(|s| s.texture.clone());
        self.shown = Some(Shown {
            path: path.to_path_buf(),
            texture: keep_texture,
            image_size: None,
            file_size: None,
            error: None,
            faces: if classifier.is_some() { Faces::Running } else { Faces::NoModel },
        });
        let (lock, cv) = &*self.slot;
        if let Ok(mut s) = lock.lock() {
            *s = Some(Request { path: path.to_path_buf(), classifier: classifier.cloned() });
        }
        cv.notify_one();
    }

    /// Follows a file that moved so the view is kept.
    pub fn renamed(&mut self, from: &Path, to: &Path) {
        if let Some(s) = &mut self.shown
            && s.path == from
        {
            s.path = to.to_path_buf();
        }
    }

    /// Collects worker results. Call once per frame.
    pub fn pump(&mut self, ctx: &egui::Context) {
        let replies = match self.task.poll() {
            Ok(p) => p.progress,
            Err(panicked) => {
                if let Some(shown) = &mut self.shown {
                    shown.error = Some(panicked.to_string());
                }
                Vec::new()
            }
        };
        for reply in replies {
            let Some(shown) = &mut self.shown else {
                continue;
            };
            match reply {
                Reply::Image { path, result } if path == shown.path => match result {
                    Ok((img, size, bytes)) => {
                        shown.texture = Some(ctx.load_texture("preview", img, TextureOptions::LINEAR));
                        shown.image_size = Some(size);
                        shown.file_size = Some(bytes);
                    }
                    Err(e) => {
                        shown.error = Some(e.to_string());
                        shown.texture = None;
                        if shown.faces == Faces::Running {
                            shown.faces = Faces::Failed("the photo cannot be read".into());
                        }
                    }
                },
                Reply::Faces { path, result } if path == shown.path => {
                    shown.faces = match result {
                        Ok((p, classes)) => Faces::Done(p, classes),
                        Err(e) => Faces::Failed(e.to_string()),
                    };
                }
                _ => {}
            }
        }
    }

    /// True while the worker has something to deliver.
    pub fn is_busy(&self) -> bool {
        self.shown.as_ref().is_some_and(|s| (s.texture.is_none() && s.error.is_none()) || s.faces == Faces::Running)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        // The worker checks the cancel flag whenever it wakes; wake it to notice.
        self.task.cancel();
        let (lock, cv) = &*self.slot;
        if let Ok(mut s) = lock.lock() {
            *s = None;
        }
        cv.notify_one();
    }
}

fn worker(slot: &Slot, job: &Job<Reply>) {
    let (lock, cv) = &**slot;
    loop {
        let req = {
            let Ok(mut s) = lock.lock() else { return };
            loop {
                if let Some(r) = s.take() {
                    break r;
                }
                // Wake up now and then to notice that the viewer is gone.
                s = match cv.wait_timeout(s, std::time::Duration::from_millis(500)) {
                    Ok((s, _)) => s,
                    Err(_) => return,
                };
                if job.is_cancelled() || Arc::strong_count(slot) == 1 {
                    return;
                }
            }
        };
        let img = gc_core::imaging::load_rgb(&req.path);
        let result = match &img {
            Ok(rgb) => {
                let size = rgb.dimensions();
                let bytes = std::fs::metadata(&req.path).map(|m| m.len()).unwrap_or(0);
                let small = if size.0.max(size.1) > PREVIEW_PX {
                    image::DynamicImage::ImageRgb8(rgb.clone())
                        .resize(PREVIEW_PX, PREVIEW_PX, image::imageops::FilterType::Triangle)
                        .to_rgb8()
                } else {
                    rgb.clone()
                };
                Ok((
                    ColorImage::from_rgb([small.width() as usize, small.height() as usize], small.as_raw()),
                    size,
                    bytes,
                ))
            }
            Err(e) => Err(Failure::Failed(e.to_string())),
        };
        if !job.report(Reply::Image { path: req.path.clone(), result }) {
            return;
        }
        let (Ok(rgb), Some(classifier)) = (img, req.classifier) else {
            continue;
        };
        // A newer selection arrived: skip the now useless classification.
        if lock.lock().map(|s| s.is_some()).unwrap_or(true) {
            continue;
        }
        let result = classifier
            .classify_image(&rgb)
            .map(|mut p| {
                p.path = req.path.clone();
                (p, classifier.classes().to_vec())
            })
            .map_err(Failure::from);
        if !job.report(Reply::Faces { path: req.path, result }) {
            return;
        }
    }
}

/// Facts about the shown photo that come from the dataset view.
pub struct DatasetFacts {
    /// Folder class, or "excluded".
    pub label: String,
    /// Predicted class and probabilities over `classes`, from the dataset predictions.
    pub probs: Option<(String, Vec<f32>)>,
    /// The model's classes.
    pub classes: Vec<String>,
    /// Split name.
    pub split: Option<&'static str>,
    /// Faces found, from the feature cache.
    pub n_faces: Option<u32>,
}

/// Draws the photo with face boxes and its details.
pub fn show(ui: &mut egui::Ui, viewer: &Viewer, facts: Option<&DatasetFacts>, selection_len: usize) {
    let Some(shown) = &viewer.shown else {
        ui.add_space(20.0);
        widgets::hint(ui, "Select a photo in the grid to see it here, with every face the model finds.");
        return;
    };
    let width = ui.available_width();
    let max_h = (ui.available_height() * 0.55).max(160.0);
    let aspect = shown.image_size.map_or(0.75, |(w, h)| h as f32 / w.max(1) as f32);
    let h = (width * aspect).min(max_h);
    let (rect, _) = ui.allocate_exact_size(Vec2::new(width, h), egui::Sense::hover());
    ui.painter().rect_filled(rect, 4.0, ui.visuals().extreme_bg_color);
    if let Some(tex) = &shown.texture {
        let img_rect = widgets::paint_texture_fit(ui, rect, egui::load::SizedTexture::from_handle(tex));
        if let (Faces::Done(pred, classes), Some((w, _))) = (&shown.faces, shown.image_size) {
            paint_faces(ui, img_rect, img_rect.width() / w.max(1) as f32, pred, classes);
        }
    } else if let Some(e) = &shown.error {
        widgets::paint_broken(ui, rect);
        ui.colored_label(ui.visuals().error_fg_color, e);
    } else {
        ui.put(rect, egui::Spinner::new().size(32.0));
    }
    ui.add_space(6.0);
    if selection_len > 1 {
        ui.label(RichText::new(format!("{selection_len} photos selected — keys act on all of them")).strong());
    }
    let name = shown.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    ui.label(RichText::new(name).heading().strong());
    egui::Grid::new("viewer-facts").num_columns(2).spacing([12.0, 4.0]).striped(true).show(ui, |ui| {
        ui.weak("Path");
        ui.add(egui::Label::new(shown.path.display().to_string()).truncate())
            .on_hover_text(shown.path.display().to_string());
        ui.end_row();
        if let Some(f) = facts {
            ui.weak("Label");
            ui.label(RichText::new(&f.label).color(widgets::class_color(&f.label)).strong());
            ui.end_row();
        }
        ui.weak("Size");
        let mut size = String::new();
        if let Some((w, h)) = shown.image_size {
            size = format!("{w} × {h} px");
        }
        if let Some(b) = shown.file_size {
            size = format!("{size}, {}", widgets::human_bytes(b));
        }
        ui.label(if size.is_empty() { "…".to_string() } else { size });
        ui.end_row();
        if let Some(f) = facts {
            if let Some(s) = f.split {
                ui.weak("Split");
                ui.label(s).on_hover_text("Which part of the data the model's split rule puts this photo in");
                ui.end_row();
            }
            if let Some(n) = f.n_faces {
                ui.weak("Faces (training)");
                ui.label(match n {
                    0 => "none found — the whole photo is used".to_string(),
                    1 => "1".to_string(),
                    n => format!("{n} — the most confident one is used"),
                });
                ui.end_row();
            }
        }
    });
    if let Some(f) = facts {
        ui.add_space(4.0);
        match &f.probs {
            Some((pred, probs)) => {
                let wrong = *pred != f.label;
                ui.horizontal(|ui| {
                    ui.label(RichText::new("Prediction").strong());
                    if wrong {
                        ui.label(RichText::new("Disagrees with the folder").color(ui.visuals().warn_fg_color));
                    } else {
                        ui.label(RichText::new("Agrees with the folder").color(Color32::from_rgb(90, 170, 90)));
                    }
                });
                for (c, p) in f.classes.iter().zip(probs) {
                    widgets::confidence_bar(ui, c, *p, ui.available_width().min(260.0));
                }
            }
            None => {
                ui.weak("No prediction yet for this photo.");
            }
        }
    }
    ui.add_space(4.0);
    match &shown.faces {
        Faces::NoModel => {
            ui.weak("Load a model to see the faces it finds.");
        }
        Faces::Running => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.weak("Finding faces…");
            });
        }
        Faces::Failed(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        Faces::Done(p, classes) => {
            let n = p.faces.iter().filter(|f| f.region.is_face()).count();
            ui.label(
                RichText::new(match n {
                    0 => "No face found: the whole photo was classified".to_string(),
                    1 => "1 face".to_string(),
                    n => format!("{n} faces"),
                })
                .strong(),
            );
            for (k, face) in p.faces.iter().enumerate() {
                let class = classes.get(face.class).map_or("?", String::as_str);
                let conf = face.probs.get(face.class).copied().unwrap_or(0.0);
                ui.horizontal(|ui| {
                    ui.label(format!("#{}", k + 1));
                    widgets::confidence_bar(ui, class, conf, 200.0);
                    if let Some(d) = &face.region.detection {
                        ui.weak(format!("face score {:.2}", d.score));
                    }
                });
            }
        }
    }
}

fn paint_faces(ui: &egui::Ui, img_rect: Rect, scale: f32, pred: &ImagePrediction, classes: &[String]) {
    let painter = ui.painter_at(img_rect);
    for (k, face) in pred.faces.iter().enumerate() {
        let Some(d) = &face.region.detection else {
            continue;
        };
        let b = d.bbox;
        let r = Rect::from_min_max(
            Pos2::new(img_rect.left() + b[0] * scale, img_rect.top() + b[1] * scale),
            Pos2::new(img_rect.left() + b[2] * scale, img_rect.top() + b[3] * scale),
        );
        let class = classes.get(face.class).map_or("?", String::as_str);
        let conf = face.probs.get(face.class).copied().unwrap_or(0.0);
        let color = widgets::class_color(class);
        painter.rect_stroke(r, 2.0, Stroke::new(2.5, color), StrokeKind::Outside);
        let text = format!("{} {class} {:.0}%", k + 1, conf * 100.0);
        let galley = painter.layout_no_wrap(text, FontId::proportional(13.0), Color32::WHITE);
        let pos = Pos2::new(r.left(), (r.top() - galley.size().y - 2.0).max(img_rect.top()));
        let bg = Rect::from_min_size(pos, galley.size() + Vec2::new(6.0, 2.0));
        painter.rect_filled(bg, 2.0, color.gamma_multiply(0.9));
        painter.galley(pos + Vec2::new(3.0, 1.0), galley, Color32::WHITE);
    }
}
