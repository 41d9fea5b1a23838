//! Input that is not a widget's: shortcuts, files dropped on the window and paths pasted into it,
//! all turned into [`Command`]s that run after the frame.

use std::path::PathBuf;

use crate::commands::{self, Command, Tab};
use crate::{GenderApp, Level, SidePage};
use gc_core::imaging::has_image_extension;

impl GenderApp {
    /// Handles dropped (or pasted) paths: a folder opens as a dataset, photos get classified.
    pub fn drop_paths(&mut self, paths: Vec<PathBuf>) {
        let (dirs, files): (Vec<PathBuf>, Vec<PathBuf>) = paths.into_iter().partition(|p| p.is_dir());
        if let Some(d) = dirs.into_iter().next() {
            self.push(Command::OpenDataset(d));
        }
        let (images, others): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|p| has_image_extension(p));
        if !others.is_empty() {
            self.say(
                Level::Warning,
                format!(
                    "{} is not a photo (supported: {}); it was ignored",
                    others[0].display(),
                    gc_core::imaging::IMAGE_EXTENSIONS.join(", ")
                ),
            );
        }
        if !images.is_empty() {
            self.push(Command::ClassifyFiles(images));
        }
    }

    /// Turns this frame's keys, dropped files and pasted paths into commands.
    pub(crate) fn read_input(&mut self, ctx: &egui::Context) {
        let text_focus = ctx.egui_wants_keyboard_input();
        let (mut cmds, dropped, pasted) = ctx.input_mut(|i| {
            let cmds = commands::take_shortcut_commands(i, text_focus);
            let dropped: Vec<PathBuf> = i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect();
            let mut pasted = Vec::new();
            if !text_focus {
                for e in &i.events {
                    if let egui::Event::Paste(text) = e {
                        pasted.extend(parse_pasted_paths(text));
                    }
                }
            }
            (cmds, dropped, pasted)
        });
        // Keys that act on the grid only make sense while it is shown.
        cmds.retain(|c| self.key_applies(c));
        self.shell.pending.extend(cmds);
        if !dropped.is_empty() {
            self.drop_paths(dropped);
        }
        if !pasted.is_empty() {
            self.drop_paths(pasted);
        }
    }

    /// Whether a shortcut applies to what is shown now.
    fn key_applies(&self, c: &Command) -> bool {
        match c {
            Command::RelabelMale
            | Command::RelabelFemale
            | Command::RelabelClass(_)
            | Command::Exclude
            | Command::Next
            | Command::Previous
            | Command::Up
            | Command::Down
            | Command::ExtendNext
            | Command::ExtendPrevious
            | Command::SelectAll => {
                self.data.photos.is_some()
                    && (self.shell.tab == Tab::Photos
                        || self.shell.tab == Tab::Review && self.review.current().is_some())
            }
            Command::ReviewKeep | Command::ReviewRelabelSuggested => {
                self.shell.tab == Tab::Review && self.review.current().is_some()
            }
            Command::ClearSelection => true,
            Command::AddClassifiedAsPredicted => {
                self.shell.side == SidePage::Classified && self.settings.show_right_panel
            }
            _ => true,
        }
    }
}

/// Paths in pasted text: one per line, quotes and `file://` removed; only existing paths.
pub fn parse_pasted_paths(text: &str) -> Vec<PathBuf> {
    text.lines()
        .map(|l| l.trim().trim_matches(|c| c == '"' || c == '\''))
        .map(|l| l.strip_prefix("file://").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_text_becomes_existing_paths() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a b.jpg");
        std::fs::write(&f, b"x").unwrap();
        let text = format!("\"{}\"\nfile://{}\n/nope/x.jpg\n", f.display(), dir.path().display());
        assert_eq!(parse_pasted_paths(&text), vec![f, dir.path().to_path_buf()]);
    }
}
