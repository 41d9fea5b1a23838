//! The native window: eframe's options and icon, the settings kept between runs, what the command
//! line asks it to open ([`Launch`]), and [`run_native`].

use std::path::PathBuf;

use gc_core::context::Context;

use crate::{GenderApp, Settings, path_field, state};

impl eframe::App for GenderApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        GenderApp::ui(self, ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, state::SETTINGS_KEY, &self.settings);
    }

    fn on_exit(&mut self) {
        self.training.cancel();
        if let Some(e) = &self.models.eval {
            e.cancel();
        }
    }
}

/// The settings a new window starts with: those [`eframe::App::save`] stored last (defaults when
/// none), with the model given on the command line, if any, in place of the stored one.
pub fn settings_from_storage(storage: Option<&dyn eframe::Storage>, model: Option<PathBuf>) -> Settings {
    let mut settings: Settings = storage.and_then(|s| eframe::get_value(s, state::SETTINGS_KEY)).unwrap_or_default();
    if model.is_some() {
        settings.model = model;
    }
    settings
}

/// Why the window could not open.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// A path given on the command line does not exist.
    #[error("{0} does not exist: give a dataset folder (one sub-folder per class) or photos to classify")]
    Missing(PathBuf),
    /// The window system refused (no display, no GPU driver).
    #[error("cannot open the app window: {0} (is a display available?)")]
    Window(String),
}

/// What the command line asks the window to open, the way a file manager's "Open with" does: a
/// folder opens as the dataset, photo files are classified in the Classified panel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// The dataset folder to open (the first folder given).
    pub dataset: Option<PathBuf>,
    /// The files given: photos to classify.
    pub photos: Vec<PathBuf>,
    /// Folders after the first, which are not opened (one dataset at a time).
    pub ignored: Vec<PathBuf>,
}

impl Launch {
    /// Sorts the paths given on the command line into a dataset folder and photos; a path that does
    /// not exist is an error that names it. Reads the file system: call it before the window opens.
    pub fn from_paths(paths: Vec<PathBuf>) -> Result<Self, WindowError> {
        let mut launch = Launch::default();
        for p in paths {
            if !p.exists() {
                return Err(WindowError::Missing(p));
            }
            if !p.is_dir() {
                launch.photos.push(p);
            } else if launch.dataset.is_none() {
                launch.dataset = Some(p);
            } else {
                launch.ignored.push(p);
            }
        }
        Ok(launch)
    }
}

impl GenderApp {
    /// A new app that opens what `launch` names: its dataset folder (else the most recent one) and
    /// its photos, queued for classification with the current model.
    pub fn launched(settings: Settings, launch: Launch, ctx: Context) -> Self {
        let mut app = GenderApp::new(settings, launch.dataset.clone(), ctx);
        if let Some(extra) = launch.ignored.first() {
            let open = launch.dataset.as_ref().map_or_else(String::new, |d| d.display().to_string());
            let text = format!("One dataset opens at a time: {open} is open, {} was not opened", extra.display());
            app.say(crate::Level::Warning, text);
        }
        if !launch.photos.is_empty() {
            app.drop_paths(launch.photos);
        }
        app
    }
}

/// The window icon: `assets/icons/gender-classifier.png`, built into the binary.
pub fn window_icon() -> Option<egui::IconData> {
    let png = include_bytes!("../../../assets/icons/gender-classifier.png");
    match image::load_from_memory_with_format(png, image::ImageFormat::Png) {
        Ok(img) => {
            let rgba = img.to_rgba8();
            Some(egui::IconData { width: rgba.width(), height: rgba.height(), rgba: rgba.into_raw() })
        }
        Err(e) => {
            tracing::warn!("the window icon could not be decoded: {e}");
            None
        }
    }
}

