//! The guard in the app (egui_kittest): a retrain that scores lower than the current model on the
//! same validation photos is saved but not made current until the user says so; "Keep the current
//! model" keeps it, "Use the new model anyway" switches. The photos are a sample of web-faces
//! copied to a temporary folder; the bad model is one epoch at a tiny learning rate, the current
//! model the shipped default. No outcome depends on timing: each wait is for a state.

mod app_harness;
mod common;

use std::path::{Path, PathBuf};

use app_harness::{harness_of_size, pump};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use gc_app::train_guard::{KEEP_CURRENT, USE_NEW};
use gc_app::train_panel::LastRun;
use gc_app::{GenderApp, Settings};
use gc_core::context::Context;
use gc_core::train::guard::{Comparison, Guard};

/// 16 web-faces photos per class copied under `dir/{female,male}`.
fn sample_dataset(dir: &Path) {
    common::copy_web_faces_sample(dir, 16);
}

/// An app on a copy of web-faces photos whose current model is the shipped default, set to
/// train a deliberately bad model; the feature cache is the one the web-faces tests share.
fn app_with_bad_settings(tmp: &Path) -> (Harness<'static, GenderApp>, PathBuf) {
    let root = tmp.join("faces");
    sample_dataset(&root);
    let cache = tmp.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-faces-cache/features");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, cache.join("features")).unwrap();
    let shipped = Context::cpu_with_cache(&cache).default_model();
    let settings = Settings { model: Some(shipped.clone()), ..Settings::default() };
    let mut app = GenderApp::with_cache_root(settings, Some(root), &cache);
    app.models.auto_load = false;
    let t = &mut app.settings.train;
    t.extract_batch = 8;
    t.options.epochs = 1;
    t.options.learning_rate = 1e-5;
    t.options.patience = 0;
    t.split.validation_pct = 50.0;
    t.split.test_pct = 0.0;
    let mut h = harness_of_size(app, [1280.0, 800.0]);
    pump(&mut h, "the dataset to open", |a| a.data.photos.is_some() && !a.models.is_busy());
    (h, shipped)
}

/// Trains, waits for the end, and returns the saved model and the guard's comparison.
fn train_worse(h: &mut Harness<'static, GenderApp>) -> (PathBuf, Comparison) {
    h.get_by_label("Train new model").click();
    h.step();
    pump(h, "the training to end", |a| !a.training.is_running());
    let app = h.state();
    let Some(LastRun::Finished { path, .. }) = app.training.last.clone() else {
        panic!("the run did not finish: {:?}; status: {}", app.training.last, app.status_text());
    };
    let Some(Guard::Compared(c)) = app.training.guard.clone() else { panic!("not compared: {:?}", app.training.guard) };
    assert!(c.is_worse(), "the one-epoch model scores lower than the shipped default: {c:?}");
    assert!(c.photos() > 0 && c.new.accuracy < c.current.accuracy, "{c:?}");
    assert_ne!(app.settings.model.as_ref(), Some(&path), "not current before the user answers");
    assert!(path.is_file(), "the new model is saved either way: {}", path.display());
    assert!(path.with_extension("md").is_file(), "with its model card");
    (path, c)
}

#[test]
fn a_worse_model_is_saved_but_the_app_asks_and_keeps_the_current_model_when_told() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut h, shipped) = app_with_bad_settings(tmp.path());
    let (path, c) = train_worse(&mut h);
    h.run_steps(2);
    let app = h.state();
    assert_eq!(app.training.pending.as_ref().map(|p| &p.path), Some(&path), "the app asks");
    assert_eq!(app.settings.model.as_ref(), Some(&shipped), "the current model is still current");
    assert_ne!(app.models.path.as_ref(), Some(&path), "the new model is not loading");
    // The dialog shows both numbers on the same photos (the Training tab shows them too), and both choices.
    let shown = |h: &Harness<'static, GenderApp>, text: &str| h.query_all_by_label_contains(text).count();
    let (new_before, current_before) = (shown(&h, &c.new.text()), shown(&h, &c.current.text()));
    assert!(h.query_by_label(USE_NEW).is_some());

    h.get_by_label(KEEP_CURRENT).click();
    h.run_steps(2);
    let app = h.state();
    assert_eq!(shown(&h, &c.new.text()), new_before - 1, "the dialog showed the new model's accuracy");
    assert_eq!(shown(&h, &c.current.text()), current_before - 1, "and the current model's");
    assert!(app.training.pending.is_none(), "answered");
    assert!(h.query_by_label(USE_NEW).is_none(), "the dialog is closed");
    assert_eq!(app.settings.model.as_ref(), Some(&shipped), "the current model was kept");
    assert_ne!(app.models.path.as_ref(), Some(&path));
    assert!(app.training.kept_current);
    assert!(app.status_text().contains("Kept the current model"), "{}", app.status_text());
    assert!(path.is_file(), "the new model stays saved (in the model list)");
}

#[test]
fn the_user_can_make_the_worse_model_current_anyway() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut h, _) = app_with_bad_settings(tmp.path());
    let (path, _) = train_worse(&mut h);
    h.run_steps(2);
    h.get_by_label(USE_NEW).click();
    h.run_steps(2);
    let app = h.state();
    assert!(app.training.pending.is_none());
    assert_eq!(app.settings.model.as_ref(), Some(&path), "the new model is current");
    assert_eq!(app.models.path.as_ref(), Some(&path), "and loading");
    assert!(!app.training.kept_current);
}
