//! The "uncertain" answer in the app (egui_kittest): a classified face whose top probability is
//! below the threshold reads "uncertain (leans …)", a confident one keeps its class bar, the
//! threshold control sits in the classify panel, and a threshold of 0 shows no face as uncertain.

mod app_harness;

use std::path::PathBuf;

use app_harness::harness_of_size;
use egui_kittest::kittest::Queryable;
use gc_app::classify_panel::{ClassifiedPhoto, ClassifyState, UNCERTAIN_LABEL};
use gc_app::{GenderApp, Settings, SidePage};
use gc_core::calibration::DEFAULT_UNCERTAIN_BELOW;
use gc_core::classify::{FacePrediction, ImagePrediction};
use gc_core::face::FaceRegion;

/// A face of the whole photo (no detection) with P(male) = `p_male`.
fn face(p_male: f32) -> FacePrediction {
    FacePrediction {
        region: FaceRegion { region: [0.0, 0.0, 64.0, 64.0], angle: 0.0, detection: None },
        probs: vec![1.0 - p_male, p_male],
        class: usize::from(p_male > 0.5),
    }
}

#[test]
fn a_face_below_the_threshold_reads_uncertain_and_a_threshold_of_0_shows_none() {
    let tmp = tempfile::tempdir().unwrap();
    let mut app = GenderApp::with_cache_root(Settings::default(), None, tmp.path());
    app.models.auto_load = false;
    assert_eq!(app.settings.uncertain_below, DEFAULT_UNCERTAIN_BELOW, "the default comes from gc-core");
    let photo = PathBuf::from("/nowhere/two.png");
    app.classify.items.push(ClassifiedPhoto {
        id: 0,
        path: photo.clone(),
        state: ClassifyState::Done(ImagePrediction {
            path: photo,
            image_size: (64, 64),
            faces: vec![face(0.58), face(0.09)],
        }),
        classes: vec!["female".into(), "male".into()],
        added_as: None,
    });
    app.shell.side = SidePage::Classified;
    let mut h = harness_of_size(app, [1280.0, 800.0]);
    h.run_steps(3);
    assert!(h.query_by_label(UNCERTAIN_LABEL).is_some(), "the threshold control is in the panel");
    assert!(h.query_by_label_contains("uncertain (leans male 58.0%)").is_some(), "0.58 < 0.75 is uncertain");
    assert!(h.query_by_label_contains("female 91%").is_some(), "0.91 keeps its class bar");
    assert!(h.query_by_label_contains("uncertain (leans female").is_none());

    h.state_mut().settings.uncertain_below = 0.0;
    h.run_steps(2);
    assert!(h.query_by_label_contains("uncertain (leans").is_none(), "0 = never uncertain");
    assert!(h.query_by_label_contains("male 58%").is_some());

    h.state_mut().settings.uncertain_below = 0.95;
    h.run_steps(2);
    assert!(h.query_by_label_contains("uncertain (leans female 91.0%)").is_some(), "0.91 < 0.95");
}
