//! Tests of the model store: moving models out of a dataset, names, export and the trash.

use std::sync::Mutex;

use super::*;

/// A context whose data folder is inside `dir`.
fn ctx_in(dir: &Path) -> Context {
    Context::cpu_with_cache(dir.join("cache"))
}

/// A copy of the shipped model (one file, metadata inside) at `to`.
fn a_model(ctx: &Context, to: &Path) -> PathBuf {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(ctx.default_model(), to).unwrap();
    to.to_path_buf()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn models_of_a_dataset_move_to_the_data_folder_and_a_clash_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx_in(tmp.path());
    let root = tmp.path().join("faces");
    let old = legacy_models_dir(&root);
    let a = a_model(&ctx, &old.join("2025-01-31T12-00-00Z.safetensors"));
    std::fs::write(a.with_extension("md"), "# Card of A").unwrap();
    let b = a_model(&ctx, &old.join("mine.safetensors"));
    // The data folder already holds a model named "mine" (and a card for "mine-2").
    let dest = ctx.trained_models_dir();
    let theirs = a_model(&ctx, &dest.join("mine.safetensors"));
    std::fs::write(dest.join("mine-2.md"), "someone else's card").unwrap();
    let before = std::fs::read(&theirs).unwrap();

    let m = migrate_legacy_models(&ctx, &root);
    assert!(m.failed.is_empty(), "{:?}", m.failed);
    assert_eq!(m.moved.len(), 2);
    assert_eq!(m.new_path(&a), Some(dest.join("2025-01-31T12-00-00Z.safetensors").as_path()));
    assert_eq!(m.new_path(&b), Some(dest.join("mine-3.safetensors").as_path()), "the clash picks a free name");
    assert_eq!(
        names_in(&dest),
        [
            "2025-01-31T12-00-00Z.md",
            "2025-01-31T12-00-00Z.safetensors",
            "mine-2.md",
            "mine-3.safetensors",
            "mine.safetensors"
        ]
    );
    assert_eq!(std::fs::read(&theirs).unwrap(), before, "the model already there is untouched");
    assert_eq!(std::fs::read_to_string(dest.join("mine-2.md")).unwrap(), "someone else's card");
    assert!(!old.exists(), "the emptied old folder is removed");
    // The moved models are listed, with the card, and still readable.
    let list = list_models(&ctx, None, None);
    let moved = list.iter().find(|i| i.name() == "2025-01-31T12-00-00Z").expect("listed");
    assert!(moved.meta.is_ok());
    assert_eq!(moved.card.as_deref(), Some("# Card of A"));
    // A second opening finds nothing more to move.
    assert!(migrate_legacy_models(&ctx, &root).is_empty());
}

#[test]
fn an_old_two_file_model_moves_with_its_json_and_other_files_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx_in(tmp.path());
    let root = tmp.path().join("faces");
    let old = legacy_models_dir(&root);
    std::fs::create_dir_all(&old).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/two-file-model");
    std::fs::copy(fixture.join("m.safetensors"), old.join("m.safetensors")).unwrap();
    std::fs::copy(fixture.join("m.json"), old.join("m.json")).unwrap();
    std::fs::write(old.join("notes.txt"), "not a model").unwrap();

    let m = migrate_legacy_models(&ctx, &root);
    assert_eq!(m.moved.len(), 1, "{m:?}");
    assert_eq!(names_in(&ctx.trained_models_dir()), ["m.json", "m.safetensors"]);
    assert_eq!(names_in(&old), ["notes.txt"], "what is not a model stays, and so does its folder");
    let info = ModelInfo::read(ctx.trained_models_dir().join("m.safetensors"), false);
    assert_eq!(info.meta.unwrap().classes, ["female", "male"], "the metadata moved with it");
}

#[test]
fn a_move_across_file_systems_copies_then_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let from = tmp.path().join("a.bin");
    std::fs::write(&from, b"weights").unwrap();
    let to = tmp.path().join("b.bin");
    copy_then_remove(&from, &to).unwrap();
    assert_eq!(std::fs::read(&to).unwrap(), b"weights");
    assert!(!from.exists());
    // It never replaces a file.
    std::fs::write(&from, b"other").unwrap();
    let e = copy_then_remove(&from, &to).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
    assert_eq!(std::fs::read(&to).unwrap(), b"weights");
    assert_eq!(std::fs::read(&from).unwrap(), b"other");
}

#[test]
fn rename_keeps_the_metadata_and_moves_the_card() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx_in(tmp.path());
    let dir = ctx.trained_models_dir();
    let m = a_model(&ctx, &dir.join("2025-01-31T12-00-00Z.safetensors"));
    std::fs::write(m.with_extension("md"), "card").unwrap();
    let meta = ModelInfo::read(m.clone(), false).meta.unwrap();

    let to = rename_model(&ctx, &m, "  faces v2  ").unwrap();
    assert_eq!(to, dir.join("faces v2.safetensors"), "the name is trimmed");
    assert_eq!(names_in(&dir), ["faces v2.md", "faces v2.safetensors"]);
    let info = ModelInfo::read(to, false);
    assert_eq!(info.meta.unwrap(), meta, "the metadata inside is kept");
    assert_eq!(info.card.as_deref(), Some("card"));
}

