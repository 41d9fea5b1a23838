//! Headless UI tests of the desktop app (egui_kittest): curation with keys and undo, training
//! (cancelled, and run to the end), predicting the dataset, choosing a model, the review (relabel
//! as suggested, the side panel's numbers), rescanning, classifying a dropped or pasted photo, face
//! boxes in the viewer, shortcut clashes, and snapshots of the main screens. Every dataset is
//! generated here (solid colours and gradients); the real photos are the bundled samples.
//!
//! No test's outcome depends on timing: each waits for a condition (a file, a finished task, a
//! state), and the deadline of that wait ([`SAFETY_NET`]) only stops a hang.

mod app_harness;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use app_harness::{SAFETY_NET, harness_of_size, pump};
use egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use gc_app::charts::history_points;
use gc_app::classify_panel::{ClassifiedPhoto, ClassifyState};
use gc_app::commands::shortcuts;
use gc_app::tasks::{PredictionRow, Predictions};
use gc_app::train_panel::LastRun;
use gc_app::viewer::Faces;
use gc_app::{GenderApp, Settings, SidePage, Tab};
use gc_core::audit::{AuditReport, Finding, FindingKind, Member};
use gc_core::classify::{FacePrediction, ImagePrediction};
use gc_core::dataset::split::Split;
use gc_core::face::FaceRegion;
use gc_core::train::run::TrainEvent;
use gc_engine::blazeface::Detection;

const SIZE: [f32; 2] = [1280.0, 800.0];

/// Writes `n` generated photos per class under `root/{female,male}`.
fn make_dataset(root: &Path, n: usize, px: u32) {
    for (c, class) in ["female", "male"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let (r, g, b) = if c == 0 { (200u8, 90u8, 140u8) } else { (70u8, 130u8, 210u8) };
            let shade = (i * 23 % 90) as u8;
            let img = image::RgbImage::from_fn(px, px, |x, y| {
                let t = ((x + y) * 255 / (2 * px)) as u8;
                image::Rgb([
                    r.saturating_add(shade / 2).saturating_sub(t / 4),
                    g.saturating_add(t / 3),
                    b.saturating_sub(shade / 3),
                ])
            });
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(dir.join(format!("{}{i}.{ext}", &class[..1]))).unwrap();
        }
    }
}

fn app_for(root: Option<&Path>, cache: &Path) -> GenderApp {
    let mut app = GenderApp::with_cache_root(Settings::default(), root.map(Path::to_path_buf), cache);
    app.models.auto_load = false;
    app
}

fn harness(app: GenderApp) -> Harness<'static, GenderApp> {
    harness_of_size(app, SIZE)
}

fn opened(app: &GenderApp) -> bool {
    app.data.photos.is_some() && app.data.curation.as_ref().is_some_and(|c| !c.is_busy())
}

fn idle(app: &GenderApp) -> bool {
    app.data.curation.as_ref().is_some_and(|c| !c.is_busy())
}

/// Predictions for every photo: female photos 0 and 1 are predicted male (wrong).
fn inject_predictions(app: &mut GenderApp) {
    let photos = app.data.photos.as_mut().unwrap();
    let rows = photos
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let name = e.path.file_name().unwrap().to_string_lossy().into_owned();
            let female = name.starts_with('f');
            let wrong = female && (name.starts_with("f0") || name.starts_with("f1"));
            let male_p = if female != wrong { 0.08 + 0.02 * (i % 5) as f32 } else { 0.9 - 0.03 * (i % 4) as f32 };
            PredictionRow {
                path: e.path.clone(),
                predicted: usize::from(male_p > 0.5),
                probs: vec![1.0 - male_p, male_p],
                split: Some(if i % 3 == 0 { Split::Train } else { Split::Test }),
                n_faces: Some((i % 3) as u32),
            }
        })
        .collect();
    photos.set_predictions(&Predictions { classes: vec!["female".into(), "male".into()], rows, failures: vec![] });
}

