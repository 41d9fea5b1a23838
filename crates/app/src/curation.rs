//! Relabel, exclude, undo and redo: journalled moves done by a worker thread that owns the
//! dataset's [`Journal`], plus the undo/redo stacks. Files are only ever moved (or copied in),
//! never deleted.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crossbeam_channel::Sender;

use gc_core::dataset::EXCLUDED_DIR;
use gc_core::dataset::journal::{Journal, Move, Recovery};

use super::photos::Photos;
use super::tasks::{Failure, Outcome, Runtime, Task};

/// A curation request from the UI.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Move these entries into class folder `class` (index into the classes).
    Relabel {
        /// Entry ids.
        ids: Vec<u64>,
        /// Target class index.
        class: usize,
    },
    /// Move these entries into `excluded/`.
    Exclude(Vec<u64>),
    /// Undo the last batch.
    Undo,
    /// Redo the last undone batch.
    Redo,
    /// Copy an outside photo into class folder `class` (never overwriting).
    CopyIn {
        /// The photo.
        from: PathBuf,
        /// Target class name.
        class: String,
    },
}

/// Moves done together and undone together.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// What it was, in words ("relabel 3 photos as male").
    pub what: String,
    /// The moves, with the entry each moved.
    pub moves: Vec<(u64, Move)>,
}

enum Job {
    Moves { kind: Kind, what: String, moves: Vec<(u64, Planned)> },
    Copy { from: PathBuf, to_dir: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Do,
    Undo,
    Redo,
}

enum Planned {
    Into(PathBuf, PathBuf),
    Exact(Move),
}

enum Reply {
    Opened(Outcome<Recovery>),
    Moved { kind: Kind, what: String, done: Vec<(u64, Move)>, errors: Vec<String> },
    Copied(PathBuf, Outcome<PathBuf>),
}

/// What the UI should tell the user after a curation step.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// Something worked.
    Info(String),
    /// Something did not.
    Error(String),
    /// A photo was copied into the dataset.
    CopiedIn {
        /// The outside photo.
        from: PathBuf,
        /// Its copy in the class folder.
        to: PathBuf,
    },
}

/// The curation worker and the undo/redo stacks of one dataset.
pub struct Curation {
    tx: Sender<Job>,
    task: Task<Reply, ()>,
    queue: VecDeque<Op>,
    busy: bool,
    ready: bool,
    undo: Vec<Batch>,
    redo: Vec<Batch>,
    root: PathBuf,
}

impl Curation {
    /// Starts the worker for the dataset at `root`; it opens the journal (recovering interrupted moves).
    pub fn open(root: &Path, rt: &Runtime) -> Self {
        let (tx, job_rx) = crossbeam_channel::unbounded::<Job>();
        let dir = root.to_path_buf();
        let task = rt.spawn("curation", move |worker: &gc_core::task::Job<Reply>| {
            let mut journal = match Journal::open(&dir) {
                Ok((j, rec)) => {
                    worker.report(Reply::Opened(Ok(rec)));
                    j
                }
                Err(e) => {
                    worker.report(Reply::Opened(Err(Failure::from(e))));
                    return;
                }
            };
            for job in job_rx.iter() {
                let reply = match job {
                    Job::Moves { kind, what, moves } => {
                        let mut done = Vec::new();
                        let mut errors = Vec::new();
                        for (id, m) in moves {
                            let r = match m {
                                Planned::Into(from, to_dir) => journal.move_into(&from, &to_dir),
                                Planned::Exact(mv) => journal.apply(&mv),
                            };
                            match r {
                                Ok(mv) => done.push((id, mv)),
                                Err(e) => errors.push(format!("{e:#}")),
                            }
                        }
                        Reply::Moved { kind, what, done, errors }
                    }
                    Job::Copy { from, to_dir } => {
                        let r = copy_into(&from, &to_dir);
                        Reply::Copied(from, r)
                    }
                };
                // A batch of moves always finishes; the owner gone, nothing is left to tell.
                if !worker.report(reply) {
                    return;
                }
            }
        });
        Self {
            tx,
            task,
            queue: VecDeque::new(),
            busy: true,
            ready: false,
            undo: Vec::new(),
            redo: Vec::new(),
            root: root.to_path_buf(),
        }
    }

    /// Queues a request; it runs after the ones before it.
    pub fn request(&mut self, op: Op) {
        self.queue.push_back(op);
    }

    /// True while something is queued or running.
    pub fn is_busy(&self) -> bool {
        self.busy || !self.queue.is_empty()
    }

    /// What Undo would undo.
    pub fn undo_label(&self) -> Option<&str> {
        self.undo.last().map(|b| b.what.as_str())
    }

