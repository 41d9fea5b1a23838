//! Headless UI tests (egui_kittest) of models as things a user manages: they live in the data
//! folder, models of a photo folder move there on opening (a clash loses nothing), the Models tab
//! renames, exports (through the path field where there is no file dialog), deletes to the trash
//! after asking, and compares two models; the status bar names the model in use.
//!
//! No outcome depends on timing: each wait is for a condition; its deadline only stops a hang.

mod app_harness;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use app_harness::{harness_of_size, pump};
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use gc_app::model_compare::accuracy_text;
use gc_app::model_store::{Trash, legacy_models_dir};
use gc_app::path_field::DialogSupport;
use gc_app::{GenderApp, Settings, Tab};
use gc_core::context::Context;

fn harness(app: GenderApp) -> Harness<'static, GenderApp> {
    harness_of_size(app, [1400.0, 900.0])
}

/// `n` generated photos per class under `root/{female,male}`.
fn make_dataset(root: &Path, n: usize) {
    for (c, class) in ["female", "male"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(32, 32, |x, y| {
                image::Rgb([(x * 8) as u8, (y * 8) as u8, (c * 200 + i * 5) as u8])
            });
            img.save(dir.join(format!("{}{i}.png", &class[..1]))).unwrap();
        }
    }
}

/// The context the app of `tmp` runs with (its data folder is `tmp/cache/data`).
fn ctx(tmp: &Path) -> Context {
    Context::cpu_with_cache(tmp.join("cache"))
}

/// An app on `root` (if any) whose caches and data folder are under `tmp`, loading no model.
fn app_for(root: Option<&Path>, tmp: &Path) -> GenderApp {
    let mut app = GenderApp::new(Settings::default(), root.map(Path::to_path_buf), ctx(tmp));
    app.models.auto_load = false;
    app
}

/// A copy of the shipped model (one file, metadata inside) at `to`.
fn copy_of_shipped(tmp: &Path, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(ctx(tmp).default_model(), to).unwrap();
    to.to_path_buf()
}

fn listed(a: &GenderApp) -> bool {
    !a.models.list.is_empty() && a.models.list_task.is_none()
}

/// Opens the Models tab and shows the details of the model named `name`.
fn select(h: &mut Harness<'static, GenderApp>, name: &str) {
    h.state_mut().shell.tab = Tab::Models;
    h.run_steps(2);
    // The list's entry (the details' heading, once shown, is a label, not a button).
    h.get_all_by_role_and_label(Role::Button, name).next().expect("the model is listed").click();
    h.run_steps(2);
}

#[test]
fn the_status_bar_names_the_shipped_default_and_how_it_was_trained() {
    let tmp = tempfile::tempdir().unwrap();
    let mut app = app_for(None, tmp.path());
    app.settings.model = Some(ctx(tmp.path()).default_model());
    app.models.auto_load = true;
    let mut h = harness(app);
    h.step();
    assert!(h.query_by_label_contains("Model: none").is_none(), "the shipped default is chosen at once");
    pump(&mut h, "the shipped model to load", |a| a.models.classifier.is_some() && !a.models.is_busy());
    h.step();
    h.get_by_label("Model: default (shipped, head on web-faces + utk-dev)");
}

#[test]
fn models_in_the_photo_folder_move_to_the_data_folder_and_a_clash_loses_none() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 2);
    let old = legacy_models_dir(&root);
    let name = "2025-01-31T12-00-00Z.safetensors";
    let mine = copy_of_shipped(tmp.path(), &old.join(name));
    let bytes = std::fs::read(&mine).unwrap();
    // The data folder holds a different file of the same name already.
    let data = ctx(tmp.path()).trained_models_dir();
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join(name), b"someone else's").unwrap();

    let mut h = harness(app_for(Some(&root), tmp.path()));
    pump(&mut h, "the dataset and the model list", |a| a.data.photos.is_some() && listed(a));
    let moved = data.join("2025-01-31T12-00-00Z-2.safetensors");
    assert_eq!(std::fs::read(&moved).unwrap(), bytes, "the model moved under a free name");
    assert_eq!(std::fs::read(data.join(name)).unwrap(), b"someone else's", "the file there is untouched");
    assert!(!old.exists(), "the photo folder keeps no models folder");
    let status = h.state().status_text().to_string();
    assert!(status.contains("Moved 1 trained model(s) out of the photo folder"), "{status}");
    assert!(status.contains("2025-01-31T12-00-00Z-2"), "{status}");
    assert!(h.state().models.list.iter().any(|m| m.path == moved), "and it is listed");
}

#[test]
fn a_model_is_renamed_and_bad_names_are_refused_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ctx(tmp.path()).trained_models_dir();
    let m = copy_of_shipped(tmp.path(), &data.join("first try.safetensors"));
    copy_of_shipped(tmp.path(), &data.join("taken.safetensors"));
    let mut h = harness(app_for(None, tmp.path()));
    pump(&mut h, "the model list", listed);
    select(&mut h, "first try");

    // A slash, then a name in use: refused, and the field says why.
    for (bad, why) in [("a/b", "contains a slash"), ("taken", "already exists: choose another name")] {
        h.state_mut().models.manage.rename_text = bad.into();
        h.step();
        h.get_by_label("Rename").click();
        pump(&mut h, "the refusal", |a| a.models.manage.rename_error.is_some());
        h.step();
        let shown = h.query_all_by_label_contains(why).count();
        assert_eq!(shown, 2, "the reason shows under the field and in the status bar: {}", h.state().status_text());
        assert!(m.is_file(), "nothing moved");
    }

    h.state_mut().models.manage.rename_text = "faces v2".into();
    h.step();
    h.get_by_label("Rename").click();
    let renamed = data.join("faces v2.safetensors");
    pump(&mut h, "the rename and the new list", |a| renamed.is_file() && listed(a) && !a.models.is_busy());
    assert!(!m.exists());
    let app = h.state();
    assert_eq!(app.models.manage.selected.as_ref(), Some(&renamed), "the details follow the model");
    assert!(app.models.list.iter().any(|i| i.path == renamed));
    assert!(app.status_text().contains("Renamed model first try to faces v2"), "{}", app.status_text());
}

