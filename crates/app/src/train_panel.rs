//! Retraining: the settings form, the background run with its progress (feature extraction, then
//! epochs), cancel, and the live curves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui::RichText;

use gc_core::features::extract::Progress;
use gc_core::train::EpochStats;
use gc_core::train::run::TrainEvent;
use gc_engine::BackboneKind;

use super::charts;
use super::commands::{Command, tooltip};
use super::state::TrainSettings;
use super::tasks::{Runtime, Task, TrainOutcome, train_and_save};
use super::train_guard::Pending;
use super::widgets;
use gc_core::train::guard::Guard;

/// Where a running training is.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Loading the networks.
    Loading,
    /// Computing (or reading cached) bottleneck features.
    Extracting(Progress),
    /// Fitting the head.
    Epochs,
    /// Fine-tuning faceres' last blocks: epoch, photos (and copies) done, per epoch.
    FineTuning(usize, usize, usize),
    /// Scoring the current model on the new one's validation photos (the guard).
    Comparing(Progress),
}

/// A training run in progress.
pub struct Running {
    task: Task<TrainEvent, TrainOutcome>,
    /// Its phase.
    pub phase: Phase,
    /// Maximum epochs asked for.
    pub max_epochs: usize,
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LastRun {
    /// Saved as this model.
    Finished {
        /// The model file.
        path: PathBuf,
        /// Test accuracy, when there was a test split.
        test_accuracy: Option<f64>,
        /// Seconds taken.
        seconds: f64,
    },
    /// Cancelled by the user; nothing saved.
    Cancelled,
    /// Failed; the reason in words.
    Failed(String),
}

/// What a finished run hands to the app.
pub enum Finished {
    /// A saved model, its report, and the guard's comparison with the current model.
    Model(PathBuf, Box<gc_core::train::run::TrainReport>, Guard),
    /// Cancelled.
    Cancelled,
    /// Failed, with the reason.
    Failed(String),
}

/// Called on the training thread with each event before the app sees it. A test hook: a test
/// pauses a run at a known point with it, so what it checks never depends on timing.
pub type EventHook = Arc<dyn Fn(&TrainEvent) + Send + Sync>;

/// Training state.
#[derive(Default)]
pub struct Training {
    /// The run in progress.
    pub running: Option<Running>,
    /// Epochs of the current (or last) run.
    pub history: Vec<EpochStats>,
    /// How the last run ended.
    pub last: Option<LastRun>,
    /// Sees every event of the runs started from now on, on the training thread (tests only).
    pub event_hook: Option<EventHook>,
    /// The last finished run's comparison with the current model (the guard).
    pub guard: Option<Guard>,
    /// A new model worse than the current one, waiting for the user's choice.
    pub pending: Option<Pending>,
    /// The user kept the current model over the last run's worse one.
    pub kept_current: bool,
}

impl Training {
    /// True while a run is in progress.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Starts a run on the dataset at `root`; the new model is compared with `current` (else the
    /// shipped default).
    pub fn start(&mut self, root: &Path, settings: &TrainSettings, current: Option<PathBuf>, rt: &Runtime) {
        let ctx = rt.ctx().clone();
        let cfg = settings.to_config();
        let root = root.to_path_buf();
        let max_epochs = cfg.options.epochs + cfg.fine_tune.as_ref().map_or(0, |f| f.epochs);
        self.history.clear();
        self.last = None;
        self.guard = None;
        self.pending = None;
        self.kept_current = false;
        let hook = self.event_hook.clone();
        let task = rt.spawn("training", move |job| {
            let mut on_event = |e: TrainEvent| {
                if let Some(h) = &hook {
                    h(&e);
                }
                _ = job.report(e);
            };
            train_and_save(&root, &cfg, &ctx, current.as_deref(), &mut on_event, job.cancel_flag())
        });
        self.running = Some(Running { task, phase: Phase::Loading, max_epochs });
    }

    /// Asks the run to stop.
    pub fn cancel(&self) {
        if let Some(r) = &self.running {
            r.task.cancel();
        }
    }

    /// True once cancel was asked for and the run has not stopped yet.
    pub fn is_cancelling(&self) -> bool {
        self.running.as_ref().is_some_and(|r| r.task.is_cancelling())
    }

