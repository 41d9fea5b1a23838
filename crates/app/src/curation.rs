//! Relabel, exclude, undo and redo: journalled moves done by a worker thread that owns the
//! dataset's [`Journal`], plus the undo/redo stacks. Files are only ever moved (or copied in),
//! never deleted.
//!
//! Every relabel, exclude, undo and redo is a batch in the journal, so the undo stack is read back
//! from it on open: Ctrl+Z works after a restart or a crash (the redo stack lives in memory only).
//! When another window or program has the dataset open, this one is read-only: relabel, exclude,
//! undo and redo are refused with a notice, and copies into the dataset still work.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use gc_core::dataset::EXCLUDED_DIR;
use gc_core::dataset::journal::{BatchId, Journal, Move, Recovery, UndoBatch};
use gc_core::error::Error;

use super::photos::Photos;
use super::tasks::{Failure, Outcome, Runtime, Task};

/// How long the worker waits for the dataset's lock, so that reopening a folder in this window
/// does not lose the race against its previous worker, which is still closing.
const LOCK_WAIT: Duration = Duration::from_secs(2);

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
    /// Its number in the journal, which the undo names; `None` for a batch to redo.
    pub id: Option<BatchId>,
    /// The moves, in the order they were made.
    pub moves: Vec<Move>,
}

enum Job {
    Moves { kind: Kind, what: String, undoes: Option<BatchId>, moves: Vec<Planned> },
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
    Opened(Outcome<(Recovery, Vec<UndoBatch>)>),
    ReadOnly(String),
    Moved { kind: Kind, what: String, batch: Option<BatchId>, done: Vec<Move>, errors: Vec<String> },
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
    read_only: bool,
    undo: Vec<Batch>,
    redo: Vec<Batch>,
    root: PathBuf,
}

/// How long a worker waits for the lock while an older worker of this process on the same
/// folder (a rescan or reopen) is still finishing its last batch.
const SAME_PROCESS_LOCK_WAIT: Duration = Duration::from_secs(120);

/// Dataset folders with a curation worker alive in this process, one entry per worker.
static WORKERS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Marks a curation worker alive for a folder from creation to drop.
struct Alive(PathBuf);

impl Alive {
    fn new(dir: &Path) -> Self {
        WORKERS.lock().unwrap_or_else(|e| e.into_inner()).push(dir.to_path_buf());
        Alive(dir.to_path_buf())
    }

    /// True while another worker of this process works on the same folder.
    fn others(&self) -> bool {
        WORKERS.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|d| **d == self.0).count() > 1
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        let mut w = WORKERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = w.iter().position(|d| *d == self.0) {
            w.swap_remove(i);
        }
    }
}

/// Opens the journal, waiting while another holder closes: up to [`LOCK_WAIT`] for another
/// program, and up to [`SAME_PROCESS_LOCK_WAIT`] while this process's previous worker finishes.
fn open_journal(dir: &Path, alive: &Alive) -> gc_core::error::Result<(Journal, Recovery)> {
    let start = Instant::now();
    loop {
        match Journal::open(dir) {
            Err(Error::Locked { .. })
                if start.elapsed() < LOCK_WAIT || (alive.others() && start.elapsed() < SAME_PROCESS_LOCK_WAIT) =>
            {
                std::thread::sleep(Duration::from_millis(50))
            }
            r => return r,
        }
    }
}

