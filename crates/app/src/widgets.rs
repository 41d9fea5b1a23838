//! Small drawing helpers shared by the panels: class colours, confidence bars, hints, placeholders.

use egui::{Color32, Pos2, Rect, RichText, Stroke, StrokeKind, Vec2};

/// The colour of a class name (female, male, anything else by hash).
pub fn class_color(name: &str) -> Color32 {
    match name.to_ascii_lowercase().as_str() {
        "female" | "woman" | "women" => Color32::from_rgb(222, 102, 160),
        "male" | "man" | "men" => Color32::from_rgb(78, 150, 230),
        _ => {
            let h = name.bytes().fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b)));
            let hue = (h % 360) as f32 / 360.0;
            egui::ecolor::Hsva::new(hue, 0.55, 0.85, 1.0).into()
        }
    }
}

/// A grey explanatory paragraph.
pub fn hint(ui: &mut egui::Ui, text: &str) {
    ui.label(RichText::new(text).weak());
}

/// A warning line in the theme's warning colour.
pub fn warning(ui: &mut egui::Ui, text: &str) {
    ui.label(RichText::new(text).color(ui.visuals().warn_fg_color));
}

/// A bar filled to `confidence` in the class colour with "class 93%" on it, in the theme's
/// strongest text colour so that it reads over the filled and the empty part alike.
pub fn confidence_bar(ui: &mut egui::Ui, class: &str, confidence: f32, width: f32) -> egui::Response {
    let color = class_color(class);
    let (fill, text) = if ui.visuals().dark_mode {
        (color.gamma_multiply(0.8), Color32::WHITE)
    } else {
        (color.gamma_multiply(0.45), ui.visuals().strong_text_color())
    };
    ui.add(
        egui::ProgressBar::new(confidence.clamp(0.0, 1.0))
            .desired_width(width)
            .fill(fill)
            .text(RichText::new(format!("{class} {:.0}%", confidence * 100.0)).color(text).strong()),
    )
}

/// Paints a texture centred in `rect`, keeping its aspect ratio.
pub fn paint_texture_fit(ui: &egui::Ui, rect: Rect, tex: egui::load::SizedTexture) -> Rect {
    let r = fit_rect(rect, tex.size);
    ui.painter().image(tex.id, r, Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)), Color32::WHITE);
    r
}

/// The largest rect of `size`'s aspect ratio centred in `outer`.
pub fn fit_rect(outer: Rect, size: Vec2) -> Rect {
    if size.x <= 0.0 || size.y <= 0.0 {
        return outer;
    }
    let scale = (outer.width() / size.x).min(outer.height() / size.y);
    Rect::from_center_size(outer.center(), size * scale)
}

/// The placeholder of a photo that cannot be read: a crossed box.
pub fn paint_broken(ui: &egui::Ui, rect: Rect) {
    let p = ui.painter();
    let c = ui.visuals().error_fg_color;
    p.rect_filled(rect, 4.0, c.gamma_multiply(0.12));
    p.rect_stroke(rect.shrink(1.0), 4.0, Stroke::new(1.0, c.gamma_multiply(0.6)), StrokeKind::Inside);
    let r = Rect::from_center_size(rect.center(), Vec2::splat(rect.width().min(rect.height()) * 0.3));
    p.line_segment([r.left_top(), r.right_bottom()], Stroke::new(2.0, c));
    p.line_segment([r.right_top(), r.left_bottom()], Stroke::new(2.0, c));
}

/// "1.2 MB" style sizes.
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.0} kB", n / 1e3)
    } else {
        format!("{n} bytes")
    }
}

/// "1 h 02 min", "3 min 05 s", "12 s".
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_readable() {
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_duration(3725.0), "1 h 02 min");
        assert_eq!(human_duration(65.0), "1 min 05 s");
        let r = fit_rect(Rect::from_min_size(Pos2::ZERO, Vec2::new(100.0, 100.0)), Vec2::new(200.0, 100.0));
        assert_eq!(r.size(), Vec2::new(100.0, 50.0));
    }
}
