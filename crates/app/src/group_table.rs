//! The Evaluation tab's split choice and its accuracy by group: which split the numbers are for
//! (the held-back test split by default when the model was trained on this folder), where the
//! groups come from (none, UTKFace file names, a CSV file) and the table gc-core's `groups` computes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use egui::RichText;
use gc_core::groups::{GroupReport, Groups, by_group, parse_utkface};
use gc_core::metrics::{argmax, wilson};

use super::GenderApp;
use super::state::SplitFilter;

/// Where the groups come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSource {
    /// No groups.
    None,
    /// Age band, gender and race from UTKFace file names.
    UtkFace,
    /// A CSV file `path,<column>,...`.
    Csv,
}

impl GroupSource {
    /// The selector's text.
    pub fn label(&self) -> &'static str {
        match self {
            GroupSource::None => "none",
            GroupSource::UtkFace => "UTKFace names",
            GroupSource::Csv => "CSV file…",
        }
    }
}

/// A CSV read on a worker thread: `None` while it runs.
type Loading = Arc<Mutex<Option<Result<Groups, String>>>>;
/// What a table was computed from: generation, split, source, CSV path.
type TableKey = (u64, SplitFilter, GroupSource, PathBuf);

/// The tab's own state, kept in egui's memory.
#[derive(Clone, Default)]
pub struct TabState {
    /// The split picked in the tab; `None`: automatic (test when trained here, else all).
    pub picked: Option<SplitFilter>,
    /// The groups' source; `None`: automatic (UTKFace names when most file names parse as such).
    pub source: Option<GroupSource>,
    /// The CSV path as typed.
    pub csv_text: String,
    /// The CSV being read or read: its path, the photos' generation, the outcome.
    csv: Option<(PathBuf, u64, Loading)>,
    /// The last table and what it was computed from.
    table: Option<(TableKey, Result<GroupReport, String>)>,
}

impl TabState {
    /// The last group table computed (None before groups are chosen, or while a CSV is read).
    pub fn report(&self) -> Option<&GroupReport> {
        self.table.as_ref().and_then(|t| t.1.as_ref().ok())
    }
}

fn state_id() -> egui::Id {
    egui::Id::unique("evaluation-tab-state")
}

/// The tab's state (default on first use).
pub fn load(ctx: &egui::Context) -> TabState {
    ctx.data_mut(|d| d.get_temp::<TabState>(state_id()).unwrap_or_default())
}

/// Keeps the tab's state for the next frame.
pub fn store(ctx: &egui::Context, s: TabState) {
    ctx.data_mut(|d| d.insert_temp(state_id(), s));
}

/// True when the loaded model was trained on the open folder.
pub fn trained_here(app: &GenderApp) -> bool {
    let (Some(p), Some(c)) = (&app.data.photos, &app.models.classifier) else { return false };
    c.model
        .meta
        .trained_on()
        .iter()
        .any(|d| d.root == p.root || matches!((d.root.canonicalize(), p.root.canonicalize()), (Ok(a), Ok(b)) if a == b))
}

/// The split the numbers are for: the picked one, else test when trained here, else all.
pub fn measured_split(picked: Option<SplitFilter>, trained_here: bool) -> SplitFilter {
    picked.unwrap_or(if trained_here { SplitFilter::Test } else { SplitFilter::All })
}

/// What the split's numbers mean.
pub fn split_note(split: SplitFilter, trained_here: bool) -> &'static str {
    match (split, trained_here) {
        (SplitFilter::Test, true) => "photos held back from training: the honest number",
        (SplitFilter::Validation, true) => "photos used to choose when training stopped",
        (SplitFilter::Train, true) => "photos the model was trained on: optimistic",
        (SplitFilter::All, true) => "includes the photos the model was trained on: optimistic",
        (SplitFilter::All, false) => "the model was not trained on this folder, so every photo is unseen",
        (_, false) => "the model was not trained on this folder: this split is only its rule applied to unseen photos",
    }
}

/// True when most of the open dataset's file names parse as UTKFace names.
fn names_are_utkface(app: &GenderApp) -> bool {
    let Some(p) = &app.data.photos else { return false };
    !p.entries.is_empty() && p.entries.iter().filter(|e| is_utkface_name(&e.path)).count() * 2 >= p.entries.len()
}