#[test]
fn relabel_with_a_key_moves_the_file_and_undo_moves_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 3, 32);
    let mut h = harness(app_for(Some(&root), &tmp.path().join("cache")));
    pump(&mut h, "the dataset to open", opened);
    assert_eq!(h.state().data.photos.as_ref().unwrap().counts().0, vec![3, 3]);

    // Click a photo, press M: it moves from female/ to male/.
    h.get_by_label("f0.png").click();
    h.step();
    h.key_press(Key::M);
    h.step();
    pump(&mut h, "the relabel", |_| root.join("male/f0.png").exists());
    assert!(!root.join("female/f0.png").exists());
    pump(&mut h, "the app to settle", idle);
    assert_eq!(h.state().data.photos.as_ref().unwrap().counts().0, vec![2, 4]);

    // Ctrl+Z moves it back.
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    pump(&mut h, "the undo", |_| root.join("female/f0.png").exists());
    assert!(!root.join("male/f0.png").exists());
    pump(&mut h, "the app to settle", idle);
    assert_eq!(h.state().data.photos.as_ref().unwrap().counts().0, vec![3, 3]);

    // Ctrl+Shift+Z redoes it.
    h.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    h.step();
    pump(&mut h, "the redo", |_| root.join("male/f0.png").exists());
    pump(&mut h, "the app to settle", idle);

    // Ctrl+click two photos and exclude both with X: moved into excluded/, never deleted.
    h.get_by_label("m1.jpg").click();
    h.step();
    h.get_by_label("m2.png").click_modifiers(Modifiers::COMMAND);
    h.step();
    h.key_press(Key::X);
    h.step();
    pump(&mut h, "the exclusion", |_| root.join("excluded/m1.jpg").exists() && root.join("excluded/m2.png").exists());
    pump(&mut h, "the app to settle", idle);
    assert_eq!(h.state().data.photos.as_ref().unwrap().counts(), (vec![2, 2], 2));
    assert!(h.state().status_text().to_lowercase().contains("exclude 2 photos"), "{}", h.state().status_text());
    let files = walk(&root);
    assert_eq!(files, 6, "no file was lost");
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                0
            } else if p.is_dir() {
                walk(&p)
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn interrupted_moves_are_recovered_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 2, 16);
    std::fs::create_dir_all(root.join(".gender-classifier")).unwrap();
    // A move that was journalled but never happened (crash before the rename).
    let line =
        serde_json::json!({"op": "begin", "id": 0, "from": root.join("male/m0.png"), "to": root.join("female/m0.png")});
    std::fs::write(root.join(".gender-classifier/journal.jsonl"), format!("{line}\n")).unwrap();
    let mut h = harness(app_for(Some(&root), &tmp.path().join("cache")));
    pump(&mut h, "the recovery notice", |a| opened(a) && a.shell.log.iter().any(|(_, t)| t.contains("interrupted")));
    assert!(root.join("male/m0.png").exists());
}

/// A hook that holds the training thread at its first feature-extraction event until the test
/// lets it go: `reached` says it is held there, sending on `go` releases it.
fn pause_at_first_extraction() -> (gc_app::train_panel::EventHook, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (reached_tx, reached) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let state = Mutex::new((Some(reached_tx), go_rx));
    let hook = Arc::new(move |e: &TrainEvent| {
        if !matches!(e, TrainEvent::Extracting(_)) {
            return;
        }
        let mut s = state.lock().unwrap();
        if let Some(tx) = s.0.take() {
            tx.send(()).unwrap();
            // Held until the test says go (the safety net only ends a test that never does).
            s.1.recv_timeout(SAFETY_NET).expect("the test never released the training");
        }
    });
    (hook, reached, go)
}

#[test]
fn training_can_be_cancelled_and_writes_no_model() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 8, 64);
    let mut app = app_for(Some(&root), &tmp.path().join("cache"));
    app.settings.train.extract_batch = 4;
    let (hook, reached, go) = pause_at_first_extraction();
    app.training.event_hook = Some(hook);
    let mut h = harness(app);
    pump(&mut h, "the dataset to open", opened);

    h.get_by_label("Train new model").click();
    h.step();
    assert!(h.state().training.is_running(), "the button starts a run");
    assert_eq!(h.state().shell.tab, Tab::Training);
    // The run is held in the middle of extracting features: the cancel surely arrives before its end.
    reached.recv_timeout(SAFETY_NET).expect("the training never reached feature extraction");
    h.step();
    h.get_by_label("Cancel training").click();
    h.step();
    assert!(h.state().training.is_cancelling(), "the click asked the run to stop");
    go.send(()).unwrap();
    pump(&mut h, "the training to stop", |a| !a.training.is_running());
    let app = h.state();
    assert_eq!(app.training.last, Some(LastRun::Cancelled));
    assert!(app.status_text().to_lowercase().contains("cancelled"), "{}", app.status_text());
    let models = gc_core::context::Context::cpu_with_cache(tmp.path().join("cache")).trained_models_dir();
    let written = std::fs::read_dir(&models).map(|d| d.flatten().count()).unwrap_or(0);
    assert_eq!(written, 0, "a cancelled run saves no model");
}

