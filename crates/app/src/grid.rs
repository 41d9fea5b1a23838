//! The photo grid: virtual scrolling over the filtered photos (only visible rows are laid out),
//! thumbnails from the pool, selection with click / Ctrl-click / Shift-click and the arrow keys.

use std::collections::HashSet;

use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};

use gc_core::dataset::split::Split;

use super::photos::Photos;
use super::state::{Filters, SortOrder};
use super::thumbnails::{Thumb, Thumbnails};
use super::widgets;

/// Height of the caption strip under each thumbnail.
const CAPTION_H: f32 = 18.0;
/// Gap between cells.
const GAP: f32 = 6.0;

/// Grid view state: the filtered order, the selection and scrolling.
#[derive(Default)]
pub struct Grid {
    /// Entry indices shown, in order.
    pub view: Vec<usize>,
    /// Selected entry ids.
    pub selection: HashSet<u64>,
    /// The focused entry (arrow keys move it; the viewer shows it).
    pub cursor: Option<u64>,
    anchor: Option<u64>,
    cursor_pos: usize,
    key: Option<(u64, Filters, SortOrder)>,
    /// Columns in the last layout.
    pub columns: usize,
    reveal_cursor: bool,
    offset: f32,
    viewport_h: f32,
    row_h: f32,
    scroll_request: Option<f32>,
    /// A thumbnail has been drawn since the last reset (logged once, to time opening a folder).
    drawn_first: bool,
}

impl Grid {
    /// Recomputes the view when the photos, filters or order changed; keeps the cursor sensible.
    pub fn refresh(&mut self, photos: &Photos, filters: &Filters, sort: SortOrder) {
        let key = (photos.generation, filters.clone(), sort);
        if self.key.as_ref() == Some(&key) {
            return;
        }
        self.key = Some(key);
        self.view = photos.filtered(filters, sort);
        let in_view: HashSet<u64> = self.view.iter().map(|&i| photos.entries[i].id).collect();
        self.selection.retain(|id| in_view.contains(id));
        match self.cursor {
            Some(c) if in_view.contains(&c) => {
                self.cursor_pos = self.view.iter().position(|&i| photos.entries[i].id == c).unwrap_or(0);
            }
            Some(_) => {
                // The focused photo left the view (relabelled away, excluded): focus the one now in its place.
                if self.view.is_empty() {
                    self.cursor = None;
                } else {
                    self.cursor_pos = self.cursor_pos.min(self.view.len() - 1);
                    let id = photos.entries[self.view[self.cursor_pos]].id;
                    self.cursor = Some(id);
                    if self.selection.is_empty() {
                        self.selection.insert(id);
                    }
                    self.reveal_cursor = true;
                }
            }
            None => {}
        }
        if self.selection.is_empty()
            && let Some(c) = self.cursor
        {
            self.selection.insert(c);
        }
    }

    /// Forgets the view (new dataset).
    pub fn reset(&mut self) {
        *self = Grid::default();
    }

    /// Selected ids in view order (the cursor alone when nothing else is selected).
    pub fn selected_ids(&self, photos: &Photos) -> Vec<u64> {
        let mut v: Vec<u64> =
            self.view.iter().map(|&i| photos.entries[i].id).filter(|id| self.selection.contains(id)).collect();
        if v.is_empty()
            && let Some(c) = self.cursor
        {
            v.push(c);
        }
        v
    }

    /// How many photos [`Grid::selected_ids`] would give, without a pass over the view: after
    /// [`Grid::refresh`] the selection only holds photos in view.
    pub fn selected_count(&self) -> usize {
        if self.selection.is_empty() { usize::from(self.cursor.is_some()) } else { self.selection.len() }
    }

    /// Moves the cursor by `delta` positions (e.g. ±1, ±columns); `extend` adds to the selection.
    pub fn move_cursor(&mut self, photos: &Photos, delta: isize, extend: bool) {
        if self.view.is_empty() {
            return;
        }
        let pos = if self.cursor.is_none() {
            0
        } else {
            (self.cursor_pos as isize + delta).clamp(0, self.view.len() as isize - 1) as usize
        };
        let id = photos.entries[self.view[pos]].id;
        self.cursor_pos = pos;
        self.cursor = Some(id);
        if extend {
            self.selection.insert(id);
        } else {
            self.selection.clear();
            self.selection.insert(id);
            self.anchor = Some(id);
        }
        self.reveal_cursor = true;
    }

