//! `train DIR DIR`: one model trained on two dataset folders (8 photos per class copied from each
//! shared dataset, web-faces and utk-dev, into a temporary folder). The model's metadata lists both
//! folders with their counts, each folder's test split is the one `eval DIR --split test` measures
//! on that folder alone, the card carries UTKFace's terms, and folders whose classes differ are
//! refused before any work with a message that names them.

mod common;

use std::path::{Path, PathBuf};

use common::cli::{bin, stderr};
use gc_core::model_file::read_meta;

/// The UTKFace development dataset; fails the test with a clear message when absent.
fn utk_dev() -> PathBuf {
    let p = common::root().join("../shared/datasets/utk-dev");
    assert!(
        p.join("male").is_dir() && p.join("female").is_dir(),
        "development dataset missing: expected {} with male/ and female/ (see README.md)",
        p.display()
    );
    p
}

/// Copies `n` photos per class of `from` (spread over each class folder) to `to/{female,male}`.
fn copy_sample(from: &Path, to: &Path, n: usize) {
    for class in ["female", "male"] {
        std::fs::create_dir_all(to.join(class)).unwrap();
        let files = common::class_files(from, class);
        for i in 0..n {
            let p = &files[i * files.len() / n];
            std::fs::copy(p, to.join(class).join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// The feature cache the web-faces tests share, so each photo is extracted once per build.
fn cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-faces-cache")
}

#[test]
fn two_folders_train_one_model_that_records_both_and_keeps_each_test_split() {
    let tmp = tempfile::tempdir().unwrap();
    let (web, utk) = (tmp.path().join("web"), tmp.path().join("utk-sample"));
    copy_sample(&common::web_faces(), &web, 8);
    copy_sample(&utk_dev(), &utk, 8);
    let out = tmp.path().join("two.safetensors");
    let o = bin(&cache())
        .args(["train", web.to_str().unwrap(), utk.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(["--epochs", "5", "--validation-pct", "30", "--test-pct", "40"])
        .output()
        .expect("binary runs");
    assert!(o.status.success(), "exit {:?}: {}", o.status, stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("{} and {}", web.display(), utk.display())), "the guard names both: {stdout}");

    let (meta, _) = read_meta(&out).unwrap();
    let roots: Vec<&Path> = meta.datasets.iter().map(|d| d.root.as_path()).collect();
    assert_eq!(roots, [web.as_path(), utk.as_path()], "both folders, in the order given");
    assert_eq!(meta.dataset.as_ref().map(|d| d.root.as_path()), Some(web.as_path()), "the first for old readers");
    for d in &meta.datasets {
        assert_eq!(d.class_counts, [8, 8], "{}", d.root.display());
        assert_eq!(d.split_counts.iter().sum::<usize>(), 16, "every photo in one split: {:?}", d.split_counts);
    }
    assert!(meta.origin.contains("balanced per dataset and class"), "{}", meta.origin);
    let tests: Vec<usize> = meta.datasets.iter().map(|d| d.split_counts[2]).collect();
    assert!(tests.iter().all(|&t| t > 0), "the sample gives each folder test photos: {tests:?}");
    let pooled = meta.test_metrics.as_ref().map_or(0, |m| m.count);
    assert_eq!(pooled, tests.iter().sum::<usize>(), "the test metrics pool both folders' test splits");

    // Each folder evaluated alone: its test split is the one recorded at training.
    for (d, want) in meta.datasets.iter().zip(&tests) {
        let o = bin(&cache())
            .args(["eval", d.root.to_str().unwrap(), "--model", out.to_str().unwrap(), "--split", "test", "--csv"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let rows = String::from_utf8_lossy(&o.stdout).lines().skip(1).filter(|l| !l.is_empty()).count();
        assert_eq!(rows, *want, "test photos of {} alone vs at training", d.root.display());
    }

    let card = std::fs::read_to_string(tmp.path().join("two.md")).expect("a model card beside the model");
    assert!(card.contains(&web.display().to_string()) && card.contains(&utk.display().to_string()), "{card}");
    assert!(card.contains("non-commercial research purposes only"), "UTKFace's terms carry over:\n{card}");
}

#[test]
fn folders_with_other_classes_are_refused_before_any_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    common::synthetic_dataset(&a, &["female", "male"], 3);
    common::synthetic_dataset(&b, &["man", "woman"], 3);
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("m.safetensors");
    let o = bin(&cache)
        .args(["train", a.to_str().unwrap(), b.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("do not have the same classes"), "{err}");
    assert!(err.contains(&format!("{} has female, male", a.display())), "{err}");
    assert!(err.contains(&format!("{} has man, woman", b.display())), "{err}");
    assert!(!out.exists() && !cache.join("features").exists(), "refused before any work");

    // The same folder twice is refused too.
    let o = bin(&cache).args(["train", a.to_str().unwrap(), a.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("same dataset folder"), "{}", stderr(&o));
}