#[test]
fn a_finished_training_saves_the_model_makes_it_current_and_adds_it_to_the_history() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 8, 48);
    let mut app = app_for(Some(&root), &tmp.path().join("cache"));
    app.settings.train.extract_batch = 8;
    app.settings.train.options.epochs = 12;
    let mut h = harness(app);
    pump(&mut h, "the dataset and the model list", |a| opened(a) && !a.models.is_busy());
    let before = history_points(&h.state().models.list, None).len();

    h.get_by_label("Train new model").click();
    h.step();
    assert!(h.state().training.is_running() || h.state().training.last.is_some(), "the button starts a run");
    pump(&mut h, "the training to end", |a| !a.training.is_running());
    let app = h.state();
    let Some(LastRun::Finished { path, test_accuracy, .. }) = app.training.last.clone() else {
        panic!("the run did not finish: {:?}; status: {}", app.training.last, app.status_text());
    };
    assert!(path.is_file(), "the model is saved: {}", path.display());
    let data = gc_core::context::Context::cpu_with_cache(tmp.path().join("cache")).trained_models_dir();
    assert_eq!(path.parent(), Some(data.as_path()), "in the data folder, not the photo folder");
    assert!(!root.join(".gender-classifier/models").exists(), "nothing saved in the photo folder");
    assert!(!app.training.history.is_empty(), "the curves have their epochs");
    assert_eq!(app.settings.model.as_ref(), Some(&path), "the new model is the one remembered");
    assert_eq!(app.models.path.as_ref(), Some(&path), "and the one loading now");
    assert!(app.status_text().contains("Training finished"), "{}", app.status_text());

    // It becomes the current model, predicts the dataset, and joins the accuracy history.
    pump(&mut h, "the new model to load and predict", |a| {
        a.models.classifier.is_some() && !a.models.is_busy() && a.models.path.as_ref() == Some(&path)
    });
    let app = h.state();
    assert_eq!(app.data.photos.as_ref().unwrap().predicted_count(), 16);
    let saved = &app.models.classifier.as_ref().unwrap().model.meta;
    assert_eq!(saved.test_metrics.as_ref().map(|m| m.accuracy), test_accuracy);
    let points = history_points(&app.models.list, app.models.path.as_deref());
    assert_eq!(points.len(), before + 1, "one more point in the accuracy history: {points:?}");
    let new = points.iter().find(|p| p.path == path).expect("the new model is in the history");
    assert!(new.current, "and marked as the current one");
    assert_eq!(Some(new.accuracy), test_accuracy);
}

#[test]
fn clicking_a_confusion_cell_filters_the_grid_to_exactly_those_photos() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 4, 16);
    let mut h = harness(app_for(Some(&root), &tmp.path().join("cache")));
    pump(&mut h, "the dataset to open", opened);
    inject_predictions(h.state_mut());
    h.state_mut().shell.tab = Tab::Evaluation;
    h.run_steps(2);

    // The other off-diagonal cell is empty.
    assert!(h.query_by_label_contains("true male, predicted female: 0").is_some());
    h.get_by_label_contains("true female, predicted male").click();
    h.run_steps(2);
    let app = h.state();
    assert_eq!(app.shell.tab, Tab::Photos);
    assert_eq!(app.settings.filters.class.as_deref(), Some("female"));
    assert_eq!(app.settings.filters.predicted.as_deref(), Some("male"));
    let photos = app.data.photos.as_ref().unwrap();
    let mut shown: Vec<String> = app
        .data
        .grid
        .view
        .iter()
        .map(|&i| photos.entries[i].path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    shown.sort();
    assert_eq!(shown, ["f0.png", "f1.jpg"]);
}

struct DroppedPath(PathBuf);

impl std::fmt::Debug for DroppedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.display())
    }
}

impl egui::DroppedFile for DroppedPath {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

/// The shipped default model (in the repository's `models/`).
fn shipped_model(dir: &Path) -> PathBuf {
    let shipped = gc_core::context::Context::cpu_with_cache(dir.join("cache")).default_model();
    assert!(shipped.is_file(), "the shipped default model is missing: {}", shipped.display());
    shipped
}

/// The shipped default model, or faceres' zero-shot head saved to `dir`.
fn a_model(dir: &Path) -> PathBuf {
    let ctx = gc_core::context::Context::cpu_with_cache(dir.join("cache"));
    let shipped = ctx.default_model();
    if shipped.exists() {
        return shipped;
    }
    let path = dir.join("zero-shot.safetensors");
    gc_core::train::run::zero_shot_model(&ctx, true).unwrap().save(&path).unwrap();
    path
}

#[test]
fn a_dropped_photo_is_classified_and_can_be_added_to_the_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 2, 16);
    let photo = tmp.path().join("grace-hopper.jpg");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples/grace-hopper.jpg"), &photo).unwrap();
    let mut app = app_for(Some(&root), &tmp.path().join("cache"));
    app.settings.model = Some(shipped_model(tmp.path()));
    app.models.auto_load = true;
    let mut h = harness(app);
    pump(&mut h, "the dataset to open", opened);

    h.input_mut().dropped_files.push(Arc::new(DroppedPath(photo.clone())));
    h.step();
    assert_eq!(h.state().classify.items.len(), 1, "the drop adds one row");
    assert_eq!(h.state().shell.side, SidePage::Classified);
    pump(&mut h, "the classification", |a| {
        matches!(a.classify.items[0].state, ClassifyState::Done(_) | ClassifyState::Failed(_))
    });
    let item = &h.state().classify.items[0];
    let ClassifyState::Done(pred) = &item.state else { panic!("classification failed: {:?}", item.state) };
    assert_eq!(pred.faces.len(), 1, "one face");
    // What the shipped default says of this photo (see assets/samples/PROVENANCE.md): pinned, so
    // that a change of the model or of the pipeline shows here. Since the detector looks at a large
    // face through an unsquashed window (issue 21) it gets her right, at about 0.78; before, the
    // squashed box of the tiles made it say male at about 0.84.
    let class = item.predicted().unwrap().to_string();
    assert_eq!(class, "female");
    let face = &pred.faces[0];
    assert!(face.probs[face.class] > 0.7, "{:?}", face.probs);

    // A adds it under its predicted class: a copy, never overwriting.
    h.key_press(Key::A);
    h.step();
    pump(&mut h, "the copy", |_| root.join(&class).join("grace-hopper.jpg").exists());
    pump(&mut h, "the app to settle", |a| idle(a) && a.classify.items[0].added_as.is_some());
    assert!(photo.exists(), "the original stays");
    let n = h.state().data.photos.as_ref().unwrap().counts().0.iter().sum::<usize>();
    assert_eq!(n, 5, "the copy joins the dataset view");
}

