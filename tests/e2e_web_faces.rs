//! End to end on real data: train faceres on 150+150 photos of `../shared/datasets/web-faces`, then
//! evaluate on 100+100 different photos. Accuracy must reach 95%.

mod common;

use std::sync::atomic::AtomicBool;

use gc_core::classify::Classifier;
use gc_core::dataset::split::SplitSpec;
use gc_core::eval::{EvalScope, evaluate_dataset};
use gc_core::train::TrainOptions;
use gc_core::train::run::{TrainConfig, train_dataset};

#[test]
fn train_on_a_subset_and_reach_95_percent_on_held_out_photos() {
    let tmp = tempfile::tempdir().unwrap();
    let (train_dir, test_dir) = (tmp.path().join("train"), tmp.path().join("held-out"));
    for class in ["female", "male"] {
        let files = common::web_faces_sample(class, 250);
        // The sample spreads over the whole folder; files are never copied, only linked.
        for (sub, range) in [(&train_dir, 0..150usize), (&test_dir, 150..250usize)] {
            std::fs::create_dir_all(sub.join(class)).unwrap();
            for f in &files[range] {
                std::os::unix::fs::symlink(f, sub.join(class).join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let ctx = common::shared_web_faces_ctx();
    let cfg = TrainConfig {
        options: TrainOptions { warm_start: true, ..Default::default() },
        split: SplitSpec { validation_pct: 20.0, test_pct: 0.0 },
        ..Default::default()
    };
    let report = train_dataset(&train_dir, &cfg, &ctx, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let summary = report.model.meta.dataset.clone().unwrap();
    assert_eq!(summary.class_counts, vec![150, 150]);
    assert!(summary.split_counts[0] >= 200, "{summary:?}");

    let classifier = Classifier::new(report.model, &ctx).unwrap();
    let eval = evaluate_dataset(
        &test_dir,
        &classifier,
        EvalScope::All,
        &ctx.feature_cache(),
        16,
        &mut |_| {},
        &AtomicBool::new(false),
    )
    .unwrap();
    let m = &eval.metrics;
    eprintln!("{}", gc_core::metrics::format_report(m));
    assert!(m.count >= 195, "evaluated {} of 200 held-out photos", m.count);
    assert!(m.accuracy >= 0.95, "held-out accuracy {:.3} < 0.95", m.accuracy);
}

/// Inception-v3's features of faces are all alike (most pairs of different photos have a cosine
/// above faceres' near-duplicate threshold), so near-duplicate grouping must not merge the dataset
/// into one group: the hash split must survive, and training must see most of the photos.
#[test]
fn inception_training_keeps_the_hash_split() {
    let tmp = tempfile::tempdir().unwrap();
    for class in ["female", "male"] {
        std::fs::create_dir_all(tmp.path().join(class)).unwrap();
        for f in common::web_faces_sample(class, 30) {
            std::os::unix::fs::symlink(&f, tmp.path().join(class).join(f.file_name().unwrap())).unwrap();
        }
    }
    let ctx = common::shared_web_faces_ctx();
    let cfg = TrainConfig {
        backbone: gc_engine::BackboneKind::InceptionV3,
        face_crop: false,
        split: SplitSpec { validation_pct: 20.0, test_pct: 20.0 },
        ..Default::default()
    };
    let report = train_dataset(tmp.path(), &cfg, &ctx, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let summary = report.model.meta.dataset.clone().unwrap();
    assert_eq!(summary.class_counts, vec![30, 30]);
    // 60% of 60 photos train on average; one merged group would put all 60 in one split.
    assert!((20..=50).contains(&summary.split_counts[0]), "train/validation/test: {:?}", summary.split_counts);
    assert!(summary.split_counts.iter().all(|&c| c < 60), "{:?}", summary.split_counts);
}
