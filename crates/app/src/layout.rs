//! The frame layout: top bar, status bar, left panel (dataset, filters, training), central tabs
//! (photos, training, evaluation), right panel (photo viewer, classified photos), and overlays
//! (drag-and-drop, keyboard help).

use egui::{Align, Align2, Color32, FontId, Layout, RichText, Vec2};

use super::commands::{Command, Tab, shortcut_text, shortcuts, tooltip};
use super::state::{FaceFilter, SortOrder, SplitFilter};
use super::viewer::DatasetFacts;
use super::{
    GenderApp, Level, SidePage, charts, classify_panel, confusion, review_panel, train_panel, viewer, widgets,
};
use gc_core::dataset::EXCLUDED_DIR;

/// Draws the whole frame.
pub(super) fn draw(app: &mut GenderApp, ui: &mut egui::Ui) {
    egui::Panel::top("top-bar").show(ui, |ui| top_bar(app, ui));
    egui::Panel::bottom("status-bar").show(ui, |ui| status_bar(app, ui));
    egui::Panel::left("side-panel").default_size(290.0).size_range(240.0..=420.0).show(ui, |ui| left_panel(app, ui));
    if app.settings.show_right_panel {
        egui::Panel::right("details-panel")
            .default_size(400.0)
            .size_range(300.0..=720.0)
            .show(ui, |ui| right_panel(app, ui));
    }
    egui::CentralPanel::default().show(ui, |ui| central(app, ui));
    drop_overlay(ui.ctx());
    help_window(app, ui.ctx());
}

fn button(ui: &mut egui::Ui, text: impl Into<egui::WidgetText>, cmd: &Command, enabled: bool) -> bool {
    let t = tooltip(ui.ctx(), cmd);
    let text: egui::WidgetText = text.into();
    ui.add_enabled(enabled, egui::Button::new(text)).on_hover_text(&t).on_disabled_hover_text(&t).clicked()
}

// ------------------------------------------------------------------------------------------------

fn top_bar(app: &mut GenderApp, ui: &mut egui::Ui) {
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        ui.label(RichText::new("Gender classifier").strong().size(16.0));
        ui.separator();
        if button(ui, "Open folder…", &Command::OpenFolderDialog, app.dialog.is_none()) {
            app.push(Command::OpenFolderDialog);
        }
        ui.menu_button("Recent", |ui| {
            if app.settings.recent.is_empty() {
                ui.weak("No recent folders yet");
            }
            for d in app.settings.recent.clone() {
                let exists = d.is_dir();
                let r = ui.add_enabled(exists, egui::Button::new(d.display().to_string()));
                let r = if exists { r } else { r.on_disabled_hover_text("This folder no longer exists") };
                if r.clicked() {
                    app.push(Command::OpenDataset(d));
                    ui.close();
                }
            }
        });
        if button(ui, "Classify photos…", &Command::ClassifyFilesDialog, app.dialog.is_none()) {
            app.push(Command::ClassifyFilesDialog);
        }
        ui.separator();
        model_picker(app, ui);
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            let theme = if app.settings.dark_mode { "Light mode" } else { "Dark mode" };
            if ui.button(theme).on_hover_text("Switch between dark and light colours").clicked() {
                app.settings.dark_mode = !app.settings.dark_mode;
            }
            let side = if app.settings.show_right_panel { "Hide details" } else { "Show details" };
            if button(ui, side, &Command::ToggleRightPanel, true) {
                app.push(Command::ToggleRightPanel);
            }
            if button(ui, "Shortcuts", &Command::ToggleHelp, true) {
                app.push(Command::ToggleHelp);
            }
        });
    });
    ui.add_space(2.0);
}