#[test]
fn the_apps_tasks_write_into_the_cache_folder_they_were_given() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 2, 16);
    let cache = tmp.path().join("given-cache");
    let mut app = app_for(Some(&root), &cache);
    app.settings.model = Some(a_model(tmp.path()));
    app.models.auto_load = true;
    let mut h = harness(app);
    pump(&mut h, "the dataset to open", opened);
    let count = |d: &Path| if d.is_dir() { walk(d) } else { 0 };
    pump(&mut h, "the dataset's predictions and thumbnails", |a| {
        !a.is_busy()
            && count(&cache.join("features")) >= 4
            && a.data.thumbs.is_idle()
            && a.data.thumbs.texture_count() >= 4
    });
    assert_eq!(count(&cache.join("features")), 4, "one feature entry per photo, under <cache>/features");
    assert!(count(&cache.join("thumbs")) >= 1, "thumbnails under <cache>/thumbs");
    assert!(!tmp.path().join("faces/.gender-classifier/features").exists());
}

#[test]
fn no_two_commands_share_a_shortcut() {
    let all = shortcuts();
    let flat: Vec<_> = all.iter().flat_map(|(c, keys)| keys.iter().map(move |k| (k, c))).collect();
    for (i, (k, c)) in flat.iter().enumerate() {
        for (k2, c2) in &flat[i + 1..] {
            assert!(k != k2, "{k:?} is bound to {c:?} and {c2:?}");
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Snapshots of the main screens (generated photos only). UPDATE_SNAPSHOTS=1 rewrites them.

/// A fixed folder (so paths shown on screen are stable), emptied first.
fn fixed_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gc-app-snapshots-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn snapshot_harness(app: GenderApp) -> Harness<'static, GenderApp> {
    Harness::builder().with_size(SIZE).wgpu().build_ui_state(|ui, app: &mut GenderApp| app.ui(ui), app)
}

fn wait_for_thumbnails(h: &mut Harness<'static, GenderApp>, n: usize) {
    pump(h, "the thumbnails", |a| {
        a.data.thumbs.texture_count() >= n && a.data.thumbs.is_idle() && !a.data.viewer.is_busy()
    });
    h.run_steps(3);
}

#[test]
fn snapshot_welcome() {
    let dir = fixed_dir("welcome");
    let mut h = snapshot_harness(app_for(None, &dir.join("cache")));
    h.run_steps(3);
    h.snapshot("app_welcome");
}

#[test]
fn snapshot_grid_viewer_and_help() {
    let dir = fixed_dir("grid");
    let root = dir.join("faces");
    make_dataset(&root, 9, 96);
    let mut h = snapshot_harness(app_for(Some(&root), &dir.join("cache")));
    pump(&mut h, "the dataset to open", opened);
    inject_predictions(h.state_mut());
    h.step();
    h.get_by_label("f1.jpg").click();
    h.step();
    wait_for_thumbnails(&mut h, 18);
    h.snapshot("app_grid");
    h.key_press(Key::F1);
    h.run_steps(3);
    h.snapshot("app_help");
}

#[test]
fn snapshot_evaluation() {
    let dir = fixed_dir("evaluation");
    let root = dir.join("faces");
    make_dataset(&root, 6, 16);
    let mut h = snapshot_harness(app_for(Some(&root), &dir.join("cache")));
    pump(&mut h, "the dataset to open", opened);
    inject_predictions(h.state_mut());
    h.state_mut().shell.tab = Tab::Evaluation;
    h.run_steps(3);
    h.snapshot("app_evaluation");
}

#[test]
fn snapshot_training_curves() {
    let dir = fixed_dir("training");
    let root = dir.join("faces");
    make_dataset(&root, 3, 16);
    let mut h = snapshot_harness(app_for(Some(&root), &dir.join("cache")));
    pump(&mut h, "the dataset to open", opened);
    {
        let app = h.state_mut();
        app.shell.tab = Tab::Training;
        app.training.history = (1..=30)
            .map(|e| {
                let t = e as f32;
                gc_core::train::EpochStats {
                    epoch: e,
                    train_loss: 0.25 + 0.5 * (-t / 6.0).exp(),
                    train_accuracy: 0.97 - 0.3 * (-t / 5.0).exp(),
                    val_loss: Some(0.3 + 0.45 * (-t / 7.0).exp() + 0.002 * t),
                    val_accuracy: Some(0.93 - 0.3 * (-t / 6.0).exp()),
                }
            })
            .collect();
        app.training.last = Some(LastRun::Finished {
            path: PathBuf::from("faces/.gender-classifier/models/2025-01-31T12-00-00Z.safetensors"),
            test_accuracy: Some(0.931),
            seconds: 94.0,
        });
    }
    h.run_steps(3);
    h.snapshot("app_training");
}

#[test]
fn snapshot_classified_panel() {
    let dir = fixed_dir("classified");
    let photo = dir.join("group.png");
    image::RgbImage::from_fn(240, 160, |x, y| image::Rgb([(x / 2) as u8, (y + 60) as u8, 150])).save(&photo).unwrap();
    let mut app = app_for(None, &dir.join("cache"));
    let face = |x: f32, p_male: f32| FacePrediction {
        region: FaceRegion {
            region: [x - 10.0, 30.0, x + 70.0, 110.0],
            angle: 0.0,
            detection: Some(Detection {
                score: 0.97,
                bbox: [x, 40.0, x + 60.0, 100.0],
                keypoints: [[x + 20.0, 60.0]; 6],
            }),
        },
        probs: vec![1.0 - p_male, p_male],
        class: usize::from(p_male > 0.5),
    };
    app.classify.items.push(ClassifiedPhoto {
        id: 0,
        path: photo.clone(),
        state: ClassifyState::Done(ImagePrediction {
            path: photo.clone(),
            image_size: (240, 160),
            faces: vec![face(20.0, 0.91), face(140.0, 0.12)],
        }),
        classes: vec!["female".into(), "male".into()],
        added_as: None,
    });
    app.classify.items.push(ClassifiedPhoto {
        id: 1,
        path: dir.join("notes.png"),
        state: ClassifyState::Failed("notes.png is not a readable image (unknown file format)".into()),
        classes: vec![],
        added_as: None,
    });
    app.shell.side = SidePage::Classified;
    let mut h = snapshot_harness(app);
    pump(&mut h, "the thumbnails", |a| a.data.thumbs.texture_count() >= 1 && a.data.thumbs.is_idle());
    h.run_steps(3);
    h.snapshot("app_classified");
}

#[test]
fn review_suspects_walks_findings_with_keys_and_remembers_what_was_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 6, 96);
    // The same bytes under both labels (always an error), and a tiny photo.
    std::fs::copy(root.join("female/f2.png"), root.join("male/f2-copy.png")).unwrap();
    image::RgbImage::from_pixel(20, 24, image::Rgb([9, 9, 9])).save(root.join("male/tiny.png")).unwrap();
    let mut h = harness(app_for(Some(&root), &tmp.path().join("cache")));
    pump(&mut h, "the dataset to open", opened);

    h.key_press_modifiers(Modifiers::COMMAND, Key::R);
    pump(&mut h, "the audit", |a| !a.review.is_running() && a.review.report.is_some());
    assert_eq!(h.state().shell.tab, Tab::Review);
    let first = h.state().review.current().cloned().expect("a finding");
    assert_eq!(first.kind, FindingKind::ConflictingDuplicate, "the most important finding comes first");
    assert_eq!(first.members.len(), 2);
    h.get_by_label_contains("identical files filed as female and male");

    // Key 1: keep the first copy, exclude the other (a move into excluded/, never a delete).
    h.key_press(Key::Num1);
    pump(&mut h, "the exclude", |a| idle(a) && a.review.decisions.excluded == 1);
    let excluded = root.join("excluded").join(first.members[1].path.file_name().unwrap());
    pump(&mut h, "the file in excluded/", |_| excluded.exists());
    assert!(first.members[0].path.exists());

    // Walk to the tiny photo and keep it: the decision is written into the dataset.
    let tiny = h.state().review.report.as_ref().unwrap().findings.iter().position(|f| f.kind == FindingKind::Tiny);
    let tiny = tiny.expect("the 20x24 photo is flagged as tiny");
    while h.state().review.pos < tiny {
        h.key_press(Key::ArrowRight);
        h.step();
    }
    assert_eq!(h.state().review.current().unwrap().kind, FindingKind::Tiny);
    h.key_press(Key::K);
    h.step();
    assert_eq!(h.state().review.decisions.kept, 1);
    assert!(root.join(".gender-classifier/review.json").exists());

    // A new audit hides what was kept.
    h.key_press_modifiers(Modifiers::COMMAND, Key::R);
    pump(&mut h, "the second audit", |a| !a.review.is_running() && a.review.report.is_some());
    let report = h.state().review.report.as_ref().unwrap();
    assert!(report.findings.iter().all(|f| f.kind != FindingKind::Tiny), "the kept tiny photo came back");
    assert!(h.state().review.hidden_as_kept >= 1);
    assert!(report.findings.iter().all(|f| f.kind != FindingKind::ConflictingDuplicate), "the conflict is resolved");
}

