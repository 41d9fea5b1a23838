//! The open dataset as the app shows it: its photos, the grid, thumbnails, the large view, the
//! curation worker, and the scan that opens a folder.

use std::path::PathBuf;

use gc_core::metrics::Metrics;

use crate::curation::Curation;
use crate::photos::Photos;
use crate::state::SplitFilter;
use crate::tasks::{self, Outcome, Runtime, Task};
use crate::{grid, thumbnails, viewer};

/// A folder scan: the folder and its photos, listed on the worker (100,000 of them take about
/// 130 ms to list, too long for a frame).
pub type ScanTask = Task<(), (PathBuf, Outcome<Photos>)>;

/// The open dataset and everything that shows or changes it.
pub struct DatasetView {
    /// The open dataset, once scanned.
    pub photos: Option<Photos>,
    /// The folder being opened.
    pub opening: Option<PathBuf>,
    /// Why the last folder could not be opened.
    pub open_error: Option<String>,
    /// The grid's view and selection.
    pub grid: grid::Grid,
    /// Thumbnail pool and caches.
    pub thumbs: thumbnails::Thumbnails,
    /// The large view.
    pub viewer: viewer::Viewer,
    /// Moves, undo and redo of the open dataset.
    pub curation: Option<Curation>,
    /// The running folder scan.
    pub scan: Option<ScanTask>,
    /// The folder to open on the first frame.
    pub initial_dir: Option<PathBuf>,
    /// Metrics of the current predictions, kept per (generation, split).
    pub metrics: Option<(u64, SplitFilter, Option<Metrics>)>,
}

impl DatasetView {
    /// An empty view whose workers run on `rt`; `initial_dir` opens on the first frame.
    pub fn new(rt: &Runtime, initial_dir: Option<PathBuf>) -> Self {
        Self {
            photos: None,
            opening: None,
            open_error: None,
            grid: grid::Grid::default(),
            thumbs: thumbnails::Thumbnails::new(2, Some(rt.ctx().thumbnails_dir()), rt),
            viewer: viewer::Viewer::new(rt),
            curation: None,
            scan: None,
            initial_dir,
            metrics: None,
        }
    }

    /// The metrics of the current predictions on `split` (computed once per change).
    pub fn metrics(&mut self, split: SplitFilter) -> Option<Metrics> {
        let photos = self.photos.as_ref()?;
        if let Some((g, s, m)) = &self.metrics
            && *g == photos.generation
            && *s == split
        {
            return m.clone();
        }
        let m = photos.metrics(split);
        self.metrics = Some((photos.generation, split, m.clone()));
        m
    }

    /// Starts scanning the folder `dir` in the background.
    pub fn open(&mut self, rt: &Runtime, dir: PathBuf) {
        self.opening = Some(dir.clone());
        self.open_error = None;
        self.scan = Some(rt.spawn("scan", move |_| {
            let r = tasks::scan_dataset(&dir).map(|ds| Photos::from_dataset(&ds));
            (dir, r)
        }));
    }

    /// The scanned dataset's photos once the scan ends, or the error to show (also kept in
    /// `open_error`).
    pub fn poll_scan(&mut self) -> Option<Result<Photos, String>> {
        let t = self.scan.as_mut()?;
        let done = match t.poll() {
            Ok(p) => p.done?,
            Err(e) => {
                self.scan = None;
                self.opening = None;
                return Some(Err(e.to_string()));
            }
        };
        self.scan = None;
        self.opening = None;
        let (dir, result) = done;
        Some(result.map_err(|e| {
            self.open_error = Some(e.to_string());
            format!("Cannot open {}: {e}", dir.display())
        }))
    }

    /// Shows a scanned dataset's `photos` in a fresh grid, with a curation worker on `rt`.
    /// Returns the counts per class in words ("12 female, 9 male").
    pub fn adopt(&mut self, rt: &Runtime, photos: Photos) -> String {
        self.grid.reset();
        self.thumbs.forget_failures();
        self.open_error = None;
        self.curation = Some(Curation::open(&photos.root, rt));
        let (counts, _) = photos.counts();
        let summary: Vec<String> = photos.classes.iter().zip(&counts).map(|(c, n)| format!("{n} {c}")).collect();
        self.photos = Some(photos);
        self.metrics = None;
        summary.join(", ")
    }

    /// True while the scan or the curation worker has work.
    pub fn is_busy(&self) -> bool {
        self.scan.is_some() || self.curation.as_ref().is_some_and(Curation::is_busy)
    }
}