fn model_picker(app: &mut GenderApp, ui: &mut egui::Ui) {
    let label = ui.label("Model");
    let current = app.model_path.as_ref().map(|p| {
        app.models
            .iter()
            .find(|m| &m.path == p)
            .map(|m| m.label())
            .unwrap_or_else(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    });
    let text = current.unwrap_or_else(|| "none".to_string());
    let resp = egui::ComboBox::from_id_salt("model-picker").selected_text(text).width(260.0).show_ui(ui, |ui| {
        if app.models.is_empty() {
            ui.weak("No model found yet");
        }
        for m in app.models.clone() {
            let selected = app.model_path.as_ref() == Some(&m.path);
            let mut hover = m.path.display().to_string();
            match &m.meta {
                Ok(meta) => hover = format!("{hover}\n{}\ncreated {}", meta.origin, meta.created),
                Err(e) => hover = format!("{hover}\n{e}"),
            }
            if ui.selectable_label(selected, m.label()).on_hover_text(hover).clicked() {
                app.push(Command::ChooseModel(m.path.clone()));
            }
        }
        ui.separator();
        if ui.button("Use faceres' zero-shot head").on_hover_text("No training: faceres' own gender output").clicked() {
            app.push(Command::UseZeroShotModel);
        }
    });
    resp.response
        .labelled_by(label.id)
        .on_hover_text("The model used for predictions; trained models are listed newest first");
    if app.model_task.is_some() || app.zero_shot_task.is_some() {
        ui.spinner();
        ui.weak("loading model…");
    } else if let Some(e) = &app.model_error {
        ui.colored_label(ui.visuals().error_fg_color, "model not loaded").on_hover_text(e);
    } else if app.classifier.is_none() {
        if ui.button("Use zero-shot head").on_hover_text(tooltip(ui.ctx(), &Command::UseZeroShotModel)).clicked() {
            app.push(Command::UseZeroShotModel);
        }
    } else if app.photos.is_some() && app.eval.is_none() && button(ui, "Predict all", &Command::Evaluate, true) {
        app.push(Command::Evaluate);
    }
}

// ------------------------------------------------------------------------------------------------

fn status_bar(app: &mut GenderApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.set_min_height(22.0);
        if let Some((level, text)) = &app.status {
            let (icon, color) = match level {
                Level::Info => ("", ui.visuals().text_color()),
                Level::Warning => ("Warning:", ui.visuals().warn_fg_color),
                Level::Error => ("Error:", ui.visuals().error_fg_color),
            };
            let log = app.log.clone();
            ui.add(
                egui::Label::new(
                    RichText::new(if icon.is_empty() { text.clone() } else { format!("{icon} {text}") }).color(color),
                )
                .truncate(),
            )
            .on_hover_ui(|ui| {
                ui.label(RichText::new("Messages of this session").strong());
                for (l, t) in log.iter().rev().take(20) {
                    let c = match l {
                        Level::Info => ui.visuals().text_color(),
                        Level::Warning => ui.visuals().warn_fg_color,
                        Level::Error => ui.visuals().error_fg_color,
                    };
                    ui.colored_label(c, t);
                }
            });
        } else {
            ui.weak("Ready");
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            ui.weak("F1: shortcuts");
            if let Some(p) = &app.photos {
                ui.separator();
                let (counts, _) = p.counts();
                let total: usize = counts.iter().sum();
                let sel = app.grid.selected_ids(p).len();
                ui.label(format!(
                    "{total} photos · {} shown · {sel} selected · {} predicted",
                    app.grid.view.len(),
                    p.predicted_count()
                ));
            }
            if let Some((text, frac)) = app.training.progress_line() {
                ui.separator();
                ui.label(text);
                if let Some(f) = frac {
                    ui.add(egui::ProgressBar::new(f).desired_width(120.0));
                }
            } else if let Some(p) = app.eval_progress.clone() {
                ui.separator();
                if ui.small_button("Cancel").on_hover_text("Stop predicting (finished photos stay cached)").clicked() {
                    app.push(Command::CancelTasks);
                }
                ui.label(train_panel::progress_text("Predicting", &p));
                ui.add(egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32).desired_width(120.0));
            } else if app.eval.is_some() {
                ui.separator();
                ui.label("Predicting: reading photos…");
                ui.spinner();
            }
            if let Some(d) = &app.opening {
                ui.separator();
                ui.label(format!("Opening {}…", d.display()));
                ui.spinner();
            }
            if let Some(cur) = &app.curation
                && cur.is_busy()
            {
                ui.spinner();
            }
        });
    });
}

