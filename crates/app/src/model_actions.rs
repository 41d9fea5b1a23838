//! What the app does when the models' background work reports: choose a model after listing,
//! predict after loading, follow models that were moved, renamed or deleted, and say so in the
//! status bar.

use std::path::{Path, PathBuf};

use crate::model_compare::accuracy_text;
use crate::model_manage::ManageEvent;
use crate::model_store::{Migration, name_of};
use crate::models::ModelEvent;
use crate::tasks::Failure;
use crate::{Command, GenderApp, Level};

impl GenderApp {
    pub(crate) fn model_event(&mut self, event: ModelEvent) {
        match event {
            ModelEvent::Listed => {
                if self.models.path.is_none() && self.models.load_task.is_none() && self.models.auto_load {
                    // No model chosen yet: take the newest one of this dataset (or the shipped one).
                    if let Some(m) = self.models.newest() {
                        self.load_model(m);
                    } else if self.data.photos.is_some() {
                        self.say(
                            Level::Warning,
                            "No model yet: press Train new model, or use the zero-shot head (top bar) to start predicting",
                        );
                    }
                }
            }
            ModelEvent::Loaded => {
                if self.data.photos.is_some() {
                    self.start_eval();
                }
            }
            ModelEvent::Failed(e) => self.say(Level::Error, e),
            ModelEvent::ZeroShot(Ok(path)) => {
                self.say(Level::Info, format!("Saved faceres' zero-shot head as {}", path.display()));
                self.push(Command::ChooseModel(path));
                self.refresh_models();
            }
            ModelEvent::ZeroShot(Err(e)) => self.say(Level::Error, format!("Cannot make the zero-shot model: {e}")),
            ModelEvent::Predicted { predictions, secs, progress } => {
                self.predictions_ready(&predictions, secs, progress)
            }
            ModelEvent::Predicting(Failure::Cancelled) => self.say(Level::Info, "Predictions cancelled"),
            ModelEvent::Predicting(e) => self.say(Level::Error, format!("Cannot predict the dataset: {e}")),
            ModelEvent::Migrated(m) => self.models_migrated(&m),
            ModelEvent::Managed(e) => self.managed(e),
        }
    }

    pub(crate) fn refresh_models(&mut self) {
        let root = self.data.photos.as_ref().map(|p| p.root.clone());
        self.models.refresh(&self.rt, root, self.settings.model.clone());
    }

    pub(crate) fn load_model(&mut self, path: PathBuf) {
        self.settings.model = Some(path.clone());
        if let Some(p) = &mut self.data.photos {
            p.clear_predictions();
        }
        self.models.load(&self.rt, path);
    }

    /// Points the current and remembered model at `to` where they pointed at `from`; a model
    /// that failed to load (or is loading) from the old path loads again from the new one.
    fn model_moved(&mut self, from: &Path, to: &Path) {
        if self.settings.model.as_deref() == Some(from) {
            self.settings.model = Some(to.to_path_buf());
        }
        if self.models.path.as_deref() == Some(from) {
            if self.models.classifier.is_some() && self.models.load_task.is_none() {
                self.models.path = Some(to.to_path_buf());
            } else {
                self.load_model(to.to_path_buf());
            }
        }
    }

    fn models_migrated(&mut self, m: &Migration) {
        for (from, to) in &m.moved {
            self.model_moved(from, to);
        }
        let dest = self.rt.ctx().trained_models_dir();
        let mut text = String::new();
        if !m.moved.is_empty() {
            let names: Vec<String> = m.moved.iter().map(|(_, to)| name_of(to)).collect();
            text = format!(
                "Moved {} trained model(s) out of the photo folder into {}: {}",
                m.moved.len(),
                dest.display(),
                names.join(", ")
            );
        }
        if let Some((path, why)) = m.failed.first() {
            if !text.is_empty() {
                text += "; ";
            }
            text += &format!(
                "{} file(s) could not be moved and stay where they were, e.g. {}: {why}",
                m.failed.len(),
                path.display()
            );
            self.say(Level::Warning, text);
        } else {
            self.say(Level::Info, text);
        }
    }

    fn managed(&mut self, e: ManageEvent) {
        match e {
            ManageEvent::Renamed { from, to } => {
                self.model_moved(&from, &to);
                self.say(Level::Info, format!("Renamed model {} to {}", name_of(&from), name_of(&to)));
                self.refresh_models();
            }
            ManageEvent::Exported(to) => self.say(Level::Info, format!("Exported the model to {}", to.display())),
            ManageEvent::Deleted(path) => {
                let mut text = format!("Moved model {} to the trash", name_of(&path));
                if self.settings.model.as_ref() == Some(&path) {
                    self.settings.model = None;
                }
                if self.models.path.as_ref() == Some(&path) {
                    let shipped = self.rt.ctx().default_model();
                    text += "; the shipped default model is used now";
                    self.load_model(shipped);
                }
                self.say(Level::Info, text);
                self.refresh_models();
            }
            ManageEvent::Compared => {
                let text = self.models.manage.comparison.as_ref().map(|c| {
                    let [a, b] = &c.sides;
                    format!(
                        "Compared on {}: {} {}, {} {}",
                        c.scope_text(),
                        a.name,
                        accuracy_text(&a.metrics),
                        b.name,
                        accuracy_text(&b.metrics)
                    )
                });
                if let Some(text) = text {
                    self.say(Level::Info, text);
                }
            }
            ManageEvent::NoDialog(why) => self.say(Level::Warning, why),
            ManageEvent::Failed(why) => self.say(Level::Error, why),
        }
    }
}
