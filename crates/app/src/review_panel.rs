//! The review tab: audit progress, the report (counts per finding, decisions, accuracy before and
//! after cleaning) and the finding in front of the user with its photos side by side.

use egui::{RichText, Vec2};

use super::commands::{Command, tooltip};
use super::review_actions::review_keys;
use super::thumbnails::Thumb;
use super::{GenderApp, widgets};
use gc_core::audit::{Finding, FindingKind};

/// Side of a photo tile in the review.
const TILE: f32 = 220.0;

/// Draws the review tab.
pub(super) fn tab(app: &mut GenderApp, ui: &mut egui::Ui) {
    let mut cmds = Vec::new();
    egui::ScrollArea::vertical().id_salt("review-tab").auto_shrink([false, false]).show(ui, |ui| {
        ui.horizontal(|ui| {
            ui.heading("Review suspects");
            let busy = app.review.is_running();
            let label = if app.review.report.is_some() { "Audit again" } else { "Review suspects" };
            if ui
                .add_enabled(!busy && app.data.photos.is_some(), egui::Button::new(label))
                .on_hover_text(tooltip(ui.ctx(), &Command::ReviewSuspects))
                .clicked()
            {
                cmds.push(Command::ReviewSuspects);
            }
        });
        if app.data.photos.is_none() {
            widgets::hint(ui, "Open a dataset folder first.");
            return;
        }
        if app.review.is_running() {
            progress(app, ui, &mut cmds);
            return;
        }
        if let Some(e) = &app.review.error {
            widgets::warning(ui, &format!("The audit failed: {e}"));
        }
        if app.review.report.is_none() {
            widgets::hint(
                ui,
                "The audit looks for the same photo filed twice, copies of one photo, photos whose label a \
                 held-out model disagrees with, photos without a face, tiny photos and photos unlike the rest of \
                 their class. It reads the cached features, so on a dataset you trained on it takes seconds. \
                 Then you walk the findings with one key per decision.",
            );
            return;
        }
        report(app, ui, &mut cmds);
        ui.separator();
        match app.review.current().cloned() {
            Some(f) => finding(app, ui, &f, &mut cmds),
            None => {
                ui.add_space(8.0);
                ui.label(RichText::new("All findings reviewed.").strong());
                widgets::hint(ui, "Retrain to see what the cleaning did to the accuracy.");
                if ui.button("Train a new model").on_hover_text(tooltip(ui.ctx(), &Command::StartTraining)).clicked() {
                    cmds.push(Command::StartTraining);
                }
            }
        }
    });
    app.shell.pending.extend(cmds);
}

fn progress(app: &GenderApp, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    let (text, frac) = match &app.review.progress {
        Some(p) if p.total > 0 => (
            format!("Reading features: {} of {} ({} from the cache)", p.done, p.total, p.from_cache),
            p.done as f32 / p.total as f32,
        ),
        _ => ("Loading the networks…".to_string(), 0.0),
    };
    ui.add(egui::ProgressBar::new(frac).text(text).animate(true));
    if ui.button("Cancel").on_hover_text(tooltip(ui.ctx(), &Command::CancelTasks)).clicked() {
        cmds.push(Command::CancelTasks);
    }
}

