//! The Models tab: every model with its name, date, data and accuracy; the chosen one's details,
//! card, rename, export and delete; and two models compared on the open dataset.

use std::path::PathBuf;

use egui::RichText;

use crate::model_compare::{accuracy_text, counts_text};
use crate::model_store::{ModelInfo, dataset_name};
use crate::path_field::DialogSupport;
use crate::{Command, GenderApp, widgets};

/// Draws the Models tab.
pub(crate) fn tab(app: &mut GenderApp, ui: &mut egui::Ui) {
    let ctx = ui.ctx().clone();
    egui::ScrollArea::both().id_salt("models-tab").auto_shrink([false, false]).show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Models");
            ui.weak(format!("trained models are kept in {}", app.rt.ctx().trained_models_dir().display()));
        });
        if app.models.list.is_empty() {
            widgets::hint(
                ui,
                if app.models.list_task.is_some() { "Looking for models…" } else { "No model found yet." },
            );
        }
        list(app, ui);
        ui.add_space(10.0);
        if let Some(info) = app.models.manage.selected.as_ref().and_then(|s| app.models.info(s)).cloned() {
            ui.separator();
            details(app, ui, &info);
        } else if !app.models.list.is_empty() {
            widgets::hint(ui, "Click a model's name to see its details, its card, and to rename, export or delete it.");
        }
        ui.add_space(10.0);
        ui.separator();
        compare(app, ui);
    });
    confirm_delete(app, &ctx);
    let rt = app.rt.clone();
    app.models.manage.show_prompt(&rt, &ctx);
}

/// "2026-11-28 11:21 UTC" from RFC 3339.
fn date(created: &str) -> String {
    match created.strip_suffix('Z') {
        Some(t) if t.len() >= 16 => format!("{} UTC", t[..16].replace('T', " ")),
        _ => created.to_string(),
    }
}

/// "faces: female 120 · male 118" (the counts when the model recorded them), one per dataset
/// joined by "; ".
fn data_text(info: &ModelInfo) -> String {
    let Ok(meta) = &info.meta else { return "—".into() };
    let sets = meta.trained_on();
    if sets.is_empty() {
        return if meta.training.is_none() { "none (zero-shot)".into() } else { "not recorded".into() };
    }
    let one = |d: &gc_core::model_file::DatasetSummary| {
        let counts: Vec<String> = meta.classes.iter().zip(&d.class_counts).map(|(c, n)| format!("{c} {n}")).collect();
        if counts.is_empty() {
            dataset_name(&d.root)
        } else {
            format!("{}: {}", dataset_name(&d.root), counts.join(" · "))
        }
    };
    sets.into_iter().map(one).collect::<Vec<_>>().join("; ")
}

/// The saved test accuracy with its interval, and with the photo count when `long`.
fn accuracy_of(info: &ModelInfo, long: bool) -> String {
    match info.meta.as_ref().ok().and_then(|m| m.test_metrics.as_ref()) {
        Some(t) if long => format!("{} on {} test photos", accuracy_text(t), t.count),
        Some(t) => {
            format!("{:.1}% ({:.1}–{:.1}%)", t.accuracy * 100.0, t.accuracy_ci95.0 * 100.0, t.accuracy_ci95.1 * 100.0)
        }
        None => "not measured".into(),
    }
}

fn list(app: &mut GenderApp, ui: &mut egui::Ui) {
    let mut clicked = None;
    egui::Grid::new("model-list").num_columns(5).striped(true).spacing([16.0, 6.0]).show(ui, |ui| {
        for h in ["Name", "", "Test accuracy (95% interval)", "Created", "Trained on"] {
            ui.label(RichText::new(h).strong());
        }
        ui.end_row();
        for m in &app.models.list {
            let selected = app.models.manage.selected.as_ref() == Some(&m.path);
            let name = if m.shipped { format!("{} (shipped)", m.name()) } else { m.name() };
            if ui.selectable_label(selected, name).on_hover_text(m.path.display().to_string()).clicked() {
                clicked = Some(m.path.clone());
            }
            if app.models.path.as_ref() == Some(&m.path) {
                ui.label(RichText::new("in use").strong());
            } else {
                ui.label("");
            }
            match &m.meta {
                Ok(meta) => {
                    ui.label(accuracy_of(m, false));
                    ui.label(date(&meta.created));
                    ui.label(data_text(m));
                }
                Err(e) => {
                    ui.colored_label(ui.visuals().error_fg_color, "unreadable").on_hover_text(e.to_string());
                    ui.label("—");
                    ui.label("—");
                }
            }
            ui.end_row();
        }
    });
    if let Some(p) = clicked {
        app.models.manage.select(p);
    }
}

