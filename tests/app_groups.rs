//! The Evaluation tab, headless (egui_kittest): the split it measures (the held-back test split by
//! default when the model was trained on the open folder), a header that names that split, and
//! the accuracy-by-group table from UTKFace file names for the same split.

mod app_harness;

use std::path::Path;
use std::sync::Arc;

use app_harness::{harness_of_size, pump};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use gc_app::group_table;
use gc_app::state::SplitFilter;
use gc_app::tasks::{PredictionRow, Predictions};
use gc_app::{GenderApp, Settings, Tab};
use gc_core::classify::Classifier;
use gc_core::dataset::split::Split;
use gc_core::model_file::DatasetSummary;

/// Race code and age of photo `i` of each class (UTKFace names: `age_gender_race_date.jpg.chip.jpg`).
const RACES: [u8; 6] = [2, 2, 0, 1, 0, 1];
const AGES: [u32; 6] = [25, 25, 40, 50, 65, 30];

/// Six photos per class named like UTKFace files; photo `i` is in the test split when `i` is even.
fn make_dataset(root: &Path) {
    for (c, class) in ["female", "male"].iter().enumerate() {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..6 {
            let gender = 1 - c; // UTKFace: 0 male, 1 female
            let img = image::RgbImage::from_fn(24, 24, |x, y| {
                image::Rgb([(x * 9) as u8, (y * 9) as u8, (i * 40 + c * 20) as u8])
            });
            img.save(root.join(class).join(format!("{}_{gender}_{}_2017010{i}12.jpg.chip.jpg", AGES[i], RACES[i])))
                .unwrap();
        }
    }
}

/// Every photo predicted right except female photos 0 (test split) and 1 (train split).
fn inject_predictions(app: &mut GenderApp) {
    let photos = app.data.photos.as_mut().unwrap();
    let rows = photos
        .entries
        .iter()
        .map(|e| {
            let name = e.path.file_name().unwrap().to_string_lossy().into_owned();
            let i: usize = name.split('_').nth(3).unwrap()[7..8].parse().unwrap();
            let female = e.path.parent().unwrap().ends_with("female");
            let wrong = female && i < 2;
            let male_p = if female != wrong { 0.1 } else { 0.9 };
            PredictionRow {
                path: e.path.clone(),
                predicted: usize::from(male_p > 0.5),
                probs: vec![1.0 - male_p, male_p],
                split: Some(if i.is_multiple_of(2) { Split::Test } else { Split::Train }),
                n_faces: None,
            }
        })
        .collect();
    photos.set_predictions(&Predictions { classes: vec!["female".into(), "male".into()], rows, failures: vec![] });
}

#[test]
fn the_evaluation_tab_measures_the_test_split_by_default_and_shows_groups_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("utk");
    make_dataset(&root);
    let cache = tmp.path().join("cache");
    let mut app = GenderApp::with_cache_root(Settings::default(), Some(root.clone()), &cache);
    app.models.auto_load = false;
    let mut h = harness_of_size(app, [1280.0, 2400.0]);
    pump(&mut h, "the dataset to open", |a| {
        a.data.photos.is_some() && a.data.curation.as_ref().is_some_and(|c| !c.is_busy())
    });
    // A model trained on this folder: the shipped head, its record pointed at the open folder.
    let ctx = gc_core::context::Context::cpu_with_cache(cache.clone());
    let mut classifier = Classifier::load(&ctx.default_model(), &ctx).expect("the shipped default model loads");
    classifier.model.meta.dataset =
        Some(DatasetSummary { root: root.clone(), class_counts: vec![6, 6], split_counts: [6, 0, 6], skipped: 0 });
    classifier.model.meta.datasets = Vec::new();
    h.state_mut().models.classifier = Some(Arc::new(classifier));
    inject_predictions(h.state_mut());
    h.state_mut().shell.tab = Tab::Evaluation;
    h.run_steps(3);

    // The header names the split measured, and the numbers are that split's: 6 test photos, 1 wrong.
    let combo = |h: &egui_kittest::Harness<'static, GenderApp>, label: &str| {
        h.get_by_role_and_label(Role::ComboBox, label).value().unwrap_or_default()
    };
    assert_eq!(combo(&h, "on"), "Automatic: test split", "the split selector says it chose the test split");
    assert!(h.query_by_label("Measured on: Test split (6 photos)").is_some(), "header for the test split");
    assert!(h.query_all_by_label("83.3%").next().is_some(), "5 of 6 test photos right");
    assert_eq!(h.state().settings.eval_split, SplitFilter::Test);
    assert_eq!(combo(&h, "Groups:"), "UTKFace names", "groups chosen from the file names");
    // One table per column, each with its headings.
    for (head, times) in [("age_band", 1), ("gender", 1), ("race", 1), ("recall female", 3), ("recall male", 3)] {
        assert_eq!(h.query_all_by_label(head).count(), times, "group table heading {head}");
    }
    assert!(h.query_by_label("Asian").is_some() && h.query_by_label("White").is_some());
    assert!(h.query_by_label("Black").is_none(), "no Black photo is in the test split");
    let st = group_table::load(&h.ctx);
    let r = st.report().expect("a group table");
    let race = r.columns.iter().find(|c| c.column == "race").unwrap();
    let asian = &race.values.iter().find(|v| v.0 == "Asian").unwrap().1;
    assert_eq!((asian.n, asian.accuracy), (2, 0.5), "test split: Asian man right, Asian woman wrong");
    assert_eq!(r.overall.n, 6);

    // Measuring all splits changes the header and the groups together.
    let mut st = group_table::load(&h.ctx);
    st.picked = Some(SplitFilter::All);
    group_table::store(&h.ctx, st);
    h.run_steps(3);
    assert!(h.query_by_label("Measured on: All splits (12 photos)").is_some(), "header for all splits");
    assert!(h.query_by_label("Black").is_some(), "the train split's Black photos now count");
    let st = group_table::load(&h.ctx);
    let r = st.report().expect("a group table");
    let race = r.columns.iter().find(|c| c.column == "race").unwrap();
    let asian = &race.values.iter().find(|v| v.0 == "Asian").unwrap().1;
    assert_eq!((asian.n, asian.accuracy), (4, 0.5), "all splits: both Asian women wrong");
    assert_eq!(r.overall.n, 12);
}