    /// Selects every photo in the view.
    pub fn select_all(&mut self, photos: &Photos) {
        self.selection = self.view.iter().map(|&i| photos.entries[i].id).collect();
    }

    /// Clears the selection (the cursor stays).
    pub fn clear_selection(&mut self) {
        self.selection.clear();
        if let Some(c) = self.cursor {
            self.selection.insert(c);
        }
    }

    /// Focuses and selects the photo with `id`, scrolling to it.
    pub fn focus(&mut self, photos: &Photos, id: u64) {
        if let Some(pos) = self.view.iter().position(|&i| photos.entries[i].id == id) {
            self.cursor_pos = pos;
            self.cursor = Some(id);
            self.selection.clear();
            self.selection.insert(id);
            self.anchor = Some(id);
            self.reveal_cursor = true;
        }
    }

    /// Scrolls the grid to `offset` points from the top (used by the benchmark and tests).
    pub fn scroll_to_offset(&mut self, offset: f32) {
        self.scroll_request = Some(offset.max(0.0));
    }

    /// The scroll offset of the last frame.
    pub fn offset(&self) -> f32 {
        self.offset
    }

    fn click(&mut self, photos: &Photos, pos: usize, modifiers: egui::Modifiers) {
        let id = photos.entries[self.view[pos]].id;
        if modifiers.shift {
            let anchor_pos =
                self.anchor.and_then(|a| self.view.iter().position(|&i| photos.entries[i].id == a)).unwrap_or(pos);
            let (lo, hi) = (anchor_pos.min(pos), anchor_pos.max(pos));
            if !modifiers.command {
                self.selection.clear();
            }
            for p in lo..=hi {
                self.selection.insert(photos.entries[self.view[p]].id);
            }
        } else if modifiers.command {
            if !self.selection.remove(&id) {
                self.selection.insert(id);
            }
            self.anchor = Some(id);
        } else {
            self.selection.clear();
            self.selection.insert(id);
            self.anchor = Some(id);
        }
        self.cursor = Some(id);
        self.cursor_pos = pos;
    }