    /// Collects progress; returns the outcome once the run ends.
    pub fn poll(&mut self) -> Option<Finished> {
        let running = self.running.as_mut()?;
        let polled = match running.task.poll() {
            Ok(p) => p,
            Err(panicked) => {
                self.running = None;
                let msg = format!("{panicked}; nothing was saved");
                self.last = Some(LastRun::Failed(msg.clone()));
                return Some(Finished::Failed(msg));
            }
        };
        for ev in polled.progress {
            match ev {
                TrainEvent::Loading => running.phase = Phase::Loading,
                TrainEvent::Extracting(p) => running.phase = Phase::Extracting(p),
                TrainEvent::Epoch(e) => {
                    running.phase = Phase::Epochs;
                    self.history.push(e);
                }
                TrainEvent::Comparing(p) => running.phase = Phase::Comparing(p),
                TrainEvent::FineTuning { epoch, done, total } => running.phase = Phase::FineTuning(epoch, done, total),
            }
        }
        let outcome = polled.done?;
        let seconds = running.task.elapsed_s();
        self.running = None;
        Some(match outcome {
            TrainOutcome::Finished { path, report, guard } => {
                let test_accuracy = report.model.meta.test_metrics.as_ref().map(|m| m.accuracy);
                self.last = Some(LastRun::Finished { path: path.clone(), test_accuracy, seconds });
                self.guard = Some(guard.clone());
                Finished::Model(path, report, guard)
            }
            TrainOutcome::Cancelled => {
                self.last = Some(LastRun::Cancelled);
                Finished::Cancelled
            }
            TrainOutcome::Failed(e) => {
                self.last = Some(LastRun::Failed(e.clone()));
                Finished::Failed(e)
            }
        })
    }

