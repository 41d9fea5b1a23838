//! The evaluation view: a clickable confusion matrix (counts and row percentages), per-class
//! precision and recall, and the accuracy with its 95% interval.

use egui::{Align2, Color32, FontId, Rect, RichText, Sense, Stroke, StrokeKind, Vec2};

use gc_core::metrics::Metrics;

use super::commands::Command;
use super::state::SplitFilter;
use super::widgets;

/// The label a confusion cell carries for screen readers and tests.
pub fn cell_label(row: &str, col: &str, count: usize) -> String {
    format!("true {row}, predicted {col}: {count}")
}

/// Draws the confusion matrix; a click on a cell pushes [`Command::FilterConfusionCell`].
pub fn matrix(ui: &mut egui::Ui, m: &Metrics, split: SplitFilter, commands: &mut Vec<Command>) {
    let classes: Vec<&str> = m.per_class.iter().map(|c| c.class.as_str()).collect();
    let k = classes.len();
    let cell = Vec2::new(104.0, 58.0);
    let head_w = 90.0;
    let head_h = 22.0;
    let total = Vec2::new(head_w + 24.0 + cell.x * k as f32, head_h * 2.0 + cell.y * k as f32);
    let (rect, _) = ui.allocate_exact_size(total, Sense::hover());
    let painter = ui.painter().clone();
    let text_color = ui.visuals().text_color();
    let weak = ui.visuals().weak_text_color();
    let origin = rect.min + Vec2::new(head_w + 24.0, head_h * 2.0);
    painter.text(
        rect.min + Vec2::new(head_w + 24.0 + cell.x * k as f32 / 2.0, 0.0),
        Align2::CENTER_TOP,
        "predicted",
        FontId::proportional(12.0),
        weak,
    );
    painter.text(rect.min + Vec2::new(0.0, head_h), Align2::LEFT_TOP, "true", FontId::proportional(12.0), weak);
    for (j, c) in classes.iter().enumerate() {
        let x = origin.x + cell.x * (j as f32 + 0.5);
        painter.text(
            egui::pos2(x, rect.min.y + head_h),
            Align2::CENTER_TOP,
            *c,
            FontId::proportional(14.0),
            widgets::class_color(c),
        );
    }
    for (i, row_class) in classes.iter().enumerate() {
        let y = origin.y + cell.y * (i as f32 + 0.5);
        painter.text(
            egui::pos2(origin.x - 10.0, y),
            Align2::RIGHT_CENTER,
            *row_class,
            FontId::proportional(14.0),
            widgets::class_color(row_class),
        );
        let row_total: usize = m.confusion[i].iter().sum();
        for (j, col_class) in classes.iter().enumerate() {
            let n = m.confusion[i][j];
            let frac = if row_total > 0 { n as f32 / row_total as f32 } else { 0.0 };
            let r = Rect::from_min_size(origin + Vec2::new(cell.x * j as f32, cell.y * i as f32), cell).shrink(2.0);
            let base = if i == j { Color32::from_rgb(60, 160, 90) } else { Color32::from_rgb(220, 80, 60) };
            let fill = base.gamma_multiply(0.15 + 0.75 * frac);
            let id = ui.scope_id().with(("confusion", i, j));
            let resp = ui.interact(r, id, Sense::click());
            let label = cell_label(row_class, col_class, n);
            resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
            painter.rect_filled(r, 6.0, fill);
            if resp.hovered() {
                painter.rect_stroke(r, 6.0, Stroke::new(2.0, ui.visuals().selection.stroke.color), StrokeKind::Inside);
            }
            painter.text(
                r.center() - Vec2::new(0.0, 8.0),
                Align2::CENTER_CENTER,
                n.to_string(),
                FontId::proportional(18.0),
                text_color,
            );
            painter.text(
                r.center() + Vec2::new(0.0, 12.0),
                Align2::CENTER_CENTER,
                format!("{:.1}%", frac * 100.0),
                FontId::proportional(12.0),
                text_color,
            );
            if resp.clicked() {
                commands.push(Command::FilterConfusionCell {
                    row: row_class.to_string(),
                    col: col_class.to_string(),
                    split,
                });
            }
            resp.on_hover_text(format!(
                "{n} {row_class} photos predicted {col_class} ({:.1}% of {row_class}). Click to show them.",
                frac * 100.0
            ));
        }
    }
}

/// Draws accuracy with its interval and the per-class table.
pub fn summary(ui: &mut egui::Ui, m: &Metrics) {
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("{:.1}%", m.accuracy * 100.0)).size(28.0).strong());
        ui.vertical(|ui| {
            ui.label("accuracy");
            ui.weak(format!(
                "95% interval {:.1}–{:.1}% on {} photos",
                m.accuracy_ci95.0 * 100.0,
                m.accuracy_ci95.1 * 100.0,
                m.count
            ));
        });
    });
    ui.add_space(4.0);
    egui::Grid::new("per-class").num_columns(5).striped(true).spacing([18.0, 4.0]).show(ui, |ui| {
        for h in ["class", "precision", "recall", "F1", "photos"] {
            ui.label(RichText::new(h).strong());
        }
        ui.end_row();
        for c in &m.per_class {
            ui.label(RichText::new(&c.class).color(widgets::class_color(&c.class)).strong());
            ui.label(format!("{:.1}%", c.precision * 100.0))
                .on_hover_text(format!("Of the photos predicted {}, the share that really are", c.class));
            ui.label(format!("{:.1}%", c.recall * 100.0))
                .on_hover_text(format!("Of the {} photos, the share found", c.class));
            ui.label(format!("{:.3}", c.f1));
            ui.label(c.support.to_string());
            ui.end_row();
        }
    });
    if let Some(auc) = m.roc_auc {
        ui.weak(format!("ROC AUC {auc:.3} · log loss {:.3}", m.log_loss));
    }
}