#[test]
fn rename_refuses_empty_names_slashes_clashes_and_the_shipped_model() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx_in(tmp.path());
    let dir = ctx.trained_models_dir();
    let m = a_model(&ctx, &dir.join("one.safetensors"));
    a_model(&ctx, &dir.join("two.safetensors"));
    let refused = |name: &str| rename_model(&ctx, &m, name).unwrap_err().to_string();

    assert!(refused("   ").contains("needs a name"), "{}", refused(""));
    assert!(refused("a/b").contains("'/'"), "{}", refused("a/b"));
    assert!(refused("..").contains("start with '.'"), "{}", refused(".."));
    assert!(refused("two").contains("already exists: choose another name"), "{}", refused("two"));
    let e = rename_model(&ctx, &ctx.default_model(), "mine").unwrap_err().to_string();
    assert!(e.contains("shipped model cannot be renamed"), "{e}");
    assert_eq!(names_in(&dir), ["one.safetensors", "two.safetensors"], "nothing changed");
    assert!(ctx.default_model().is_file());
}

/// A trash that records what it was given, or refuses.
#[derive(Default)]
struct FakeTrash {
    got: Mutex<Vec<PathBuf>>,
    broken: bool,
}

impl Trash for FakeTrash {
    fn trash(&self, paths: &[PathBuf]) -> Result<(), String> {
        if self.broken {
            return Err("no trash folder on this file system".into());
        }
        self.got.lock().unwrap().extend_from_slice(paths);
        Ok(())
    }
}

#[test]
fn delete_hands_the_model_and_its_card_to_the_trash() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx_in(tmp.path());
    let m = a_model(&ctx, &ctx.trained_models_dir().join("old.safetensors"));
    std::fs::write(m.with_extension("md"), "card").unwrap();
    let trash = FakeTrash::default();
    assert_eq!(delete_model(&ctx, &trash, &m).unwrap(), m);
    assert_eq!(*trash.got.lock().unwrap(), [m.clone(), m.with_extension("md")]);
}

#[test]
fn the_shipped_model_is_never_deleted_and_a_missing_trash_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx_in(tmp.path());
    let trash = FakeTrash::default();
    let e = delete_model(&ctx, &trash, &ctx.default_model()).unwrap_err().to_string();
    assert!(e.contains("shipped default model cannot be deleted"), "{e}");
    assert!(trash.got.lock().unwrap().is_empty(), "the trash was not called");

    let m = a_model(&ctx, &ctx.trained_models_dir().join("keep.safetensors"));
    let broken = FakeTrash { broken: true, ..FakeTrash::default() };
    let e = delete_model(&ctx, &broken, &m).unwrap_err().to_string();
    assert!(e.contains("trash is not available") && e.contains("was not deleted"), "{e}");
    assert!(m.is_file(), "the model is still there");
}

#[test]
fn export_copies_the_model_and_never_overwrites_unasked() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx_in(tmp.path());
    let m = a_model(&ctx, &ctx.trained_models_dir().join("mine.safetensors"));
    std::fs::write(m.with_extension("md"), "card").unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();

    let to = export_model(&m, &out.join("shared"), false).unwrap();
    assert_eq!(to, out.join("shared.safetensors"), "the extension is added");
    assert_eq!(std::fs::read(&to).unwrap(), std::fs::read(&m).unwrap());
    assert_eq!(std::fs::read_to_string(out.join("shared.md")).unwrap(), "card");
    let e = export_model(&m, &to, false).unwrap_err().to_string();
    assert!(e.contains("already exists") && e.contains("nothing was overwritten"), "{e}");
    assert!(export_model(&m, &to, true).is_ok(), "the save dialog's confirmation allows it");
    let e = export_model(&m, &tmp.path().join("nowhere/x.safetensors"), false).unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    // The old two-file form is exported as one file with its metadata inside.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/two-file-model/m.safetensors");
    let one = export_model(&fixture, &out.join("one.safetensors"), false).unwrap();
    assert_eq!(gc_core::model_file::read_meta(&one).unwrap().1, MetaSource::Embedded);
}

#[test]
fn the_status_text_names_the_shipped_default_and_how_it_was_trained() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx_in(tmp.path());
    let info = ModelInfo::read(ctx.default_model(), true);
    assert_eq!(info.name(), "default");
    assert_eq!(info.how_trained(), "shipped, head on web-faces + utk-dev");
}

#[test]
fn a_model_of_two_datasets_names_both_and_counts_as_trained_on_each() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx_in(tmp.path());
    let mut meta = ModelInfo::read(ctx.default_model(), true).meta.unwrap();
    let first = meta.dataset.clone().expect("the shipped default records its dataset");
    let second = gc_core::model_file::DatasetSummary { root: "/data/utk-dev".into(), ..first.clone() };
    meta.datasets = vec![first.clone(), second];
    assert_eq!(how_trained(&meta, false), "trained on web-faces + utk-dev");
    let roots: Vec<&Path> = meta.trained_on().iter().map(|d| d.root.as_path()).collect();
    assert_eq!(roots, [first.root.as_path(), Path::new("/data/utk-dev")]);
}
