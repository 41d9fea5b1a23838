//! The frame layout: top bar, status bar, left panel (dataset, filters, training), central tabs
//! (photos, training, evaluation), right panel (photo viewer, classified photos), and overlays
//! (drag-and-drop, keyboard help).

use egui::{Align, Align2, Color32, FontId, Layout, RichText, Vec2};

use super::commands::{Command, Tab, shortcut_text, shortcuts, tooltip};
use super::state::SortOrder;
use super::viewer::DatasetFacts;
use super::{
    GenderApp, Level, SidePage, classify_panel, evaluation_tab, left_panel, path_field, review_panel, train_panel,
    viewer, widgets,
};

/// Draws the whole frame.
pub(super) fn draw(app: &mut GenderApp, ui: &mut egui::Ui) {
    egui::Panel::top("top-bar").show(ui, |ui| top_bar(app, ui));
    egui::Panel::bottom("status-bar").show(ui, |ui| status_bar(app, ui));
    egui::Panel::left("side-panel")
        .default_size(290.0)
        .size_range(260.0..=420.0)
        .show(ui, |ui| left_panel::draw(app, ui));
    if app.settings.show_right_panel {
        egui::Panel::right("details-panel")
            .default_size(400.0)
            .size_range(300.0..=720.0)
            .show(ui, |ui| right_panel(app, ui));
    }
    egui::CentralPanel::default().show(ui, |ui| central(app, ui));
    drop_overlay(ui.ctx());
    help_window(app, ui.ctx());
    path_field::draw(app, ui.ctx());
    super::train_guard::dialog(app, ui.ctx());
}