    /// What Redo would redo.
    pub fn redo_label(&self) -> Option<&str> {
        self.redo.last().map(|b| b.what.as_str())
    }

    /// Applies finished work to `photos`, starts the next request, and returns notices for the user.
    /// Call once per frame.
    pub fn pump(&mut self, photos: &mut Photos, mut on_move: impl FnMut(&Path, &Path)) -> Vec<Notice> {
        let mut notices = Vec::new();
        let replies = match self.task.poll() {
            Ok(p) => p.progress,
            Err(panicked) => {
                notices.push(Notice::Error(format!("{panicked}; reopen the folder to go on")));
                self.ready = false;
                Vec::new()
            }
        };
        for reply in replies {
            self.busy = false;
            match reply {
                Reply::Opened(Ok(rec)) => {
                    self.ready = true;
                    if let Some(text) = describe_recovery(&rec) {
                        notices.push(Notice::Info(text));
                    }
                }
                Reply::Opened(Err(e)) => {
                    notices.push(Notice::Error(format!("curation is off for this folder: {e}")));
                }
                Reply::Moved { kind, what, done, errors } => {
                    for (id, mv) in &done {
                        on_move(&mv.from, &mv.to);
                        photos.moved(*id, &mv.to);
                    }
                    let n = done.len();
                    if n > 0 {
                        match kind {
                            Kind::Do => {
                                self.undo.push(Batch { what: what.clone(), moves: done });
                                self.redo.clear();
                                notices.push(Notice::Info(format!("{} (Ctrl+Z to undo)", capitalise(&what))));
                            }
                            Kind::Undo => {
                                let original: Vec<(u64, Move)> =
                                    done.into_iter().rev().map(|(id, m)| (id, m.reversed())).collect();
                                self.redo.push(Batch { what: what.clone(), moves: original });
                                notices.push(Notice::Info(format!("Undid: {what}")));
                            }
                            Kind::Redo => {
                                self.undo.push(Batch { what: what.clone(), moves: done });
                                notices.push(Notice::Info(format!("Redid: {what}")));
                            }
                        }
                    }
                    if !errors.is_empty() {
                        let more =
                            if errors.len() > 1 { format!(" (and {} more)", errors.len() - 1) } else { String::new() };
                        notices.push(Notice::Error(format!("{}{more}", errors[0])));
                    }
                }
                Reply::Copied(from, Ok(to)) => {
                    notices.push(Notice::Info(format!("Added a copy to the dataset as {}", short(&to, &self.root))));
                    notices.push(Notice::CopiedIn { from, to });
                }
                Reply::Copied(_, Err(e)) => notices.push(Notice::Error(e.to_string())),
            }
        }
        if !self.busy && self.ready {
            while let Some(op) = self.queue.pop_front() {
                if let Some(job) = self.plan(op, photos, &mut notices) {
                    if self.tx.send(job).is_ok() {
                        self.busy = true;
                    } else {
                        notices.push(Notice::Error("the curation worker stopped; reopen the folder".into()));
                    }
                    break;
                }
            }
        }
        notices
    }

    fn plan(&mut self, op: Op, photos: &Photos, notices: &mut Vec<Notice>) -> Option<Job> {
        match op {
            Op::Relabel { ids, class } => {
                let name = photos.classes.get(class)?.clone();
                let to_dir = self.root.join(&name);
                let moves: Vec<(u64, Planned)> = ids
                    .iter()
                    .filter_map(|&id| photos.by_id(id))
                    .filter(|e| e.label != Some(class))
                    .map(|e| (e.id, Planned::Into(e.path.clone(), to_dir.clone())))
                    .collect();
                if moves.is_empty() {
                    notices.push(Notice::Info(format!("Already labelled {name}")));
                    return None;
                }
                let what = format!("relabel {} as {name}", photos_word(moves.len()));
                Some(Job::Moves { kind: Kind::Do, what, moves })
            }
            Op::Exclude(ids) => {
                let to_dir = self.root.join(EXCLUDED_DIR);
                let moves: Vec<(u64, Planned)> = ids
                    .iter()
                    .filter_map(|&id| photos.by_id(id))
                    .filter(|e| e.label.is_some())
                    .map(|e| (e.id, Planned::Into(e.path.clone(), to_dir.clone())))
                    .collect();
                if moves.is_empty() {
                    return None;
                }
                let what = format!("exclude {} (moved to {EXCLUDED_DIR}/)", photos_word(moves.len()));
                Some(Job::Moves { kind: Kind::Do, what, moves })
            }
            Op::Undo => {
                let Some(batch) = self.undo.pop() else {
                    notices.push(Notice::Info("Nothing to undo".into()));
                    return None;
                };
                let moves = batch.moves.iter().rev().map(|(id, m)| (*id, Planned::Exact(m.reversed()))).collect();
                Some(Job::Moves { kind: Kind::Undo, what: batch.what, moves })
            }
            Op::Redo => {
                let Some(batch) = self.redo.pop() else {
                    notices.push(Notice::Info("Nothing to redo".into()));
                    return None;
                };
                let moves = batch.moves.iter().map(|(id, m)| (*id, Planned::Exact(m.clone()))).collect();
                Some(Job::Moves { kind: Kind::Redo, what: batch.what, moves })
            }
            Op::CopyIn { from, class } => Some(Job::Copy { from, to_dir: self.root.join(class) }),
        }
    }
}

