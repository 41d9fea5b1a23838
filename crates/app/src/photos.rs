//! The open dataset as the app sees it: every photo with its label, prediction and face count,
//! plus filtering, sorting and metrics over them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gc_core::dataset::split::Split;
use gc_core::dataset::{Dataset, EXCLUDED_DIR};
use gc_core::metrics::{Metrics, compute};

use super::state::{FaceFilter, Filters, SortOrder, SplitFilter};
use super::tasks::Predictions;

/// A prediction for one photo.
#[derive(Debug, Clone, PartialEq)]
pub struct Pred {
    /// Predicted class index in [`Photos::pred_classes`].
    pub class: usize,
    /// Probability per class, in [`Photos::pred_classes`] order.
    pub probs: Vec<f32>,
}

/// One photo of the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Stable id (survives moves).
    pub id: u64,
    /// Where the file is now.
    pub path: PathBuf,
    /// Class index in [`Photos::classes`]; `None` once excluded.
    pub label: Option<usize>,
    /// The latest prediction.
    pub pred: Option<Pred>,
    /// The split the current model's rule puts it in.
    pub split: Option<Split>,
    /// Faces found by the detector, when known.
    pub n_faces: Option<u32>,
}

/// The photos of the open dataset.
#[derive(Debug, Clone, Default)]
pub struct Photos {
    /// The dataset folder.
    pub root: PathBuf,
    /// Class (folder) names.
    pub classes: Vec<String>,
    /// Every photo, in scan order; excluded ones stay (label `None`) so undo can bring them back.
    pub entries: Vec<Entry>,
    /// Class names of the predictions (the model's classes).
    pub pred_classes: Vec<String>,
    by_path: HashMap<PathBuf, usize>,
    next_id: u64,
    /// Bumped on every change, so views know when to recompute.
    pub generation: u64,
    /// Counts per class, excluded and predicted, kept until the next change: the status bar and
    /// the panels ask for them every frame, and with 100,000 photos each count is a pass over all.
    summary: OnceLock<Summary>,
}

/// What [`Photos::counts`] and [`Photos::predicted_count`] answer.
#[derive(Debug, Clone)]
struct Summary {
    per_class: Vec<usize>,
    excluded: usize,
    predicted: usize,
}

impl Photos {
    /// The photos of a scanned dataset.
    pub fn from_dataset(ds: &Dataset) -> Self {
        let mut p = Photos { root: ds.root.clone(), classes: ds.classes.clone(), ..Default::default() };
        for item in &ds.items {
            p.push(item.path.clone(), Some(item.label));
        }
        p
    }

    fn push(&mut self, path: PathBuf, label: Option<usize>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.by_path.insert(path.clone(), self.entries.len());
        self.entries.push(Entry { id, path, label, pred: None, split: None, n_faces: None });
        self.changed();
        id
    }

    /// Adds a photo that appeared in a class folder (e.g. copied in from the classify panel).
    pub fn add(&mut self, path: PathBuf) -> Option<u64> {
        if self.by_path.contains_key(&path) {
            return None;
        }
        let label = self.label_of_location(&path)?;
        Some(self.push(path, label))
    }

    /// The entry index of a file.
    pub fn index_of_path(&self, path: &Path) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    /// The entry index of an id.
    pub fn index_of_id(&self, id: u64) -> Option<usize> {
        // Ids are assigned in push order and entries are never removed, so id == index.
        let i = id as usize;
        (self.entries.get(i).is_some_and(|e| e.id == id))
            .then_some(i)
            .or_else(|| self.entries.iter().position(|e| e.id == id))
    }

    /// The entry of an id.
    pub fn by_id(&self, id: u64) -> Option<&Entry> {
        self.index_of_id(id).map(|i| &self.entries[i])
    }

