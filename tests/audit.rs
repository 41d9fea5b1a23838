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

/// What the review does when the user takes the audit's advice: a likely wrong label moves to the
/// suggested class (R), a duplicate group keeps its first photo, an outlier or a photo of several
/// people leaves the dataset (X); tiny photos and photos with no face found are kept (K).
fn clean(root: &Path, excluded: &Path, findings: &[gc_core::audit::Finding]) -> (usize, usize) {
    let (mut relabelled, mut removed) = (0, 0);
    for f in findings {
        let members: Vec<&Path> = match f.kind {
            k if k.is_group() => f.members.iter().skip(1).map(|m| m.path.as_path()).collect(),
            FindingKind::LikelyWrongLabel | FindingKind::Outlier | FindingKind::SeveralFaces => {
                f.members.iter().map(|m| m.path.as_path()).collect()
            }
            _ => Vec::new(),
        };
        for p in members.into_iter().filter(|p| p.exists()) {
            let name = p.file_name().unwrap().to_string_lossy();
            let to = match (&f.kind, &f.suggested_class) {
                (FindingKind::LikelyWrongLabel, Some(class)) => {
                    relabelled += 1;
                    root.join(class).join(format!("relabelled-{name}"))
                }
                _ => {
                    removed += 1;
                    excluded.join(format!("{removed}-{name}"))
                }
            };
            std::fs::rename(p, to).unwrap();
        }
    }
    (relabelled, removed)
}

/// A dataset built to hold one of each problem: 6 photos of each class (of 60) filed under the
/// other one, a resized and re-encoded copy of a photo, a photo of two people, and a picture with
/// no face at all. The audit finds each; cleaning as it advises raises the test accuracy (the
/// figure the review shows before cleaning and after retraining).
#[test]
fn audit_finds_planted_problems_and_cleaning_raises_the_test_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, excluded) = (tmp.path().join("data"), tmp.path().join("excluded"));
    std::fs::create_dir_all(&excluded).unwrap();
    let mut planted = Vec::new();
    for (class, other) in [("female", "male"), ("male", "female")] {
        for (i, f) in common::web_faces_sample(class, 60).iter().enumerate() {
            let name = f.file_name().unwrap().to_string_lossy();
            let to = if i % 10 == 5 {
                root.join(other).join(format!("from-{class}-{name}"))
            } else {
                root.join(class).join(&*name)
            };
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(f, &to).unwrap();
            if i % 10 == 5 {
                planted.push(to);
            }
        }
    }
    // A near duplicate: photo 0 of female/, 90% of its size, re-encoded at JPEG quality 80.
    let original = root.join("female").join(common::web_faces_sample("female", 1)[0].file_name().unwrap());
    let img = gc_core::imaging::load_rgb(&original).unwrap();
    let (w, h) = (img.width() * 9 / 10, img.height() * 9 / 10);
    let small = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let near_copy = root.join("female/near-copy.jpg");
    std::fs::write(&near_copy, common::jpeg_bytes(&small, 80)).unwrap();
    // Two people in one photo (two licensed samples pasted side by side; see common::two_face_photo).
    // A fresh cache: faces are looked for on every run (a cached entry would keep its face count
    // whatever the detector now does). 123 photos, about 4 s.
    let ctx = gc_core::context::Context::cpu_with_cache(tmp.path().join("cache"));
    let (two, _) = common::two_face_photo(&gc_core::face::FaceFinder::load(&ctx).unwrap());
    let two_people = root.join("male/two-people.png");
    two.save(&two_people).unwrap();
    // Not a photo of a face at all: a gradient with a disc.
    let not_a_face = root.join("female/not-a-face.png");
    common::synthetic(5, 256, 256).save(&not_a_face).unwrap();

    let spec = PreprocessSpec::new(BackboneKind::Faceres, true);
    let cfg = gc_core::train::run::TrainConfig {
        split: gc_core::dataset::split::SplitSpec { validation_pct: 20.0, test_pct: 30.0 },
        ..Default::default()
    };
    let test_accuracy = || {
        let r = gc_core::train::run::train_dataset(&root, &cfg, &ctx, &mut |_| {}, &AtomicBool::new(false)).unwrap();
        let m = r.model.meta.test_metrics.unwrap();
        (m.accuracy, m.count)
    };
    let before = test_accuracy();
    let report =
        audit_dataset(&root, spec, &AuditOptions::default(), &ctx, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!(report.images, 123);
    eprint!("{}", gc_core::audit::format_text(&report));
    let has = |kind: FindingKind, p: &Path| {
        report.findings.iter().any(|f| f.kind == kind && f.members.iter().any(|m| m.path == p))
    };
    let near: Vec<_> = report.findings.iter().filter(|f| f.kind == FindingKind::NearDuplicate).collect();
    assert!(
        near.iter().any(|f| {
            let paths: Vec<&Path> = f.members.iter().map(|m| m.path.as_path()).collect();
            paths.contains(&near_copy.as_path()) && paths.contains(&original.as_path())
        }),
        "the re-encoded copy and its original form a near-duplicate group: {near:#?}"
    );
    // (Two web-faces photos show a second face too.)
    let several =
        report.findings.iter().find(|f| f.kind == FindingKind::SeveralFaces && f.members[0].path == two_people);
    assert_eq!(several.map(|f| f.score), Some(2.0), "the photo of two people, with its 2 faces");
    assert!(has(FindingKind::Outlier, &not_a_face), "the picture with no face is far from its class");
    assert!(has(FindingKind::NoFace, &not_a_face));
    let wrong = planted.iter().filter(|p| has(FindingKind::LikelyWrongLabel, p)).count();
    eprintln!("planted wrong labels found: {wrong}/12");
    assert!(wrong >= 10, "only {wrong} of 12 planted wrong labels found");

    let (relabelled, removed) = clean(&root, &excluded, &report.findings);
    let after = test_accuracy();
    eprintln!(
        "test accuracy before cleaning {:.3} ({} photos), after cleaning ({relabelled} relabelled, {removed} removed) \
         and retraining {:.3} ({} photos)",
        before.0, before.1, after.0, after.1
    );
    // Measured: 0.914 (32 of 35) before, 0.971 (34 of 35) after; all 12 planted labels found.
    assert!(after.0 > before.0, "cleaning must raise the test accuracy: {:.3} -> {:.3}", before.0, after.0);
}