fn details(app: &mut GenderApp, ui: &mut egui::Ui, info: &ModelInfo) {
    let busy = app.models.manage.is_changing_files();
    ui.label(RichText::new(info.name()).heading());
    egui::Grid::new("model-details").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
        let l = ui.weak("Name");
        if info.shipped {
            ui.label(info.name()).on_hover_text("The shipped model keeps its name");
        } else {
            ui.horizontal(|ui| {
                let edit = ui.add(egui::TextEdit::singleline(&mut app.models.manage.rename_text).desired_width(260.0));
                let edit = edit.labelled_by(l.id);
                let enter = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                let changed = app.models.manage.rename_text.trim() != info.name();
                let clicked = ui.add_enabled(!busy && changed, egui::Button::new("Rename")).clicked();
                if (clicked || (enter && changed)) && !busy {
                    let name = app.models.manage.rename_text.clone();
                    app.models.manage.rename(&app.rt, info.path.clone(), name);
                }
            });
        }
        ui.end_row();
        if let Some(e) = &app.models.manage.rename_error {
            ui.label("");
            ui.colored_label(ui.visuals().error_fg_color, e);
            ui.end_row();
        }
        ui.weak("File");
        ui.label(info.path.display().to_string());
        ui.end_row();
        ui.weak("How it was made");
        ui.label(info.how_trained());
        ui.end_row();
        match &info.meta {
            Ok(meta) => {
                ui.weak("Origin");
                ui.label(&meta.origin);
                ui.end_row();
                ui.weak("Created");
                ui.label(date(&meta.created));
                ui.end_row();
                ui.weak("Data");
                let sets = meta.trained_on();
                ui.label(match sets.as_slice() {
                    [d] => format!(
                        "{} ({}); {} train / {} validation / {} test photos",
                        d.root.display(),
                        data_text(info),
                        d.split_counts[0],
                        d.split_counts[1],
                        d.split_counts[2]
                    ),
                    [] => data_text(info),
                    many => {
                        let lines: Vec<String> = many
                            .iter()
                            .map(|d| {
                                format!(
                                    "{}: {} train / {} validation / {} test photos",
                                    d.root.display(),
                                    d.split_counts[0],
                                    d.split_counts[1],
                                    d.split_counts[2]
                                )
                            })
                            .collect();
                        format!("{}\n{}", data_text(info), lines.join("\n"))
                    }
                });
                ui.end_row();
                ui.weak("Test accuracy");
                ui.label(accuracy_of(info, true));
                ui.end_row();
            }
            Err(e) => {
                ui.weak("Problem");
                ui.colored_label(ui.visuals().error_fg_color, e.to_string());
                ui.end_row();
            }
        }
    });
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        let current = app.models.path.as_ref() == Some(&info.path);
        if ui.add_enabled(!current && info.meta.is_ok(), egui::Button::new("Use this model")).clicked() {
            app.push(Command::ChooseModel(info.path.clone()));
        }
        if ui.add_enabled(!busy, egui::Button::new("Export…")).on_hover_text("Save a copy of the model file").clicked()
        {
            let missing = match &app.dialogs.support {
                DialogSupport::Missing(why) => Some(why.clone()),
                DialogSupport::Available => None,
            };
            app.models.manage.export(&app.rt, info.path.clone(), missing);
        }
        let why = if info.shipped {
            "The shipped default model cannot be deleted"
        } else {
            "Move the model to the system trash"
        };
        if ui
            .add_enabled(!busy && !info.shipped, egui::Button::new("Move to trash…"))
            .on_hover_text(why)
            .on_disabled_hover_text(why)
            .clicked()
        {
            app.models.manage.ask_delete(info.path.clone());
        }
    });
    if let Some(card) = &info.card {
        ui.add_space(6.0);
        egui::CollapsingHeader::new("Model card").default_open(true).show(ui, |ui| {
            ui.label(card);
        });
    }
}

