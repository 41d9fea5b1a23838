//! Plots: live loss and accuracy curves of a training run, and accuracy over past trainings.

use egui::Color32;
use egui_plot::{Corner, GridMark, Legend, Line, Plot, PlotMemory, PlotPoints, Points};

use gc_core::train::EpochStats;

use super::tasks::ModelInfo;

const TRAIN: Color32 = Color32::from_rgb(90, 160, 240);
const VALID: Color32 = Color32::from_rgb(250, 160, 60);

/// Loss and accuracy per epoch, train and validation, side by side.
pub fn curves(ui: &mut egui::Ui, history: &[EpochStats], height: f32) {
    let pts = |f: &dyn Fn(&EpochStats) -> Option<f32>| -> Vec<[f64; 2]> {
        history.iter().filter_map(|e| f(e).map(|v| [e.epoch as f64, f64::from(v)])).collect()
    };
    let train_loss = pts(&|e| Some(e.train_loss));
    let val_loss = pts(&|e| e.val_loss);
    let train_acc = pts(&|e| Some(e.train_accuracy * 100.0));
    let val_acc = pts(&|e| e.val_accuracy.map(|a| a * 100.0));
    // Head room for the legends, which sit where the curves are not: top right over the falling
    // loss, bottom right under the rising accuracy.
    let max_loss = train_loss.iter().chain(&val_loss).map(|p| p[1]).fold(0.0, f64::max);
    let min_acc = train_acc.iter().chain(&val_acc).map(|p| p[1]).fold(100.0, f64::min);
    let width = (ui.available_width() - 12.0) / 2.0;
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            ui.label("Loss");
            Plot::new("loss-curve")
                .height(height)
                .width(width)
                .legend(Legend::default().position(Corner::RightTop).background_alpha(0.6))
                .x_axis_label("epoch")
                .include_y(0.0)
                .include_y(max_loss * 1.35)
                .allow_scroll(false)
                .show(ui, |p| {
                    p.line(Line::new("train", PlotPoints::new(train_loss)).color(TRAIN).width(2.0));
                    p.line(Line::new("validation", PlotPoints::new(val_loss)).color(VALID).width(2.0));
                });
        });
        ui.vertical(|ui| {
            ui.label("Accuracy (%)");
            Plot::new("accuracy-curve")
                .height(height)
                .width(width)
                .legend(Legend::default().position(Corner::RightBottom).background_alpha(0.6))
                .x_axis_label("epoch")
                .include_y(min_acc.min(50.0) - 12.0)
                .include_y(100.0)
                .allow_scroll(false)
                .show(ui, |p| {
                    p.line(Line::new("train", PlotPoints::new(train_acc)).color(TRAIN).width(2.0));
                    p.line(Line::new("validation", PlotPoints::new(val_acc)).color(VALID).width(2.0));
                });
        });
    });
}

/// The x range of the accuracy-history chart with `runs` training runs: exactly the runs that
/// exist, run 1 to run `runs`, with half a run of margin on each side.
pub fn history_x_range(runs: usize) -> (f64, f64) {
    (0.5, runs.max(1) as f64 + 0.5)
}

/// The id of the accuracy-history chart with `runs` runs (a new run makes a new chart, whose x
/// range starts over).
pub fn history_plot_id(runs: usize) -> egui::Id {
    egui::Id::NULL.with(("history-chart", runs))
}

/// The x range the accuracy-history chart with `runs` runs showed last, if it was drawn.
pub fn shown_history_x_range(ctx: &egui::Context, runs: usize) -> Option<(f64, f64)> {
    let memory = PlotMemory::load(ctx, history_plot_id(runs))?;
    let b = memory.bounds();
    Some((b.min()[0], b.max()[0]))
}