// ------------------------------------------------------------------------------------------------

fn section(ui: &mut egui::Ui, title: &str) {
    ui.add_space(6.0);
    ui.label(RichText::new(title).strong().size(15.0));
    ui.add_space(2.0);
}

fn left_panel(app: &mut GenderApp, ui: &mut egui::Ui) {
    egui::ScrollArea::vertical().id_salt("left-scroll").auto_shrink([false, false]).show(ui, |ui| {
        section(ui, "Dataset");
        dataset_summary(app, ui);
        if app.photos.is_some() {
            ui.separator();
            section(ui, "Filters");
            filters(app, ui);
        }
        ui.separator();
        section(ui, "Training");
        let can_train = app.photos.as_ref().is_some_and(|p| p.counts().0.iter().filter(|&&n| n > 0).count() >= 2);
        let mut cmds = Vec::new();
        train_panel::controls(ui, &app.training, can_train && !app.training.is_running(), &mut cmds);
        if app.photos.is_none() {
            ui.weak("Open a dataset to train on it.");
        }
        egui::CollapsingHeader::new("Training settings").default_open(false).show(ui, |ui| {
            train_panel::settings_form(ui, &mut app.settings.train, !app.training.is_running());
        });
        app.pending.extend(cmds);
    });
}

fn dataset_summary(app: &mut GenderApp, ui: &mut egui::Ui) {
    let Some(p) = &app.photos else {
        if let Some(e) = &app.open_error {
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
        if button(ui, "Rescan", &Command::Rescan, app.scan.is_none()) {
            app.push(Command::Rescan);
        }
        if let Some(cur) = &app.curation {
            let undo = cur.undo_label().map(|s| format!("Undo {s}"));
            let redo = cur.redo_label().map(|s| format!("Redo {s}"));
            let undo_tip = undo.clone().unwrap_or_else(|| "Nothing to undo".into());
            if ui
                .add_enabled(undo.is_some(), egui::Button::new("Undo"))
                .on_hover_text(&undo_tip)
                .on_disabled_hover_text(&undo_tip)
                .clicked()
            {
                app.pending.push(Command::Undo);
            }
            let redo_tip = redo.clone().unwrap_or_else(|| "Nothing to redo".into());
            if ui
                .add_enabled(redo.is_some(), egui::Button::new("Redo"))
                .on_hover_text(&redo_tip)
                .on_disabled_hover_text(&redo_tip)
                .clicked()
            {
                app.pending.push(Command::Redo);
            }
        }
    });
    if let Some(c) = filter_to {
        app.settings.filters.class = Some(c);
        app.tab = Tab::Photos;
    }
}

fn filters(app: &mut GenderApp, ui: &mut egui::Ui) {
    let Some(p) = &app.photos else { return };
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
        app.pending.push(Command::ClearFilters);
    }
}

// ------------------------------------------------------------------------------------------------

fn central(app: &mut GenderApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        for (tab, name) in [
            (Tab::Photos, "Photos"),
            (Tab::Training, "Training"),
            (Tab::Evaluation, "Evaluation"),
            (Tab::Review, "Review"),
        ] {
            let r = ui.selectable_label(app.tab == tab, RichText::new(name).size(15.0));
            if r.on_hover_text(tooltip(ui.ctx(), &Command::ShowTab(tab))).clicked() {
                app.tab = tab;
            }
        }
    });
    ui.separator();
    match app.tab {
        Tab::Photos => photos_tab(app, ui),
        Tab::Training => {
            let mut cmds = Vec::new();
            egui::ScrollArea::vertical()
                .id_salt("training-tab")
                .show(ui, |ui| train_panel::tab(ui, &app.training, &mut cmds));
            app.pending.extend(cmds);
        }
        Tab::Evaluation => evaluation_tab(app, ui),
        Tab::Review => review_panel::tab(app, ui),
    }
}

