//! The installed product: the binary copied out of the source tree runs with its built-in models,
//! says where it looked when a model is missing, names its models in `--version`, and the desktop
//! entry installs and uninstalls.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary copied into an empty folder, with nothing of the source tree beside it.
fn copied_binary(dir: &Path) -> PathBuf {
    let exe = dir.join("bin").join("gender-classifier");
    std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_gender-classifier"), &exe).unwrap();
    exe
}

/// Runs `exe` from `home` as its working folder, with `home` as HOME and no project variables.
fn run_from(exe: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .current_dir(home)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_binary_copied_out_of_the_tree_classifies_the_samples_with_its_built_in_models() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = copied_binary(tmp.path());
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let samples = common::root().join("assets/samples");
    let o = run_from(&exe, &home, &["classify", "--json", samples.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let images = out["images"].as_array().unwrap();
    let photos = std::fs::read_dir(&samples)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "jpg" || x == "png"))
        .count();
    assert_eq!(images.len(), photos, "every sample classified");
    let classes = out["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2, "{out}");
    // The models came from the binary: written into the data folder under the temporary HOME.
    let builtin = home.join(".local/share/gender-classifier/builtin");
    for name in ["faceres_deep.f32.safetensors", "blazeface.safetensors", "default.safetensors"] {
        let written = std::fs::read(builtin.join(name)).unwrap_or_else(|e| panic!("{name} not written: {e}"));
        assert_eq!(written, std::fs::read(common::root().join("models").join(name)).unwrap(), "{name}");
    }
    // Each sample's answer is the one the source tree gives.
    let labels = |v: &serde_json::Value| -> Vec<(String, u64)> {
        v["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["path"].as_str().unwrap().to_owned(), i["faces"][0]["class"].as_u64().unwrap()))
            .collect()
    };
    let in_tree = Command::new(env!("CARGO_BIN_EXE_gender-classifier"))
        .args(["classify", "--json", samples.to_str().unwrap()])
        .env("GENDER_CLASSIFIER_MODELS", common::root().join("models"))
        .output()
        .unwrap();
    assert!(in_tree.status.success(), "{}", text(&in_tree.stderr));
    assert_eq!(labels(&out), labels(&serde_json::from_slice(&in_tree.stdout).unwrap()));
}

#[test]
fn a_missing_model_names_every_place_the_binary_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = copied_binary(tmp.path());
    let home = tmp.path().join("home");
    common::synthetic_dataset(&home.join("photos"), &["a", "b"], 3);
    // Inception-v3 is not built in: the error lists the folder beside the binary and the data folder.
    let o = run_from(&exe, &home, &["train", "--backbone", "inception-v3", "--no-face-crop", "photos"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("inception_v3.safetensors"), "{err}");
    assert!(err.contains(&tmp.path().join("bin/models").display().to_string()), "{err}");
    assert!(err.contains(&home.join(".local/share/gender-classifier/builtin").display().to_string()), "{err}");
    assert!(err.contains("GENDER_CLASSIFIER_MODELS"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn models_beside_the_binary_are_used_before_the_built_in_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = copied_binary(tmp.path());
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    // A portable copy: models/ beside the binary, holding a damaged BlazeFace. It is the one loaded.
    let beside = tmp.path().join("bin/models");
    std::fs::create_dir_all(&beside).unwrap();
    for name in ["faceres_deep.f32.safetensors", "default.safetensors"] {
        std::fs::copy(common::root().join("models").join(name), beside.join(name)).unwrap();
    }
    std::fs::write(beside.join("blazeface.safetensors"), b"not a model").unwrap();
    let o = run_from(&exe, &home, &["faces", common::sample("obama.jpg").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains(&beside.join("blazeface.safetensors").display().to_string()), "{err}");
    assert!(!home.join(".local/share/gender-classifier/builtin").exists(), "nothing written to the data folder");
}

#[test]
fn version_names_the_built_in_models_with_their_hashes() {
    let o = Command::new(env!("CARGO_BIN_EXE_gender-classifier")).arg("--version").output().unwrap();
    assert!(o.status.success());
    let out = text(&o.stdout);
    assert!(out.starts_with(&format!("gender-classifier {}", env!("CARGO_PKG_VERSION"))), "{out}");
    let notices = std::fs::read_to_string(common::root().join("THIRD_PARTY_NOTICES.md")).unwrap();
    for name in ["faceres_deep.f32.safetensors", "blazeface.safetensors", "default.safetensors"] {
        let bytes = std::fs::read(common::root().join("models").join(name)).unwrap();
        let sha = gc_engine::weights::sha256_hex(&bytes);
        assert!(out.contains(&format!("{name}  {sha}")), "{name} {sha} missing from:\n{out}");
        assert!(notices.contains(&format!("`models/{name}`")), "THIRD_PARTY_NOTICES.md lacks {name}");
        if name != "default.safetensors" {
            assert!(notices.contains(&sha), "THIRD_PARTY_NOTICES.md has another sha256 for {name}");
        }
    }
    assert!(common::root().join("LICENSE").is_file());
}

#[test]
fn the_desktop_entry_and_icon_install_and_uninstall() {
    let tmp = tempfile::tempdir().unwrap();
    let script = common::root().join("scripts/install-desktop.sh");
    let run = |args: &[&str]| {
        let o = Command::new("bash").arg(&script).args(args).env("XDG_DATA_HOME", tmp.path()).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
    };
    run(&[]);
    let entry = std::fs::read_to_string(tmp.path().join("applications/gender-classifier.desktop")).unwrap();
    assert!(entry.contains("Exec=gender-classifier app %F"), "{entry}");
    assert!(entry.contains("Icon=gender-classifier\n"), "{entry}");
    let png = tmp.path().join("icons/hicolor/256x256/apps/gender-classifier.png");
    let icon = image::open(&png).unwrap();
    assert_eq!((icon.width(), icon.height()), (256, 256));
    assert!(tmp.path().join("icons/hicolor/scalable/apps/gender-classifier.svg").is_file());
    run(&["--uninstall"]);
    assert!(!png.exists() && !tmp.path().join("applications/gender-classifier.desktop").exists());
}
