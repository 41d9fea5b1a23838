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
            let mut settings: Settings =
                cc.storage.and_then(|s| eframe::get_value(s, state::SETTINGS_KEY)).unwrap_or_default();
            if model.is_some() {
                settings.model = model;
            }
            Ok(Box::new(GenderApp::new(settings, dir, ctx)))
        }),
    )
    .map_err(|e| WindowError::Window(e.to_string()))
}
