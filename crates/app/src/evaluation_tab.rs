//! The Evaluation tab: accuracy with its interval, the confusion matrix, per-class figures and the
//! charts of past runs.

use egui::RichText;

use super::commands::Command;
use super::state::SplitFilter;
use super::{GenderApp, charts, confusion, group_table, widgets};

/// Draws the Evaluation tab.
pub(super) fn draw(app: &mut GenderApp, ui: &mut egui::Ui) {
    let mut st = group_table::load(ui.ctx());
    let here = group_table::trained_here(app);
    let split = group_table::measured_split(st.picked, here);
    // The split the numbers are for is the split every view of the tab (and the review) uses.
    app.settings.eval_split = split;
    egui::ScrollArea::vertical().id_salt("evaluation-tab").auto_shrink([false, false]).show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Evaluation");
            let l = ui.label("on");
            let auto = if here { "Automatic: test split" } else { "Automatic: all photos" };
            egui::ComboBox::from_id_salt("eval-split")
                .selected_text(if st.picked.is_none() { auto } else { split.label() })
                .show_ui(ui, |ui| {
                    if ui.selectable_label(st.picked.is_none(), auto).clicked() {
                        st.picked = None;
                    }
                    for s in SplitFilter::ALL {
                        if ui.selectable_label(st.picked == Some(s), s.label()).clicked() {
                            st.picked = Some(s);
                        }
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text("Train-split photos were seen in training: the test split gives the honest number");
        });
        let split = group_table::measured_split(st.picked, here);
        app.settings.eval_split = split;
        let metrics = app.data.metrics(split);
        match metrics {
            None => {
                let why = if app.data.photos.is_none() {
                    "Open a dataset first."
                } else if app.models.classifier.is_none() {
                    "No model loaded: choose one in the top bar, train one, or use the zero-shot head."
                } else if app.models.eval.is_some() {
                    "Predicting every photo… the matrix appears when done."
                } else {
                    "No predicted photos in this split (a model that was not trained here has no split: use All splits)."
                };
                widgets::hint(ui, why);
            }
            Some(m) => {
                ui.label(
                    RichText::new(format!("Measured on: {} ({} photos)", split.label(), m.count)).strong(),
                )
                .on_hover_text(group_table::split_note(split, here));
                if app.models.classifier.is_some() {
                    ui.weak(group_table::split_note(split, here));
                }
                let mut cmds = Vec::new();
                let wide = ui.available_width() > 760.0;
                let matrix = |ui: &mut egui::Ui, cmds: &mut Vec<Command>| {
                    ui.vertical(|ui| {
                        ui.label(RichText::new("Confusion matrix").strong());
                        ui.weak("Click a cell to see its photos.");
                        confusion::matrix(ui, &m, split, cmds);
                    });
                };
                if wide {
                    ui.horizontal_top(|ui| {
                        matrix(ui, &mut cmds);
                        ui.add_space(24.0);
                        ui.vertical(|ui| confusion::summary(ui, &m));
                    });
                } else {
                    matrix(ui, &mut cmds);
                    ui.add_space(8.0);
                    confusion::summary(ui, &m);
                }
                app.shell.pending.extend(cmds);
                ui.add_space(12.0);
                group_table::section(app, ui, split, &mut st);
            }
        }
        ui.add_space(12.0);
        ui.label(RichText::new("Accuracy over past trainings").strong());
        let current = app.models.path.clone();
        charts::history(ui, &app.models.list, current.as_deref(), 220.0);
        if let Some(meta) = app.models.classifier.as_ref().map(|c| c.model.meta.clone()) {
            ui.add_space(8.0);
            ui.label(RichText::new("Current model").strong());
            egui::Grid::new("model-facts").num_columns(2).spacing([12.0, 4.0]).show(ui, |ui| {
                ui.weak("Origin");
                ui.label(&meta.origin);
                ui.end_row();
                ui.weak("Created");
                ui.label(&meta.created);
                ui.end_row();
                ui.weak("Features");
                ui.label(meta.preprocess.id());
                ui.end_row();
                let sets = meta.trained_on();
                for d in &sets {
                    ui.weak("Trained on");
                    ui.label(format!(
                        "{}{} train / {} validation / {} test photos{}",
                        if sets.len() > 1 { format!("{}: ", d.root.display()) } else { String::new() },
                        d.split_counts[0],
                        d.split_counts[1],
                        d.split_counts[2],
                        if d.skipped > 0 { format!(", {} skipped", d.skipped) } else { String::new() }
                    ));
                    ui.end_row();
                }
                if let Some(t) = &meta.test_metrics {
                    ui.weak("Test accuracy when trained (saved)");
                    ui.label(format!(
                        "{:.1}% (95% {:.1}–{:.1}%)",
                        t.accuracy * 100.0,
                        t.accuracy_ci95.0 * 100.0,
                        t.accuracy_ci95.1 * 100.0
                    ));
                    ui.end_row();
                }
            });
        }
    });
    group_table::store(ui.ctx(), st);
}
