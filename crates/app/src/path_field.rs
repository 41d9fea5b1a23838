//! File dialogs and their fallback: whether this system can show a file dialog at all, the
//! "Open folder…" and "Classify photos…" commands, and the path field they fall back to where no
//! dialog is available (no desktop portal on the session bus and no zenity), with the status bar
//! saying why.

use std::path::{Path, PathBuf};

use crate::path_prompt::{PathPrompt, PromptAnswer};
use crate::tasks::{self, Picked};
use crate::{Command, GenderApp, Level};

/// Whether a native file dialog can be shown.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DialogSupport {
    /// A dialog can be shown (or nothing says it cannot): the buttons open it.
    #[default]
    Available,
    /// No dialog can be shown, for this reason: the buttons open the path field instead.
    Missing(String),
}

/// Tells whether rfd can show a dialog here. On Linux rfd asks the desktop portal over the D-Bus
/// session bus and falls back to `zenity`; with neither, it returns nothing without a word. Reads
/// the environment and searches `PATH`: call it before the window opens, never on the UI thread.
pub fn probe_file_dialog() -> DialogSupport {
    if cfg!(any(target_os = "windows", target_os = "macos")) {
        return DialogSupport::Available;
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let bus = var("DBUS_SESSION_BUS_ADDRESS").is_some()
        || var("XDG_RUNTIME_DIR").is_some_and(|d| PathBuf::from(d).join("bus").exists());
    let zenity = var("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("zenity").is_file()));
    if bus || zenity {
        DialogSupport::Available
    } else {
        DialogSupport::Missing("no desktop portal and no zenity".into())
    }
}

/// What a path field asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// A dataset folder to open.
    Folder,
    /// A photo to classify.
    Photos,
}

impl PathKind {
    /// The path field's title.
    pub fn title(self) -> &'static str {
        match self {
            PathKind::Folder => "Open a dataset folder",
            PathKind::Photos => "Classify a photo",
        }
    }
}

/// The command a typed `path` stands for, or why it stands for none (one `stat`, no listing).
pub fn command_for(kind: PathKind, path: &Path) -> Result<Command, String> {
    if path.as_os_str().is_empty() {
        return Err("Type a path first".into());
    }
    if !path.exists() {
        return Err(format!("{} does not exist: check the spelling, or type the full path", path.display()));
    }
    match kind {
        PathKind::Folder if path.is_dir() => Ok(Command::OpenDataset(path.to_path_buf())),
        PathKind::Folder => {
            Err(format!("{} is a file: type the dataset folder (one sub-folder per class)", path.display()))
        }
        PathKind::Photos if path.is_dir() => {
            Err(format!("{} is a folder: type a photo's path (Open folder… opens a dataset)", path.display()))
        }
        PathKind::Photos if !gc_core::imaging::has_image_extension(path) => Err(format!(
            "{} is not a photo (supported: {})",
            path.display(),
            gc_core::imaging::IMAGE_EXTENSIONS.join(", ")
        )),
        PathKind::Photos => Ok(Command::ClassifyFiles(vec![path.to_path_buf()])),
    }
}

/// The file dialogs' state: whether they can be shown, the path field in their place, and the
/// offer to type a path after a dialog came back empty.
#[derive(Debug, Default)]
pub struct FileDialogs {
    /// Whether a dialog can be shown; tests set it to [`DialogSupport::Missing`].
    pub support: DialogSupport,
    /// The path field, while shown, and what it asks for.
    pub prompt: Option<(PathKind, PathPrompt)>,
    /// After a dialog returned nothing: the status bar offers to type the path (a system whose
    /// portal is missing returns nothing too, just as a cancel does).
    pub offer_typing: Option<PathKind>,
}

impl FileDialogs {
    /// Opens the path field for `kind`, saying `why` above it.
    pub fn ask(&mut self, kind: PathKind, why: String, start: Option<&Path>) {
        let initial = start.map(Path::to_path_buf).unwrap_or_default();
        self.prompt = Some((kind, PathPrompt::new(kind.title(), why, &initial)));
    }
}

impl GenderApp {
    /// "Open folder…": the dialog, or the path field where there is none.
    pub(crate) fn open_folder_dialog(&mut self) {
        self.ask_for_path(PathKind::Folder);
    }