fn compare(app: &mut GenderApp, ui: &mut egui::Ui) {
    let root = app.data.photos.as_ref().map(|p| p.root.clone());
    ui.label(RichText::new("Compare two models").strong());
    let Some(root) = root else {
        widgets::hint(ui, "Open a dataset to compare two models on its photos.");
        return;
    };
    widgets::hint(
        ui,
        &format!(
            "Both models score the same photos of {}: those held back from training when a model was trained here, else all.",
            dataset_name(&root)
        ),
    );
    let list: Vec<(PathBuf, String)> =
        app.models.list.iter().filter(|m| m.meta.is_ok()).map(|m| (m.path.clone(), m.name())).collect();
    ui.horizontal(|ui| {
        for (i, title) in ["First model", "Second model"].into_iter().enumerate() {
            let l = ui.label(title);
            let pick = &mut app.models.manage.compare_pick[i];
            let text = pick.as_ref().map_or("choose…".to_string(), |p| crate::model_store::name_of(p));
            egui::ComboBox::from_id_salt(("compare-pick", i))
                .selected_text(text)
                .width(200.0)
                .show_ui(ui, |ui| {
                    for (path, name) in &list {
                        ui.selectable_value(pick, Some(path.clone()), name);
                    }
                })
                .response
                .labelled_by(l.id);
        }
        let [a, b] = &app.models.manage.compare_pick;
        let ready = a.is_some() && b.is_some() && a != b;
        let running = app.models.manage.is_comparing();
        let why =
            if a.is_some() && a == b { "Choose two different models" } else { "Score both models on this dataset" };
        if ui
            .add_enabled(ready && !running, egui::Button::new("Compare"))
            .on_hover_text(why)
            .on_disabled_hover_text(why)
            .clicked()
        {
            let loaded = app.models.path.clone().zip(app.models.classifier.clone());
            app.models.manage.compare(&app.rt, root.clone(), loaded);
        }
    });
    if app.models.manage.is_comparing() {
        ui.horizontal(|ui| {
            ui.spinner();
            match &app.models.manage.compare_progress {
                Some(p) => ui.label(format!(
                    "Scoring model {} of 2: {} of {} photos",
                    p.side + 1,
                    p.progress.done,
                    p.progress.total
                )),
                None => ui.label("Loading the models…"),
            };
            if ui.small_button("Cancel").clicked() {
                app.models.manage.cancel_compare();
            }
        });
    }
    if let Some(c) = &app.models.manage.comparison {
        ui.add_space(4.0);
        egui::Grid::new("model-comparison").num_columns(4).striped(true).spacing([16.0, 6.0]).show(ui, |ui| {
            for h in ["Model", "Accuracy (95% interval)", "Photos", "Trained on this folder"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for s in &c.sides {
                ui.label(&s.name);
                ui.label(accuracy_text(&s.metrics));
                ui.label(counts_text(&s.metrics));
                ui.label(if s.trained_here { "yes (scored on its test split)" } else { "no" });
                ui.end_row();
            }
        });
        ui.weak(format!("On {} of {}.", c.scope_text(), dataset_name(&c.dataset)));
    }
}

fn confirm_delete(app: &mut GenderApp, ctx: &egui::Context) {
    let Some(path) = app.models.manage.confirm_delete.clone() else { return };
    let name = crate::model_store::name_of(&path);
    let modal = egui::Modal::new(egui::Id::unique("confirm-delete-model")).show(ctx, |ui| {
        ui.set_max_width(420.0);
        ui.label(RichText::new(format!("Move model {name} to the trash?")).strong());
        ui.label(format!(
            "{} (and its card, if any) goes to the system trash, where you can restore it.",
            path.display()
        ));
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            if ui.button("Move to trash").clicked() {
                app.models.manage.delete(&app.rt, path.clone());
            }
            if ui.button("Cancel").clicked() {
                app.models.manage.confirm_delete = None;
            }
        });
    });
    if modal.should_close() {
        app.models.manage.confirm_delete = None;
    }
}
