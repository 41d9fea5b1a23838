//! A path typed by hand, for where the desktop offers no file dialog (no portal, no zenity: see
//! `path_field::probe_file_dialog`).
//!
//! A [`PathPrompt`] is a small window with a text field (labelled "Path"), OK and Cancel, the
//! reason why no dialog was shown, and a line for an error (e.g. "that folder does not exist") so
//! the user can correct the path without starting over. The caller keeps it in an `Option`, calls
//! [`PathPrompt::show`] every frame, acts on [`PromptAnswer::Chosen`] (off the UI thread), then
//! drops the prompt on success or calls [`PathPrompt::set_error`].

use std::path::{Path, PathBuf};

/// What the user did with a [`PathPrompt`] this frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptAnswer {
    /// OK (or Enter) with this path (`~/` expanded).
    Chosen(PathBuf),
    /// Cancel, Escape or the window's close button.
    Cancelled,
}

/// A window asking for a path in a text field.
#[derive(Debug, Clone)]
pub struct PathPrompt {
    /// The window title, e.g. "Export model".
    pub title: String,
    /// Why the text field is shown instead of a dialog (shown above the field).
    pub why: String,
    /// The text being edited.
    pub text: String,
    /// The error of the last try, shown under the field until the text changes.
    pub error: Option<String>,
    /// True while the caller works on a chosen path (OK is disabled, a spinner shows).
    pub busy: bool,
    focus: bool,
}

impl PathPrompt {
    /// A prompt titled `title`, explaining `why`, with `initial` in the field.
    pub fn new(title: impl Into<String>, why: impl Into<String>, initial: &Path) -> Self {
        Self {
            title: title.into(),
            why: why.into(),
            text: initial.display().to_string(),
            error: None,
            busy: false,
            focus: true,
        }
    }

    /// Shows `error` under the field and ends the busy state (the prompt stays open).
    pub fn set_error(&mut self, error: impl Into<String>) {
        self.error = Some(error.into());
        self.busy = false;
    }

    /// Draws the window; returns what the user did, if anything, this frame. After
    /// [`PromptAnswer::Chosen`] the prompt is busy until the caller closes it or sets an error.
    pub fn show(&mut self, ctx: &egui::Context) -> Option<PromptAnswer> {
        let mut answer = None;
        let mut open = true;
        egui::Window::new(&self.title)
            .id(egui::Id::unique(("path-prompt", &self.title)))
            .open(&mut open)
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
            .show(ctx, |ui| {
                ui.set_max_width(520.0);
                ui.label(egui::RichText::new(&self.why).weak());
                ui.add_space(4.0);
                let (edit, enter) = ui
                    .horizontal(|ui| {
                        let label = ui.label("Path");
                        let r = ui.add(egui::TextEdit::singleline(&mut self.text).desired_width(440.0));
                        let r = r.labelled_by(label.id);
                        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                        (r, enter)
                    })
                    .inner;
                if std::mem::take(&mut self.focus) {
                    edit.request_focus();
                }
                if edit.changed() {
                    self.error = None;
                }
                if let Some(e) = &self.error {
                    ui.colored_label(ui.visuals().error_fg_color, e);
                }
                ui.horizontal(|ui| {
                    let ok = ui.add_enabled(!self.busy && !self.text.trim().is_empty(), egui::Button::new("OK"));
                    if (ok.clicked() || enter) && !self.busy && !self.text.trim().is_empty() {
                        self.busy = true;
                        answer = Some(PromptAnswer::Chosen(expand_home(self.text.trim())));
                    }
                    if ui.button("Cancel").clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                        answer = Some(PromptAnswer::Cancelled);
                    }
                    if self.busy {
                        ui.spinner();
                    }
                });
            });
        if !open {
            answer = Some(PromptAnswer::Cancelled);
        }
        answer
    }
}

/// `~/x` as `$HOME/x`; anything else as it is.
pub fn expand_home(text: &str) -> PathBuf {
    expand_with(text, std::env::var_os("HOME"))
}

fn expand_with(text: &str, home: Option<std::ffi::OsString>) -> PathBuf {
    match (text.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_expanded_and_other_paths_are_kept() {
        let home = Some("/home/ada".into());
        assert_eq!(expand_with("~/m.safetensors", home.clone()), PathBuf::from("/home/ada/m.safetensors"));
        assert_eq!(expand_with("/tmp/m.safetensors", home), PathBuf::from("/tmp/m.safetensors"));
        assert_eq!(expand_with("~/m", None), PathBuf::from("~/m"), "no home: kept as typed");
    }
}