pub(crate) fn button(ui: &mut egui::Ui, text: impl Into<egui::WidgetText>, cmd: &Command, enabled: bool) -> bool {
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
        if button(ui, "Open folder…", &Command::OpenFolderDialog, app.shell.dialog.is_none()) {
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
        if button(ui, "Classify photos…", &Command::ClassifyFilesDialog, app.shell.dialog.is_none()) {
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
    let current = app.models.path.as_ref().map(|p| {
        app.models
            .list
            .iter()
            .find(|m| &m.path == p)
            .map(|m| m.label())
            .unwrap_or_else(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    });
    let text = current.unwrap_or_else(|| "none".to_string());
    let resp = egui::ComboBox::from_id_salt("model-picker").selected_text(text).width(260.0).show_ui(ui, |ui| {
        if app.models.list.is_empty() {
            ui.weak("No model found yet");
        }
        for m in app.models.list.clone() {
            let selected = app.models.path.as_ref() == Some(&m.path);
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
    if app.models.load_task.is_some() || app.models.zero_shot_task.is_some() {
        ui.spinner();
        ui.weak("loading model…");
    } else if let Some(e) = &app.models.error {
        ui.colored_label(ui.visuals().error_fg_color, "model not loaded").on_hover_text(e);
    } else if app.models.classifier.is_none() {
        if ui.button("Use zero-shot head").on_hover_text(tooltip(ui.ctx(), &Command::UseZeroShotModel)).clicked() {
            app.push(Command::UseZeroShotModel);
        }
    } else if app.data.photos.is_some()
        && app.models.eval.is_none()
        && button(ui, "Predict all", &Command::Evaluate, true)
    {
        app.push(Command::Evaluate);
    }
}

// ------------------------------------------------------------------------------------------------

fn status_bar(app: &mut GenderApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.set_min_height(22.0);
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            ui.weak("F1: shortcuts");
            ui.separator();
            ui.weak(gc_engine::device::describe(&app.device())).on_hover_text("Where the networks run (--device)");
            ui.separator();
            ui.label(app.models.status_text()).on_hover_text("The model used for predictions (Models tab: Ctrl+5)");
            if let Some(p) = &app.data.photos {
                ui.separator();
                let (counts, _) = p.counts();
                let total: usize = counts.iter().sum();
                let sel = app.data.grid.selected_count();
                ui.label(format!(
                    "{total} photos · {} shown · {sel} selected · {} predicted",
                    app.data.grid.view.len(),
                    p.predicted_count()
                ));
            }
            if let Some((text, frac)) = app.training.progress_line() {
                ui.separator();
                ui.label(text);
                if let Some(f) = frac {
                    ui.add(egui::ProgressBar::new(f).desired_width(120.0));
                }
            } else if let Some(p) = app.models.eval_progress.clone() {
                ui.separator();
                if ui.small_button("Cancel").on_hover_text("Stop predicting (finished photos stay cached)").clicked() {
                    app.push(Command::CancelTasks);
                }
                ui.label(train_panel::progress_text("Predicting", &p));
                ui.add(egui::ProgressBar::new(p.done as f32 / p.total.max(1) as f32).desired_width(120.0));
            } else if app.models.eval.is_some() {
                ui.separator();
                ui.label("Predicting: reading photos…");
                ui.spinner();
            }
            if let Some(d) = &app.data.opening {
                ui.separator();
                ui.label(format!("Opening {}…", d.display()));
                ui.spinner();
            }
            if let Some(cur) = &app.data.curation
                && cur.is_busy()
            {
                ui.spinner();
            }
            // The message gets what the right-hand items leave, and is cut short to fit it.
            ui.with_layout(Layout::left_to_right(Align::Center), |ui| status_message(app, ui));
        });
    });
}

/// The latest status message (its colour by level, the session's messages on hover), and the
/// offer to type a path after a file dialog came back empty.
fn status_message(app: &mut GenderApp, ui: &mut egui::Ui) {
    path_field::offer_button(app, ui);
    if let Some((level, text)) = &app.shell.status {
        let (icon, color) = match level {
            Level::Info => ("", ui.visuals().text_color()),
            Level::Warning => ("Warning:", ui.visuals().warn_fg_color),
            Level::Error => ("Error:", ui.visuals().error_fg_color),
        };
        let log = app.shell.log.clone();
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
}

// ------------------------------------------------------------------------------------------------

fn central(app: &mut GenderApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        for (tab, name) in [
            (Tab::Photos, "Photos"),
            (Tab::Training, "Training"),
            (Tab::Evaluation, "Evaluation"),
            (Tab::Review, "Review"),
            (Tab::Models, "Models"),
        ] {
            let r = ui.selectable_label(app.shell.tab == tab, RichText::new(name).size(15.0));
            if r.on_hover_text(tooltip(ui.ctx(), &Command::ShowTab(tab))).clicked() {
                app.shell.tab = tab;
            }
        }
    });
    ui.separator();
    match app.shell.tab {
        Tab::Photos => photos_tab(app, ui),
        Tab::Training => {
            let mut cmds = Vec::new();
            egui::ScrollArea::vertical()
                .id_salt("training-tab")
                .show(ui, |ui| train_panel::tab(ui, &app.training, &mut cmds));
            app.shell.pending.extend(cmds);
        }
        Tab::Evaluation => evaluation_tab::draw(app, ui),
        Tab::Review => review_panel::tab(app, ui),
        Tab::Models => super::model_panel::tab(app, ui),
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
    if app.data.photos.is_none() {
        if let Some(d) = &app.data.opening {
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
    let Some(p) = &app.data.photos else { return };
    if p.entries.iter().all(|e| e.label.is_none()) {
        ui.vertical_centered(|ui| {
            ui.add_space(60.0);
            ui.label(RichText::new("No photos in the class folders").size(18.0));
            widgets::hint(ui, "Copy photos into the class folders (or drop photos here and add them from the Classified panel), then press Rescan.");
        });
        return;
    }
    if app.data.grid.view.is_empty() {
        ui.vertical_centered(|ui| {
            ui.add_space(60.0);
            ui.label(RichText::new("No photo matches the filters").size(18.0));
            if app.settings.filters.wrong_only && p.predicted_count() == 0 {
                widgets::hint(ui, "Nothing is predicted yet: load a model first.");
            }
            if ui.button("Clear filters").clicked() {
                app.shell.pending.push(Command::ClearFilters);
            }
        });
        return;
    }
    let size = app.settings.thumb_size;
    if app.data.grid.show(ui, p, &mut app.data.thumbs, size) {
        app.shell.side = SidePage::Photo;
    }
}

/// Width of `text` on a button, in points.
fn button_width(ui: &egui::Ui, text: &str) -> f32 {
    let galley = egui::WidgetText::from(text).into_galley(
        ui,
        Some(egui::TextWrapMode::Extend),
        f32::INFINITY,
        egui::TextStyle::Button,
    );
    galley.size().x + 2.0 * ui.spacing().button_padding.x + ui.spacing().item_spacing.x
}

/// The grid's toolbar, on one line at any width: count, sort and size on the left; the relabel
/// buttons on the right, folded into a "Relabel" menu when the line is too narrow for them.
fn toolbar(app: &mut GenderApp, ui: &mut egui::Ui) {
    let Some(p) = &app.data.photos else { return };
    let classes = p.classes.clone();
    let (counts, _) = p.counts();
    let total: usize = counts.iter().sum();
    let n_sel = app.data.grid.selected_count();
    let enabled = n_sel > 0 && app.data.curation.as_ref().is_some_and(|c| !c.is_read_only());
    let relabel_text = if n_sel > 1 { format!("Relabel {n_sel} photos as") } else { "Relabel as".into() };
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("{} of {total}", app.data.grid.view.len())).strong())
            .on_hover_text("Photos shown (after the filters) of all photos in the dataset");
        if !app.settings.filters.is_default() && ui.small_button("Clear filters").clicked() {
            app.shell.pending.push(Command::ClearFilters);
        }
        ui.separator();
        let l = ui.label("Sort");
        egui::ComboBox::from_id_salt("sort")
            .selected_text(app.settings.sort.label())
            .width(110.0)
            .truncate()
            .show_ui(ui, |ui| {
                for s in SortOrder::ALL {
                    ui.selectable_value(&mut app.settings.sort, s, s.label());
                }
            })
            .response
            .labelled_by(l.id);
        let l = ui.label("Size");
        ui.spacing_mut().slider_width = 70.0;
        ui.add(egui::Slider::new(&mut app.settings.thumb_size, 64.0..=220.0).show_value(false)).labelled_by(l.id);
        ui.separator();
        let full: f32 = button_width(ui, &relabel_text)
            + classes.iter().map(|c| button_width(ui, c)).sum::<f32>()
            + button_width(ui, "Exclude");
        if ui.available_width() >= full {
            ui.label(&relabel_text);
            relabel_buttons(app, ui, &classes, enabled);
        } else {
            let menu = if n_sel > 1 { format!("Relabel {n_sel}…") } else { "Relabel…".into() };
            ui.add_enabled_ui(enabled, |ui| {
                ui.menu_button(menu, |ui| {
                    ui.label(&relabel_text);
                    relabel_buttons(app, ui, &classes, enabled);
                })
                .response
                .on_hover_text("Move the selected photos into another class folder, or exclude them")
                .on_disabled_hover_text("Select photos first");
            });
        }
    });
}

