//! The app's side of "Review suspects": starting the audit and turning review keys into journalled moves.

use super::commands::{Command, Tab};
use super::curation::Op;
use super::tasks::{Failure, Outcome};
use super::{GenderApp, Level};
use gc_core::audit::FindingKind;
use gc_core::preprocess::PreprocessSpec;

impl GenderApp {
    /// Audits the open dataset in the background and shows the review tab.
    pub(super) fn start_review(&mut self) {
        let Some(p) = &self.data.photos else {
            self.say(Level::Warning, "Open a dataset folder first (one sub-folder per class), then review it");
            return;
        };
        let spec = PreprocessSpec::new(self.settings.train.backbone, self.settings.train.face_crop);
        let root = p.root.clone();
        self.review.accuracy_before = self
            .models
            .classifier
            .as_ref()
            .and_then(|c| c.model.meta.test_metrics.as_ref().map(|m| m.accuracy))
            .or_else(|| self.current_metrics().map(|m| m.accuracy));
        self.review.start(root.clone(), spec, &self.rt);
        self.shell.tab = Tab::Review;
        self.say(Level::Info, format!("Auditing {} for duplicates, likely wrong labels and outliers…", root.display()));
    }

    pub(super) fn audit_finished(&mut self, r: Outcome<usize>) {
        match r {
            Ok(0) => self.say(Level::Info, "The audit found nothing worth a look"),
            Ok(n) => {
                let hidden = self.review.hidden_as_kept;
                let mut text =
                    format!("The audit found {n} things worth a look: K keeps, R relabels as suggested, X excludes");
                if hidden > 0 {
                    text += &format!(" ({hidden} you kept before are hidden)");
                }
                self.say(Level::Info, text);
            }
            Err(Failure::Cancelled) => self.say(Level::Info, "Audit cancelled"),
            Err(e) => self.say(Level::Error, format!("Cannot audit the dataset: {e}")),
        }
    }

    /// In the review tab, turns grid keys into decisions on the finding shown; returns the command
    /// when it is not a review decision.
    pub(super) fn review_command(&mut self, c: Command) -> Option<Command> {
        if self.shell.tab != Tab::Review {
            return Some(c);
        }
        let (Some(f), Some(photos)) = (self.review.current().cloned(), self.data.photos.as_ref()) else {
            return Some(c);
        };
        let class_named = |name: &str| photos.classes.iter().position(|c| c.eq_ignore_ascii_case(name));
        let ids: Vec<u64> =
            f.members.iter().filter_map(|m| photos.index_of_path(&m.path).map(|i| photos.entries[i].id)).collect();
        let relabel = match &c {
            Command::RelabelMale => Some(class_named("male")),
            Command::RelabelFemale => Some(class_named("female")),
            Command::RelabelClass(i) if !f.kind.is_group() => Some((*i < photos.classes.len()).then_some(*i)),
            Command::ReviewRelabelSuggested => Some(f.suggested_class.as_deref().and_then(class_named)),
            _ => None,
        };
        let keep_only = match &c {
            Command::RelabelClass(i) | Command::ReviewKeepOnly(i) if f.kind.is_group() => Some(*i),
            _ => None,
        };
        if let Some(target) = relabel {
            let Some(class) = target else {
                self.say(Level::Warning, "No such class in this dataset: use the number keys or K to keep");
                return None;
            };
            let moving: Vec<u64> =
                ids.iter().copied().filter(|&id| photos.by_id(id).and_then(|e| e.label) != Some(class)).collect();
            let n = moving.len();
            if n > 0
                && let Some(cur) = &mut self.data.curation
            {
                cur.request(Op::Relabel { ids: moving, class });
            }
            let photos = self.data.photos.as_ref().expect("checked above");
            self.review.moved(photos, n, 0);
            return None;
        }
        if let Some(keep) = keep_only {
            if keep >= ids.len() {
                self.say(Level::Warning, format!("This group has {} photos; key {} has none", ids.len(), keep + 1));
                return None;
            }
            let others: Vec<u64> = ids.iter().enumerate().filter(|(i, _)| *i != keep).map(|(_, id)| *id).collect();
            let n = others.len();
            if let Some(cur) = &mut self.data.curation {
                cur.request(Op::Exclude(others));
            }
            let photos = self.data.photos.as_ref().expect("checked above");
            self.review.moved(photos, 0, n);
            return None;
        }
        match c {
            Command::Exclude => {
                let n = ids.len();
                if let Some(cur) = &mut self.data.curation {
                    cur.request(Op::Exclude(ids));
                }
                let photos = self.data.photos.as_ref().expect("checked above");
                self.review.moved(photos, 0, n);
                None
            }
            Command::ReviewKeep => {
                let photos = self.data.photos.as_ref().expect("checked above");
                if let Err(e) = self.review.keep(photos) {
                    self.say(Level::Error, format!("Cannot remember the decision: {e}"));
                }
                None
            }
            Command::Next | Command::Previous => {
                let photos = self.data.photos.as_ref().expect("checked above");
                self.review.step(photos, if c == Command::Next { 1 } else { -1 });
                None
            }
            other => Some(other),
        }
    }
}

/// The keys of the review, in words, for the finding kind shown.
pub(super) fn review_keys(kind: FindingKind) -> &'static str {
    if kind.is_group() {
        "1-9 keep that copy and exclude the others · K keep all · X exclude all · Right arrow skips, Left goes back"
    } else if kind == FindingKind::LikelyWrongLabel {
        "R relabel as suggested · K keep · X exclude · M/F relabel · Right arrow skips, Left goes back"
    } else {
        "K keep · X exclude · M/F relabel · Right arrow skips, Left goes back"
    }
}