/// A trash that records what it gets and removes nothing.
#[derive(Default)]
struct Recorder(Mutex<Vec<PathBuf>>);

impl Trash for Recorder {
    fn trash(&self, paths: &[PathBuf]) -> Result<(), String> {
        self.0.lock().unwrap().extend_from_slice(paths);
        Ok(())
    }
}

#[test]
fn delete_asks_first_and_hands_the_model_to_the_trash_but_never_the_shipped_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ctx(tmp.path()).trained_models_dir();
    let m = copy_of_shipped(tmp.path(), &data.join("old.safetensors"));
    let trash = Arc::new(Recorder::default());
    let mut app = app_for(None, tmp.path());
    app.models.manage.trash = trash.clone();
    let mut h = harness(app);
    pump(&mut h, "the model list", listed);

    // The shipped one: the button is disabled, so nothing is asked or trashed.
    select(&mut h, "default (shipped)");
    h.get_by_label("Move to trash…").click();
    h.run_steps(2);
    assert!(h.state().models.manage.confirm_delete.is_none());

    select(&mut h, "old");
    h.get_by_label("Move to trash…").click();
    h.run_steps(2);
    assert!(trash.0.lock().unwrap().is_empty(), "nothing goes before the user confirms");
    h.get_by_label_contains("Move model old to the trash?");
    h.get_by_role_and_label(Role::Button, "Move to trash").click();
    pump(&mut h, "the deletion", |a| !a.models.is_busy() && a.status_text().contains("to the trash"));
    assert_eq!(*trash.0.lock().unwrap(), [m], "exactly the model went to the trash");
    assert_eq!(h.state().status_text(), "Moved model old to the trash");
}

#[test]
fn export_without_a_file_dialog_asks_for_a_path_and_copies_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = ctx(tmp.path()).trained_models_dir();
    let m = copy_of_shipped(tmp.path(), &data.join("mine.safetensors"));
    let out = tmp.path().join("exported");
    std::fs::create_dir_all(&out).unwrap();
    let mut app = app_for(None, tmp.path());
    app.dialogs.support = DialogSupport::Missing("no portal in this test".into());
    let mut h = harness(app);
    pump(&mut h, "the model list", listed);
    select(&mut h, "mine");

    h.get_by_label("Export…").click();
    pump(&mut h, "the path field", |a| a.models.manage.export_prompt.is_some());
    h.step();
    assert!(h.state().status_text().contains("No file dialog"), "{}", h.state().status_text());
    // A folder that does not exist: the field stays, with the reason.
    h.state_mut().models.manage.export_prompt.as_mut().unwrap().1.text =
        tmp.path().join("nowhere/x").display().to_string();
    h.step();
    h.get_by_label("OK").click();
    pump(&mut h, "the refusal", |a| a.models.manage.export_prompt.as_ref().is_some_and(|(_, p)| p.error.is_some()));
    h.step();
    assert_eq!(h.query_all_by_label_contains("does not exist").count(), 2, "in the path window and the status bar");

    h.state_mut().models.manage.export_prompt.as_mut().unwrap().1.text = out.join("shared").display().to_string();
    h.step();
    h.get_by_label("OK").click();
    pump(&mut h, "the export", |a| a.models.manage.export_prompt.is_none() && !a.models.is_busy());
    let to = out.join("shared.safetensors");
    assert_eq!(std::fs::read(&to).unwrap(), std::fs::read(&m).unwrap());
    assert!(h.state().status_text().contains(&format!("Exported the model to {}", to.display())));
}

#[test]
fn two_models_are_compared_on_the_same_photos_of_the_open_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("faces");
    make_dataset(&root, 3);
    let c = ctx(tmp.path());
    let zero_shot = c.trained_models_dir().join("zero-shot.safetensors");
    gc_core::train::run::zero_shot_model(&c, true).unwrap().save(&zero_shot).unwrap();
    let mut h = harness(app_for(Some(&root), tmp.path()));
    pump(&mut h, "the dataset and the model list", |a| a.data.photos.is_some() && listed(a));
    h.state_mut().shell.tab = Tab::Models;
    h.state_mut().models.manage.compare_pick = [Some(c.default_model()), Some(zero_shot.clone())];
    h.run_steps(2);

    h.get_by_label("Compare").click();
    pump(&mut h, "the comparison", |a| a.models.manage.comparison.is_some() && !a.models.is_busy());
    h.step();
    let cmp = h.state().models.manage.comparison.clone().unwrap();
    assert!(!cmp.held_back, "neither model was trained on this folder: all photos count");
    assert_eq!(cmp.photos, 6);
    for side in &cmp.sides {
        assert_eq!(side.metrics.count, 6, "{} scored every photo", side.name);
        let text = accuracy_text(&side.metrics);
        assert!(h.query_all_by_label(&text).next().is_some(), "{text} is shown");
    }
    assert_eq!([cmp.sides[0].name.as_str(), cmp.sides[1].name.as_str()], ["default", "zero-shot"]);
    assert!(h.state().status_text().starts_with("Compared on all 6 photos"), "{}", h.state().status_text());
}
