//! The left panel: the open dataset and its counts, the grid's filters, and the training controls.

use egui::{RichText, Vec2};

use super::commands::{Command, Tab, tooltip};
use super::layout::button;
use super::state::{FaceFilter, SplitFilter};
use super::{GenderApp, train_panel, widgets};
use gc_core::dataset::EXCLUDED_DIR;

fn section(ui: &mut egui::Ui, title: &str) {
    ui.add_space(6.0);
    ui.label(RichText::new(title).strong().size(15.0));
    ui.add_space(2.0);
}

/// Draws the left panel: the dataset, the filters and training.
pub(super) fn draw(app: &mut GenderApp, ui: &mut egui::Ui) {
    egui::ScrollArea::vertical().id_salt("left-scroll").auto_shrink([false, false]).show(ui, |ui| {
        section(ui, "Dataset");
        dataset_summary(app, ui);
        if app.data.photos.is_some() {
            ui.separator();
            section(ui, "Filters");
            filters(app, ui);
        }
        ui.separator();
        section(ui, "Training");
        let can_train = app.data.photos.as_ref().is_some_and(|p| p.counts().0.iter().filter(|&&n| n > 0).count() >= 2);
        let mut cmds = Vec::new();
        train_panel::method_choice(ui, &mut app.settings.train, !app.training.is_running());
        train_panel::controls(ui, &app.training, can_train && !app.training.is_running(), &mut cmds);
        if app.data.photos.is_none() {
            ui.weak("Open a dataset to train on it.");
        }
        egui::CollapsingHeader::new("Training settings").default_open(false).show(ui, |ui| {
            train_panel::settings_form(ui, &mut app.settings.train, !app.training.is_running());
        });
        app.shell.pending.extend(cmds);
    });
}