    /// One line about the run in progress, for the status bar.
    pub fn progress_line(&self) -> Option<(String, Option<f32>)> {
        let r = self.running.as_ref()?;
        if r.task.is_cancelling() {
            return Some(("Cancelling training…".into(), None));
        }
        Some(match &r.phase {
            Phase::Loading => ("Training: loading networks…".into(), None),
            Phase::Extracting(p) => (extract_text(p), Some(p.done as f32 / p.total.max(1) as f32)),
            Phase::Comparing(p) => {
                (progress_text("Comparing with the current model", p), Some(p.done as f32 / p.total.max(1) as f32))
            }
            Phase::FineTuning(epoch, done, total) => (
                format!("Fine-tuning: epoch {epoch} of at most {}, {done} of {total} photos and copies", r.max_epochs),
                Some(*done as f32 / (*total).max(1) as f32),
            ),
            Phase::Epochs => {
                let e = self.history.last().map_or(0, |e| e.epoch);
                (
                    format!("Training: epoch {e} of at most {}", r.max_epochs),
                    Some(e as f32 / r.max_epochs.max(1) as f32),
                )
            }
        })
    }
}

/// "Features: 120 of 2,310 photos · 14.2/s · 2 min 30 s left (80 from cache)".
pub fn extract_text(p: &Progress) -> String {
    progress_text("Features", p)
}

/// "{what}: 120 of 2,310 photos · 14.2/s · 2 min 30 s left (80 from cache)".
pub fn progress_text(what: &str, p: &Progress) -> String {
    let mut s = format!("{what}: {} of {} photos", p.done, p.total);
    if p.done > 0 {
        s += &format!(" · {:.1} photos/s · {} left", p.rate(), widgets::human_duration(p.eta().as_secs_f64()));
    }
    if p.from_cache > 0 {
        s += &format!(" ({} from cache)", p.from_cache);
    }
    if p.failed > 0 {
        s += &format!(" ({} unreadable)", p.failed);
    }
    s
}

fn labelled(
    ui: &mut egui::Ui,
    label: &str,
    hover: &str,
    add: impl FnOnce(&mut egui::Ui) -> egui::Response,
) -> egui::Response {
    let l = ui.label(label).on_hover_text(hover);
    let r = add(ui).labelled_by(l.id).on_hover_text(hover);
    ui.end_row();
    r
}

/// Room the settings form leaves for its labels ("Balance classes", "Validation %"), in points.
const SETTINGS_LABEL_WIDTH: f32 = 110.0;

/// The settings form (left panel).
pub fn settings_form(ui: &mut egui::Ui, s: &mut TrainSettings, enabled: bool) {
    ui.add_enabled_ui(enabled, |ui| {
        // The value column gets what the labels leave, so the form never runs past the panel.
        let value_width = (ui.available_width() - SETTINGS_LABEL_WIDTH).max(90.0);
        ui.spacing_mut().slider_width = (value_width - 50.0).clamp(40.0, 100.0);
        ui.spacing_mut().combo_width = value_width.min(130.0);
        egui::Grid::new("train-settings").num_columns(2).spacing([10.0, 6.0]).show(ui, |ui| {
            if s.fine_tune {
                labelled(ui, "Blocks", "How many of faceres' last blocks are trained with the head", |ui| {
                    ui.add(egui::DragValue::new(&mut s.fine_tune_options.blocks).range(1..=13))
                });
                labelled(ui, "Block LR", "Learning rate of the fine-tuned blocks (lower than the head's)", |ui| {
                    ui.add(
                        egui::DragValue::new(&mut s.fine_tune_options.backbone_lr)
                            .range(1e-6..=1e-1)
                            .speed(1e-5)
                            .max_decimals(6),
                    )
                });
                labelled(ui, "Tune epochs", "Passes of fine-tuning after the head is trained", |ui| {
                    ui.add(egui::DragValue::new(&mut s.fine_tune_options.epochs).range(1..=100))
                });
            }
            labelled(ui, "Backbone", "The pretrained network that turns a photo into features", |ui| {
                egui::ComboBox::from_id_salt("backbone")
                    .selected_text(s.backbone.id())
                    .truncate()
                    .show_ui(ui, |ui| {
                        for b in BackboneKind::ALL {
                            let text = match b {
                                BackboneKind::Faceres => "faceres (fast, face-specific)",
                                BackboneKind::InceptionV3 => "inception-v3 (slow, general)",
                            };
                            ui.selectable_value(&mut s.backbone, b, text);
                        }
                    })
                    .response
            });
            if s.backbone != BackboneKind::Faceres {
                s.options.warm_start = false;
                s.fine_tune = false;
            }
            labelled(ui, "Face crop", "Detect the face and train on the crop (falls back to the whole photo)", |ui| {
                ui.checkbox(&mut s.face_crop, "crop faces")
            });
            labelled(ui, "Learning rate", "AdamW step size", |ui| {
                ui.add(
                    egui::DragValue::new(&mut s.options.learning_rate).range(1e-5..=1.0).speed(0.0005).max_decimals(5),
                )
            });
            labelled(ui, "Epochs", "Maximum passes over the training photos", |ui| {
                ui.add(egui::DragValue::new(&mut s.options.epochs).range(1..=1000))
            });
            labelled(
                ui,
                "Patience",
                "Stop after this many epochs without a better validation loss (0 = never)",
                |ui| ui.add(egui::DragValue::new(&mut s.options.patience).range(0..=1000)),
            );
            labelled(ui, "Batch size", "Photos per optimisation step", |ui| {
                ui.add(egui::DragValue::new(&mut s.options.batch_size).range(1..=4096))
            });
            labelled(ui, "Dropout", "Share of features dropped at random while training", |ui| {
                ui.add(egui::Slider::new(&mut s.options.dropout, 0.0..=0.9).fixed_decimals(2))
            });
            labelled(ui, "L2 penalty", "Weight decay added to the loss", |ui| {
                ui.add(egui::DragValue::new(&mut s.options.l2).range(0.0..=1.0).speed(1e-5).max_decimals(6))
            });
            labelled(ui, "Balance classes", "Weight the loss so each class counts equally", |ui| {
                ui.checkbox(&mut s.options.balance_classes, "balanced")
            });
            labelled(ui, "Warm start", "Start from faceres' own gender head (faceres only)", |ui| {
                ui.add_enabled(
                    s.backbone == BackboneKind::Faceres,
                    egui::Checkbox::new(&mut s.options.warm_start, "from faceres"),
                )
            });
            labelled(ui, "Validation %", "Share of photos held out to pick the best epoch", |ui| {
                ui.add(egui::DragValue::new(&mut s.split.validation_pct).range(0.0..=50.0).suffix(" %"))
            });
            labelled(ui, "Test %", "Share of photos held out for the reported accuracy", |ui| {
                ui.add(egui::DragValue::new(&mut s.split.test_pct).range(0.0..=50.0).suffix(" %"))
            });
            labelled(ui, "Per class", "Train on at most this many photos per class (0 = all)", |ui| {
                ui.add(egui::DragValue::new(&mut s.max_per_class).range(0..=1_000_000))
            });
            labelled(ui, "Seed", "Seed for initialisation, shuffling and dropout", |ui| {
                ui.add(egui::DragValue::new(&mut s.options.seed))
            });
        });
        if ui.small_button("Reset to defaults").clicked() {
            *s = TrainSettings::default();
        }
    });
}

/// How the next model is trained: the head only, or the head with faceres' last blocks (shown
/// above the train button, so the choice is seen before each run).
pub fn method_choice(ui: &mut egui::Ui, s: &mut TrainSettings, enabled: bool) {
    ui.add_enabled_ui(enabled, |ui| {
        ui.radio_value(&mut s.fine_tune, false, "head only (fast)")
            .on_hover_text("Train the last layer on the network's features: seconds once the features are cached");
        let faceres = s.backbone == BackboneKind::Faceres;
        let r = ui
            .add_enabled(faceres, egui::RadioButton::new(s.fine_tune, "fine-tune (slower, more accurate)"))
            .on_hover_text(
                "Also train faceres' last blocks: minutes on a CPU, usually more accurate on new kinds of photos",
            )
            .on_disabled_hover_text("Fine-tuning needs the faceres backbone (Training settings)");
        if r.clicked() {
            s.fine_tune = true;
        }
    });
}

/// The train / cancel buttons and a compact progress bar (left panel).
pub fn controls(ui: &mut egui::Ui, training: &Training, can_train: bool, commands: &mut Vec<Command>) {
    if training.is_running() {
        if let Some((text, frac)) = training.progress_line() {
            match frac {
                Some(f) => {
                    ui.add(egui::ProgressBar::new(f).show_percentage());
                }
                None => {
                    ui.spinner();
                }
            }
            ui.label(RichText::new(text).small());
        }
        let cancelling = training.is_cancelling();
        if ui
            .add_enabled(!cancelling, egui::Button::new("Cancel training"))
            .on_hover_text(tooltip(ui.ctx(), &Command::CancelTasks))
            .clicked()
        {
            commands.push(Command::CancelTasks);
        }
    } else {
        let b = egui::Button::new(RichText::new("Train new model").strong())
            .min_size(egui::vec2(ui.available_width(), 28.0));
        let r = ui.add_enabled(can_train, b).on_hover_text(tooltip(ui.ctx(), &Command::StartTraining));
        if r.clicked() {
            commands.push(Command::StartTraining);
        }
    }
}

/// The Training tab: progress, curves and the last outcome.
pub fn tab(ui: &mut egui::Ui, training: &Training, commands: &mut Vec<Command>) {
    ui.heading("Training");
    match (&training.running, &training.last) {
        (Some(r), _) => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(if training.is_cancelling() { "Cancelling…" } else { "Training in progress" });
                if ui.add_enabled(!training.is_cancelling(), egui::Button::new("Cancel")).clicked() {
                    commands.push(Command::CancelTasks);
                }
            });
            let extract = match &r.phase {
                Phase::Extracting(p) => Some(p.clone()),
                _ => None,
            };
            match (&r.phase, extract) {
                (Phase::Loading, _) => {
                    ui.label("Loading the networks…");
                }
                (_, Some(p)) => {
                    ui.label(RichText::new("1. Bottleneck features").strong());
                    ui.add(egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32).text(extract_text(&p)));
                }
                _ => {
                    ui.label(RichText::new("1. Bottleneck features: done").strong());
                }
            }
            if matches!(r.phase, Phase::Epochs | Phase::Comparing(_)) {
                let e = training.history.last().map_or(0, |e| e.epoch);
                ui.label(RichText::new("2. Fitting the head").strong());
                ui.add(egui::ProgressBar::new(e as f32 / r.max_epochs.max(1) as f32).text(format!(
                    "epoch {e} of at most {} (stops early when validation stops improving)",
                    r.max_epochs
                )));
            }
            if let Phase::Comparing(p) = &r.phase {
                ui.label(RichText::new("3. Comparing with the current model on the same validation photos").strong());
                let text = progress_text("Current model", p);
                ui.add(egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32).text(text));
            }
        }
        (None, Some(LastRun::Finished { path, test_accuracy, seconds })) => {
            ui.label(RichText::new("Finished").strong().color(egui::Color32::from_rgb(90, 170, 90)));
            ui.label(format!("Saved as {} in {}.", path.display(), widgets::human_duration(*seconds)));
            if let Some(a) = test_accuracy {
                ui.label(format!("Test accuracy {:.1}% — see the Evaluation tab for details.", a * 100.0));
            }
            if let Some(g) = &training.guard {
                crate::train_guard::guard_summary(ui, g);
            }
            if training.pending.is_some() {
                ui.weak("The new model scores lower than the current one: choose whether to use it.");
            } else if training.kept_current {
                ui.weak("The current model was kept; the new one stays in the model list (delete it there).");
            } else {
                ui.weak("The new model is now current; earlier models stay in the model list.");
            }
        }
        (None, Some(LastRun::Cancelled)) => {
            ui.label(RichText::new("Training cancelled").strong());
            ui.weak("Nothing was saved. Features computed so far are cached, so the next run resumes from there.");
        }
        (None, Some(LastRun::Failed(e))) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("Training failed: {e}"));
        }
        (None, None) => {
            widgets::hint(
                ui,
                "Set the options in the left panel and press Train new model. The photos' features are computed once \
                 (and cached), then the head is fitted; loss and accuracy appear here live.",
            );
        }
    }
    ui.add_space(8.0);
    if training.history.is_empty() {
        ui.weak("Curves appear after the first epoch.");
    } else {
        let h = (ui.available_height() - 40.0).clamp(160.0, 420.0);
        charts::curves(ui, &training.history, h);
    }
}
