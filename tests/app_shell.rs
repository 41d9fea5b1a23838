//! Headless tests (egui_kittest) of the app's frame around the panels: the status bar once
//! classification is done, photos and a folder given on the command line, the path field where no
//! file dialog is available, the accuracy-history chart's x range, and the command line's device,
//! cache, models folder and model reaching the background tasks.
//!
//! No test's outcome depends on timing: each waits for a condition, and the deadline of that wait
//! ([`SAFETY_NET`]) only stops a hang.

mod app_harness;

use std::path::{Path, PathBuf};

use app_harness::{harness_of_size, pump};
use egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use gc_app::charts::{history_points, history_x_range, shown_history_x_range};
use gc_app::classify_panel::ClassifyState;
use gc_app::path_field::{DialogSupport, PathKind};
use gc_app::{GenderApp, Launch, Settings, SidePage, Tab, settings_from_storage};
use gc_core::context::Context;

const SIZE: [f32; 2] = [1280.0, 800.0];

fn harness(app: GenderApp) -> Harness<'static, GenderApp> {
    harness_of_size(app, SIZE)
}

/// A copy of a bundled sample photo at `to`.
fn sample(name: &str, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples").join(name), to).unwrap();
    to.to_path_buf()
}

/// A dataset of two generated photos per class under `root/{female,male}`.
fn make_dataset(root: &Path) {
    for (class, rgb) in [("female", [200u8, 90, 140]), ("male", [70, 130, 210])] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..2u8 {
            let img = image::RgbImage::from_fn(24, 24, |x, y| image::Rgb([rgb[0], rgb[1] + i * 9, (x + y) as u8]));
            img.save(root.join(class).join(format!("{}{i}.png", &class[..1]))).unwrap();
        }
    }
}

/// Settings whose model is the shipped default of `ctx`.
fn with_shipped_model(ctx: &Context) -> Settings {
    let model = ctx.default_model();
    assert!(model.is_file(), "the shipped default model is missing: {}", model.display());
    settings_from_storage(None, Some(model))
}

/// The path field, once its window is shown (a new egui window is drawn from its second frame on).
fn path_field<'h>(h: &'h mut Harness<'static, GenderApp>) -> egui_kittest::Node<'h> {
    for _ in 0..5 {
        if h.query_by_label("Path").is_some() {
            break;
        }
        h.step();
    }
    h.get_by_label("Path")
}

fn classified(app: &GenderApp) -> bool {
    !app.classify.items.is_empty() && app.classify.pending() == 0 && app.models.classifier.is_some()
}

#[test]
fn the_status_bar_says_when_the_classified_photos_are_done() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = Context::cpu_with_cache(tmp.path().join("cache"));
    let photos = vec![
        sample("obama.jpg", &tmp.path().join("in/obama.jpg")),
        sample("biden.jpg", &tmp.path().join("in/biden.jpg")),
    ];
    let mut h = harness(GenderApp::new(with_shipped_model(&ctx), None, ctx));
    pump(&mut h, "the model", |a| a.models.classifier.is_some() && !a.models.is_busy());

    h.state_mut().push(gc_app::Command::ClassifyFiles(photos));
    h.step();
    assert_eq!(h.state().status_text(), "Classifying 2 photo(s)…", "the status while they run");
    pump(&mut h, "the classification", classified);
    h.step();
    let app = h.state();
    assert!(app.classify.items.iter().all(|i| i.predicted() == Some("male")), "{:?}", app.classify.items);
    assert_eq!(app.status_text(), "Classified 2 photo(s): 2 male", "the status once they are done");
    assert!(h.query_by_label_contains("Classified 2 photo(s): 2 male").is_some(), "the status bar shows it");
    assert!(h.query_by_label_contains("Classifying").is_none(), "nothing still says Classifying");
}