    /// Which class a path inside the dataset belongs to: `Some(Some(c))` for a class folder,
    /// `Some(None)` for `excluded/`, `None` for anywhere else.
    pub fn label_of_location(&self, path: &Path) -> Option<Option<usize>> {
        let parent = path.parent()?;
        if parent.parent()? != self.root {
            return None;
        }
        let name = parent.file_name()?.to_string_lossy();
        if name == EXCLUDED_DIR {
            return Some(None);
        }
        self.classes.iter().position(|c| *c == name).map(Some)
    }

    /// Records that the file of entry `id` moved to `to`; its label follows the folder.
    pub fn moved(&mut self, id: u64, to: &Path) {
        let Some(i) = self.index_of_id(id) else {
            return;
        };
        let label = self.label_of_location(to).unwrap_or(None);
        let old = std::mem::replace(&mut self.entries[i].path, to.to_path_buf());
        self.entries[i].label = label;
        self.by_path.remove(&old);
        self.by_path.insert(to.to_path_buf(), i);
        self.changed();
    }

    /// Marks a change: views recompute, the counts are counted again.
    fn changed(&mut self) {
        self.generation += 1;
        self.summary = OnceLock::new();
    }

    fn summary(&self) -> &Summary {
        self.summary.get_or_init(|| {
            let mut s = Summary { per_class: vec![0; self.classes.len()], excluded: 0, predicted: 0 };
            for e in &self.entries {
                match e.label {
                    Some(l) => s.per_class[l] += 1,
                    None => s.excluded += 1,
                }
                s.predicted += usize::from(e.pred.is_some() && e.label.is_some());
            }
            s
        })
    }

    /// Photos per class (excluded ones not counted), and the number excluded this session.
    pub fn counts(&self) -> (Vec<usize>, usize) {
        let s = self.summary();
        (s.per_class.clone(), s.excluded)
    }

    /// Replaces every prediction with `preds` (matched by path).
    pub fn set_predictions(&mut self, preds: &Predictions) {
        for e in &mut self.entries {
            e.pred = None;
            e.split = None;
        }
        self.pred_classes = preds.classes.clone();
        for row in &preds.rows {
            if let Some(&i) = self.by_path.get(&row.path) {
                let e = &mut self.entries[i];
                e.pred = Some(Pred { class: row.predicted, probs: row.probs.clone() });
                e.split = row.split;
                if row.n_faces.is_some() {
                    e.n_faces = row.n_faces;
                }
            }
        }
        self.changed();
    }

    /// Drops every prediction (e.g. when the model changes).
    pub fn clear_predictions(&mut self) {
        for e in &mut self.entries {
            e.pred = None;
            e.split = None;
        }
        self.changed();
    }

    /// Number of photos with a prediction.
    pub fn predicted_count(&self) -> usize {
        self.summary().predicted
    }

    /// The class name of an entry's label.
    pub fn label_name(&self, e: &Entry) -> &str {
        e.label.and_then(|l| self.classes.get(l)).map_or(EXCLUDED_DIR, String::as_str)
    }

    /// The predicted class name of an entry.
    pub fn predicted_name(&self, e: &Entry) -> Option<&str> {
        e.pred.as_ref().and_then(|p| self.pred_classes.get(p.class)).map(String::as_str)
    }

    /// Probability of the predicted class.
    pub fn confidence(&self, e: &Entry) -> Option<f32> {
        e.pred.as_ref().and_then(|p| p.probs.get(p.class).copied())
    }

    /// The true class as an index into the prediction classes.
    fn label_in_pred_space(&self, e: &Entry) -> Option<usize> {
        let name = self.classes.get(e.label?)?;
        self.pred_classes.iter().position(|c| c == name)
    }

    /// True when the prediction disagrees with the folder.
    pub fn is_wrong(&self, e: &Entry) -> bool {
        match (self.predicted_name(e), e.label) {
            (Some(p), Some(l)) => p != self.classes[l],
            _ => false,
        }
    }