    /// Draws the grid into the remaining space.
    /// Returns true when a photo was clicked.
    pub fn show(&mut self, ui: &mut egui::Ui, photos: &Photos, thumbs: &mut Thumbnails, thumb_size: f32) -> bool {
        let cell = Vec2::new(thumb_size, thumb_size + CAPTION_H);
        let width = ui.available_width();
        let cols = (((width + GAP) / (cell.x + GAP)).floor() as usize).max(1);
        self.columns = cols;
        let rows = self.view.len().div_ceil(cols);
        let spacing = ui.spacing().item_spacing.y;
        self.row_h = cell.y + GAP;
        let row_with_spacing = self.row_h + spacing;
        let mut area = egui::ScrollArea::vertical().id_salt("photo-grid").auto_shrink([false, false]);
        if let Some(o) = self.scroll_request.take() {
            area = area.vertical_scroll_offset(o);
        } else if std::mem::take(&mut self.reveal_cursor) && self.cursor.is_some() && self.viewport_h > 0.0 {
            let y = (self.cursor_pos / cols) as f32 * row_with_spacing;
            if y < self.offset {
                area = area.vertical_scroll_offset(y);
            } else if y + row_with_spacing > self.offset + self.viewport_h {
                area = area.vertical_scroll_offset(y + row_with_spacing - self.viewport_h);
            }
        }
        thumbs.ensure_capacity(cols * ((ui.available_height() / row_with_spacing).ceil() as usize + 2) * 3);
        let mut clicked = None;
        let out = area.show_rows(ui, self.row_h, rows, |ui, range| {
            let painter = ui.painter().clone();
            for row in range {
                let (row_rect, _) = ui.allocate_exact_size(Vec2::new(width, self.row_h), Sense::hover());
                for col in 0..cols {
                    let pos = row * cols + col;
                    let Some(&idx) = self.view.get(pos) else {
                        break;
                    };
                    let entry = &photos.entries[idx];
                    let min = Pos2::new(row_rect.left() + col as f32 * (cell.x + GAP), row_rect.top());
                    let rect = Rect::from_min_size(min, cell);
                    let resp = ui.interact(rect, egui::Id::unique(("grid-cell", entry.id)), Sense::click());
                    if resp.clicked() {
                        clicked = Some((pos, ui.input(|i| i.modifiers)));
                    }
                    let selected = self.selection.contains(&entry.id);
                    let file_name =
                        entry.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    resp.widget_info(|| egui::WidgetInfo::selected(egui::Role::Button, true, selected, &file_name));
                    let is_cursor = self.cursor == Some(entry.id);
                    let img_rect = Rect::from_min_size(rect.min, Vec2::splat(cell.x));
                    let bg = if resp.hovered() {
                        ui.visuals().widgets.hovered.bg_fill
                    } else {
                        ui.visuals().extreme_bg_color
                    };
                    painter.rect_filled(img_rect, 4.0, bg);
                    let label_name = photos.label_name(entry);
                    let mut failed_reason = None;
                    match thumbs.get(&entry.path) {
                        Thumb::Ready(t) => {
                            widgets::paint_texture_fit(ui, img_rect.shrink(2.0), t);
                            if !self.drawn_first {
                                self.drawn_first = true;
                                tracing::debug!(photos = self.view.len(), "first thumbnail drawn");
                            }
                        }
                        Thumb::Loading => {
                            painter.text(
                                img_rect.center(),
                                Align2::CENTER_CENTER,
                                "…",
                                FontId::proportional(18.0),
                                ui.visuals().weak_text_color(),
                            );
                        }
                        Thumb::Failed(reason) => {
                            widgets::paint_broken(ui, img_rect.shrink(2.0));
                            let galley = painter.layout(
                                reason.clone(),
                                FontId::proportional(10.0),
                                ui.visuals().error_fg_color,
                                img_rect.width() - 10.0,
                            );
                            painter.galley(
                                Pos2::new(img_rect.left() + 5.0, img_rect.bottom() - galley.size().y - 4.0),
                                galley,
                                Color32::WHITE,
                            );
                            failed_reason = Some(reason);
                        }
                    }
                    // True label: a coloured tab on the left edge.
                    let tab = Rect::from_min_size(img_rect.min + Vec2::new(0.0, 6.0), Vec2::new(4.0, 22.0));
                    painter.rect_filled(tab, 1.0, widgets::class_color(label_name));
                    // Prediction badge.
                    if let (Some(pred), Some(conf)) = (photos.predicted_name(entry), photos.confidence(entry)) {
                        let wrong = photos.is_wrong(entry);
                        let text = format!("{} {:.0}%", short_class(pred), conf * 100.0);
                        let galley = painter.layout_no_wrap(text, FontId::proportional(11.0), Color32::WHITE);
                        let size = galley.size() + Vec2::new(8.0, 2.0);
                        let badge =
                            Rect::from_min_size(Pos2::new(img_rect.right() - size.x - 3.0, img_rect.top() + 3.0), size);
                        painter.rect_filled(badge, 3.0, widgets::class_color(pred).gamma_multiply(0.92));
                        painter.galley(badge.min + Vec2::new(4.0, 1.0), galley, Color32::WHITE);
                        if wrong {
                            painter.rect_stroke(
                                img_rect,
                                4.0,
                                Stroke::new(2.0, Color32::from_rgb(235, 80, 60)),
                                StrokeKind::Inside,
                            );
                        }
                    }
                    if entry.split == Some(Split::Train) {
                        let galley =
                            painter.layout_no_wrap("train".into(), FontId::proportional(9.5), Color32::from_gray(230));
                        let size = galley.size() + Vec2::new(6.0, 0.0);
                        let r = Rect::from_min_size(
                            Pos2::new(img_rect.left() + 3.0, img_rect.bottom() - size.y - 3.0),
                            size,
                        );
                        painter.rect_filled(r, 2.0, Color32::from_black_alpha(150));
                        painter.galley(r.min + Vec2::new(3.0, 0.0), galley, Color32::WHITE);
                    }
                    // Caption.
                    let name = entry.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    let caption = Rect::from_min_max(Pos2::new(rect.left(), img_rect.bottom()), rect.max);
                    let galley = painter.layout(
                        name.clone(),
                        FontId::proportional(11.0),
                        ui.visuals().text_color(),
                        f32::INFINITY,
                    );
                    let painter_c = painter.with_clip_rect(caption.intersect(painter.clip_rect()));
                    painter_c.galley(
                        Pos2::new(caption.left() + 2.0, caption.center().y - galley.size().y / 2.0),
                        galley,
                        Color32::WHITE,
                    );
                    if selected || is_cursor {
                        let c = ui.visuals().selection.stroke.color;
                        painter.rect_stroke(
                            rect.expand(2.0),
                            5.0,
                            Stroke::new(if is_cursor { 3.0 } else { 2.0 }, c),
                            StrokeKind::Outside,
                        );
                    }
                    resp.on_hover_ui(|ui| {
                        ui.label(egui::RichText::new(&name).strong());
                        ui.label(format!("Label: {label_name}"));
                        if let (Some(p), Some(c)) = (photos.predicted_name(entry), photos.confidence(entry)) {
                            ui.label(format!("Predicted: {p} ({:.1}%)", c * 100.0));
                        }
                        if let Some(s) = entry.split {
                            ui.label(format!("Split: {}", s.name()));
                        }
                        if let Some(r) = &failed_reason {
                            ui.colored_label(ui.visuals().error_fg_color, r);
                        }
                    });
                }
            }
        });
        self.offset = out.state.clamped_offset().y;
        self.viewport_h = out.inner_rect.height();
        if let Some((pos, m)) = clicked {
            self.click(photos, pos, m);
        }
        clicked.is_some()
    }
}

