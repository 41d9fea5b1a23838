//! Everything the user can ask the app to do, and the keyboard shortcuts that ask for it.
//!
//! Buttons and keys both push a [`Command`]; the app runs the queued commands after drawing the
//! frame. The shortcut registry ([`shortcuts`]) is the single source for dispatch, tooltips and
//! the help overlay; a unit test checks that no two commands share a shortcut.

use std::path::PathBuf;

use egui::{Key, KeyboardShortcut, Modifiers};

use super::state::SplitFilter;

/// A tab of the central area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    /// The thumbnail grid.
    #[default]
    Photos,
    /// Training progress and curves.
    Training,
    /// Confusion matrix, per-class metrics, history.
    Evaluation,
    /// The dataset audit and the review queue.
    Review,
    /// The models: list, details, rename, export, delete, compare.
    Models,
}

/// Something to do, from a key, a button, a drop or a background task.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Ask for a dataset folder (file dialog).
    OpenFolderDialog,
    /// Open this dataset folder.
    OpenDataset(PathBuf),
    /// Scan the current folder again.
    Rescan,
    /// Ask for photos to classify (file dialog).
    ClassifyFilesDialog,
    /// Classify these files (dropped, pasted or picked).
    ClassifyFiles(Vec<PathBuf>),
    /// Move the selected photos into the class folder named `male`.
    RelabelMale,
    /// Move the selected photos into the class folder named `female`.
    RelabelFemale,
    /// Move the selected photos into the n-th class folder (0-based).
    RelabelClass(usize),
    /// Move the selected photos into `excluded/` (never deleted).
    Exclude,
    /// Undo the last relabel or exclude.
    Undo,
    /// Redo what was undone.
    Redo,
    /// Select the next photo.
    Next,
    /// Select the previous photo.
    Previous,
    /// Select the photo one row down.
    Down,
    /// Select the photo one row up.
    Up,
    /// Extend the selection to the next photo.
    ExtendNext,
    /// Extend the selection to the previous photo.
    ExtendPrevious,
    /// Select every photo the grid shows.
    SelectAll,
    /// Clear the selection (and close the help).
    ClearSelection,
    /// Copy the selected classified photo into the dataset under its predicted class.
    AddClassifiedAsPredicted,
    /// Copy classified photo `index` into the dataset under class `class` (a folder name).
    AddClassified {
        /// Index into the classified list.
        index: usize,
        /// Class folder name.
        class: String,
    },
    /// Start a training run with the current settings.
    StartTraining,
    /// Cancel the running training or evaluation.
    CancelTasks,
    /// Make this model current (a `.safetensors` path).
    ChooseModel(PathBuf),
    /// Save faceres' zero-shot gender head as a model and make it current.
    UseZeroShotModel,
    /// Compute predictions for every photo with the current model.
    Evaluate,
    /// Show only photos with true class `row` and predicted class `col` (confusion-matrix cell).
    FilterConfusionCell {
        /// True class name.
        row: String,
        /// Predicted class name.
        col: String,
        /// Split the matrix was computed on.
        split: SplitFilter,
    },
    /// Reset every grid filter.
    ClearFilters,
    /// Switch the central tab.
    ShowTab(Tab),
    /// Show or hide the keyboard-shortcut help.
    ToggleHelp,
    /// Show or hide the right-hand panel.
    ToggleRightPanel,
    /// Audit the dataset and walk the findings most worth a look.
    ReviewSuspects,
    /// Keep the reviewed photo(s) as they are; the finding does not come back.
    ReviewKeep,
    /// Move the reviewed photo to the class the evidence points to.
    ReviewRelabelSuggested,
    /// Keep member `n` (0-based) of a duplicate group and exclude the others.
    ReviewKeepOnly(usize),
}

