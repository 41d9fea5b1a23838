//! The settings every subcommand and the app share, resolved once in `main`: `--cache DIR` and
//! `$GENDER_CLASSIFIER_CACHE=DIR` name the same folder, and a device the build lacks is refused
//! with the same message by the app and the CLI.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gender-classifier"));
    c.env("GENDER_CLASSIFIER_MODELS", common::root().join("models")).env_remove("GENDER_CLASSIFIER_CACHE");
    c
}

fn ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
}

/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn the_cache_flag_and_the_cache_variable_name_the_same_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic_dataset(&data, &["female", "male"], 2);
    let (by_flag, by_env) = (tmp.path().join("flag"), tmp.path().join("env"));

    ok(&bin().args(["eval", data.to_str().unwrap(), "--cache", by_flag.to_str().unwrap()]).output().unwrap());
    ok(&bin().args(["eval", data.to_str().unwrap()]).env("GENDER_CLASSIFIER_CACHE", &by_env).output().unwrap());

    let (a, b) = (files_under(&by_flag), files_under(&by_env));
    assert_eq!(a.iter().filter(|p| p.starts_with("features")).count(), 4, "one entry per photo: {a:?}");
    assert_eq!(a, b, "the same layout under either folder");
}

#[cfg(not(feature = "cuda"))]
#[test]
fn the_app_and_the_cli_refuse_a_device_this_build_lacks_with_one_message() {
    let app = bin().args(["app", "--device", "cuda"]).output().unwrap();
    let cli = bin().args(["classify", "assets/samples", "--device", "cuda"]).output().unwrap();
    let (a, c) = (String::from_utf8_lossy(&app.stderr), String::from_utf8_lossy(&cli.stderr));
    assert!(!app.status.success() && !cli.status.success());
    assert!(a.contains("this build has no CUDA support"), "{a}");
    assert_eq!(a, c, "the same message from the app and the CLI");
}