/// A short form of a class name for badges ("male" stays, long names are cut).
fn short_class(name: &str) -> String {
    if name.chars().count() <= 7 { name.to_string() } else { name.chars().take(6).collect::<String>() + "…" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_core::dataset::{Dataset, Item};
    use std::path::PathBuf;

    fn photos(n: usize) -> Photos {
        let root = PathBuf::from("/d");
        Photos::from_dataset(&Dataset {
            root: root.clone(),
            classes: vec!["female".into(), "male".into()],
            items: (0..n).map(|i| Item { path: root.join(format!("female/{i:03}.jpg")), label: 0 }).collect(),
            ignored: Vec::new(),
        })
    }

    #[test]
    fn cursor_moves_clamp_and_shift_extends() {
        let p = photos(10);
        let mut g = Grid::default();
        g.refresh(&p, &Filters::default(), SortOrder::Name);
        g.move_cursor(&p, 1, false);
        assert_eq!(g.cursor, Some(0), "the first move focuses the first photo");
        g.move_cursor(&p, 1, false);
        g.move_cursor(&p, 1, true);
        assert_eq!(g.selected_ids(&p), vec![1, 2]);
        g.move_cursor(&p, 100, false);
        assert_eq!(g.cursor, Some(9));
        g.click(&p, 3, egui::Modifiers::NONE);
        g.click(&p, 5, egui::Modifiers::SHIFT);
        assert_eq!(g.selected_ids(&p), vec![3, 4, 5]);
        g.click(&p, 4, egui::Modifiers::COMMAND);
        assert_eq!(g.selected_ids(&p), vec![3, 5]);
    }

    #[test]
    fn the_selected_count_is_the_number_of_selected_ids_after_every_change() {
        let mut p = photos(20);
        let mut g = Grid::default();
        let all = Filters::default();
        let check = |g: &Grid, p: &Photos, want: usize| {
            assert_eq!(g.selected_ids(p).len(), want);
            assert_eq!(g.selected_count(), want);
        };
        g.refresh(&p, &all, SortOrder::Name);
        check(&g, &p, 0);
        g.move_cursor(&p, 1, false);
        check(&g, &p, 1);
        g.select_all(&p);
        check(&g, &p, 20);
        // Five selected photos move to another class and leave the filtered view.
        let f = Filters { class: Some("female".into()), ..Default::default() };
        g.refresh(&p, &f, SortOrder::Name);
        for id in 0..5 {
            p.moved(id, &PathBuf::from(format!("/d/male/{id:03}.jpg")));
        }
        g.refresh(&p, &f, SortOrder::Name);
        check(&g, &p, 15);
        g.clear_selection();
        check(&g, &p, 1);
    }

    #[test]
    fn focus_moves_on_when_the_focused_photo_leaves_the_view() {
        let mut p = photos(5);
        let mut g = Grid::default();
        let f = Filters { class: Some("female".into()), ..Default::default() };
        g.refresh(&p, &f, SortOrder::Name);
        g.focus(&p, 2);
        p.moved(2, std::path::Path::new("/d/male/002.jpg"));
        g.refresh(&p, &f, SortOrder::Name);
        assert_eq!(g.cursor, Some(3), "the next photo takes its place");
        assert_eq!(g.selected_ids(&p), vec![3]);
    }
}