    /// Cross-entropy of the true class (high = the label looks suspicious).
    pub fn loss(&self, e: &Entry) -> Option<f32> {
        let p = e.pred.as_ref()?;
        let prob = self.label_in_pred_space(e).and_then(|l| p.probs.get(l).copied()).unwrap_or(0.0);
        Some(-(prob.max(1e-7)).ln())
    }

    /// Indices of the entries that pass `f`, in `order`.
    pub fn filtered(&self, f: &Filters, order: SortOrder) -> Vec<usize> {
        let needle = f.name_contains.to_lowercase();
        let mut v: Vec<usize> = (0..self.entries.len())
            .filter(|&i| {
                let e = &self.entries[i];
                let Some(label) = e.label else { return false };
                if f.class.as_ref().is_some_and(|c| *c != self.classes[label]) {
                    return false;
                }
                if let Some(p) = &f.predicted
                    && self.predicted_name(e) != Some(p.as_str())
                {
                    return false;
                }
                if f.wrong_only && !self.is_wrong(e) {
                    return false;
                }
                if f.unpredicted_only && e.pred.is_some() {
                    return false;
                }
                if f.confidence != (0.0, 1.0) {
                    match self.confidence(e) {
                        Some(c) if c >= f.confidence.0 && c <= f.confidence.1 => {}
                        _ => return false,
                    }
                }
                let faces_ok = match f.faces {
                    FaceFilter::Any => true,
                    FaceFilter::NoFace => e.n_faces == Some(0),
                    FaceFilter::OneFace => e.n_faces == Some(1),
                    FaceFilter::SeveralFaces => e.n_faces.is_some_and(|n| n >= 2),
                };
                if !faces_ok || !f.split.accepts(e.split) {
                    return false;
                }
                if !needle.is_empty() {
                    let name = e.path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
                    if !name.contains(&needle) {
                        return false;
                    }
                }
                true
            })
            .collect();
        // Each key is computed once per photo, not once per comparison (100,000 photos: about
        // 1.7 million comparisons); the sorts are stable, so the order is that of comparing in place.
        let by_key = |v: &mut Vec<usize>, key: &dyn Fn(&Entry) -> Option<f32>, desc: bool| {
            let mut keyed: Vec<(Option<f32>, usize)> = v.iter().map(|&i| (key(&self.entries[i]), i)).collect();
            keyed.sort_by(|a, b| compare_keys(a.0, b.0, desc));
            *v = keyed.into_iter().map(|(_, i)| i).collect();
        };
        match order {
            SortOrder::Name => {
                // The index last: `v` is ascending, so ties keep their order as a stable sort would.
                let mut keyed: Vec<_> = v
                    .iter()
                    .map(|&i| {
                        let e = &self.entries[i];
                        (e.label, e.path.file_name(), i)
                    })
                    .collect();
                keyed.sort_unstable();
                v = keyed.into_iter().map(|(_, _, i)| i).collect();
            }
            SortOrder::ConfidenceAsc => by_key(&mut v, &|e| self.confidence(e), false),
            SortOrder::ConfidenceDesc => by_key(&mut v, &|e| self.confidence(e), true),
            SortOrder::Loss => by_key(&mut v, &|e| self.loss(e), true),
        }
        v
    }

    /// Metrics of the current predictions over the photos of `split` (None when nothing is predicted).
    ///
    /// Rows and columns are the model's classes; photos of folder classes the model lacks are skipped.
    pub fn metrics(&self, split: SplitFilter) -> Option<Metrics> {
        let mut probs = Vec::new();
        let mut labels = Vec::new();
        for e in &self.entries {
            let (Some(p), Some(l)) = (&e.pred, self.label_in_pred_space(e)) else {
                continue;
            };
            if !split.accepts(e.split) {
                continue;
            }
            probs.push(p.probs.clone());
            labels.push(l);
        }
        (!labels.is_empty()).then(|| compute(&self.pred_classes, &probs, &labels))
    }
}

