//! Journalled file moves for relabel and exclude: never a delete, undoable, and crash-safe.
//!
//! Each move is written to `<dataset>/.gender-classifier/journal.jsonl` as `begin` (fsynced) before the
//! rename and `done` after it. On open, a `begin` without `done` is completed if the file already sits at
//! its destination, or rolled back (nothing to do: the rename never happened) if it is still at its source.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, invalid};
use serde::{Deserialize, Serialize};

/// Hidden folder inside a dataset that holds the app's state (journal, review decisions).
pub const STATE_DIR: &str = ".gender-classifier";

/// One file move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    /// Where the file was.
    pub from: PathBuf,
    /// Where it went.
    pub to: PathBuf,
}

impl Move {
    /// The move that undoes this one.
    pub fn reversed(&self) -> Move {
        Move { from: self.to.clone(), to: self.from.clone() }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Record {
    Begin { id: u64, from: PathBuf, to: PathBuf },
    Done { id: u64 },
    Aborted { id: u64 },
}

/// What recovery did with moves interrupted by a crash.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Moves found finished on disk and marked done.
    pub completed: Vec<Move>,
    /// Moves that never happened and were marked aborted.
    pub rolled_back: Vec<Move>,
}

/// The move journal of one dataset folder.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    next_id: u64,
}

impl Journal {
    /// Opens (creating if needed) the journal of `dataset_root` and recovers interrupted moves.
    pub fn open(dataset_root: &Path) -> Result<(Self, Recovery)> {
        let dir = dataset_root.join(STATE_DIR);
        std::fs::create_dir_all(&dir)
            .io(|| format!("cannot create {} (is the dataset folder writable?)", dir.display()))?;
        let path = dir.join("journal.jsonl");
        let mut pending: Vec<(u64, Move)> = Vec::new();
        let mut next_id = 0;
        drop_torn_tail(&path)?;
        if let Ok(f) = File::open(&path) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                // A torn last line (crash mid-append) is ignored.
                let Ok(rec) = serde_json::from_str::<Record>(&line) else { continue };
                match rec {
                    Record::Begin { id, from, to } => {
                        next_id = next_id.max(id + 1);
                        pending.push((id, Move { from, to }));
                    }
                    Record::Done { id } | Record::Aborted { id } => pending.retain(|(p, _)| *p != id),
                }
            }
        }
        let mut journal = Self { path, next_id };
        let mut recovery = Recovery::default();
        for (id, mv) in pending {
            if !mv.from.exists() && mv.to.exists() {
                journal.append(&Record::Done { id })?;
                recovery.completed.push(mv);
            } else {
                journal.append(&Record::Aborted { id })?;
                recovery.rolled_back.push(mv);
            }
        }
        if !recovery.completed.is_empty() || !recovery.rolled_back.is_empty() {
            tracing::info!(?recovery, "recovered interrupted moves");
        }
        Ok((journal, recovery))
    }

    fn append(&mut self, rec: &Record) -> Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .io(|| format!("cannot write the move journal {}", self.path.display()))?;
        let mut line = serde_json::to_string(rec)?;
        line.push('\n');
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        Ok(())
    }

    /// Moves `from` into folder `to_dir`, keeping its name (adding ` (n)` if taken). Returns the move made.
    pub fn move_into(&mut self, from: &Path, to_dir: &Path) -> Result<Move> {
        let Some(name) = from.file_name() else { invalid!("{} has no file name", from.display()) };
        std::fs::create_dir_all(to_dir).io(|| format!("cannot create folder {}", to_dir.display()))?;
        let to = unique_destination(to_dir, Path::new(name));
        self.apply(&Move { from: from.to_path_buf(), to })
    }

    /// Performs one move (used for undo/redo too); refuses to overwrite anything.
    pub fn apply(&mut self, mv: &Move) -> Result<Move> {
        if !mv.from.exists() {
            invalid!("{} is no longer there (moved or renamed outside the app?); rescan the folder", mv.from.display());
        }
        if mv.to.exists() {
            invalid!("{} already exists; nothing was moved", mv.to.display());
        }
        let id = self.next_id;
        self.next_id += 1;
        self.append(&Record::Begin { id, from: mv.from.clone(), to: mv.to.clone() })?;
        if let Err(e) = std::fs::rename(&mv.from, &mv.to) {
            self.append(&Record::Aborted { id })?;
            return Err(e).io(|| format!("cannot move {} to {}", mv.from.display(), mv.to.display()));
        }
        self.append(&Record::Done { id })?;
        Ok(mv.clone())
    }
}

/// Cuts an unterminated last line (a crash mid-append); that record was never acted on.
fn drop_torn_tail(path: &Path) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else { return Ok(()) };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(keep as u64).io(|| format!("cannot repair the move journal {}", path.display()))?;
    f.sync_data()?;
    Ok(())
}

/// `dir/name`, or `dir/stem (n).ext` with the first free n.
fn unique_destination(dir: &Path, name: &Path) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let stem = name.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = name.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    (1..).map(|n| dir.join(format!("{stem} ({n}){ext}"))).find(|p| !p.exists()).unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn move_undo_and_name_clash_never_lose_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("male")).unwrap();
        std::fs::create_dir_all(root.join("female")).unwrap();
        std::fs::write(root.join("male/a.jpg"), b"one").unwrap();
        std::fs::write(root.join("female/a.jpg"), b"two").unwrap();
        let (mut j, _) = Journal::open(root).unwrap();
        let mv = j.move_into(&root.join("male/a.jpg"), &root.join("female")).unwrap();
        assert_eq!(mv.to, root.join("female/a (1).jpg"));
        assert_eq!(std::fs::read(root.join("female/a.jpg")).unwrap(), b"two");
        assert_eq!(std::fs::read(root.join("female/a (1).jpg")).unwrap(), b"one");
        j.apply(&mv.reversed()).unwrap();
        assert_eq!(std::fs::read(root.join("male/a.jpg")).unwrap(), b"one");
        let e = j.apply(&Move { from: root.join("male/a.jpg"), to: root.join("female/a.jpg") }).unwrap_err();
        assert!(e.to_string().contains("already exists"));
    }

    #[test]
    fn recovery_completes_or_rolls_back_interrupted_moves() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".gender-classifier")).unwrap();
        // Crash after rename (file at destination) and crash before rename (file at source), plus a torn line.
        std::fs::write(root.join("moved.jpg"), b"x").unwrap();
        std::fs::write(root.join("still.jpg"), b"y").unwrap();
        let log = format!(
            "{}\n{}\n{{\"op\":\"be",
            serde_json::json!({"op":"begin","id":0,"from":root.join("gone.jpg"),"to":root.join("moved.jpg")}),
            serde_json::json!({"op":"begin","id":1,"from":root.join("still.jpg"),"to":root.join("never.jpg")}),
        );
        std::fs::write(root.join(".gender-classifier/journal.jsonl"), log).unwrap();
        let (_, rec) = Journal::open(root).unwrap();
        assert_eq!(rec.completed.len(), 1);
        assert_eq!(rec.rolled_back.len(), 1);
        assert!(root.join("still.jpg").exists() && root.join("moved.jpg").exists());
        let (_, again) = Journal::open(root).unwrap();
        assert_eq!(again, Recovery::default(), "recovery is recorded and not redone");
    }
}