#[test]
fn snapshot_review() {
    let dir = fixed_dir("review");
    let root = dir.join("faces");
    make_dataset(&root, 6, 96);
    std::fs::copy(root.join("female/f2.png"), root.join("male/f2-copy.png")).unwrap();
    let mut h = snapshot_harness(app_for(Some(&root), &dir.join("cache")));
    pump(&mut h, "the dataset to open", opened);
    h.state_mut().push(gc_app::Command::ReviewSuspects);
    pump(&mut h, "the audit", |a| !a.review.is_running() && a.review.report.is_some());
    // The audit's timing varies; the report line shows it, so pin it for a stable picture.
    h.state_mut().review.report.as_mut().unwrap().analysis_secs = 0.5;
    pump(&mut h, "the thumbnails", |a| {
        a.data.thumbs.texture_count() >= 2 && a.data.thumbs.is_idle() && !a.data.viewer.is_busy()
    });
    h.run_steps(3);
    h.snapshot("app_review");
}

// ------------------------------------------------------------------------------------------------
// Models, predictions, rescans, pasted photos, the viewer's faces and the review's side panel.

/// A copy of a bundled sample photo at `to`.
fn sample(name: &str, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/samples").join(name), to).unwrap();
    to.to_path_buf()
}

/// An app on `root` that loads the shipped default model.
fn app_with_shipped_model(root: Option<&Path>, tmp: &Path) -> GenderApp {
    let mut app = app_for(root, &tmp.join("cache"));
    app.settings.model = Some(shipped_model(tmp));
    app.models.auto_load = true;
    app
}

