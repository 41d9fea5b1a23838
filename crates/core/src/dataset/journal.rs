//! Journalled file moves for relabel and exclude: never a delete, undoable across restarts, and crash-safe.
//!
//! Each move is written to `<dataset>/.gender-classifier/journal.jsonl` as `begin` (fsynced) before the
//! rename and `done` after it. On open, a `begin` without `done` is completed if the file already sits at
//! its destination, or rolled back if it is still at its source (a move cut between its hard link and its
//! unlink, see [`no_replace`](super::no_replace), loses its second name). One JSON object per line:
//!
//! - `{"op":"batch","batch":7,"label":"relabel 3 photos as female"}` starts a batch of moves that the
//!   user undoes together; an undo batch adds `"undoes":<batch>`.
//! - `{"op":"begin","id":12,"batch":7,"from":…,"to":…}`: a move about to happen. Paths are strings, or
//!   arrays of bytes when not UTF-8 ([`path_serde`](super::path_serde)).
//! - `{"op":"done","id":12}` / `{"op":"aborted","id":12}`: it happened / it did not.
//!
//! [`Journal::undo_history`] reads the batches back: every batch with finished moves (the finished part
//! of a batch a crash cut short included), minus the moves later undo batches reversed, oldest first.
//! Moves of journals written before batches existed (a `begin` without `batch`) are kept for recovery
//! but are not undoable.
//!
//! Only one [`Journal`] per dataset exists at a time: it holds `<dataset>/.gender-classifier/lock`
//! (`File::try_lock`) for its life, and a second [`Journal::open`] fails with [`Error::Locked`], so
//! another window or program can only read the dataset.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::no_replace::{rename_no_replace, same_file};
use super::path_serde;
use crate::error::{Error, IoContext, Result, invalid};
use crate::fault_point;

/// Hidden folder inside a dataset that holds the app's state (journal, review decisions).
pub const STATE_DIR: &str = ".gender-classifier";

const JOURNAL_FILE: &str = "journal.jsonl";
const LOCK_FILE: &str = "lock";

/// One file move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// Where the file was.
    #[serde(with = "path_serde")]
    pub from: PathBuf,
    /// Where it went.
    #[serde(with = "path_serde")]
    pub to: PathBuf,
}

impl Move {
    /// The move that undoes this one.
    pub fn reversed(&self) -> Move {
        Move { from: self.to.clone(), to: self.from.clone() }
    }
}

/// The number of a batch of moves in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BatchId(pub u64);

/// A batch the user can still undo, as [`Journal::undo_history`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoBatch {
    /// Its number, to name in the undo batch ([`Journal::start_batch`]).
    pub id: BatchId,
    /// What it was, in words ("relabel 3 photos as female").
    pub label: String,
    /// Its finished moves not yet undone, in the order they were made.
    pub moves: Vec<Move>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Record {
    Batch {
        batch: u64,
        label: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undoes: Option<u64>,
    },
    Begin {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        batch: Option<u64>,
        #[serde(with = "path_serde")]
        from: PathBuf,
        #[serde(with = "path_serde")]
        to: PathBuf,
    },
    Done {
        id: u64,
    },
    Aborted {
        id: u64,
    },
}

/// What recovery did with moves interrupted by a crash.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Moves found finished on disk and marked done.
    pub completed: Vec<Move>,
    /// Moves that never happened (or were cut before their unlink, and undone) and were marked aborted.
    pub rolled_back: Vec<Move>,
}

/// The move journal of one dataset folder, holding the dataset's lock.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    _lock: File,
    next_id: u64,
    next_batch: u64,
    batch: Option<u64>,
}

