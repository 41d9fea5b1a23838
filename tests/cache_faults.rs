//! Faults at the feature cache's writes, through the real binary: a kill at each fault point leaves
//! no bad entry and the next run gives the clean run's answer; a disk that fails every write (as a
//! full one does) costs one warning, no temp files, and no result.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use gc_core::features::cache::FeatureCache;

fn eval(data: &Path, cache: &Path, failpoints: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gender-classifier"));
    cmd.args(["eval", "--json"])
        .arg(data)
        .env("GENDER_CLASSIFIER_CACHE", cache)
        .env("GENDER_CLASSIFIER_MODELS", common::root().join("models"))
        .env_remove("FAILPOINTS");
    if let Some(f) = failpoints {
        cmd.env("FAILPOINTS", f);
    }
    cmd.output().expect("binary runs")
}

/// The parts of an eval report that must not depend on the cache.
fn outcome(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("eval prints JSON");
    serde_json::json!({ "confusion": report["metrics"]["confusion"], "count": report["metrics"]["count"] })
}

fn temp_files(dir: &Path) -> Vec<std::path::PathBuf> {
    walk(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "tmp")).collect()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

#[test]
fn a_kill_at_each_cache_write_leaves_no_bad_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic_dataset(&data, &["female", "male"], 4);
    let clean = outcome(&eval(&data, &tmp.path().join("clean"), None));
    for point in ["cache::write", "cache::renamed"] {
        let cache = tmp.path().join(point.replace("::", "-"));
        let killed = eval(&data, &cache, Some(&format!("{point}=return(abort)")));
        assert!(!killed.status.success(), "{point}: the fault point was not reached");
        assert_eq!(killed.status.code(), None, "{point}: killed by a signal, not an exit");
        let features = FeatureCache::new(cache.join("features"));
        assert!(features.damaged_entries().is_empty(), "{point}: {:?}", features.damaged_entries());
        let entries = walk(&cache).into_iter().filter(|p| p.extension().is_some_and(|e| e == "bin")).count();
        let expected = usize::from(point == "cache::renamed");
        assert_eq!(entries, expected, "{point}: the kill came at the first write");
        assert_eq!(outcome(&eval(&data, &cache, None)), clean, "{point}: the rerun answers as a clean run");
    }
}

#[test]
fn a_failing_cache_disk_warns_once_and_leaves_no_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::synthetic_dataset(&data, &["female", "male"], 4);
    let clean = outcome(&eval(&data, &tmp.path().join("clean"), None));
    let cache = tmp.path().join("full");
    let o = eval(&data, &cache, Some("cache::write=return"));
    assert_eq!(outcome(&o), clean, "results do not depend on the cache");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("going on without the feature cache").count(), 1, "{err}");
    assert!(err.contains("cannot write cache entry"), "{err}");
    assert!(temp_files(&cache).is_empty(), "{:?}", temp_files(&cache));
}