impl Command {
    /// Short description for menus, tooltips and the help overlay.
    pub fn describe(&self) -> String {
        match self {
            Command::OpenFolderDialog => "Open a dataset folder…".into(),
            Command::OpenDataset(p) => format!("Open {}", p.display()),
            Command::Rescan => "Rescan the dataset folder".into(),
            Command::ClassifyFilesDialog => "Classify photos…".into(),
            Command::ClassifyFiles(_) => "Classify photos".into(),
            Command::RelabelMale => "Relabel selection as male".into(),
            Command::RelabelFemale => "Relabel selection as female".into(),
            Command::RelabelClass(i) => format!("Relabel selection as class {}", i + 1),
            Command::Exclude => "Exclude selection (moves to excluded/)".into(),
            Command::Undo => "Undo".into(),
            Command::Redo => "Redo".into(),
            Command::Next => "Next photo".into(),
            Command::Previous => "Previous photo".into(),
            Command::Down => "Photo below".into(),
            Command::Up => "Photo above".into(),
            Command::ExtendNext => "Extend selection forward".into(),
            Command::ExtendPrevious => "Extend selection backward".into(),
            Command::SelectAll => "Select all shown photos".into(),
            Command::ClearSelection => "Clear selection".into(),
            Command::AddClassifiedAsPredicted => {
                "Add the selected classified photo to the dataset (predicted class)".into()
            }
            Command::AddClassified { class, .. } => format!("Add to the dataset as {class}"),
            Command::StartTraining => "Train a new model".into(),
            Command::CancelTasks => "Cancel training / evaluation".into(),
            Command::ChooseModel(p) => format!("Use model {}", p.display()),
            Command::UseZeroShotModel => "Use faceres' zero-shot gender head".into(),
            Command::Evaluate => "Predict every photo with the current model".into(),
            Command::FilterConfusionCell { row, col, .. } => {
                format!("Show {row} photos predicted {col}")
            }
            Command::ClearFilters => "Clear all filters".into(),
            Command::ShowTab(t) => format!("Show the {t:?} tab"),
            Command::ToggleHelp => "Show keyboard shortcuts".into(),
            Command::ToggleRightPanel => "Show / hide the side panel".into(),
            Command::ReviewSuspects => "Review suspects: audit the dataset for likely mistakes".into(),
            Command::ReviewKeep => "Review: keep as it is".into(),
            Command::ReviewRelabelSuggested => "Review: relabel as suggested".into(),
            Command::ReviewKeepOnly(i) => format!("Review: keep copy {} and exclude the others", i + 1),
        }
    }

    /// True for commands that act on the grid selection; these need keyboard focus outside text fields.
    pub fn is_plain_key_command(&self) -> bool {
        shortcuts_of(self).iter().any(|s| s.modifiers.is_none())
    }
}

/// Every command that has a shortcut, with its shortcuts, in dispatch order:
/// entries with more modifiers come first, because egui matches Shift and Alt loosely.
pub fn shortcuts() -> Vec<(Command, Vec<KeyboardShortcut>)> {
    let k = |m: Modifiers, key: Key| KeyboardShortcut::new(m, key);
    let none = Modifiers::NONE;
    let cmd = Modifiers::COMMAND;
    let cmd_shift = Modifiers::COMMAND | Modifiers::SHIFT;
    let shift = Modifiers::SHIFT;
    let digits = [Key::Num1, Key::Num2, Key::Num3, Key::Num4, Key::Num5, Key::Num6, Key::Num7, Key::Num8, Key::Num9];
    let mut v = vec![
        (Command::Redo, vec![k(cmd_shift, Key::Z), k(cmd, Key::Y)]),
        (Command::ClassifyFilesDialog, vec![k(cmd_shift, Key::O)]),
        (Command::StartTraining, vec![k(cmd_shift, Key::T)]),
        (Command::Undo, vec![k(cmd, Key::Z)]),
        (Command::OpenFolderDialog, vec![k(cmd, Key::O)]),
        (Command::SelectAll, vec![k(cmd, Key::A)]),
        (Command::ShowTab(Tab::Photos), vec![k(cmd, Key::Num1)]),
        (Command::ShowTab(Tab::Training), vec![k(cmd, Key::Num2)]),
        (Command::ShowTab(Tab::Evaluation), vec![k(cmd, Key::Num3)]),
        (Command::ShowTab(Tab::Review), vec![k(cmd, Key::Num4)]),
        (Command::ShowTab(Tab::Models), vec![k(cmd, Key::Num5)]),
        (Command::ReviewSuspects, vec![k(cmd, Key::R)]),
        (Command::Evaluate, vec![k(cmd, Key::E)]),
        (Command::ToggleRightPanel, vec![k(cmd, Key::B)]),
        (Command::ExtendNext, vec![k(shift, Key::ArrowRight)]),
        (Command::ExtendPrevious, vec![k(shift, Key::ArrowLeft)]),
        (Command::Rescan, vec![k(none, Key::F5)]),
        (Command::ToggleHelp, vec![k(none, Key::F1), k(none, Key::Questionmark)]),
        (Command::RelabelMale, vec![k(none, Key::M)]),
        (Command::RelabelFemale, vec![k(none, Key::F)]),
        (Command::Exclude, vec![k(none, Key::X), k(none, Key::Delete)]),
        (Command::Next, vec![k(none, Key::ArrowRight)]),
        (Command::Previous, vec![k(none, Key::ArrowLeft)]),
        (Command::Down, vec![k(none, Key::ArrowDown)]),
        (Command::Up, vec![k(none, Key::ArrowUp)]),
        (Command::ClearSelection, vec![k(none, Key::Escape)]),
        (Command::AddClassifiedAsPredicted, vec![k(none, Key::A)]),
        (Command::ReviewKeep, vec![k(none, Key::K)]),
        (Command::ReviewRelabelSuggested, vec![k(none, Key::R)]),
    ];
    for (i, d) in digits.into_iter().enumerate() {
        v.push((Command::RelabelClass(i), vec![k(none, d)]));
    }
    v
}