fn welcome(app: &mut GenderApp, ui: &mut egui::Ui) {
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() * 0.2);
        ui.label(RichText::new("Open a dataset to begin").size(22.0).strong());
        ui.add_space(6.0);
        widgets::hint(
            ui,
            "A dataset is a folder with one sub-folder per class, e.g. male/ and female/. \
             Drop such a folder onto this window, or:",
        );
        ui.add_space(8.0);
        if ui
            .add(egui::Button::new(RichText::new("Open folder…").size(16.0)).min_size(Vec2::new(180.0, 34.0)))
            .clicked()
        {
            app.push(Command::OpenFolderDialog);
        }
        if !app.settings.recent.is_empty() {
            ui.add_space(16.0);
            ui.label(RichText::new("Recent folders").strong());
            for d in app.settings.recent.clone() {
                if d.is_dir() && ui.link(d.display().to_string()).clicked() {
                    app.push(Command::OpenDataset(d));
                }
            }
        }
        ui.add_space(16.0);
        widgets::hint(ui, "Drop photos here (or paste a file path) to classify them with the current model.");
    });
}

fn photos_tab(app: &mut GenderApp, ui: &mut egui::Ui) {
    if app.photos.is_none() {
        if let Some(d) = &app.opening {
            ui.vertical_centered(|ui| {
                ui.add_space(80.0);
                ui.spinner();
                ui.label(format!("Scanning {}…", d.display()));
            });
        } else {
            welcome(app, ui);
        }
        return;
    }
    toolbar(app, ui);
    ui.add_space(4.0);
    let Some(p) = &app.photos else { return };
    if p.entries.iter().all(|e| e.label.is_none()) {
        ui.vertical_centered(|ui| {
            ui.add_space(60.0);
            ui.label(RichText::new("No photos in the class folders").size(18.0));
            widgets::hint(ui, "Copy photos into the class folders (or drop photos here and add them from the Classified panel), then press Rescan.");
        });
        return;
    }
    if app.grid.view.is_empty() {
        ui.vertical_centered(|ui| {
            ui.add_space(60.0);
            ui.label(RichText::new("No photo matches the filters").size(18.0));
            if app.settings.filters.wrong_only && p.predicted_count() == 0 {
                widgets::hint(ui, "Nothing is predicted yet: load a model first.");
            }
            if ui.button("Clear filters").clicked() {
                app.pending.push(Command::ClearFilters);
            }
        });
        return;
    }
    let size = app.settings.thumb_size;
    if app.grid.show(ui, p, &mut app.thumbs, size) {
        app.side = SidePage::Photo;
    }
}

fn toolbar(app: &mut GenderApp, ui: &mut egui::Ui) {
    let Some(p) = &app.photos else { return };
    let classes = p.classes.clone();
    let (counts, _) = p.counts();
    let total: usize = counts.iter().sum();
    let n_sel = app.grid.selected_ids(p).len();
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(format!("{} of {total} photos", app.grid.view.len())).strong());
        if !app.settings.filters.is_default() && ui.small_button("Clear filters").clicked() {
            app.pending.push(Command::ClearFilters);
        }
        ui.separator();
        let l = ui.label("Sort");
        egui::ComboBox::from_id_salt("sort")
            .selected_text(app.settings.sort.label())
            .show_ui(ui, |ui| {
                for s in SortOrder::ALL {
                    ui.selectable_value(&mut app.settings.sort, s, s.label());
                }
            })
            .response
            .labelled_by(l.id);
        let l = ui.label("Size");
        ui.spacing_mut().slider_width = 90.0;
        ui.add(egui::Slider::new(&mut app.settings.thumb_size, 64.0..=220.0).show_value(false)).labelled_by(l.id);
        ui.separator();
        let enabled = n_sel > 0 && app.curation.is_some();
        ui.label(if n_sel > 1 { format!("Relabel {n_sel} photos as") } else { "Relabel as".into() });
        for (i, c) in classes.iter().enumerate() {
            let cmd = match c.to_ascii_lowercase().as_str() {
                "male" => Command::RelabelMale,
                "female" => Command::RelabelFemale,
                _ => Command::RelabelClass(i),
            };
            let mut t = tooltip(ui.ctx(), &cmd);
            if let Some(k) = shortcut_text(ui.ctx(), &Command::RelabelClass(i)) {
                t = format!(
                    "Move the selection into {c}/ ({}{k})",
                    if matches!(cmd, Command::RelabelClass(_)) { "" } else { "also " }
                );
            }
            let r =
                ui.add_enabled(enabled, egui::Button::new(RichText::new(c.as_str()).color(widgets::class_color(c))));
            if r.on_hover_text(&t).clicked() {
                app.pending.push(cmd);
            }
        }
        if button(ui, "Exclude", &Command::Exclude, enabled) {
            app.pending.push(Command::Exclude);
        }
    });
}