/// Draws the groups selector and, when groups are chosen, the table for `split`.
pub fn section(app: &GenderApp, ui: &mut egui::Ui, split: SplitFilter, st: &mut TabState) {
    let Some(photos) = &app.data.photos else { return };
    let source = st
        .source
        .clone()
        .unwrap_or_else(|| if names_are_utkface(app) { GroupSource::UtkFace } else { GroupSource::None });
    ui.horizontal(|ui| {
        ui.label(RichText::new("Accuracy by group").strong());
        let l = ui.label("Groups:");
        egui::ComboBox::from_id_salt("eval-groups")
            .selected_text(source.label())
            .show_ui(ui, |ui| {
                for s in [GroupSource::None, GroupSource::UtkFace, GroupSource::Csv] {
                    if ui.selectable_label(source == s, s.label()).clicked() {
                        st.source = Some(s);
                    }
                }
            })
            .response
            .labelled_by(l.id);
        if source == GroupSource::Csv {
            let l = ui.label("CSV:");
            let edit = ui
                .add(
                    egui::TextEdit::singleline(&mut st.csv_text)
                        .hint_text("path,<column>,... file")
                        .desired_width(260.0),
                )
                .labelled_by(l.id);
            if ui.button("Read CSV").clicked() || (edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter))) {
                read_csv(ui.ctx(), st, photos, PathBuf::from(st.csv_text.trim()));
            }
        }
    });
    let csv_path = st.csv.as_ref().map(|c| c.0.clone()).unwrap_or_default();
    let key: TableKey = (photos.generation, split, source.clone(), csv_path);
    if st.table.as_ref().is_none_or(|t| t.0 != key) {
        let groups = match source {
            GroupSource::None => return,
            GroupSource::UtkFace => Some(Ok(Groups::from_utkface_names(
                &photos.root,
                photos.entries.iter().filter(|e| e.label.is_some()).map(|e| e.path.as_path()),
            ))),
            GroupSource::Csv => match st.csv.as_ref().map(|c| (c.0.clone(), c.1 != photos.generation)) {
                None => {
                    widgets_hint(
                        ui,
                        "Type the path of a CSV file `path,<column>,...` (paths relative to the dataset folder) and read it.",
                    );
                    return;
                }
                Some((path, true)) => {
                    // The photos changed, so the match of the CSV's paths may have changed: read it again.
                    read_csv(ui.ctx(), st, photos, path);
                    None
                }
                Some((_, false)) => st.csv.as_ref().and_then(|c| c.2.lock().ok().and_then(|l| l.clone())),
            },
        };
        let Some(groups) = groups else {
            ui.weak("Reading the CSV…");
            return;
        };
        let outcomes = photos.entries.iter().filter(|e| split.accepts(e.split)).filter_map(|e| {
            let pred = e.pred.as_ref()?;
            let label =
                photos.pred_classes.iter().position(|c| Some(c) == e.label.and_then(|l| photos.classes.get(l)))?;
            Some((e.path.as_path(), label, argmax(&pred.probs)))
        });
        let report = groups.map(|g| by_group(&g, &photos.pred_classes, outcomes));
        st.table = Some((key, report));
    }
    match st.table.as_ref().map(|t| &t.1) {
        Some(Ok(r)) if r.overall.n > 0 => table(ui, r, split),
        Some(Ok(_)) => widgets_hint(ui, "No predicted photos in this split to group."),
        Some(Err(e)) => {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        None => {}
    }
}

fn widgets_hint(ui: &mut egui::Ui, text: &str) {
    super::widgets::hint(ui, text);
}

/// Starts reading the CSV at `path` on a worker thread (files: the open dataset's photos).
fn read_csv(ctx: &egui::Context, st: &mut TabState, photos: &super::photos::Photos, path: PathBuf) {
    let (root, generation) = (photos.root.clone(), photos.generation);
    let files: Vec<PathBuf> = photos.entries.iter().filter(|e| e.label.is_some()).map(|e| e.path.clone()).collect();
    let loading: Loading = Arc::new(Mutex::new(None));
    let (out, ctx, p) = (loading.clone(), ctx.clone(), path.clone());
    std::thread::spawn(move || {
        let r = Groups::from_csv(&p, &root, &files).map_err(|e| e.to_string());
        if let Ok(mut o) = out.lock() {
            *o = Some(r);
        }
        ctx.request_repaint();
    });
    tracing::info!("reading groups from {}", path.display());
    st.csv = Some((path, generation, loading));
    st.table = None;
}

/// The label of one group row, for screen readers and tests.
pub fn row_label(column: &str, value: &str, n: usize, accuracy: f64) -> String {
    format!("{column} {value}: {:.1}% of {n}", accuracy * 100.0)
}

/// Draws recall per class over all grouped photos, then a table per column.
pub fn table(ui: &mut egui::Ui, r: &GroupReport, split: SplitFilter) {
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    ui.weak(format!("{}, {} photos; a group's interval is its Wilson 95% interval.", split.label(), r.overall.n));
    let recalls: Vec<String> = r
        .classes
        .iter()
        .zip(&r.overall.per_class)
        .filter(|(_, c)| c.0 > 0)
        .map(|(k, (n, ok))| {
            let (lo, hi) = wilson(*ok, *n);
            format!("{k} {} ({}–{}, n={n})", pct(*ok as f64 / *n as f64), pct(lo), pct(hi))
        })
        .collect();
    ui.label(format!("Recall by class: {}", recalls.join(" · ")));
    for col in &r.columns {
        ui.add_space(6.0);
        ui.label(RichText::new(&col.column).strong());
        egui::Grid::new(("group-table", &col.column))
            .num_columns(4 + r.classes.len())
            .striped(true)
            .spacing([18.0, 3.0])
            .show(ui, |ui| {
                for h in ["group", "photos", "accuracy", "95% interval"] {
                    ui.label(RichText::new(h).strong());
                }
                for c in &r.classes {
                    ui.label(RichText::new(format!("recall {c}")).strong());
                }
                ui.end_row();
                for (v, s) in &col.values {
                    ui.label(v).on_hover_text(row_label(&col.column, v, s.n, s.accuracy));
                    ui.label(s.n.to_string());
                    ui.label(pct(s.accuracy));
                    ui.label(format!("{}–{}", pct(s.ci.0), pct(s.ci.1)));
                    for c in &r.classes {
                        ui.label(s.recall.get(c).map_or("–".into(), |x| pct(*x)));
                    }
                    ui.end_row();
                }
            });
        if let Some((best, worst, gap)) = col.gap(30).filter(|_| col.values.len() > 1) {
            ui.weak(format!(
                "Gap between groups of 30+ photos: {:.1} points ({best} best, {worst} worst)",
                gap * 100.0
            ));
        }
    }
    if !r.ungrouped.is_empty() {
        let first: Vec<String> = r
            .ungrouped
            .iter()
            .take(3)
            .map(|p| p.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()))
            .collect();
        ui.weak(format!(
            "{} photos have no group and are left out of the tables (e.g. {}).",
            r.ungrouped.len(),
            first.join(", ")
        ));
    }
}

/// True when `path`'s file name is a UTKFace name (for callers that label photos).
pub fn is_utkface_name(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).and_then(parse_utkface).is_some()
}