#[test]
fn predict_all_predicts_every_photo_and_gives_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 3, 32);
    let mut h = harness(app_with_shipped_model(Some(&root), tmp.path()));
    pump(&mut h, "the model and the first predictions", |a| {
        opened(a) && a.models.classifier.is_some() && !a.models.is_busy()
    });
    h.state_mut().data.photos.as_mut().unwrap().clear_predictions();
    h.state_mut().shell.status = None;
    h.step();
    assert_eq!(h.state().data.photos.as_ref().unwrap().predicted_count(), 0);
    assert!(h.state_mut().current_metrics().is_none(), "no predictions, no metrics");

    h.get_by_label("Predict all").click();
    h.step();
    // A step may run more than one pass, so the pass may already be over: then every photo has a prediction.
    let started = |a: &GenderApp| a.models.eval.is_some() || a.data.photos.as_ref().unwrap().predicted_count() > 0;
    assert!(started(h.state()), "the button starts a prediction pass");
    pump(&mut h, "the predictions", |a| a.models.eval.is_none());
    let app = h.state_mut();
    assert!(app.status_text().starts_with("Predicted 6 photos"), "{}", app.status_text());
    let photos = app.data.photos.as_ref().unwrap();
    assert_eq!(photos.predicted_count(), 6, "every photo has a prediction");
    assert_eq!(photos.pred_classes, ["female", "male"]);
    assert!(
        photos
            .entries
            .iter()
            .all(|e| e.pred.as_ref().is_some_and(|p| (p.probs.iter().sum::<f32>() - 1.0).abs() < 1e-3))
    );
    let m = app.current_metrics().expect("metrics of the predictions");
    assert_eq!(m.count, 6);
    assert_eq!(m.confusion.iter().flatten().sum::<usize>(), 6);
    assert_eq!(m.per_class.iter().map(|c| c.support).collect::<Vec<_>>(), [3, 3]);
}

/// Opens the model picker (the combo box labelled "Model") and clicks the entry `label`.
fn pick_model(h: &mut Harness<'static, GenderApp>, label: &str) {
    h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Model").click();
    h.run_steps(2);
    h.get_by_label(label).click();
    h.step();
}

#[test]
fn a_model_chosen_from_the_list_and_the_zero_shot_head_become_current() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 2, 16);
    let shipped = shipped_model(tmp.path());
    let mut h = harness(app_for(Some(&root), &tmp.path().join("cache")));
    pump(&mut h, "the dataset and the model list", |a| opened(a) && !a.models.is_busy());
    assert!(h.state().models.classifier.is_none(), "nothing loaded yet");
    let label = h.state().models.list.iter().find(|m| m.shipped).expect("the shipped model is listed").label();

    pick_model(&mut h, &label);
    assert_eq!(h.state().models.path.as_ref(), Some(&shipped), "the click chose the shipped model");
    pump(&mut h, "the shipped model to load and predict", |a| a.models.classifier.is_some() && !a.models.is_busy());
    let app = h.state();
    assert_eq!(app.settings.model.as_ref(), Some(&shipped), "the choice is remembered");
    let meta = &app.models.classifier.as_ref().unwrap().model.meta;
    assert!(meta.origin.contains("web-faces"), "{}", meta.origin);
    assert_eq!(app.data.photos.as_ref().unwrap().predicted_count(), 4);

    pick_model(&mut h, "Use faceres' zero-shot head");
    let zero_shot = gc_core::context::Context::cpu_with_cache(tmp.path().join("cache"))
        .trained_models_dir()
        .join("zero-shot-faceres.safetensors");
    assert!(h.state().models.zero_shot_task.is_some() || zero_shot.exists(), "the click makes the zero-shot head");
    pump(&mut h, "the zero-shot head to be saved", |a| a.models.zero_shot_task.is_none());
    assert_eq!(
        h.state().models.path.as_ref(),
        Some(&zero_shot),
        "the saved head is chosen: {}",
        h.state().status_text()
    );
    pump(&mut h, "the zero-shot head to load and predict", |a| a.models.classifier.is_some() && !a.models.is_busy());
    let app = h.state();
    assert!(zero_shot.is_file());
    let meta = &app.models.classifier.as_ref().unwrap().model.meta;
    assert!(meta.origin.contains("zero-shot"), "{}", meta.origin);
    assert_eq!(app.settings.model.as_ref(), Some(&zero_shot));
    assert!(app.models.list.iter().any(|m| m.path == zero_shot), "the list shows it");
    assert_eq!(app.data.photos.as_ref().unwrap().predicted_count(), 4, "the dataset is predicted again");
}

