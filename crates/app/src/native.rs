//! The native window: eframe's options, the settings kept between runs, and [`run_native`].

use std::path::PathBuf;

use gc_core::context::Context;

use crate::{GenderApp, Settings, state};

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
    /// The folder given on the command line is not one.
    #[error("{0} is not a folder: give a dataset folder with one sub-folder per class")]
    NotAFolder(PathBuf),
    /// The window system refused (no display, no GPU driver).
    #[error("cannot open the app window: {0} (is a display available?)")]
    Window(String),
}

/// Opens the app window, optionally on a dataset folder and with a model given on the command line;
/// its tasks run with `ctx` (device, models folder, cache root).
pub fn run_native(ctx: Context, dir: Option<PathBuf>, model: Option<PathBuf>) -> Result<(), WindowError> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Gender classifier")
            .with_app_id("gender-classifier")
            .with_inner_size([1440.0, 900.0])
            .with_min_inner_size([960.0, 600.0])
            .with_drag_and_drop(true),
        persist_window: true,
        ..Default::default()
    };
    let dir = match dir {
        Some(d) if !d.is_dir() => {
            return Err(WindowError::NotAFolder(d));
        }
        d => d,
    };
    eframe::run_native(
        "gender-classifier",
        options,
        Box::new(move |cc| {
            let settings = settings_from_storage(cc.storage, model);
            Ok(Box::new(GenderApp::new(settings, dir, ctx)))
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
}
