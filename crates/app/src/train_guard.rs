//! The guard after a retrain: the new model and the current one were scored on the same
//! validation photos (in `tasks::train_and_save`); a better or equal model becomes current, a worse
//! one waits for the user's choice in a dialog. The new model is saved either way.

use std::path::PathBuf;

use egui::RichText;

use gc_core::train::guard::{Comparison, Guard};

use super::tasks::Predictions;
use super::train_panel::Finished;
use super::{GenderApp, Level};

/// A new model worse than the current one, waiting for the user's choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The saved new model.
    pub path: PathBuf,
    /// Both models on the same validation photos.
    pub comparison: Comparison,
}

/// The dialog's button that makes the worse model current.
pub const USE_NEW: &str = "Use the new model anyway";
/// The dialog's button that keeps the current model.
pub const KEEP_CURRENT: &str = "Keep the current model";

impl GenderApp {
    /// A training run ended: a saved model becomes current unless the guard found it worse, in
    /// which case the user is asked first.
    pub(crate) fn training_finished(&mut self, f: Finished) {
        match f {
            Finished::Model(path, report, guard) => {
                let acc = report.model.meta.test_metrics.as_ref().map(|m| m.accuracy);
                let mut text = format!("Training finished: saved {}", path.display());
                if let Some(a) = acc {
                    text += &format!(" (test accuracy {:.1}%)", a * 100.0);
                }
                if !report.failures.is_empty() {
                    text += &format!("; {} unreadable photo(s) were skipped", report.failures.len());
                }
                self.refresh_models();
                if let Guard::Compared(c) = &guard
                    && c.is_worse()
                {
                    self.say(Level::Warning, format!("{text}; {}: use it or keep the current model?", c.worse_sentence()));
                    self.training.pending = Some(Pending { path, comparison: c.clone() });
                    return;
                }
                if self.review.decisions.changed() > 0 && self.review.accuracy_after.is_none() {
                    self.review.accuracy_after = acc;
                }
                if let Some(p) = &mut self.data.photos {
                    p.set_predictions(&Predictions::from_report(&report));
                }
                self.say(Level::Info, text);
                self.settings.model = Some(path.clone());
                self.load_model(path);
            }
            Finished::Cancelled => self.say(
                Level::Info,
                "Training cancelled: nothing was saved (features computed so far are cached, so the next run is faster)",
            ),
            Finished::Failed(e) => self.say(Level::Error, format!("Training failed: {e}")),
        }
    }

    /// The user's answer to the dialog: make the new model current, or keep the current one.
    pub fn resolve_guard(&mut self, use_new: bool) {
        let Some(p) = self.training.pending.take() else {
            return;
        };
        self.training.kept_current = !use_new;
        if use_new {
            self.say(Level::Info, format!("Using the new model {} although it scored lower", p.path.display()));
            self.settings.model = Some(p.path.clone());
            self.load_model(p.path);
        } else {
            self.say(
                Level::Info,
                format!(
                    "Kept the current model; the new one is saved as {} in the model list (delete it there if unwanted)",
                    p.path.display()
                ),
            );
        }
    }
}

/// Asks, in a modal dialog, whether a worse new model should become current.
pub(crate) fn dialog(app: &mut GenderApp, ctx: &egui::Context) {
    let Some(p) = &app.training.pending else {
        return;
    };
    let c = &p.comparison;
    let mut answer = None;
    egui::Modal::new(egui::Id::unique("train-guard")).show(ctx, |ui| {
        ui.set_max_width(460.0);
        ui.heading("The new model scores lower");
        ui.label(format!(
            "On the same {} validation photos, the new model got fewer right than the current one:",
            c.photos()
        ));
        comparison_grid(ui, c);
        ui.weak(format!(
            "The new model is saved as {} either way; you can delete it in the Models tab.",
            p.path.display()
        ));
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if ui.button(KEEP_CURRENT).clicked() {
                answer = Some(false);
            }
            if ui.button(USE_NEW).clicked() {
                answer = Some(true);
            }
        });
    });
    if let Some(use_new) = answer {
        app.resolve_guard(use_new);
    }
}

/// Both models' accuracies with their 95% intervals, one row each.
fn comparison_grid(ui: &mut egui::Ui, c: &Comparison) {
    egui::Grid::new("guard-numbers").num_columns(2).spacing([12.0, 4.0]).show(ui, |ui| {
        ui.label(RichText::new("New model").strong());
        ui.label(c.new.text());
        ui.end_row();
        ui.label(RichText::new("Current model").strong());
        ui.label(c.current.text());
        ui.end_row();
    });
    ui.weak(format!("Current model: {}", c.baseline.display()));
}

/// The guard's outcome under a finished run in the Training tab.
pub fn guard_summary(ui: &mut egui::Ui, guard: &Guard) {
    match guard {
        Guard::Compared(c) => {
            ui.label(format!("Compared on the same {} validation photos:", c.photos()));
            comparison_grid(ui, c);
        }
        Guard::NotCompared(why) => {
            ui.weak(format!("Not compared with the current model: {why}."));
        }
    }
}