fn relabel_buttons(app: &mut GenderApp, ui: &mut egui::Ui, classes: &[String], enabled: bool) {
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
        let r = ui.add_enabled(enabled, egui::Button::new(RichText::new(c.as_str()).color(widgets::class_color(c))));
        if r.on_hover_text(&t).clicked() {
            app.shell.pending.push(cmd);
            ui.close();
        }
    }
    if button(ui, "Exclude", &Command::Exclude, enabled) {
        app.shell.pending.push(Command::Exclude);
        ui.close();
    }
}

// ------------------------------------------------------------------------------------------------

impl GenderApp {
    /// The dataset's facts (label, prediction, split, faces) about the photo the viewer shows: the
    /// grid's cursor in the Photos tab, the finding's photo in the Review tab.
    pub fn shown_facts(&self) -> Option<DatasetFacts> {
        let p = self.data.photos.as_ref()?;
        let shown = self.data.viewer.shown.as_ref()?;
        let e = &p.entries[p.index_of_path(&shown.path)?];
        Some(DatasetFacts {
            label: p.label_name(e).to_string(),
            probs: e.pred.as_ref().map(|pr| (p.predicted_name(e).unwrap_or("?").to_string(), pr.probs.clone())),
            classes: p.pred_classes.clone(),
            split: e.split.map(|s| s.name()),
            n_faces: e.n_faces,
        })
    }
}