fn dataset_summary(app: &mut GenderApp, ui: &mut egui::Ui) {
    let Some(p) = &app.data.photos else {
        if let Some(e) = &app.data.open_error {
            ui.colored_label(ui.visuals().error_fg_color, e);
            ui.add_space(4.0);
        }
        widgets::hint(
            ui,
            "No dataset open. A dataset is a folder with one sub-folder per class (male/, female/) holding photos.",
        );
        if ui.button("Open folder…").on_hover_text(tooltip(ui.ctx(), &Command::OpenFolderDialog)).clicked() {
            app.push(Command::OpenFolderDialog);
        }
        return;
    };
    let name = p.root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    ui.label(RichText::new(name).strong()).on_hover_text(p.root.display().to_string());
    ui.add(egui::Label::new(RichText::new(p.root.display().to_string()).small().weak()).truncate());
    let (counts, excluded) = p.counts();
    let max = counts.iter().copied().max().unwrap_or(1).max(1);
    let mut filter_to = None;
    egui::Grid::new("class-counts").num_columns(3).spacing([8.0, 4.0]).show(ui, |ui| {
        for (i, (c, n)) in p.classes.iter().zip(&counts).enumerate() {
            let r = ui
                .add(egui::Button::new(RichText::new(c).color(widgets::class_color(c)).strong()).frame(false))
                .on_hover_text(format!("Show only {c} photos (key {} relabels the selection as {c})", i + 1));
            if r.clicked() {
                filter_to = Some(c.clone());
            }
            ui.label(n.to_string());
            let (rect, _) = ui.allocate_exact_size(Vec2::new(90.0, 8.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 3.0, ui.visuals().extreme_bg_color);
            let mut fill = rect;
            fill.set_width(rect.width() * *n as f32 / max as f32);
            ui.painter().rect_filled(fill, 3.0, widgets::class_color(c));
            ui.end_row();
        }
    });
    if excluded > 0 {
        ui.weak(format!("{excluded} excluded this session (in {EXCLUDED_DIR}/)"));
    }
    if p.classes.len() < 2 {
        widgets::warning(ui, "Training needs at least two class folders.");
    }
    let can_review = !app.review.is_running() && p.counts().0.iter().filter(|&&n| n > 0).count() >= 2;
    if button(ui, "Review suspects…", &Command::ReviewSuspects, can_review) {
        app.push(Command::ReviewSuspects);
    }
    ui.horizontal(|ui| {
        if button(ui, "Rescan", &Command::Rescan, app.data.scan.is_none()) {
            app.push(Command::Rescan);
        }
        if let Some(cur) = &app.data.curation {
            let undo = cur.undo_label().map(|s| format!("Undo {s}"));
            let redo = cur.redo_label().map(|s| format!("Redo {s}"));
            let undo_tip = undo.clone().unwrap_or_else(|| "Nothing to undo".into());
            if ui
                .add_enabled(undo.is_some(), egui::Button::new("Undo"))
                .on_hover_text(&undo_tip)
                .on_disabled_hover_text(&undo_tip)
                .clicked()
            {
                app.shell.pending.push(Command::Undo);
            }
            let redo_tip = redo.clone().unwrap_or_else(|| "Nothing to redo".into());
            if ui
                .add_enabled(redo.is_some(), egui::Button::new("Redo"))
                .on_hover_text(&redo_tip)
                .on_disabled_hover_text(&redo_tip)
                .clicked()
            {
                app.shell.pending.push(Command::Redo);
            }
        }
    });
    if let Some(c) = filter_to {
        app.settings.filters.class = Some(c);
        app.shell.tab = Tab::Photos;
    }
}

fn filters(app: &mut GenderApp, ui: &mut egui::Ui) {
    let Some(p) = &app.data.photos else { return };
    let classes = p.classes.clone();
    let pred_classes = if p.pred_classes.is_empty() { classes.clone() } else { p.pred_classes.clone() };
    let f = &mut app.settings.filters;
    egui::Grid::new("filters").num_columns(2).spacing([8.0, 6.0]).show(ui, |ui| {
        let l = ui.label("Class");
        egui::ComboBox::from_id_salt("filter-class")
            .selected_text(f.class.clone().unwrap_or_else(|| "all".into()))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut f.class, None, "all");
                for c in &classes {
                    ui.selectable_value(&mut f.class, Some(c.clone()), c);
                }
            })
            .response
            .labelled_by(l.id);
        ui.end_row();
        let l = ui.label("Predicted");
        egui::ComboBox::from_id_salt("filter-predicted")
            .selected_text(f.predicted.clone().unwrap_or_else(|| "all".into()))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut f.predicted, None, "all");
                for c in &pred_classes {
                    ui.selectable_value(&mut f.predicted, Some(c.clone()), c);
                }
            })
            .response
            .labelled_by(l.id);
        ui.end_row();
        let l = ui.label("Faces");
        egui::ComboBox::from_id_salt("filter-faces")
            .selected_text(f.faces.label())
            .show_ui(ui, |ui| {
                for x in FaceFilter::ALL {
                    ui.selectable_value(&mut f.faces, x, x.label());
                }
            })
            .response
            .labelled_by(l.id)
            .on_hover_text("Face counts come from the feature cache (computed when predicting with face crops)");
        ui.end_row();
        let l = ui.label("Split");
        egui::ComboBox::from_id_salt("filter-split")
            .selected_text(f.split.label())
            .show_ui(ui, |ui| {
                for x in SplitFilter::ALL {
                    ui.selectable_value(&mut f.split, x, x.label());
                }
            })
            .response
            .labelled_by(l.id);
        ui.end_row();
        let l = ui.label("Confidence");
        ui.vertical(|ui| {
            let (mut lo, mut hi) = f.confidence;
            ui.add(egui::Slider::new(&mut lo, 0.0..=1.0).fixed_decimals(2).text("min")).labelled_by(l.id);
            ui.add(egui::Slider::new(&mut hi, 0.0..=1.0).fixed_decimals(2).text("max")).labelled_by(l.id);
            if hi < lo {
                std::mem::swap(&mut lo, &mut hi);
            }
            f.confidence = (lo, hi);
        });
        ui.end_row();
        let l = ui.label("Name");
        ui.add(
            egui::TextEdit::singleline(&mut f.name_contains).hint_text("part of the file name").desired_width(150.0),
        )
        .labelled_by(l.id);
        ui.end_row();
    });
    ui.checkbox(&mut f.wrong_only, "Wrong predictions only");
    ui.checkbox(&mut f.unpredicted_only, "Not yet predicted");
    let active = !f.is_default();
    if ui.add_enabled(active, egui::Button::new("Clear filters")).clicked() {
        app.shell.pending.push(Command::ClearFilters);
    }
}

// ------------------------------------------------------------------------------------------------