/// Test accuracy (with its 95% interval) of every saved model that has one, oldest first; the x
/// axis spans the runs that exist, one tick per run.
pub fn history(ui: &mut egui::Ui, models: &[ModelInfo], current: Option<&std::path::Path>, height: f32) {
    let rows = history_points(models, current);
    if rows.is_empty() {
        ui.weak("No trained model with test metrics yet: train one to start the history.");
        return;
    }
    let names: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let (x0, x1) = history_x_range(rows.len());
    let lowest = rows.iter().map(|r| r.ci95.0 * 100.0).fold(100.0, f64::min);
    let step = (rows.len() as f64 / 10.0).ceil().max(1.0);
    Plot::new("history-chart")
        .id(history_plot_id(rows.len()))
        .height(height)
        .x_axis_label("training run")
        .default_x_bounds(x0, x1)
        .include_y((lowest - 5.0).clamp(0.0, 50.0))
        .include_y(100.0)
        .x_grid_spacer(move |input| {
            let (lo, hi) = input.bounds;
            let first = lo.ceil().max(1.0) as i64;
            (first..=hi.floor() as i64)
                .filter(|i| (*i as f64 - 1.0) % step == 0.0)
                .map(|i| GridMark { value: i as f64, step_size: step })
                .collect()
        })
        .x_axis_formatter(|mark, _| format!("{}", mark.value.round() as i64))
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .label_formatter(move |hover| {
            let (egui_plot::HoverPosition::NearDataPoint { position, .. }
            | egui_plot::HoverPosition::Elsewhere { position }) = hover;
            let i = position.x.round() as usize;
            let name = names.get(i.saturating_sub(1)).cloned().unwrap_or_default();
            Some(format!("{name}\n{:.1}%", position.y))
        })
        .show(ui, |p| {
            let acc: Vec<[f64; 2]> =
                rows.iter().enumerate().map(|(i, r)| [(i + 1) as f64, r.accuracy * 100.0]).collect();
            p.line(Line::new("test accuracy", PlotPoints::new(acc.clone())).color(TRAIN).width(2.0));
            p.points(Points::new("test accuracy", PlotPoints::new(acc)).color(TRAIN).radius(4.0));
            for (i, r) in rows.iter().enumerate() {
                let x = (i + 1) as f64;
                p.line(
                    Line::new("95% interval", PlotPoints::new(vec![[x, r.ci95.0 * 100.0], [x, r.ci95.1 * 100.0]]))
                        .color(TRAIN.gamma_multiply(0.5))
                        .width(6.0),
                );
                if r.current {
                    p.points(
                        Points::new("current", PlotPoints::new(vec![[x, r.accuracy * 100.0]])).color(VALID).radius(7.0),
                    );
                }
            }
        });
    // The legend goes under the chart: inside it, it would cover a run's interval.
    ui.horizontal(|ui| {
        legend_key(ui, TRAIN, false, "test accuracy");
        legend_key(ui, TRAIN.gamma_multiply(0.5), true, "95% interval");
        legend_key(ui, VALID, false, "current model");
    });
}

/// A legend entry drawn beside a chart: a dot (or a bar) in `color`, then `text`.
fn legend_key(ui: &mut egui::Ui, color: Color32, bar: bool, text: &str) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
    if bar {
        ui.painter().rect_filled(egui::Rect::from_center_size(rect.center(), egui::vec2(5.0, 12.0)), 1.0, color);
    } else {
        ui.painter().circle_filled(rect.center(), 4.5, color);
    }
    ui.weak(text);
    ui.add_space(8.0);
}

/// One point of the accuracy history: a saved model with test metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPoint {
    /// The model file.
    pub path: std::path::PathBuf,
    /// When it was made (RFC 3339), the order of the chart.
    pub created: String,
    /// Its test accuracy.
    pub accuracy: f64,
    /// The 95% interval of that accuracy.
    pub ci95: (f64, f64),
    /// True for the current model.
    pub current: bool,
    /// Its name in the list.
    pub label: String,
}

/// The points [`history`] draws: every listed model with test metrics, oldest first.
pub fn history_points(models: &[ModelInfo], current: Option<&std::path::Path>) -> Vec<HistoryPoint> {
    let mut rows: Vec<HistoryPoint> = models
        .iter()
        .filter_map(|m| {
            let meta = m.meta.as_ref().ok()?;
            let t = meta.test_metrics.as_ref()?;
            Some(HistoryPoint {
                path: m.path.clone(),
                created: meta.created.clone(),
                accuracy: t.accuracy,
                ci95: t.accuracy_ci95,
                current: current == Some(m.path.as_path()),
                label: m.label(),
            })
        })
        .collect();
    rows.sort_by(|a, b| a.created.cmp(&b.created));
    rows
}
