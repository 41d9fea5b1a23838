//! Remembered review decisions: an image the user chose to keep does not come back for the same
//! finding until its bytes or its class change. Stored in `<dataset>/.gender-classifier/review.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, JsonContext, Result};
use serde::{Deserialize, Serialize};

use super::{Finding, FindingKind};

const FILE: &str = "review.json";

/// Decisions to keep images despite a finding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReviewLog {
    /// `kind:sha256:class` → when it was kept (RFC 3339).
    kept: BTreeMap<String, String>,
    #[serde(skip)]
    path: PathBuf,
}

fn key(kind: FindingKind, sha256: &str, class: &str) -> String {
    let kind = serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    format!("{kind}:{sha256}:{class}")
}

impl ReviewLog {
    /// Loads the log of a dataset folder (empty when there is none yet).
    pub fn open(dataset_root: &Path) -> Result<Self> {
        let path = dataset_root.join(crate::dataset::journal::STATE_DIR).join(FILE);
        let mut log: ReviewLog = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .damaged(|| format!("{} is damaged: delete it to forget past review decisions", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ReviewLog::default(),
            Err(e) => return Err(e).io(|| format!("cannot read {}", path.display())),
        };
        log.path = path;
        Ok(log)
    }

    /// Records that every image of `finding` is kept as it is, and saves atomically.
    pub fn keep(&mut self, finding: &Finding) -> Result<()> {
        let now = crate::model_file::now_rfc3339();
        for m in &finding.members {
            self.kept.insert(key(finding.kind, &m.sha256, &m.class), now.clone());
        }
        self.save()
    }

    /// True when the user already kept every image of `finding` for this kind of finding.
    pub fn is_kept(&self, finding: &Finding) -> bool {
        finding.members.iter().all(|m| self.kept.contains_key(&key(finding.kind, &m.sha256, &m.class)))
    }

    /// Number of remembered decisions.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// True when nothing was decided yet.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).io(|| format!("cannot create {}", dir.display()))?;
        }
        crate::durable::write_atomic(&self.path, &serde_json::to_vec_pretty(self)?, "review")
            .io(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Member;

    fn finding(sha: &str, class: &str) -> Finding {
        Finding {
            kind: FindingKind::LikelyWrongLabel,
            members: vec![Member { path: "x.jpg".into(), class: class.into(), sha256: sha.into() }],
            score: 0.9,
            reason: String::new(),
            suggested_class: None,
        }
    }

    #[test]
    fn kept_until_bytes_or_class_change_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ReviewLog::open(dir.path()).unwrap();
        assert!(!log.is_kept(&finding("aa", "male")));
        log.keep(&finding("aa", "male")).unwrap();
        let log = ReviewLog::open(dir.path()).unwrap();
        assert!(log.is_kept(&finding("aa", "male")));
        assert!(!log.is_kept(&finding("ab", "male")), "changed bytes come back");
        assert!(!log.is_kept(&finding("aa", "female")), "a relabelled image comes back");
        let mut other = finding("aa", "male");
        other.kind = FindingKind::Tiny;
        assert!(!log.is_kept(&other), "keeping is per kind of finding");
    }

    #[test]
    fn a_damaged_log_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(crate::dataset::journal::STATE_DIR);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(FILE), b"{not json").unwrap();
        let e = ReviewLog::open(dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("delete it"), "{e:#}");
    }
}