#[test]
fn rescan_picks_up_a_photo_added_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 2, 16);
    let mut h = harness(app_for(Some(&root), &tmp.path().join("cache")));
    pump(&mut h, "the dataset to open", opened);
    assert_eq!(h.state().data.photos.as_ref().unwrap().counts().0, vec![2, 2]);

    let added = root.join("male/added.png");
    image::RgbImage::from_pixel(16, 16, image::Rgb([10, 200, 30])).save(&added).unwrap();
    h.key_press(Key::F5);
    h.step();
    // A step may run more than one pass, so the scan may already be over: then it said so.
    let scans = |a: &GenderApp| a.shell.log.iter().filter(|(_, t)| t.starts_with("Opened ")).count();
    assert!(h.state().data.scan.is_some() || scans(h.state()) == 2, "F5 starts a scan");
    pump(&mut h, "the rescan", |a| a.data.scan.is_none() && opened(a));
    assert_eq!(scans(h.state()), 2, "one scan on opening, one on F5");
    let photos = h.state().data.photos.as_ref().unwrap();
    assert_eq!(photos.counts().0, vec![2, 3]);
    assert!(photos.index_of_path(&added).is_some(), "the new file is listed");
    h.step();
    h.get_by_label("added.png");
}

#[test]
fn a_pasted_path_is_classified() {
    let tmp = tempfile::tempdir().unwrap();
    let photo = sample("obama.jpg", &tmp.path().join("in/obama.jpg"));
    let mut h = harness(app_with_shipped_model(None, tmp.path()));
    pump(&mut h, "the model", |a| a.models.classifier.is_some() && !a.models.is_busy());

    h.input_mut().events.push(egui::Event::Paste(format!("{}\n", photo.display())));
    h.step();
    assert_eq!(h.state().classify.items.len(), 1, "the paste adds one row");
    assert_eq!(h.state().classify.items[0].path, photo);
    assert_eq!(h.state().shell.side, SidePage::Classified);
    pump(&mut h, "the classification", |a| {
        matches!(a.classify.items[0].state, ClassifyState::Done(_) | ClassifyState::Failed(_))
    });
    let item = &h.state().classify.items[0];
    let ClassifyState::Done(pred) = &item.state else { panic!("classification failed: {:?}", item.state) };
    assert_eq!(pred.faces.len(), 1);
    assert_eq!(item.predicted(), Some("male"));
}

#[test]
fn the_viewer_holds_the_face_boxes_of_a_photo_with_a_face() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 1, 16);
    let photo = sample("obama.jpg", &root.join("male/obama.jpg"));
    let mut h = harness(app_with_shipped_model(Some(&root), tmp.path()));
    pump(&mut h, "the dataset and the model", |a| opened(a) && a.models.classifier.is_some());

    h.get_by_label("obama.jpg").click();
    h.step();
    pump(&mut h, "the viewer", |a| {
        a.data.viewer.shown.as_ref().is_some_and(|s| s.path == photo) && !a.data.viewer.is_busy()
    });
    let shown = h.state().data.viewer.shown.as_ref().unwrap();
    assert!(shown.texture.is_some(), "{:?}", shown.error);
    let (w, ht) = shown.image_size.unwrap();
    let Faces::Done(pred, classes) = &shown.faces else { panic!("no faces: {:?}", shown.faces) };
    assert_eq!(pred.path, photo);
    assert_eq!(pred.faces.len(), 1, "one face");
    let face = &pred.faces[0];
    let d = face.region.detection.as_ref().expect("a detected face, not the whole photo");
    assert!(d.score > 0.5, "{}", d.score);
    let b = d.bbox;
    assert!(0.0 <= b[0] && b[0] < b[2] && b[2] <= w as f32 && 0.0 <= b[1] && b[1] < b[3] && b[3] <= ht as f32, "{b:?}");
    // Where the CLI finds it: [376,140,607,429] (x0, y0, x1, y1).
    for (got, want) in b.iter().zip([376.0, 140.0, 607.0, 429.0]) {
        assert!((got - want).abs() < 25.0, "box {b:?}");
    }
    assert_eq!(classes[face.class], "male");
    h.step();
    h.get_by_label("1 face");
}

/// An audit report with `findings` (tests set it instead of running the audit).
fn report_of(findings: Vec<Finding>) -> AuditReport {
    AuditReport {
        classes: vec!["female".into(), "male".into()],
        images: 0,
        unreadable: vec![],
        findings,
        suspects: vec![],
        analysis_secs: 0.1,
    }
}