impl Journal {
    /// Opens (creating if needed) the journal of `dataset_root` and recovers interrupted moves.
    ///
    /// Fails with [`Error::Locked`] when another journal (window, process) has the dataset open.
    pub fn open(dataset_root: &Path) -> Result<(Self, Recovery)> {
        let dir = dataset_root.join(STATE_DIR);
        std::fs::create_dir_all(&dir)
            .io(|| format!("cannot create {} (is the dataset folder writable?)", dir.display()))?;
        let lock = lock(dataset_root, &dir.join(LOCK_FILE))?;
        let path = dir.join(JOURNAL_FILE);
        drop_torn_tail(&path)?;
        let mut pending: Vec<(u64, Move)> = Vec::new();
        let (mut next_id, mut next_batch) = (0, 0);
        for rec in read_records(&path)? {
            match rec {
                Record::Batch { batch, .. } => next_batch = next_batch.max(batch + 1),
                Record::Begin { id, from, to, .. } => {
                    next_id = next_id.max(id + 1);
                    pending.push((id, Move { from, to }));
                }
                Record::Done { id } | Record::Aborted { id } => pending.retain(|(p, _)| *p != id),
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .io(|| format!("cannot write the move journal {} (is the folder writable?)", path.display()))?;
        let mut journal = Self { path, file, _lock: lock, next_id, next_batch, batch: None };
        let recovery = journal.recover(pending)?;
        Ok((journal, recovery))
    }

    fn recover(&mut self, pending: Vec<(u64, Move)>) -> Result<Recovery> {
        let mut recovery = Recovery::default();
        for (id, mv) in pending {
            fault_point!("journal::recover");
            let (from, to) = (mv.from.symlink_metadata().is_ok(), mv.to.symlink_metadata().is_ok());
            if !from && to {
                self.append(&Record::Done { id })?;
                recovery.completed.push(mv);
                continue;
            }
            if from && to && same_file(&mv.from, &mv.to) {
                // Cut between the hard link and the unlink: the second name goes, the file stays.
                std::fs::remove_file(&mv.to).io(|| {
                    format!(
                        "cannot remove the half-made move {} (the photo stays at {})",
                        mv.to.display(),
                        mv.from.display()
                    )
                })?;
            } else if !from {
                tracing::warn!(from = %mv.from.display(), to = %mv.to.display(), "an interrupted move's file is gone from both places");
            }
            self.append(&Record::Aborted { id })?;
            recovery.rolled_back.push(mv);
        }
        if !recovery.completed.is_empty() || !recovery.rolled_back.is_empty() {
            tracing::info!(?recovery, "recovered interrupted moves");
        }
        Ok(recovery)
    }

    fn append(&mut self, rec: &Record) -> Result<()> {
        let mut line = serde_json::to_string(rec)?;
        line.push('\n');
        let what = || format!("cannot write the move journal {} (is the disk full?)", self.path.display());
        self.file.write_all(line.as_bytes()).io(what)?;
        self.file.sync_data().io(what)?;
        Ok(())
    }

    /// Starts a batch: the moves that follow belong to it until the next batch or [`Journal::end_batch`].
    /// `undoes` names the batch this one undoes, if it is an undo.
    pub fn start_batch(&mut self, label: &str, undoes: Option<BatchId>) -> Result<BatchId> {
        fault_point!("journal::batch");
        let batch = self.next_batch;
        self.append(&Record::Batch { batch, label: label.to_string(), undoes: undoes.map(|b| b.0) })?;
        self.next_batch += 1;
        self.batch = Some(batch);
        Ok(BatchId(batch))
    }

    /// Ends the current batch; moves made after it, outside any batch, cannot be undone from the journal.
    pub fn end_batch(&mut self) {
        self.batch = None;
    }

    /// Moves `from` into folder `to_dir`, keeping its name (adding ` (n)` if taken). Returns the move made.
    pub fn move_into(&mut self, from: &Path, to_dir: &Path) -> Result<Move> {
        let Some(name) = from.file_name() else { invalid!("{} has no file name", from.display()) };
        std::fs::create_dir_all(to_dir).io(|| format!("cannot create folder {}", to_dir.display()))?;
        let mut tries = 0;
        loop {
            let to = unique_destination(to_dir, Path::new(name));
            match self.apply(&Move { from: from.to_path_buf(), to: to.clone() }) {
                // Someone else took the free name between the check and the move: take the next one.
                Err(_) if tries < 8 && from.exists() && to.exists() => tries += 1,
                r => return r,
            }
        }
    }

    /// Performs one move (used for undo/redo too); never overwrites anything.
    pub fn apply(&mut self, mv: &Move) -> Result<Move> {
        if mv.from.symlink_metadata().is_err() {
            invalid!("{} is no longer there (moved or renamed outside the app?); rescan the folder", mv.from.display());
        }
        if mv.to.symlink_metadata().is_ok() {
            invalid!("{} already exists; nothing was moved", mv.to.display());
        }
        let id = self.next_id;
        self.next_id += 1;
        fault_point!("journal::begin");
        self.append(&Record::Begin { id, batch: self.batch, from: mv.from.clone(), to: mv.to.clone() })?;
        fault_point!("journal::begun");
        if let Err(e) = rename_no_replace(&mv.from, &mv.to) {
            self.append(&Record::Aborted { id })?;
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                invalid!("{} already exists; nothing was moved", mv.to.display());
            }
            return Err(e).io(|| format!("cannot move {} to {}", mv.from.display(), mv.to.display()));
        }
        if let Some(dir) = mv.to.parent()
            && let Err(e) = crate::durable::sync_dir(dir)
        {
            tracing::debug!(dir = %dir.display(), "cannot sync the folder after a move: {e}");
        }
        fault_point!("journal::renamed");
        self.append(&Record::Done { id })?;
        Ok(mv.clone())
    }

    /// The batches that can still be undone, oldest first (see the module doc).
    pub fn undo_history(&self) -> Result<Vec<UndoBatch>> {
        Ok(undo_history(read_records(&self.path)?))
    }
}

/// Takes the dataset's lock, or says that another window or program holds it.
fn lock(root: &Path, path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .io(|| format!("cannot create the lock file {} (is the dataset folder writable?)", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                what: format!(
                    "{} is open in another window or program; this window is read-only (relabel, exclude and undo \
                     are off): close the other one, then reopen the folder here to make changes",
                    root.display()
                ),
            });
        }
        // No locks on this file system (some network shares): go on without one.
        Err(TryLockError::Error(e)) => tracing::warn!(lock = %path.display(), "cannot lock the dataset: {e}"),
    }
    Ok(file)
}

