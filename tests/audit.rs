//! Dataset audit: planted label errors on real photos must rank at the top, deterministically;
//! duplicates and faceless images are found; `audit --json` reports the same headless.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use gc_core::audit::{AuditOptions, FindingKind, audit_dataset};
use gc_core::preprocess::PreprocessSpec;
use gc_engine::BackboneKind;

/// 200 photos per class, with 5 known photos of each class filed under the other one.
fn planted_dataset(root: &Path) -> Vec<PathBuf> {
    let mut planted = Vec::new();
    for (class, other) in [("female", "male"), ("male", "female")] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for (i, f) in common::web_faces_sample(class, 200).iter().enumerate() {
            let name = f.file_name().unwrap();
            // Class folders share file names (face_1.jpg is in both), so planted files get a prefix.
            let to = if i % 40 == 20 {
                root.join(other).join(format!("from-{class}-{}", name.to_string_lossy()))
            } else {
                root.join(class).join(name)
            };
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(f, &to).unwrap();
            if i % 40 == 20 {
                planted.push(to);
            }
        }
    }
    planted
}

#[test]
fn planted_wrong_labels_rank_in_the_top_20_and_the_ranking_is_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let planted = planted_dataset(tmp.path());
    assert_eq!(planted.len(), 10);
    let ctx = common::shared_web_faces_ctx();
    let run = || {
        audit_dataset(
            tmp.path(),
            PreprocessSpec::new(BackboneKind::Faceres, true),
            &AuditOptions::default(),
            &ctx,
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap()
    };
    let report = run();
    assert_eq!(report.images, 400);
    let top: Vec<&Path> = report.suspects.iter().take(20).map(|s| s.member.path.as_path()).collect();
    let found = planted.iter().filter(|p| top.contains(&p.as_path())).count();
    for (rank, s) in report.suspects.iter().take(20).enumerate() {
        eprintln!("{:>2} {:.3} {} {}", rank + 1, s.self_confidence, s.member.class, s.member.path.display());
    }
    eprintln!("planted errors in the top 20 suspects: {found}/10 ({:.2} s of analysis)", report.analysis_secs);
    assert!(found >= 8, "only {found} of 10 planted errors in the top 20 suspects");
    let wrong = report.findings.iter().filter(|f| f.kind == FindingKind::LikelyWrongLabel).count();
    assert!(wrong >= 8, "{wrong} likely-wrong-label findings");

    let again = run();
    assert_eq!(report.suspects, again.suspects, "the ranking must be deterministic");
    assert_eq!(report.findings, again.findings);
}

#[test]
fn audit_cli_reports_duplicates_conflicts_and_faceless_images_as_json() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    common::synthetic_dataset(&root, &["female", "male"], 12);
    // The same bytes twice in one class, and once more under the other class.
    std::fs::copy(root.join("female/female_0.png"), root.join("female/copy_of_0.png")).unwrap();
    std::fs::copy(root.join("male/male_3.png"), root.join("female/male_3_again.png")).unwrap();
    common::synthetic(99, 20, 30).save(root.join("male/tiny.png")).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_gender-classifier"))
        .args(["audit", root.to_str().unwrap(), "--json", "--folds", "3"])
        .env("GENDER_CLASSIFIER_CACHE", tmp.path().join("cache"))
        .env("GENDER_CLASSIFIER_MODELS", common::root().join("models"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let of_kind = |k: &str| findings.iter().filter(|f| f["kind"] == k).collect::<Vec<_>>();
    assert_eq!(of_kind("conflicting-duplicate").len(), 1, "{findings:#?}");
    assert_eq!(of_kind("exact-duplicate").len(), 1);
    assert_eq!(of_kind("exact-duplicate")[0]["members"].as_array().unwrap().len(), 2);
    // Gradients and discs have no face; every image says so, with its reason.
    assert_eq!(of_kind("no-face").len(), 27);
    let tiny = of_kind("tiny");
    assert_eq!(tiny.len(), 1, "only the 20x30 image is tiny: {tiny:#?}");
    assert!(tiny[0]["reason"].as_str().unwrap().contains("20x30"));
    assert!(findings.iter().all(|f| !f["reason"].as_str().unwrap().is_empty()));
    // Most important first: the conflict leads.
    assert_eq!(findings[0]["kind"], "conflicting-duplicate");
    assert_eq!(v["suspects"].as_array().unwrap().len(), 27);
}