/// Runs one batch of moves as a journal batch; returns the batch number, the moves made and the errors.
fn run_moves(
    journal: &mut Journal,
    what: &str,
    undoes: Option<BatchId>,
    moves: Vec<Planned>,
) -> (Option<BatchId>, Vec<Move>, Vec<String>) {
    let batch = match journal.start_batch(what, undoes) {
        Ok(b) => b,
        Err(e) => return (None, Vec::new(), vec![format!("nothing was moved: {e:#}")]),
    };
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for m in moves {
        let r = match m {
            Planned::Into(from, to_dir) => journal.move_into(&from, &to_dir),
            Planned::Exact(mv) => journal.apply(&mv),
        };
        match r {
            Ok(mv) => done.push(mv),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    journal.end_batch();
    (Some(batch), done, errors)
}

impl Curation {
    /// Starts the worker for the dataset at `root`; it opens the journal (recovering interrupted moves)
    /// and reads the undo history back, or finds the dataset open elsewhere and stays read-only.
    pub fn open(root: &Path, rt: &Runtime) -> Self {
        let (tx, job_rx) = crossbeam_channel::unbounded::<Job>();
        let dir = root.to_path_buf();
        let task = rt.spawn("curation", move |worker: &gc_core::task::Job<Reply>| {
            // Declared first, so dropped last: after the journal has released the lock.
            let alive = Alive::new(&dir);
            let mut journal = match open_journal(&dir, &alive) {
                Ok((j, rec)) => match j.undo_history() {
                    Ok(history) => {
                        worker.report(Reply::Opened(Ok((rec, history))));
                        Some(j)
                    }
                    Err(e) => {
                        worker.report(Reply::Opened(Err(Failure::from(e))));
                        return;
                    }
                },
                Err(e @ Error::Locked { .. }) => {
                    tracing::info!(dataset = %dir.display(), "the dataset is open elsewhere; read-only here");
                    worker.report(Reply::ReadOnly(e.to_string()));
                    None
                }
                Err(e) => {
                    worker.report(Reply::Opened(Err(Failure::from(e))));
                    return;
                }
            };
            for job in job_rx.iter() {
                let reply = match job {
                    Job::Moves { kind, what, undoes, moves } => {
                        let (batch, done, errors) = match journal.as_mut() {
                            Some(j) => run_moves(j, &what, undoes, moves),
                            None => (None, Vec::new(), vec![read_only_refusal(&dir)]),
                        };
                        Reply::Moved { kind, what, batch, done, errors }
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
            read_only: false,
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

    /// True when another window or program has this dataset open, so nothing can be moved here.
    pub fn is_read_only(&self) -> bool {
        self.read_only
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
                Reply::Opened(Ok((rec, history))) => {
                    self.ready = true;
                    if let Some(text) = describe_recovery(&rec) {
                        notices.push(Notice::Info(text));
                    }
                    self.undo =
                        history.into_iter().map(|b| Batch { what: b.label, id: Some(b.id), moves: b.moves }).collect();
                }
                Reply::Opened(Err(e)) => {
                    notices.push(Notice::Error(format!("curation is off for this folder: {e}")));
                }
                Reply::ReadOnly(text) => {
                    self.ready = true;
                    self.read_only = true;
                    notices.push(Notice::Error(text));
                }
                Reply::Moved { kind, what, batch, done, errors } => {
                    for mv in &done {
                        on_move(&mv.from, &mv.to);
                        follow(photos, mv);
                    }
                    if !done.is_empty() {
                        match kind {
                            Kind::Do => {
                                self.undo.push(Batch { what: what.clone(), id: batch, moves: done });
                                self.redo.clear();
                                notices.push(Notice::Info(format!("{} (Ctrl+Z to undo)", capitalise(&what))));
                            }
                            Kind::Undo => {
                                let original: Vec<Move> = done.into_iter().rev().map(|m| m.reversed()).collect();
                                self.redo.push(Batch { what: what.clone(), id: None, moves: original });
                                notices.push(Notice::Info(format!("Undid: {what}")));
                            }
                            Kind::Redo => {
                                self.undo.push(Batch { what: what.clone(), id: batch, moves: done });
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
        if self.read_only && !matches!(op, Op::CopyIn { .. }) {
            notices.push(Notice::Error(read_only_refusal(&self.root)));
            return None;
        }
        match op {
            Op::Relabel { ids, class } => {
                let name = photos.classes.get(class)?.clone();
                let to_dir = self.root.join(&name);
                let moves: Vec<Planned> = ids
                    .iter()
                    .filter_map(|&id| photos.by_id(id))
                    .filter(|e| e.label != Some(class))
                    .map(|e| Planned::Into(e.path.clone(), to_dir.clone()))
                    .collect();
                if moves.is_empty() {
                    notices.push(Notice::Info(format!("Already labelled {name}")));
                    return None;
                }
                let what = format!("relabel {} as {name}", photos_word(moves.len()));
                Some(Job::Moves { kind: Kind::Do, what, undoes: None, moves })
            }
            Op::Exclude(ids) => {
                let to_dir = self.root.join(EXCLUDED_DIR);
                let moves: Vec<Planned> = ids
                    .iter()
                    .filter_map(|&id| photos.by_id(id))
                    .filter(|e| e.label.is_some())
                    .map(|e| Planned::Into(e.path.clone(), to_dir.clone()))
                    .collect();
                if moves.is_empty() {
                    return None;
                }
                let what = format!("exclude {} (moved to {EXCLUDED_DIR}/)", photos_word(moves.len()));
                Some(Job::Moves { kind: Kind::Do, what, undoes: None, moves })
            }
            Op::Undo => {
                let Some(batch) = self.undo.pop() else {
                    notices.push(Notice::Info("Nothing to undo".into()));
                    return None;
                };
                let moves = batch.moves.iter().rev().map(|m| Planned::Exact(m.reversed())).collect();
                Some(Job::Moves { kind: Kind::Undo, what: batch.what, undoes: batch.id, moves })
            }
            Op::Redo => {
                let Some(batch) = self.redo.pop() else {
                    notices.push(Notice::Info("Nothing to redo".into()));
                    return None;
                };
                let moves = batch.moves.iter().map(|m| Planned::Exact(m.clone())).collect();
                Some(Job::Moves { kind: Kind::Redo, what: batch.what, undoes: None, moves })
            }
            Op::CopyIn { from, class } => Some(Job::Copy { from, to_dir: self.root.join(class) }),
        }
    }
}

/// Records a move in `photos`: the entry at its source follows it; a file the photos did not list
/// (excluded in an earlier session, now brought back by undo) is added.
fn follow(photos: &mut Photos, mv: &Move) {
    match photos.index_of_path(&mv.from).map(|i| photos.entries[i].id) {
        Some(id) => photos.moved(id, &mv.to),
        None => {
            photos.add(mv.to.clone());
        }
    }
}

/// Why a read-only window refuses to move photos, and what to do.
fn read_only_refusal(root: &Path) -> String {
    format!(
        "{} is open in another window; this window is read-only, so nothing was moved: close the other window, \
         then reopen the folder here to relabel, exclude or undo",
        root.display()
    )
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

#[cfg(test)]
mod journal_tests {
    use super::*;
    use gc_core::dataset::Dataset;

    fn dataset() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (class, name) in [("female", "f0.jpg"), ("female", "f1.jpg"), ("female", "f2.jpg"), ("male", "m0.jpg")] {
            std::fs::create_dir_all(dir.path().join(class)).unwrap();
            std::fs::write(dir.path().join(class).join(name), name).unwrap();
        }
        dir
    }

    /// Pumps until the worker is idle; returns every notice. The deadline is a safety net against
    /// a hang, never what decides the test.
    fn settle(cur: &mut Curation, photos: &mut Photos) -> Vec<Notice> {
        let start = Instant::now();
        let mut notices = Vec::new();
        loop {
            notices.extend(cur.pump(photos, |_, _| {}));
            if !cur.is_busy() {
                return notices;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "curation never settled: {notices:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn runtime(dir: &Path) -> Runtime {
        Runtime::headless(gc_core::context::Context::cpu_with_cache(dir.join("cache")))
    }

    #[test]
    fn undo_works_after_a_restart_even_for_an_excluded_photo() {
        let dir = dataset();
        let (root, cache) = (dir.path().to_path_buf(), tempfile::tempdir().unwrap());
        let rt = runtime(cache.path());
        let mut photos = Photos::from_dataset(&Dataset::scan(&root).unwrap());
        let mut cur = Curation::open(&root, &rt);
        settle(&mut cur, &mut photos);
        let ids: Vec<u64> = photos.entries.iter().filter(|e| e.label == Some(0)).map(|e| e.id).take(2).collect();
        cur.request(Op::Relabel { ids: ids.clone(), class: 1 });
        settle(&mut cur, &mut photos);
        cur.request(Op::Exclude(vec![ids[0]]));
        settle(&mut cur, &mut photos);
        assert!(root.join("excluded/f0.jpg").exists());
        drop(cur);

        // A new session: the photos as a scan finds them, the undo stack from the journal.
        let mut photos = Photos::from_dataset(&Dataset::scan(&root).unwrap());
        let mut cur = Curation::open(&root, &rt);
        settle(&mut cur, &mut photos);
        assert_eq!(cur.undo_label(), Some("exclude 1 photo (moved to excluded/)"));
        cur.request(Op::Undo);
        let notices = settle(&mut cur, &mut photos);
        assert!(notices.contains(&Notice::Info("Undid: exclude 1 photo (moved to excluded/)".into())), "{notices:?}");
        assert!(root.join("male/f0.jpg").exists());
        assert_eq!(photos.counts().0, vec![1, 3], "the photo brought back is listed again");
        assert_eq!(cur.undo_label(), Some("relabel 2 photos as male"));
        cur.request(Op::Undo);
        settle(&mut cur, &mut photos);
        assert!(root.join("female/f0.jpg").exists() && root.join("female/f1.jpg").exists());
        assert_eq!(photos.counts().0, vec![3, 1]);
        assert_eq!(cur.undo_label(), None);
    }

    #[test]
    fn a_second_window_is_read_only_and_says_so_once() {
        let dir = dataset();
        let root = dir.path();
        let cache = tempfile::tempdir().unwrap();
        let rt = runtime(cache.path());
        let (_first, _) = Journal::open(root).unwrap();
        let mut photos = Photos::from_dataset(&Dataset::scan(root).unwrap());
        let mut cur = Curation::open(root, &rt);
        let notices = settle(&mut cur, &mut photos);
        assert!(cur.is_read_only());
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(matches!(&notices[0], Notice::Error(t) if t.contains("read-only")), "{notices:?}");
        assert!(settle(&mut cur, &mut photos).is_empty(), "the notice shows once");
        let id = photos.entries[0].id;
        for op in [Op::Relabel { ids: vec![id], class: 1 }, Op::Exclude(vec![id]), Op::Undo] {
            cur.request(op);
            let notices = settle(&mut cur, &mut photos);
            assert!(
                matches!(notices.as_slice(), [Notice::Error(t)] if t.contains("is open in another window; this window is read-only")),
                "{notices:?}"
            );
        }
        assert!(root.join("female/f0.jpg").exists(), "nothing moved");
    }
}