/// Every readable record of the journal at `path` (none when it does not exist yet).
fn read_records(path: &Path) -> Result<Vec<Record>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).io(|| format!("cannot read the move journal {}", path.display())),
    };
    let mut records = Vec::new();
    for (n, line) in BufReader::new(f).split(b'\n').enumerate() {
        let line = line.io(|| format!("cannot read the move journal {}", path.display()))?;
        match serde_json::from_slice::<Record>(&line) {
            Ok(rec) => records.push(rec),
            Err(e) => tracing::warn!(journal = %path.display(), line = n + 1, "skipping a damaged journal line: {e}"),
        }
    }
    Ok(records)
}

/// The undoable batches recorded in `records`, oldest first.
fn undo_history(records: Vec<Record>) -> Vec<UndoBatch> {
    struct Entry {
        batch: UndoBatch,
        undoes: Option<u64>,
    }
    let mut batches: Vec<Entry> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut begun: HashMap<u64, (usize, Move)> = HashMap::new();
    for rec in records {
        match rec {
            Record::Batch { batch, label, undoes } => {
                index.insert(batch, batches.len());
                batches.push(Entry { batch: UndoBatch { id: BatchId(batch), label, moves: Vec::new() }, undoes });
            }
            Record::Begin { id, batch: Some(b), from, to } => {
                if let Some(&i) = index.get(&b) {
                    begun.insert(id, (i, Move { from, to }));
                }
            }
            Record::Begin { batch: None, .. } => {}
            Record::Aborted { id } => {
                begun.remove(&id);
            }
            Record::Done { id } => {
                let Some((i, mv)) = begun.remove(&id) else { continue };
                let undone = batches[i].undoes.and_then(|u| index.get(&u).copied());
                match undone {
                    Some(u) => {
                        // An undo's move takes the last matching move off the batch it undoes.
                        let back = mv.reversed();
                        let moves = &mut batches[u].batch.moves;
                        if let Some(j) = moves.iter().rposition(|m| *m == back) {
                            moves.remove(j);
                        }
                    }
                    None => batches[i].batch.moves.push(mv),
                }
            }
        }
    }
    batches.into_iter().filter(|e| e.undoes.is_none() && !e.batch.moves.is_empty()).map(|e| e.batch).collect()
}

/// Cuts an unterminated last line (a crash mid-append); that record was never acted on.
fn drop_torn_tail(path: &Path) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else { return Ok(()) };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let what = || format!("cannot repair the move journal {}", path.display());
    let f = OpenOptions::new().write(true).open(path).io(what)?;
    f.set_len(keep as u64).io(what)?;
    f.sync_data().io(what)?;
    Ok(())
}

/// `dir/name`, or `dir/stem (n).ext` with the first free n.
fn unique_destination(dir: &Path, name: &Path) -> PathBuf {
    let first = dir.join(name);
    if first.symlink_metadata().is_err() {
        return first;
    }
    let stem = name.file_stem().unwrap_or_default();
    let ext = name.extension();
    (1..)
        .map(|n| {
            let mut s = stem.to_os_string();
            s.push(format!(" ({n})"));
            if let Some(ext) = ext {
                s.push(".");
                s.push(ext);
            }
            dir.join(s)
        })
        .find(|p| p.symlink_metadata().is_err())
        .unwrap_or(first)
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