#[test]
fn a_folder_and_photos_given_on_the_command_line_open_and_are_classified() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root);
    let photo = sample("grace-hopper.jpg", &tmp.path().join("in/grace-hopper.jpg"));
    let ctx = Context::cpu_with_cache(tmp.path().join("cache"));
    // As `gender-classifier app PHOTO FOLDER` gives them, in any order.
    let launch = Launch::from_paths(vec![photo.clone(), root.clone()]).unwrap();
    let mut h = harness(GenderApp::launched(with_shipped_model(&ctx), launch, ctx));
    pump(&mut h, "the folder and the photo", |a| a.data.photos.is_some() && classified(a));

    let app = h.state();
    assert_eq!(app.data.photos.as_ref().unwrap().root, root, "the folder opens as the dataset");
    assert_eq!(app.classify.items.len(), 1);
    let item = &app.classify.items[0];
    assert_eq!(item.path, photo, "the photo is classified, not added to the dataset");
    let ClassifyState::Done(pred) = &item.state else { panic!("not classified: {:?}", item.state) };
    assert_eq!(pred.faces.len(), 1);
    assert_eq!(app.shell.side, SidePage::Classified, "the Classified panel shows it");
    assert!(app.settings.show_right_panel);
    h.step();
    h.get_by_label("grace-hopper.jpg");
}

#[test]
fn without_a_file_dialog_the_buttons_ask_for_a_path_and_the_status_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root);
    let photo = sample("obama.jpg", &tmp.path().join("in/obama.jpg"));
    let ctx = Context::cpu_with_cache(tmp.path().join("cache"));
    let mut app = GenderApp::new(with_shipped_model(&ctx), None, ctx);
    app.dialogs.support = DialogSupport::Missing("no portal in this test".into());
    let mut h = harness(app);
    pump(&mut h, "the model", |a| a.models.classifier.is_some() && !a.models.is_busy());

    // "Open folder…" (here its key): the path field, and the reason in the status bar.
    h.key_press_modifiers(Modifiers::COMMAND, Key::O);
    h.step();
    assert!(h.state().shell.dialog.is_none(), "no dialog was started");
    assert_eq!(h.state().dialogs.prompt.as_ref().map(|(k, _)| *k), Some(PathKind::Folder));
    let status = h.state().status_text().to_string();
    assert!(status.contains("No file dialog") && status.contains("no portal in this test"), "{status}");
    h.step();
    h.get_by_label("Open a dataset folder");

    // A wrong path keeps the field open and says what is wrong.
    path_field(&mut h).type_text(&tmp.path().join("nowhere").display().to_string());
    h.step();
    h.get_by_label("OK").click();
    h.run_steps(2);
    assert!(h.state().dialogs.prompt.is_some(), "the field stays open");
    assert!(h.query_by_label_contains("does not exist").is_some(), "the field says what is wrong");

    // Cancel, then the top bar's button, and a right path: the folder opens.
    h.get_by_label("Cancel").click();
    h.run_steps(2);
    assert!(h.state().dialogs.prompt.is_none());
    // The top bar's button (the welcome screen and the side panel have one too).
    h.get_all_by_label("Open folder…").next().expect("an Open folder… button").click();
    h.run_steps(2);
    path_field(&mut h).type_text(&root.display().to_string());
    h.step();
    h.get_by_label("OK").click();
    h.step();
    pump(&mut h, "the typed folder to open", |a| a.data.photos.is_some());
    assert_eq!(h.state().data.photos.as_ref().unwrap().root, root);
    assert!(h.state().dialogs.prompt.is_none(), "the field closed");

    // "Classify photos…": the field asks for a photo, which is then classified.
    h.get_by_label("Classify photos…").click();
    h.step();
    assert_eq!(h.state().dialogs.prompt.as_ref().map(|(k, _)| *k), Some(PathKind::Photos));
    path_field(&mut h).type_text(&photo.display().to_string());
    h.step();
    h.get_by_label("OK").click();
    h.step();
    pump(&mut h, "the typed photo to be classified", classified);
    assert_eq!(h.state().classify.items[0].path, photo);
    assert!(matches!(h.state().classify.items[0].state, ClassifyState::Done(_)));
}

