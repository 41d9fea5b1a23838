//! Fine-tuning from the app (egui_kittest): the training form offers "head only (fast)" and
//! "fine-tune (slower, more accurate)"; choosing fine-tune and pressing "Train new model" makes a
//! model that holds faceres' trained blocks and says so, and the app loads it. The photos are a
//! sample of web-faces copied to a temporary folder. Each wait is for a state, not a time.

mod app_harness;
mod common;

use std::path::PathBuf;

use app_harness::{harness_of_size, pump};
use egui_kittest::kittest::Queryable;
use gc_app::train_panel::LastRun;
use gc_app::{GenderApp, Settings};
use gc_core::model_file::Model;

#[test]
fn the_form_offers_fine_tuning_and_the_run_makes_a_fine_tuned_model() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    for class in ["female", "male"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for p in common::web_faces_sample(class, 8) {
            std::fs::copy(&p, root.join(class).join(p.file_name().unwrap())).unwrap();
        }
    }
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-faces-cache/features");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, cache.join("features")).unwrap();
    let mut app = GenderApp::with_cache_root(Settings::default(), Some(root), &cache);
    app.models.auto_load = false;
    let t = &mut app.settings.train;
    t.extract_batch = 8;
    t.options.epochs = 3;
    t.split.validation_pct = 0.0;
    t.split.test_pct = 0.0;
    t.fine_tune_options.blocks = 1;
    t.fine_tune_options.epochs = 1;
    t.fine_tune_options.jitter_copies = 0;
    let mut h = harness_of_size(app, [1280.0, 900.0]);
    pump(&mut h, "the dataset to open", |a| a.data.photos.is_some() && !a.models.is_busy());

    assert!(!h.state().settings.train.fine_tune, "head only is the default");
    h.get_by_label("head only (fast)");
    h.get_by_label("fine-tune (slower, more accurate)").click();
    h.step();
    assert!(h.state().settings.train.fine_tune, "the radio button chooses fine-tuning");
    assert!(h.state().settings.train.to_config().fine_tune.is_some());

    h.get_by_label("Train new model").click();
    h.step();
    pump(&mut h, "the training to end", |a| !a.training.is_running());
    let app = h.state();
    let Some(LastRun::Finished { path, .. }) = app.training.last.clone() else {
        panic!("the run did not finish: {:?}; status: {}", app.training.last, app.status_text());
    };
    let model = Model::load(&path, &candle_core::Device::Cpu).unwrap();
    assert!(model.tuned.is_some(), "the saved model holds the trained blocks");
    assert_eq!(model.meta.fine_tune.as_ref().map(|f| f.blocks), Some(1));
    let card = std::fs::read_to_string(path.with_extension("md")).unwrap();
    assert!(card.contains("Method: fine-tuned"), "{card}");
}
