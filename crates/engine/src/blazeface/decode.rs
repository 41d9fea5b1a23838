//! Decoding BlazeFace's raw rows: the 896 anchors, boxes and keypoints, scores, and greedy
//! non-maximum suppression.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::{INPUT_SIZE, NUM_ANCHORS, NUM_KEYPOINTS, RAW_COLS};

/// The 896 anchor centres `(x, y)` in pixels of the 256 input (human's `generateAnchors(256)`).
pub fn anchors() -> Vec<[f32; 2]> {
    anchor_table().to_vec()
}

fn anchor_table() -> &'static [[f32; 2]] {
    static ANCHORS: OnceLock<Vec<[f32; 2]>> = OnceLock::new();
    ANCHORS.get_or_init(|| {
        let mut v = Vec::with_capacity(NUM_ANCHORS);
        for (stride, per_cell) in [(16usize, 2usize), (32, 6)] {
            let cells = INPUT_SIZE / stride;
            for gy in 0..cells {
                for gx in 0..cells {
                    let a = [stride as f32 * (gx as f32 + 0.5), stride as f32 * (gy as f32 + 0.5)];
                    v.extend(std::iter::repeat_n(a, per_cell));
                }
            }
        }
        v
    })
}

/// One detected face.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Face probability (sigmoid of the logit).
    pub score: f32,
    /// `[x1, y1, x2, y2]`; from [`FaceDetector::detect`](super::FaceDetector::detect) in original image pixels (not clamped to
    /// the image), from [`decode`] in pixels of the 256 input.
    pub bbox: [f32; 4],
    /// Right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion (subject's
    /// sides: the right eye is on the image left), `(x, y)` in the same pixels as `bbox`.
    pub keypoints: [[f32; 2]; NUM_KEYPOINTS],
}

impl Detection {
    /// Intersection over union of the two boxes (0 when either is empty).
    pub fn iou(&self, other: &Detection) -> f32 {
        box_iou(&self.bbox, &other.bbox)
    }

    /// Box width and height.
    pub fn size(&self) -> (f32, f32) {
        (self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1])
    }

    /// human's face crop: a square around the box centre with side `scale * max(w, h)` (human uses
    /// 1.4), corners rounded to whole pixels: `[x1, y1, x2, y2]`, not clamped to the image.
    pub fn face_crop_box(&self, scale: f32) -> [f32; 4] {
        let [x1, y1, x2, y2] = self.bbox;
        let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
        let half = scale * (x2 - x1).max(y2 - y1) / 2.0;
        [(cx - half).round(), (cy - half).round(), (cx + half).round(), (cy + half).round()]
    }

    /// Maps coordinates: `x -> (x + dx) * sx`, `y -> (y + dy) * sy`.
    pub(super) fn mapped(mut self, dx: f32, dy: f32, sx: f32, sy: f32) -> Detection {
        self.bbox =
            [(self.bbox[0] + dx) * sx, (self.bbox[1] + dy) * sy, (self.bbox[2] + dx) * sx, (self.bbox[3] + dy) * sy];
        for k in &mut self.keypoints {
            *k = [(k[0] + dx) * sx, (k[1] + dy) * sy];
        }
        self
    }
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes (corner order within an axis does not matter).
pub fn box_iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let norm = |b: &[f32; 4]| [b[0].min(b[2]), b[1].min(b[3]), b[0].max(b[2]), b[1].max(b[3])];
    let (a, b) = (norm(a), norm(b));
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let union = area(&a) + area(&b) - inter;
    if union > 0.0 && inter.is_finite() { inter / union } else { 0.0 }
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Decodes raw rows (`896 * 17` values, row-major, as from [`BlazeFace::forward_raw`](super::BlazeFace::forward_raw)) into
/// detections in pixels of the 256 input, keeping those with `score >= min_score` (in anchor order).
///
/// Extra values beyond 896 rows are ignored; a shorter slice decodes the complete rows it holds.
pub fn decode(raw: &[f32], min_score: f32) -> Vec<Detection> {
    let anchors = anchor_table();
    raw.chunks_exact(RAW_COLS)
        .zip(anchors)
        .filter_map(|(r, &[ax, ay])| {
            let score = sigmoid(r[0]);
            if score.is_nan() || score < min_score {
                return None;
            }
            let (cx, cy, w, h) = (r[1] + ax, r[2] + ay, r[3], r[4]);
            let mut keypoints = [[0f32; 2]; NUM_KEYPOINTS];
            for (k, kp) in keypoints.iter_mut().enumerate() {
                *kp = [r[5 + 2 * k] + ax, r[6 + 2 * k] + ay];
            }
            Some(Detection { score, bbox: [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0], keypoints })
        })
        .collect()
}

/// Greedy hard NMS: by descending score, keep a detection unless its IoU with an already kept one
/// exceeds `iou_threshold`; at most `max_out` results, best first.
pub fn non_max_suppression(mut dets: Vec<Detection>, iou_threshold: f32, max_out: usize) -> Vec<Detection> {
    dets.retain(|d| d.score.is_finite() && d.bbox.iter().all(|v| v.is_finite()));
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::with_capacity(max_out.min(dets.len()));
    for d in dets {
        if kept.len() >= max_out {
            break;
        }
        if kept.iter().all(|k| k.iou(&d) <= iou_threshold) {
            kept.push(d);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_layout() {
        let a = anchors();
        assert_eq!(a.len(), NUM_ANCHORS);
        assert_eq!(a[0], [8.0, 8.0]);
        assert_eq!(a[1], [8.0, 8.0]);
        assert_eq!(a[2], [24.0, 8.0]);
        assert_eq!(a[512], [16.0, 16.0]);
        assert_eq!(a[895], [240.0, 240.0]);
    }
}
