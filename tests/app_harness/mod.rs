//! Driving the app headless (egui_kittest), shared by the app test binaries.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use gc_app::GenderApp;

/// The longest any wait may take: a safety net against a hang, never what decides a test.
pub const SAFETY_NET: Duration = Duration::from_secs(300);

/// A headless window of `size` points running `app`.
pub fn harness_of_size(app: GenderApp, size: [f32; 2]) -> Harness<'static, GenderApp> {
    Harness::builder().with_size(size).build_ui_state(|ui, app: &mut GenderApp| app.ui(ui), app)
}

/// Steps the harness until `cond` holds. Only a hang reaches the deadline ([`SAFETY_NET`]); it
/// then fails with the app's status.
pub fn pump(h: &mut Harness<'static, GenderApp>, what: &str, cond: impl Fn(&GenderApp) -> bool) {
    let start = Instant::now();
    loop {
        h.step();
        if cond(h.state()) {
            return;
        }
        assert!(start.elapsed() < SAFETY_NET, "waited {SAFETY_NET:?} for {what}; status: {}", h.state().status_text());
        std::thread::sleep(Duration::from_millis(15));
    }
}