/// Opens the app window on what the command line gave (`paths`: a dataset folder and/or photos to
/// classify) and with its model, if any; every task runs with `ctx` (device, models folder, cache).
pub fn run_native(ctx: Context, paths: Vec<PathBuf>, model: Option<PathBuf>) -> Result<(), WindowError> {
    let launch = Launch::from_paths(paths)?;
    let dialogs = path_field::probe_file_dialog();
    if let path_field::DialogSupport::Missing(why) = &dialogs {
        tracing::info!("no file dialog: {why}; Open folder and Classify photos will ask for a path");
    }
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("Gender classifier")
        .with_app_id("gender-classifier")
        .with_inner_size([1440.0, 900.0])
        .with_min_inner_size([960.0, 600.0])
        .with_drag_and_drop(true);
    if let Some(icon) = window_icon() {
        viewport = viewport.with_icon(icon);
    }
    let options = eframe::NativeOptions { viewport, persist_window: true, ..Default::default() };
    eframe::run_native(
        "gender-classifier",
        options,
        Box::new(move |cc| {
            let settings = settings_from_storage(cc.storage, model);
            let mut app = GenderApp::launched(settings, launch, ctx);
            app.dialogs.support = dialogs;
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| WindowError::Window(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use eframe::App as _;

    use super::*;
    use crate::Command;
    use crate::state::SortOrder;

    /// What eframe keeps on disk between runs, kept in memory.
    #[derive(Default)]
    struct Memory(HashMap<String, String>);

    impl eframe::Storage for Memory {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_string(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }

    /// One frame of `app`.
    fn frame(ctx: &egui::Context, app: &mut GenderApp) {
        ctx.run_ui(Default::default(), |ui| app.ui(ui)).textures_delta.clear();
    }

    /// Runs frames of `app` until `cond` holds (the deadline is only a safety net against a hang).
    fn frames_until(ctx: &egui::Context, app: &mut GenderApp, what: &str, cond: impl Fn(&GenderApp) -> bool) {
        let start = Instant::now();
        loop {
            frame(ctx, app);
            if cond(app) {
                return;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "waited too long for {what}: {}", app.status_text());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn settings_survive_a_restart_through_eframe_storage() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("faces");
        for class in ["female", "male"] {
            std::fs::create_dir_all(root.join(class)).unwrap();
            image::RgbImage::from_pixel(8, 8, image::Rgb([9, 90, 200])).save(root.join(class).join("a.png")).unwrap();
        }
        let ctx = Context::cpu_with_cache(dir.path().join("cache"));
        let model = dir.path().join("chosen.safetensors");

        // A session: open a folder (it becomes the recent one), hide the side panel, and change
        // what the user can change in the window.
        let mut app = GenderApp::new(Settings::default(), Some(root.clone()), ctx.clone());
        app.models.auto_load = false;
        let egui_ctx = egui::Context::default();
        frames_until(&egui_ctx, &mut app, "the folder to open", |a| a.data.photos.is_some());
        app.push(Command::ToggleRightPanel);
        frame(&egui_ctx, &mut app);
        app.settings.dark_mode = false;
        app.settings.thumb_size = 150.0;
        app.settings.sort = SortOrder::Loss;
        app.settings.filters.wrong_only = true;
        app.settings.train.options.epochs = 7;
        app.settings.model = Some(model.clone());
        let saved = app.settings.clone();
        assert_eq!(saved.recent, vec![root.clone()]);
        assert!(!saved.show_right_panel);
        let mut storage = Memory::default();
        app.save(&mut storage);
        drop(app);

        // The restart: the window is built from what was stored.
        let settings = settings_from_storage(Some(&storage), None);
        assert_eq!(settings, saved, "every setting comes back");
        let mut app = GenderApp::new(settings, None, ctx);
        app.models.auto_load = false;
        let egui_ctx = egui::Context::default();
        frames_until(&egui_ctx, &mut app, "the recent folder to reopen", |a| a.data.photos.is_some());
        assert_eq!(app.data.photos.as_ref().unwrap().root, root, "the most recent folder opens");
        assert_eq!(egui_ctx.theme(), egui::Theme::Light, "the light theme is applied");
        assert!(!app.settings.show_right_panel);

        // A model given on the command line wins over the stored one; no storage gives the defaults.
        let other = dir.path().join("other.safetensors");
        assert_eq!(settings_from_storage(Some(&storage), Some(other.clone())).model, Some(other));
        assert_eq!(settings_from_storage(None, None), Settings::default());
    }

    #[test]
    fn the_window_icon_is_the_256_px_png() {
        let icon = window_icon().expect("the icon decodes");
        assert_eq!((icon.width, icon.height), (256, 256));
        assert_eq!(icon.rgba.len(), 256 * 256 * 4);
        assert!(icon.rgba.chunks(4).any(|px| px[3] == 255), "the icon is not blank");
    }

    #[test]
    fn command_line_paths_become_a_dataset_and_photos() {
        let dir = tempfile::tempdir().unwrap();
        let ds = dir.path().join("faces");
        let other = dir.path().join("more");
        std::fs::create_dir_all(&ds).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let photo = dir.path().join("a.jpg");
        std::fs::write(&photo, b"x").unwrap();
        let launch = Launch::from_paths(vec![photo.clone(), ds.clone(), other.clone()]).unwrap();
        assert_eq!(launch, Launch { dataset: Some(ds), photos: vec![photo], ignored: vec![other] });
        assert_eq!(Launch::from_paths(vec![]).unwrap(), Launch::default());
        let missing = dir.path().join("nope.jpg");
        let e = Launch::from_paths(vec![missing.clone()]).unwrap_err();
        assert!(matches!(&e, WindowError::Missing(p) if *p == missing), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