    /// "Classify photos…": the dialog, or the path field where there is none.
    pub(crate) fn classify_files_dialog(&mut self) {
        self.ask_for_path(PathKind::Photos);
    }

    fn ask_for_path(&mut self, kind: PathKind) {
        self.dialogs.offer_typing = None;
        if self.shell.dialog.is_some() {
            return;
        }
        if let DialogSupport::Missing(why) = &self.dialogs.support {
            let what = match kind {
                PathKind::Folder => "the folder's path",
                PathKind::Photos => "the photo's path",
            };
            let text = format!("No file dialog here ({why}): type {what} instead");
            let why = format!("No file dialog is available here ({why}). Type the path, or drop it onto the window.");
            self.say(Level::Warning, text);
            self.dialogs.ask(kind, why, None);
            return;
        }
        self.shell.dialog = Some(match kind {
            PathKind::Folder => tasks::pick_folder(&self.rt, self.data.photos.as_ref().map(|p| p.root.clone())),
            PathKind::Photos => tasks::pick_files(&self.rt),
        });
    }

    /// Collects what the open file dialog returned.
    pub(crate) fn poll_dialog(&mut self) {
        let Some(t) = &mut self.shell.dialog else { return };
        match t.poll() {
            Ok(p) => {
                let Some(picked) = p.done else { return };
                self.shell.dialog = None;
                match picked {
                    Picked::Folder(Some(d)) => self.push(Command::OpenDataset(d)),
                    Picked::Files(f) if !f.is_empty() => self.push(Command::ClassifyFiles(f)),
                    Picked::Folder(None) => self.nothing_picked(PathKind::Folder),
                    Picked::Files(_) => self.nothing_picked(PathKind::Photos),
                }
            }
            Err(_) => {
                self.shell.dialog = None;
                self.say(Level::Error, "The file dialog could not be shown: type the path, or drop it onto the window");
                let why = "The file dialog could not be shown. Type the path, or drop it onto the window.";
                self.dialogs.ask(PathKind::Folder, why.into(), None);
            }
        }
    }

    fn nothing_picked(&mut self, kind: PathKind) {
        let what = if kind == PathKind::Folder { "No folder chosen" } else { "No photos chosen" };
        self.say(Level::Info, format!("{what} (if no dialog appeared, type the path instead)"));
        self.dialogs.offer_typing = Some(kind);
    }
}

/// The "Type a path…" button the status bar shows after a dialog came back empty.
pub(crate) fn offer_button(app: &mut GenderApp, ui: &mut egui::Ui) {
    let Some(kind) = app.dialogs.offer_typing else { return };
    if ui.small_button("Type a path…").on_hover_text("Type or paste the path instead of using a dialog").clicked() {
        app.dialogs.offer_typing = None;
        app.dialogs.ask(kind, "Type or paste the path.".into(), None);
    }
}

/// Draws the path field, when one is open; a path that stands for no command keeps it open with
/// the reason under the field.
pub(crate) fn draw(app: &mut GenderApp, ctx: &egui::Context) {
    let Some((kind, prompt)) = &mut app.dialogs.prompt else { return };
    let kind = *kind;
    match prompt.show(ctx) {
        Some(PromptAnswer::Chosen(path)) => match command_for(kind, &path) {
            Ok(cmd) => {
                app.dialogs.prompt = None;
                app.push(cmd);
            }
            Err(e) => prompt.set_error(e),
        },
        Some(PromptAnswer::Cancelled) => app.dialogs.prompt = None,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_paths_become_commands_or_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("a.jpg");
        std::fs::write(&photo, b"x").unwrap();
        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, b"x").unwrap();
        let d = dir.path();

        assert_eq!(command_for(PathKind::Folder, d), Ok(Command::OpenDataset(d.into())));
        assert!(command_for(PathKind::Folder, &photo).unwrap_err().contains("is a file"));
        assert!(command_for(PathKind::Folder, Path::new("/no/such/dir")).unwrap_err().contains("does not exist"));
        assert!(command_for(PathKind::Folder, Path::new("")).is_err());

        assert_eq!(command_for(PathKind::Photos, &photo), Ok(Command::ClassifyFiles(vec![photo.clone()])));
        assert!(command_for(PathKind::Photos, d).unwrap_err().contains("is a folder"));
        assert!(command_for(PathKind::Photos, &notes).unwrap_err().contains("not a photo"));
    }
}