/// The order of two sort keys: ascending, or descending with `desc`; photos without a key last.
fn compare_keys(a: Option<f32>, b: Option<f32>, desc: bool) -> std::cmp::Ordering {
    match (a, b) {
        (Some(x), Some(y)) => {
            if desc {
                y.total_cmp(&x)
            } else {
                x.total_cmp(&y)
            }
        }
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::PredictionRow;
    use gc_core::dataset::Item;

    fn sample() -> Photos {
        let root = PathBuf::from("/d");
        let ds = Dataset {
            root: root.clone(),
            classes: vec!["female".into(), "male".into()],
            items: vec![
                Item { path: root.join("female/a.jpg"), label: 0 },
                Item { path: root.join("female/b.jpg"), label: 0 },
                Item { path: root.join("male/c.jpg"), label: 1 },
                Item { path: root.join("male/d.jpg"), label: 1 },
            ],
            ignored: Vec::new(),
        };
        let mut p = Photos::from_dataset(&ds);
        let row = |name: &str, male: f32, faces: u32, split: Split| PredictionRow {
            path: root.join(name),
            predicted: usize::from(male > 0.5),
            probs: vec![1.0 - male, male],
            split: Some(split),
            n_faces: Some(faces),
        };
        p.set_predictions(&Predictions {
            classes: vec!["female".into(), "male".into()],
            rows: vec![
                row("female/a.jpg", 0.1, 1, Split::Test),
                row("female/b.jpg", 0.8, 2, Split::Train),
                row("male/c.jpg", 0.7, 0, Split::Test),
            ],
            failures: vec![],
        });
        p
    }

    fn names(p: &Photos, v: &[usize]) -> Vec<String> {
        v.iter().map(|&i| p.entries[i].path.file_name().unwrap().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn filters_pick_exactly_the_matching_photos() {
        let p = sample();
        let all = Filters::default();
        assert_eq!(names(&p, &p.filtered(&all, SortOrder::Name)), ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]);
        let f = Filters { wrong_only: true, ..all.clone() };
        assert_eq!(names(&p, &p.filtered(&f, SortOrder::Name)), ["b.jpg"]);
        let f = Filters { class: Some("female".into()), predicted: Some("male".into()), ..all.clone() };
        assert_eq!(names(&p, &p.filtered(&f, SortOrder::Name)), ["b.jpg"]);
        let f = Filters { unpredicted_only: true, ..all.clone() };
        assert_eq!(names(&p, &p.filtered(&f, SortOrder::Name)), ["d.jpg"]);
        let f = Filters { faces: FaceFilter::SeveralFaces, ..all.clone() };
        assert_eq!(names(&p, &p.filtered(&f, SortOrder::Name)), ["b.jpg"]);
        let f = Filters { faces: FaceFilter::NoFace, ..all.clone() };
        assert_eq!(names(&p, &p.filtered(&f, SortOrder::Name)), ["c.jpg"]);
        let f = Filters { confidence: (0.85, 1.0), ..all.clone() };
        assert_eq!(names(&p, &p.filtered(&f, SortOrder::Name)), ["a.jpg"]);
        let f = Filters { split: SplitFilter::Test, ..all.clone() };
        assert_eq!(names(&p, &p.filtered(&f, SortOrder::Name)), ["a.jpg", "c.jpg"]);
        let f = Filters { name_contains: "C.J".into(), ..all };
        assert_eq!(names(&p, &p.filtered(&f, SortOrder::Name)), ["c.jpg"]);
    }

    #[test]
    fn loss_sort_puts_the_most_suspicious_first_and_unpredicted_last() {
        let p = sample();
        let v = p.filtered(&Filters::default(), SortOrder::Loss);
        assert_eq!(names(&p, &v), ["b.jpg", "c.jpg", "a.jpg", "d.jpg"]);
        let v = p.filtered(&Filters::default(), SortOrder::ConfidenceAsc);
        assert_eq!(names(&p, &v)[0], "c.jpg");
    }

    #[test]
    fn sorting_by_keys_computed_once_gives_the_order_of_comparing_in_place() {
        // 400 photos over two classes, some unpredicted, confidences with many ties.
        let root = PathBuf::from("/d");
        let items: Vec<Item> = (0..400)
            .map(|i| Item {
                path: root.join(["female", "male"][i % 2]).join(format!("{}.jpg", (i * 37) % 401)),
                label: i % 2,
            })
            .collect();
        let mut p = Photos::from_dataset(&Dataset {
            root: root.clone(),
            classes: vec!["female".into(), "male".into()],
            items: items.clone(),
            ignored: Vec::new(),
        });
        let rows = items
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 7 != 3)
            .map(|(i, it)| {
                let male = ((i * 13) % 10) as f32 / 10.0;
                PredictionRow {
                    path: it.path.clone(),
                    predicted: usize::from(male > 0.5),
                    probs: vec![1.0 - male, male],
                    split: None,
                    n_faces: None,
                }
            })
            .collect();
        p.set_predictions(&Predictions { classes: vec!["female".into(), "male".into()], rows, failures: vec![] });
        let in_place = |key: &dyn Fn(&Entry) -> Option<f32>, desc: bool| -> Vec<usize> {
            let mut v: Vec<usize> = (0..p.entries.len()).collect();
            v.sort_by(|a, b| compare_keys(key(&p.entries[*a]), key(&p.entries[*b]), desc));
            v
        };
        let all = Filters::default();
        assert_eq!(p.filtered(&all, SortOrder::ConfidenceAsc), in_place(&|e| p.confidence(e), false));
        assert_eq!(p.filtered(&all, SortOrder::ConfidenceDesc), in_place(&|e| p.confidence(e), true));
        assert_eq!(p.filtered(&all, SortOrder::Loss), in_place(&|e| p.loss(e), true));
        let mut by_name: Vec<usize> = (0..p.entries.len()).collect();
        by_name.sort_by(|a, b| {
            let (ea, eb) = (&p.entries[*a], &p.entries[*b]);
            (ea.label, ea.path.file_name()).cmp(&(eb.label, eb.path.file_name()))
        });
        assert_eq!(p.filtered(&all, SortOrder::Name), by_name);
    }

    #[test]
    fn counts_follow_every_change() {
        let mut p = sample();
        assert_eq!((p.counts(), p.predicted_count()), ((vec![2, 2], 0), 3));
        let b = p.entries[1].id;
        p.moved(b, Path::new("/d/excluded/b.jpg"));
        assert_eq!((p.counts(), p.predicted_count()), ((vec![1, 2], 1), 2));
        p.add(PathBuf::from("/d/male/e.jpg"));
        assert_eq!(p.counts(), (vec![1, 3], 1));
        p.clear_predictions();
        assert_eq!(p.predicted_count(), 0);
        p.moved(b, Path::new("/d/male/b.jpg"));
        assert_eq!((p.counts(), p.predicted_count()), ((vec![1, 4], 0), 0));
    }

    #[test]
    fn moves_follow_the_folder_and_metrics_count_the_confusion() {
        let mut p = sample();
        let m = p.metrics(SplitFilter::All).unwrap();
        assert_eq!(m.confusion, vec![vec![1, 1], vec![0, 1]]);
        let id = p.entries[1].id;
        p.moved(id, Path::new("/d/male/b.jpg"));
        assert_eq!(p.entries[1].label, Some(1));
        assert_eq!(p.index_of_path(Path::new("/d/male/b.jpg")), Some(1));
        assert!(!p.is_wrong(&p.entries[1]));
        p.moved(id, Path::new("/d/excluded/b.jpg"));
        assert_eq!(p.entries[1].label, None);
        assert_eq!(p.counts(), (vec![1, 2], 1));
        assert_eq!(p.metrics(SplitFilter::Test).unwrap().count, 2);
    }
}