/// The shortcuts of one command (empty when it has none).
pub fn shortcuts_of(command: &Command) -> Vec<KeyboardShortcut> {
    shortcuts().into_iter().find(|(c, _)| c == command).map(|(_, s)| s).unwrap_or_default()
}

/// The first shortcut of `command` in words for this platform, e.g. "Ctrl+Z".
pub fn shortcut_text(ctx: &egui::Context, command: &Command) -> Option<String> {
    let s = shortcuts_of(command);
    (!s.is_empty()).then(|| s.iter().map(|s| ctx.format_shortcut(s)).collect::<Vec<_>>().join(" or "))
}

/// "Description (Shortcut)" for tooltips.
pub fn tooltip(ctx: &egui::Context, command: &Command) -> String {
    match shortcut_text(ctx, command) {
        Some(s) => format!("{} ({s})", command.describe()),
        None => command.describe(),
    }
}

/// True for keys a focused text field needs for itself: plain keys, and the editing chords
/// (select all, undo, redo, copy, cut, paste), so Ctrl+A selects the text, not every photo.
fn belongs_to_text_field(key: &KeyboardShortcut) -> bool {
    let chord = key.modifiers.command || key.modifiers.ctrl;
    if !chord {
        return !matches!(key.logical_key, Key::F1 | Key::F5);
    }
    matches!(key.logical_key, Key::A | Key::Z | Key::Y | Key::C | Key::X | Key::V)
}

/// Consumes this frame's key presses that match a shortcut and returns their commands.
///
/// When `text_focus` is set (a text field is being edited), the keys the field needs for itself
/// (see `belongs_to_text_field`) are left to it.
pub fn take_shortcut_commands(input: &mut egui::InputState, text_focus: bool) -> Vec<Command> {
    let mut out = Vec::new();
    for (command, keys) in shortcuts() {
        for key in keys {
            if text_focus && belongs_to_text_field(&key) {
                continue;
            }
            if input.consume_shortcut(&key) {
                out.push(command.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_focused_text_field_keeps_its_editing_chords() {
        let chord = |key| KeyboardShortcut::new(egui::Modifiers::COMMAND, key);
        for key in [Key::A, Key::Z, Key::Y, Key::C, Key::X, Key::V] {
            assert!(belongs_to_text_field(&chord(key)), "{key:?}");
        }
        assert!(belongs_to_text_field(&KeyboardShortcut::new(egui::Modifiers::NONE, Key::M)));
        assert!(!belongs_to_text_field(&KeyboardShortcut::new(egui::Modifiers::NONE, Key::F1)));
        assert!(!belongs_to_text_field(&chord(Key::O)), "Ctrl+O opens a folder even from a field");
        // Ctrl+A is bound (select all photos): with a field focused it must not be consumed.
        assert!(shortcuts().iter().any(|(_, keys)| keys.contains(&chord(Key::A))));
    }

    #[test]
    fn no_two_commands_share_a_shortcut() {
        let all = shortcuts();
        let mut seen: Vec<(KeyboardShortcut, &Command)> = Vec::new();
        for (command, keys) in &all {
            assert!(!keys.is_empty(), "{command:?} is listed without a shortcut");
            for key in keys {
                if let Some((_, other)) = seen.iter().find(|(k, _)| k == key) {
                    panic!("{key:?} is bound to both {other:?} and {command:?}");
                }
                seen.push((*key, command));
            }
        }
        // Each command is listed once.
        for (i, (a, _)) in all.iter().enumerate() {
            assert!(all[i + 1..].iter().all(|(b, _)| a != b), "{a:?} is listed twice");
        }
    }

    #[test]
    fn more_specific_shortcuts_are_dispatched_first() {
        // egui ignores extra Shift/Alt when matching, so Ctrl+Shift+Z must be tried before Ctrl+Z.
        let all = shortcuts();
        let flat: Vec<KeyboardShortcut> = all.iter().flat_map(|(_, k)| k.iter().copied()).collect();
        for (i, a) in flat.iter().enumerate() {
            for b in &flat[i + 1..] {
                // Pressing `b` would also fire `a`, which is tried first: `b` could never be used.
                let a_steals_b = a.logical_key == b.logical_key && b.modifiers.matches_logically(a.modifiers);
                assert!(!a_steals_b || a == b, "{b:?} comes after the less specific {a:?}");
            }
        }
    }

    #[test]
    fn redo_wins_over_undo_on_ctrl_shift_z() {
        let ctx = egui::Context::default();
        let mut raw = egui::RawInput::default();
        raw.events.push(egui::Event::Key {
            key: Key::Z,
            physical_key: None,
            pressed: true,
            repeat: false,
            modifiers: Modifiers::COMMAND | Modifiers::SHIFT,
        });
        let mut got = Vec::new();
        let mut out = ctx.run_ui(raw, |ui| {
            got = ui.input_mut(|i| take_shortcut_commands(i, false));
        });
        out.textures_delta.clear();
        assert_eq!(got, vec![Command::Redo]);
    }
}