#[test]
fn the_accuracy_history_spans_the_runs_that_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = Context::cpu_with_cache(tmp.path().join("cache"));
    // Two trained models besides the shipped one (copies of it: each has test metrics).
    let trained = ctx.trained_models_dir();
    std::fs::create_dir_all(&trained).unwrap();
    for name in ["run-a.safetensors", "run-b.safetensors"] {
        std::fs::copy(ctx.default_model(), trained.join(name)).unwrap();
    }
    let mut h = harness(GenderApp::new(with_shipped_model(&ctx), None, ctx));
    pump(&mut h, "the model list", |a| a.models.classifier.is_some() && !a.models.is_busy());
    h.state_mut().shell.tab = Tab::Evaluation;
    h.run_steps(2);

    let runs = history_points(&h.state().models.list, None).len();
    assert_eq!(runs, 3, "the shipped model and the two runs have test metrics");
    assert_eq!(history_x_range(runs), (0.5, 3.5));
    let shown = shown_history_x_range(&h.ctx, runs).expect("the history chart was drawn");
    assert_eq!(shown, (0.5, 3.5), "the x axis spans run 1 to run 3, no more");
    assert_eq!(history_x_range(1), (0.5, 1.5), "one run: the axis is that run");
}

#[test]
fn the_command_lines_device_cache_models_folder_and_model_reach_the_tasks() {
    let tmp = tempfile::tempdir().unwrap();
    let shipped = Context::cpu_with_cache(tmp.path().join("unused"));
    let root = tmp.path().join("faces");
    make_dataset(&root);
    // A models folder of our own, holding copies of the shipped files.
    let models = tmp.path().join("our-models");
    std::fs::create_dir_all(&models).unwrap();
    for f in std::fs::read_dir(&shipped.models_dir).unwrap().flatten() {
        if f.path().extension().is_some_and(|e| e == "safetensors") {
            std::fs::copy(f.path(), models.join(f.file_name())).unwrap();
        }
    }
    let model = tmp.path().join("chosen.safetensors");
    std::fs::copy(shipped.default_model(), &model).unwrap();
    let ctx = Context {
        device: candle_core::Device::Cpu,
        models_dir: models.clone(),
        cache_root: tmp.path().join("our-cache"),
        data_root: tmp.path().join("our-data"),
    };

    // As `app --device cpu --cache our-cache --models our-models --model chosen.safetensors faces`.
    let launch = Launch::from_paths(vec![root.clone()]).unwrap();
    let mut h = harness(GenderApp::launched(settings_from_storage(None, Some(model.clone())), launch, ctx.clone()));
    pump(&mut h, "the dataset's predictions", |a| {
        a.data.photos.as_ref().is_some_and(|p| p.predicted_count() == 4) && !a.is_busy()
    });
    let app = h.state();
    assert_eq!(app.models.path.as_ref(), Some(&model), "--model is the model loaded");
    let classifier = app.models.classifier.as_ref().unwrap();
    assert!(classifier.pipeline.device().same_device(&ctx.device), "--device is where it runs");
    assert!(app.device().same_device(&ctx.device));
    let features = ctx.cache_root.join("features");
    assert!(features.is_dir() && std::fs::read_dir(&features).unwrap().next().is_some(), "--cache holds the features");
    assert!(
        app.models.list.iter().any(|m| m.path == models.join("default.safetensors")),
        "the list's shipped model is ours"
    );

    // Without the backbone's weights in our models folder, loading fails and names that folder:
    // the load task looked there, not in the build's models/.
    let weights: Vec<PathBuf> = std::fs::read_dir(&models)
        .unwrap()
        .flatten()
        .map(|f| f.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("faceres")))
        .collect();
    assert!(!weights.is_empty(), "the shipped folder holds faceres' weights");
    for w in &weights {
        std::fs::remove_file(w).unwrap();
    }
    h.state_mut().push(gc_app::Command::ChooseModel(models.join("default.safetensors")));
    pump(&mut h, "the failed load", |a| !a.models.is_busy() && a.models.error.is_some());
    let error = h.state().models.error.clone().unwrap();
    assert!(error.contains(&models.display().to_string()), "the error names our models folder: {error}");
}
