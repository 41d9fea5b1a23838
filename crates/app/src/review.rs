//! "Review suspects": runs the dataset audit on a background thread, then walks its findings one
//! key per decision (keep, relabel, exclude; for duplicate groups, keep one and exclude the rest).
//! Kept findings are remembered in the dataset ([`ReviewLog`]) and do not come back.

use std::path::PathBuf;

use super::photos::Photos;
use super::tasks::{Failure, Outcome, Runtime, Task};
use gc_core::audit::review::ReviewLog;
use gc_core::audit::{AuditOptions, AuditReport, Finding, FindingKind, audit_dataset};
use gc_core::features::extract::Progress;
use gc_core::preprocess::PreprocessSpec;

type AuditTask = Task<Progress, Outcome<(AuditReport, ReviewLog)>>;

/// What the user decided so far in this review.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Findings kept as they are.
    pub kept: usize,
    /// Photos moved to another class.
    pub relabelled: usize,
    /// Photos moved to `excluded/`.
    pub excluded: usize,
}

impl Decisions {
    /// Photos changed (relabelled or excluded).
    pub fn changed(&self) -> usize {
        self.relabelled + self.excluded
    }
}

/// The review's state.
#[derive(Default)]
pub struct Review {
    task: Option<AuditTask>,
    /// Feature progress of the running audit.
    pub progress: Option<Progress>,
    /// The latest audit.
    pub report: Option<AuditReport>,
    log: Option<ReviewLog>,
    /// Index of the finding shown.
    pub pos: usize,
    /// Findings hidden because the user kept them before.
    pub hidden_as_kept: usize,
    /// Decisions of this review.
    pub decisions: Decisions,
    /// Test accuracy of the model in use when the review started (before cleaning).
    pub accuracy_before: Option<f64>,
    /// Test accuracy of the first model trained after cleaning.
    pub accuracy_after: Option<f64>,
    /// Why the audit failed.
    pub error: Option<String>,
}

impl Review {
    /// Starts (or restarts) the audit of the dataset at `root`.
    pub fn start(&mut self, root: PathBuf, spec: PreprocessSpec, rt: &Runtime) {
        let ctx = rt.ctx().clone();
        if let Some(t) = self.task.take() {
            t.cancel();
        }
        self.error = None;
        self.progress = None;
        self.task = Some(rt.spawn("audit", move |job| {
            let log = ReviewLog::open(&root).map_err(Failure::from)?;
            audit_dataset(
                &root,
                spec,
                &AuditOptions::default(),
                &ctx,
                &mut |p| _ = job.report(p.clone()),
                job.cancel_flag(),
            )
            .map(|r| (r, log))
            .map_err(Failure::from)
        }));
    }

    /// True while the audit runs.
    pub fn is_running(&self) -> bool {
        self.task.is_some()
    }

    /// Stops the running audit.
    pub fn cancel(&mut self) {
        if let Some(t) = &self.task {
            t.cancel();
        }
    }

    /// Collects the audit's progress; returns `Some(result)` once when it ends.
    pub fn poll(&mut self, photos: Option<&Photos>) -> Option<Outcome<usize>> {
        let t = self.task.as_mut()?;
        let polled = match t.poll() {
            Ok(p) => p,
            Err(e) => {
                self.task = None;
                return Some(Err(Failure::Failed(e.to_string())));
            }
        };
        if let Some(last) = polled.progress.into_iter().last() {
            self.progress = Some(last);
        }
        let done = polled.done?;
        self.task = None;
        self.progress = None;
        match done {
            Ok((mut report, log)) => {
                let before = report.findings.len();
                report.findings.retain(|f| !log.is_kept(f));
                self.hidden_as_kept = before - report.findings.len();
                let n = report.findings.len();
                self.report = Some(report);
                self.log = Some(log);
                self.pos = 0;
                self.decisions = Decisions::default();
                self.accuracy_after = None;
                if let Some(p) = photos {
                    self.settle(p, 1);
                }
                Some(Ok(n))
            }
            Err(e) => {
                self.error = Some(e.to_string());
                Some(Err(e))
            }
        }
    }

    /// The finding shown, if any.
    pub fn current(&self) -> Option<&Finding> {
        self.report.as_ref()?.findings.get(self.pos)
    }

    /// Number of findings in the queue.
    pub fn len(&self) -> usize {
        self.report.as_ref().map_or(0, |r| r.findings.len())
    }

    /// True when there is nothing to review.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when every member of finding `i` is still where, and in the class, the audit saw it.
    pub fn is_live(&self, i: usize, photos: &Photos) -> bool {
        let Some(f) = self.report.as_ref().and_then(|r| r.findings.get(i)) else {
            return false;
        };
        f.members.iter().all(|m| {
            photos.index_of_path(&m.path).is_some_and(|k| {
                let e = &photos.entries[k];
                e.path == m.path && e.label.map(|l| photos.classes[l].as_str()) == Some(m.class.as_str())
            })
        })
    }

    /// Moves to the nearest live finding in direction `step` (+1 or -1), starting at the current one.
    pub fn settle(&mut self, photos: &Photos, step: isize) {
        let n = self.len() as isize;
        let mut i = self.pos as isize;
        while (0..n).contains(&i) && !self.is_live(i as usize, photos) {
            i += step;
        }
        if (0..n).contains(&i) {
            self.pos = i as usize;
        } else if step > 0 {
            self.pos = self.len(); // past the end: all done
        } else {
            self.pos = 0;
            if !self.is_live(0, photos) {
                self.settle(photos, 1);
            }
        }
    }

    /// Shows the next (`step` = 1) or previous (-1) live finding.
    pub fn step(&mut self, photos: &Photos, step: isize) {
        if step > 0 {
            self.pos = (self.pos + 1).min(self.len());
        } else {
            self.pos = self.pos.saturating_sub(1);
        }
        self.settle(photos, step);
    }

    /// Remembers that the user keeps the current finding's photos as they are, then moves on.
    pub fn keep(&mut self, photos: &Photos) -> Outcome<()> {
        let (Some(f), Some(log)) = (self.current().cloned(), self.log.as_mut()) else {
            return Ok(());
        };
        log.keep(&f).map_err(Failure::from)?;
        self.decisions.kept += 1;
        self.step(photos, 1);
        Ok(())
    }

    /// Records `n` moved photos and moves on (the moves themselves go through curation).
    pub fn moved(&mut self, photos: &Photos, relabelled: usize, excluded: usize) {
        self.decisions.relabelled += relabelled;
        self.decisions.excluded += excluded;
        self.step(photos, 1);
    }

    /// Counts of findings per kind in the latest audit (kept ones excluded).
    pub fn counts(&self) -> Vec<(FindingKind, usize)> {
        FindingKind::ALL.iter().map(|&k| (k, self.report.as_ref().map_or(0, |r| r.count(k)))).collect()
    }

    /// Findings reviewed so far (the position in the queue).
    pub fn reviewed(&self) -> usize {
        self.pos.min(self.len())
    }
}