fn right_panel(app: &mut GenderApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.selectable_value(&mut app.shell.side, SidePage::Photo, RichText::new("Photo").size(15.0));
        let n = app.classify.items.len();
        let label = if n > 0 { format!("Classified ({n})") } else { "Classified".into() };
        ui.selectable_value(&mut app.shell.side, SidePage::Classified, RichText::new(label).size(15.0));
    });
    ui.separator();
    match app.shell.side {
        SidePage::Photo => {
            let facts = app.shown_facts();
            let n_sel = app.data.photos.as_ref().map_or(0, |_| app.data.grid.selected_count());
            egui::ScrollArea::vertical().id_salt("viewer-scroll").auto_shrink([false, false]).show(ui, |ui| {
                viewer::show(ui, &app.data.viewer, facts.as_ref(), n_sel);
            });
        }
        SidePage::Classified => {
            let classes = app.data.photos.as_ref().map(|p| p.classes.clone()).unwrap_or_default();
            let mut cmds = Vec::new();
            classify_panel::show(
                ui,
                &mut app.classify,
                &mut app.data.thumbs,
                &classes,
                app.models.classifier.is_some(),
                &mut app.settings.uncertain_below,
                &mut cmds,
            );
            app.shell.pending.extend(cmds);
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

/// The narrowest window in which the shortcut tables stand side by side.
const HELP_SIDE_BY_SIDE_WIDTH: f32 = 1100.0;

fn help_window(app: &mut GenderApp, ctx: &egui::Context) {
    if !app.shell.show_help {
        return;
    }
    let mut open = true;
    // The window always fits the screen: the two tables side by side where there is room, one
    // above the other otherwise, scrolling when taller than the window.
    let screen = ctx.content_rect();
    let side_by_side = screen.width() >= HELP_SIDE_BY_SIDE_WIDTH;
    egui::Window::new("Keyboard shortcuts")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .anchor(Align2::CENTER_CENTER, [0.0, 0.0])
        .max_width(screen.width() - 40.0)
        .max_height(screen.height() - 80.0)
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
                Command::ShowTab(Tab::Models),
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
            let first = |ui: &mut egui::Ui| {
                egui::Grid::new("shortcut-table").num_columns(2).striped(true).spacing([20.0, 4.0]).show(ui, |ui| {
                    for cmd in &browse {
                        row(ui, &shortcut_text(ctx, cmd).unwrap_or_default(), &cmd.describe());
                    }
                    row(ui, "3 … 9", "Relabel selection as class 3 … 9");
                });
            };
            let second = |ui: &mut egui::Ui| {
                egui::Grid::new("shortcut-table-2").num_columns(2).striped(true).spacing([20.0, 4.0]).show(ui, |ui| {
                    for cmd in &work {
                        row(ui, &shortcut_text(ctx, cmd).unwrap_or_default(), &cmd.describe());
                    }
                    row(ui, "In Review", "M/F/1-9/X/arrows act on the finding shown");
                    row(ui, "Click", "Select; Ctrl+click adds, Shift+click a range");
                    row(ui, "Drop / paste", "A folder opens as a dataset; photos are classified");
                });
            };
            let tallest = screen.height() - 160.0;
            egui::ScrollArea::vertical()
                .id_salt("shortcuts-scroll")
                .max_height(tallest)
                .min_scrolled_height(tallest)
                .show(ui, |ui| {
                    if side_by_side {
                        ui.horizontal_top(|ui| {
                            first(ui);
                            ui.add_space(12.0);
                            second(ui);
                        });
                    } else {
                        first(ui);
                        ui.add_space(12.0);
                        second(ui);
                    }
                    ui.add_space(6.0);
                    ui.weak("Relabel and exclude move files (never delete them) and can be undone.");
                });
        });
    if !open {
        app.shell.show_help = false;
    }
}