fn report(app: &GenderApp, ui: &mut egui::Ui, cmds: &mut Vec<Command>) {
    let r = &app.review;
    let Some(rep) = &r.report else { return };
    egui::CollapsingHeader::new(RichText::new("Report").strong()).default_open(true).show(ui, |ui| {
        egui::Grid::new("review-counts").num_columns(4).spacing([24.0, 4.0]).show(ui, |ui| {
            for (i, (kind, n)) in r.counts().into_iter().enumerate() {
                ui.label(kind.title());
                ui.label(RichText::new(n.to_string()).strong());
                if i % 2 == 1 {
                    ui.end_row();
                }
            }
        });
        let d = r.decisions;
        ui.label(format!(
            "{} images audited in {:.1} s of analysis · reviewed {} of {} · kept {}, relabelled {}, excluded {}{}",
            rep.images,
            rep.analysis_secs,
            r.reviewed(),
            r.len(),
            d.kept,
            d.relabelled,
            d.excluded,
            if r.hidden_as_kept > 0 { format!(" · {} kept earlier hidden", r.hidden_as_kept) } else { String::new() }
        ));
        let pct = |a: Option<f64>| a.map_or("–".to_string(), |a| format!("{:.1}%", a * 100.0));
        ui.horizontal(|ui| {
            ui.label(format!(
                "Test accuracy before cleaning: {}, after retraining: {}",
                pct(r.accuracy_before),
                pct(r.accuracy_after)
            ));
            if d.changed() > 0
                && r.accuracy_after.is_none()
                && ui.button("Retrain now").on_hover_text(tooltip(ui.ctx(), &Command::StartTraining)).clicked()
            {
                cmds.push(Command::StartTraining);
            }
        });
    });
}

fn finding(app: &mut GenderApp, ui: &mut egui::Ui, f: &Finding, cmds: &mut Vec<Command>) {
    let r = &app.review;
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("{} of {}", r.pos + 1, r.len())).weak());
        ui.label(RichText::new(f.kind.title()).strong().size(16.0).color(kind_color(ui, f.kind)));
        ui.label(RichText::new(format!("score {:.2}", f.score)).weak());
    });
    ui.label(&f.reason);
    ui.add_space(6.0);
    ui.horizontal_wrapped(|ui| {
        for (i, m) in f.members.iter().enumerate().take(9) {
            ui.vertical(|ui| {
                ui.set_width(TILE);
                let (rect, _) = ui.allocate_exact_size(Vec2::splat(TILE), egui::Sense::hover());
                match app.data.thumbs.get(&m.path) {
                    Thumb::Ready(tex) => {
                        widgets::paint_texture_fit(ui, rect, tex);
                    }
                    Thumb::Loading => {
                        ui.painter().rect_filled(rect, 4.0, ui.visuals().faint_bg_color);
                    }
                    Thumb::Failed(_) => widgets::paint_broken(ui, rect),
                }
                ui.horizontal(|ui| {
                    if f.kind.is_group() {
                        ui.label(RichText::new(format!("{}", i + 1)).strong().monospace());
                    }
                    ui.label(RichText::new(&m.class).color(widgets::class_color(&m.class)).strong());
                });
                let name = m.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                ui.label(RichText::new(name).small()).on_hover_text(m.path.display().to_string());
            });
        }
        if f.members.len() > 9 {
            ui.label(format!("…and {} more", f.members.len() - 9));
        }
    });
    if let Some(s) = &f.suggested_class {
        ui.label(RichText::new(format!("Suggested: {s}")).color(widgets::class_color(s)).strong());
    }
    ui.add_space(6.0);
    ui.horizontal_wrapped(|ui| {
        let mut b = |ui: &mut egui::Ui, text: &str, c: Command| {
            if ui.button(text).on_hover_text(tooltip(ui.ctx(), &c)).clicked() {
                cmds.push(c);
            }
        };
        if f.kind.is_group() {
            b(ui, "Keep the first, exclude the rest", Command::ReviewKeepOnly(0));
            b(ui, "Keep all", Command::ReviewKeep);
        } else {
            b(ui, "Keep", Command::ReviewKeep);
            if let Some(s) = &f.suggested_class {
                b(ui, &format!("Relabel as {s}"), Command::ReviewRelabelSuggested);
            }
        }
        b(ui, "Exclude", Command::Exclude);
        b(ui, "Skip", Command::Next);
        b(ui, "Back", Command::Previous);
    });
    widgets::hint(ui, review_keys(f.kind));
}

fn kind_color(ui: &egui::Ui, kind: FindingKind) -> egui::Color32 {
    match kind {
        FindingKind::ConflictingDuplicate | FindingKind::LikelyWrongLabel => ui.visuals().error_fg_color,
        FindingKind::NoFace | FindingKind::Outlier => ui.visuals().warn_fg_color,
        _ => ui.visuals().strong_text_color(),
    }
}