fn evaluation_tab(app: &mut GenderApp, ui: &mut egui::Ui) {
    egui::ScrollArea::vertical().id_salt("evaluation-tab").auto_shrink([false, false]).show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Evaluation");
            let l = ui.label("on");
            egui::ComboBox::from_id_salt("eval-split")
                .selected_text(app.settings.eval_split.label())
                .show_ui(ui, |ui| {
                    for s in SplitFilter::ALL {
                        ui.selectable_value(&mut app.settings.eval_split, s, s.label());
                    }
                })
                .response
                .labelled_by(l.id)
                .on_hover_text("Train-split photos were seen in training: the test split gives the honest number");
        });
        let metrics = app.current_metrics();
        match metrics {
            None => {
                let why = if app.photos.is_none() {
                    "Open a dataset first."
                } else if app.classifier.is_none() {
                    "No model loaded: choose one in the top bar, train one, or use the zero-shot head."
                } else if app.eval.is_some() {
                    "Predicting every photo… the matrix appears when done."
                } else {
                    "No predicted photos in this split (a model that was not trained here has no split: use All)."
                };
                widgets::hint(ui, why);
            }
            Some(m) => {
                let mut cmds = Vec::new();
                let wide = ui.available_width() > 760.0;
                let matrix = |ui: &mut egui::Ui, cmds: &mut Vec<Command>| {
                    ui.vertical(|ui| {
                        ui.label(RichText::new("Confusion matrix").strong());
                        ui.weak("Click a cell to see its photos.");
                        confusion::matrix(ui, &m, app.settings.eval_split, cmds);
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
                app.pending.extend(cmds);
            }
        }
        ui.add_space(12.0);
        ui.label(RichText::new("Accuracy over past trainings").strong());
        let current = app.model_path.clone();
        charts::history(ui, &app.models, current.as_deref(), 220.0);
        if let Some(meta) = app.classifier.as_ref().map(|c| c.model.meta.clone()) {
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
                if let Some(d) = &meta.dataset {
                    ui.weak("Trained on");
                    ui.label(format!(
                        "{} train / {} validation / {} test photos{}",
                        d.split_counts[0],
                        d.split_counts[1],
                        d.split_counts[2],
                        if d.skipped > 0 { format!(", {} skipped", d.skipped) } else { String::new() }
                    ));
                    ui.end_row();
                }
                if let Some(t) = &meta.test_metrics {
                    ui.weak("Test accuracy (saved)");
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
}

// ------------------------------------------------------------------------------------------------

fn right_panel(app: &mut GenderApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.selectable_value(&mut app.side, SidePage::Photo, RichText::new("Photo").size(15.0));
        let n = app.classify.items.len();
        let label = if n > 0 { format!("Classified ({n})") } else { "Classified".into() };
        ui.selectable_value(&mut app.side, SidePage::Classified, RichText::new(label).size(15.0));
    });
    ui.separator();
    match app.side {
        SidePage::Photo => {
            let facts = app.photos.as_ref().and_then(|p| {
                let e = p.by_id(app.grid.cursor?)?;
                Some(DatasetFacts {
                    label: p.label_name(e).to_string(),
                    probs: e.pred.as_ref().map(|pr| (p.predicted_name(e).unwrap_or("?").to_string(), pr.probs.clone())),
                    classes: p.pred_classes.clone(),
                    split: e.split.map(|s| s.name()),
                    n_faces: e.n_faces,
                })
            });
            let n_sel = app.photos.as_ref().map_or(0, |p| app.grid.selected_ids(p).len());
            egui::ScrollArea::vertical().id_salt("viewer-scroll").auto_shrink([false, false]).show(ui, |ui| {
                viewer::show(ui, &app.viewer, facts.as_ref(), n_sel);
            });
        }
        SidePage::Classified => {
            let classes = app.photos.as_ref().map(|p| p.classes.clone()).unwrap_or_default();
            let mut cmds = Vec::new();
            classify_panel::show(ui, &mut app.classify, &mut app.thumbs, &classes, app.classifier.is_some(), &mut cmds);
            app.pending.extend(cmds);
        }
    }
}

// ------------------------------------------------------------------------------------------------

fn drop_overlay(ctx: &egui::Context) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if !hovering {
        return;
    }
    let painter = ctx.layer_painter(egui::LayerId::new(egui::Order::Foreground, egui::Id::unique("drop-overlay")));
    let rect = ctx.content_rect();
    painter.rect_filled(rect, 0.0, Color32::from_black_alpha(170));
    painter.text(
        rect.center() - Vec2::new(0.0, 14.0),
        Align2::CENTER_CENTER,
        "Drop to open or classify",
        FontId::proportional(28.0),
        Color32::WHITE,
    );
    painter.text(
        rect.center() + Vec2::new(0.0, 20.0),
        Align2::CENTER_CENTER,
        "A folder opens as a dataset · photos are classified with the current model",
        FontId::proportional(16.0),
        Color32::from_gray(220),
    );
}

fn help_window(app: &mut GenderApp, ctx: &egui::Context) {
    if !app.show_help {
        return;
    }
    let mut open = true;
    egui::Window::new("Keyboard shortcuts")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .anchor(Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            let browse = [
                Command::OpenFolderDialog,
                Command::ClassifyFilesDialog,
                Command::Rescan,
                Command::Next,
                Command::Previous,
                Command::Down,
                Command::Up,
                Command::ExtendNext,
                Command::ExtendPrevious,
                Command::SelectAll,
                Command::ClearSelection,
                Command::RelabelMale,
                Command::RelabelFemale,
                Command::RelabelClass(0),
                Command::RelabelClass(1),
                Command::Exclude,
                Command::Undo,
                Command::Redo,
            ];
            let work = [
                Command::AddClassifiedAsPredicted,
                Command::StartTraining,
                Command::Evaluate,
                Command::ShowTab(Tab::Photos),
                Command::ShowTab(Tab::Training),
                Command::ShowTab(Tab::Evaluation),
                Command::ShowTab(Tab::Review),
                Command::ReviewSuspects,
                Command::ReviewKeep,
                Command::ReviewRelabelSuggested,
                Command::ToggleRightPanel,
                Command::ToggleHelp,
            ];
            debug_assert!(shortcuts().iter().all(|(c, _)| matches!(c, Command::RelabelClass(i) if *i > 1)
                || browse.contains(c)
                || work.contains(c)));
            let row = |ui: &mut egui::Ui, keys: &str, what: &str| {
                ui.label(RichText::new(keys).monospace().strong());
                ui.label(what);
                ui.end_row();
            };
            ui.horizontal_top(|ui| {
                egui::Grid::new("shortcut-table").num_columns(2).striped(true).spacing([20.0, 4.0]).show(ui, |ui| {
                    for cmd in &browse {
                        row(ui, &shortcut_text(ctx, cmd).unwrap_or_default(), &cmd.describe());
                    }
                    row(ui, "3 … 9", "Relabel selection as class 3 … 9");
                });
                ui.add_space(12.0);
                egui::Grid::new("shortcut-table-2").num_columns(2).striped(true).spacing([20.0, 4.0]).show(ui, |ui| {
                    for cmd in &work {
                        row(ui, &shortcut_text(ctx, cmd).unwrap_or_default(), &cmd.describe());
                    }
                    row(ui, "In Review", "M/F/1-9/X/arrows act on the finding shown");
                    row(ui, "Click", "Select; Ctrl+click adds, Shift+click a range");
                    row(ui, "Drop / paste", "A folder opens as a dataset; photos are classified");
                });
            });
            ui.add_space(6.0);
            ui.weak("Relabel and exclude move files (never delete them) and can be undone.");
        });
    if !open {
        app.show_help = false;
    }
}