fn finding(kind: FindingKind, path: PathBuf, class: &str, suggested: Option<&str>) -> Finding {
    Finding {
        kind,
        members: vec![Member { path, class: class.into(), sha256: String::new() }],
        score: 0.9,
        reason: "set by the test".into(),
        suggested_class: suggested.map(str::to_string),
    }
}

#[test]
fn r_relabels_the_finding_as_suggested_and_the_journal_undoes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 3, 32);
    let cache = tmp.path().join("cache");
    let from = root.join("female/f1.jpg");
    let to = root.join("male/f1.jpg");
    {
        let mut h = harness(app_for(Some(&root), &cache));
        pump(&mut h, "the dataset to open", opened);
        let wrong = finding(FindingKind::LikelyWrongLabel, from.clone(), "female", Some("male"));
        h.state_mut().review.report = Some(report_of(vec![wrong]));
        h.state_mut().shell.tab = Tab::Review;
        h.step();
        h.get_by_label("Relabel as male");

        h.key_press(Key::R);
        h.step();
        assert_eq!(h.state().review.decisions.relabelled, 1, "R is a relabel decision");
        pump(&mut h, "the move", |a| idle(a) && to.exists());
        assert!(!from.exists());
        let app = h.state();
        assert_eq!(app.data.photos.as_ref().unwrap().counts().0, vec![2, 4]);
        assert_eq!(app.data.curation.as_ref().unwrap().undo_label(), Some("relabel 1 photo as male"));
        assert!(app.review.current().is_none(), "on to the end of the queue");
    }
    let journal = std::fs::read_to_string(root.join(".gender-classifier/journal.jsonl")).unwrap();
    assert!(journal.contains("f1.jpg"), "the move is journalled: {journal}");

    // A new session reads the undo history back from the journal and undoes the move. (Wait until the
    // first session let the journal go; a second holder would be read-only.)
    let start = Instant::now();
    while gc_core::dataset::journal::Journal::open(&root).is_err() {
        assert!(start.elapsed() < SAFETY_NET, "the first session never released the journal");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut h = harness(app_for(Some(&root), &cache));
    pump(&mut h, "the dataset to open again", opened);
    assert_eq!(h.state().data.curation.as_ref().unwrap().undo_label(), Some("relabel 1 photo as male"));
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    h.step();
    pump(&mut h, "the undo", |a| idle(a) && from.exists());
    assert!(!to.exists());
    assert_eq!(h.state().data.photos.as_ref().unwrap().counts().0, vec![3, 3]);
}

#[test]
fn the_review_side_panel_shows_the_prediction_of_the_photo_it_shows() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 3, 32);
    let mut h = harness(app_for(Some(&root), &tmp.path().join("cache")));
    pump(&mut h, "the dataset to open", opened);
    // A different prediction for every photo.
    {
        let photos = h.state_mut().data.photos.as_mut().unwrap();
        let rows = photos
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let male_p = 0.11 + 0.13 * i as f32;
                PredictionRow {
                    path: e.path.clone(),
                    predicted: usize::from(male_p > 0.5),
                    probs: vec![1.0 - male_p, male_p],
                    split: None,
                    n_faces: None,
                }
            })
            .collect();
        photos.set_predictions(&Predictions { classes: vec!["female".into(), "male".into()], rows, failures: vec![] });
    }
    // The grid's cursor is on another photo than any finding's.
    h.step();
    h.get_by_label("m2.png").click();
    h.step();
    let findings: Vec<Finding> = ["female/f0.png", "male/m1.jpg", "female/f2.png"]
        .iter()
        .map(|f| {
            let class = f.split('/').next().unwrap();
            finding(FindingKind::Outlier, root.join(f), class, None)
        })
        .collect();
    h.state_mut().review.report = Some(report_of(findings.clone()));
    h.state_mut().shell.tab = Tab::Review;
    h.step();

    for (k, f) in findings.iter().enumerate() {
        if k > 0 {
            h.key_press(Key::ArrowRight);
            h.step();
        }
        h.step();
        let app = h.state();
        let path = &f.members[0].path;
        assert_eq!(app.review.pos, k);
        assert_eq!(&app.data.viewer.shown.as_ref().unwrap().path, path, "the viewer shows the finding's photo");
        let photos = app.data.photos.as_ref().unwrap();
        let e = &photos.entries[photos.index_of_path(path).unwrap()];
        let facts = app.shown_facts().expect("facts about the photo shown");
        assert_eq!(facts.label, f.members[0].class);
        let (pred, probs) = facts.probs.expect("its prediction");
        assert_eq!(probs, e.pred.as_ref().unwrap().probs, "finding {k}: the numbers are {}'s", path.display());
        assert_eq!(Some(pred.as_str()), photos.predicted_name(e));
        // And the panel draws them.
        let male = format!("male {:.0}%", probs[1] * 100.0);
        assert!(h.query_by_label_contains(&male).is_some(), "finding {k}: the panel does not show {male}");
    }
}