fn photos_word(n: usize) -> String {
    if n == 1 { "1 photo".into() } else { format!("{n} photos") }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn short(path: &Path, root: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// The recovery report in words, or `None` when nothing was interrupted.
pub fn describe_recovery(rec: &Recovery) -> Option<String> {
    if rec.completed.is_empty() && rec.rolled_back.is_empty() {
        return None;
    }
    Some(format!(
        "The last session was interrupted during {} move(s): {} finished, {} rolled back. No photo was lost.",
        rec.completed.len() + rec.rolled_back.len(),
        rec.completed.len(),
        rec.rolled_back.len()
    ))
}

/// Copies `from` into `to_dir` under its own name (or `name (n).ext`), never overwriting:
/// the bytes go to a hidden temporary file first, which is then hard-linked into place
/// (a link fails instead of replacing an existing file).
pub fn copy_into(from: &Path, to_dir: &Path) -> Outcome<PathBuf> {
    let failed = |what: String| move |e: std::io::Error| Failure::Failed(format!("{what}: {e}"));
    let Some(name) = from.file_name() else {
        return Err(Failure::Failed(format!("{} has no file name", from.display())));
    };
    std::fs::create_dir_all(to_dir).map_err(failed(format!("cannot create folder {}", to_dir.display())))?;
    let tmp = to_dir.join(format!(".incoming-{}.tmp", std::process::id()));
    let placed = copy_then_place(from, to_dir, name, &tmp);
    // The temporary copy is ours; the original and the placed copy stay.
    let _ = std::fs::remove_file(&tmp);
    placed?.ok_or_else(|| Failure::Failed(format!("no free file name for {} in {}", from.display(), to_dir.display())))
}

/// Copies `from` to `tmp`, then links (or exclusively copies) it to the first free name in `to_dir`.
fn copy_then_place(from: &Path, to_dir: &Path, name: &std::ffi::OsStr, tmp: &Path) -> Outcome<Option<PathBuf>> {
    let failed = |what: String| move |e: std::io::Error| Failure::Failed(format!("{what}: {e}"));
    std::fs::copy(from, tmp).map_err(failed(format!("cannot copy {} into {}", from.display(), to_dir.display())))?;
    if let Ok(f) = std::fs::File::open(tmp) {
        let _ = f.sync_all();
    }
    let stem = Path::new(name).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = Path::new(name).extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    let mut result = None;
    for n in 0..10_000 {
        let candidate = if n == 0 { to_dir.join(name) } else { to_dir.join(format!("{stem} ({n}){ext}")) };
        match std::fs::hard_link(tmp, &candidate) {
            Ok(()) => {
                result = Some(candidate);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links on this file system: fall back to an exclusive create.
                if candidate.exists() {
                    continue;
                }
                let write = failed(format!("cannot write {}", candidate.display()));
                let mut out =
                    std::fs::OpenOptions::new().write(true).create_new(true).open(&candidate).map_err(&write)?;
                std::fs::File::open(tmp).and_then(|mut src| std::io::copy(&mut src, &mut out)).map_err(&write)?;
                out.sync_all().map_err(&write)?;
                result = Some(candidate);
                break;
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_in_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("x.jpg");
        std::fs::write(&src, b"new").unwrap();
        let class = dir.path().join("male");
        std::fs::create_dir(&class).unwrap();
        std::fs::write(class.join("x.jpg"), b"old").unwrap();
        let p = copy_into(&src, &class).unwrap();
        assert_eq!(p, class.join("x (1).jpg"));
        assert_eq!(std::fs::read(class.join("x.jpg")).unwrap(), b"old");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(src.exists(), "a copy, not a move");
        let leftovers: Vec<_> = std::fs::read_dir(&class)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }
}
