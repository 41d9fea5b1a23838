//! Property test of the move journal: any mix of batches of moves, undos, crashes (before the rename,
//! after it, between a link and its unlink, in the middle of a batch or of an undo) and reopens keeps
//! every photo in the dataset exactly once, where a model of the moves says it is, with the undo history
//! the model expects; undoing the whole history then puts every photo back at its first path.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use gc_core::dataset::journal::{Journal, Move, STATE_DIR};
use proptest::prelude::*;

const FOLDERS: [&str; 3] = ["female", "male", "excluded"];
const PHOTOS: usize = 8;

#[derive(Debug, Clone)]
enum Op {
    /// One batch of moves (photo, folder); with `cut`, the process dies before that move.
    Batch { moves: Vec<(usize, usize)>, cut: Option<usize> },
    /// Undo the last batch; with `cut`, the process dies before that move of the undo.
    Undo { cut: Option<usize> },
    /// The process dies with a move's `begin` durable and the rename not done.
    CrashBeforeRename(usize, usize),
    /// The process dies after the rename, before `done`.
    CrashAfterRename(usize, usize),
    /// The process dies in the link fallback, between the hard link and the unlink.
    CrashAfterLink(usize, usize),
    /// Close and reopen.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let mv = || (0..PHOTOS, 0..FOLDERS.len());
    prop_oneof![
        4 => (prop::collection::vec(mv(), 1..4), prop::option::weighted(0.3, 0..4usize))
            .prop_map(|(moves, cut)| Op::Batch { moves, cut }),
        3 => prop::option::weighted(0.3, 0..4usize).prop_map(|cut| Op::Undo { cut }),
        1 => mv().prop_map(|(p, f)| Op::CrashBeforeRename(p, f)),
        1 => mv().prop_map(|(p, f)| Op::CrashAfterRename(p, f)),
        1 => mv().prop_map(|(p, f)| Op::CrashAfterLink(p, f)),
        1 => Just(Op::Reopen),
    ]
}

/// A batch in the model: its label and its moves as (photo, from folder, to folder).
type ModelBatch = (String, Vec<(usize, usize, usize)>);

/// The dataset, its open journal, and the model: each photo's folder and the undo stack.
struct World {
    root: PathBuf,
    journal: Option<Journal>,
    folder: Vec<usize>,
    stack: Vec<ModelBatch>,
    firsts: Vec<PathBuf>,
    n: u64,
}

fn content(p: usize) -> Vec<u8> {
    format!("photo {p}").into_bytes()
}

impl World {
    fn new(root: &Path) -> Self {
        let mut firsts = Vec::new();
        for f in FOLDERS {
            std::fs::create_dir_all(root.join(f)).unwrap();
        }
        for p in 0..PHOTOS {
            // Two photos share each name, one per class, so moves meet name clashes.
            let path = root.join(FOLDERS[p % 2]).join(format!("p{}.jpg", p / 2));
            std::fs::write(&path, content(p)).unwrap();
            firsts.push(path);
        }
        let (journal, _) = Journal::open(root).unwrap();
        let folder = (0..PHOTOS).map(|p| p % 2).collect();
        Self { root: root.to_path_buf(), journal: Some(journal), folder, stack: Vec::new(), firsts, n: 0 }
    }

    fn j(&mut self) -> &mut Journal {
        self.journal.as_mut().unwrap()
    }

    /// The crash: the journal is dropped with no clean-up, then reopened (recovery).
    fn crash_and_reopen(&mut self) -> gc_core::dataset::journal::Recovery {
        self.journal = None;
        let (j, rec) = Journal::open(&self.root).unwrap();
        self.journal = Some(j);
        rec
    }

    /// Every file under the folders, by content.
    fn files(&self) -> HashMap<Vec<u8>, Vec<PathBuf>> {
        let mut out: HashMap<Vec<u8>, Vec<PathBuf>> = HashMap::new();
        for f in FOLDERS {
            for e in std::fs::read_dir(self.root.join(f)).unwrap() {
                let path = e.unwrap().path();
                out.entry(std::fs::read(&path).unwrap()).or_default().push(path);
            }
        }
        out
    }

    fn path_of(&self, p: usize) -> PathBuf {
        self.files().remove(&content(p)).unwrap().remove(0)
    }

    fn folder_of(&self, path: &Path) -> usize {
        let name = path.parent().unwrap().file_name().unwrap();
        FOLDERS.iter().position(|f| *f == name).unwrap()
    }

    fn apply(&mut self, op: Op) {
        self.n += 1;
        match op {
            Op::Batch { moves, cut } => {
                let label = format!("batch {}", self.n);
                self.j().start_batch(&label, None).unwrap();
                let mut done = Vec::new();
                for (k, (p, to)) in moves.into_iter().enumerate() {
                    if cut == Some(k) {
                        self.crash_and_reopen();
                        break;
                    }
                    if self.folder[p] == to {
                        continue;
                    }
                    let from = self.path_of(p);
                    let dir = self.root.join(FOLDERS[to]);
                    self.j().move_into(&from, &dir).unwrap();
                    done.push((p, self.folder[p], to));
                    self.folder[p] = to;
                }
                if !done.is_empty() {
                    self.stack.push((label, done));
                }
            }
            Op::Undo { cut } => {
                let history = self.j().undo_history().unwrap();
                let Some(last) = history.last() else { return };
                self.j().start_batch(&format!("undo {}", last.label), Some(last.id)).unwrap();
                for (k, mv) in last.moves.iter().rev().enumerate() {
                    if cut == Some(k) {
                        self.crash_and_reopen();
                        break;
                    }
                    self.j().apply(&mv.reversed()).unwrap();
                    let (_, moves) = self.stack.last_mut().unwrap();
                    let (p, from, _) = moves.pop().unwrap();
                    self.folder[p] = from;
                }
                if self.stack.last().is_some_and(|(_, m)| m.is_empty()) {
                    self.stack.pop();
                }
            }
            Op::CrashBeforeRename(p, to) | Op::CrashAfterRename(p, to) | Op::CrashAfterLink(p, to) => {
                if self.folder[p] == to {
                    return;
                }
                let from = self.path_of(p);
                let dest = self.root.join(FOLDERS[to]).join(format!("c{}.jpg", self.n));
                self.journal = None;
                let (batch, id) = (1_000_000 + self.n, 1_000_000 + self.n);
                let label = format!("crash {}", self.n);
                append(
                    &self.root,
                    &[
                        serde_json::json!({"op":"batch","batch":batch,"label":label}),
                        serde_json::json!({"op":"begin","id":id,"batch":batch,"from":from,"to":dest}),
                    ],
                );
                match op {
                    Op::CrashAfterRename(..) => std::fs::rename(&from, &dest).unwrap(),
                    Op::CrashAfterLink(..) => std::fs::hard_link(&from, &dest).unwrap(),
                    _ => {}
                }
                let rec = self.crash_and_reopen();
                if matches!(op, Op::CrashAfterRename(..)) {
                    assert_eq!(rec.completed, vec![Move { from, to: dest }]);
                    self.stack.push((label, vec![(p, self.folder[p], to)]));
                    self.folder[p] = to;
                } else {
                    assert_eq!(rec.rolled_back, vec![Move { from, to: dest }]);
                }
            }
            Op::Reopen => {
                let rec = self.crash_and_reopen();
                assert!(rec.completed.is_empty() && rec.rolled_back.is_empty(), "{rec:?}");
            }
        }
    }

    /// Every photo exactly once, in its model folder, and the undo history the model expects.
    fn check(&mut self) {
        let files = self.files();
        assert_eq!(files.len(), PHOTOS, "{files:?}");
        for p in 0..PHOTOS {
            let paths = &files[&content(p)];
            assert_eq!(paths.len(), 1, "photo {p} at {paths:?}");
            assert_eq!(self.folder_of(&paths[0]), self.folder[p], "photo {p} at {paths:?}");
        }
        let history = self.j().undo_history().unwrap();
        let got: Vec<(String, usize)> = history.iter().map(|h| (h.label.clone(), h.moves.len())).collect();
        let want: Vec<(String, usize)> = self.stack.iter().map(|(l, m)| (l.clone(), m.len())).collect();
        assert_eq!(got, want);
    }

    /// Undoes the whole history: every photo is back at its first path.
    fn undo_all(&mut self) {
        while let Some(last) = self.j().undo_history().unwrap().pop() {
            self.j().start_batch("undo", Some(last.id)).unwrap();
            for mv in last.moves.iter().rev() {
                self.j().apply(&mv.reversed()).unwrap();
            }
        }
        for (p, first) in self.firsts.iter().enumerate() {
            assert_eq!(std::fs::read(first).unwrap(), content(p), "photo {p} is back at {}", first.display());
        }
        assert_eq!(self.files().len(), PHOTOS);
    }
}

fn append(root: &Path, lines: &[serde_json::Value]) {
    let path = root.join(STATE_DIR).join("journal.jsonl");
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

proptest! {
    // A fixed seed: the same 64 cases every run, so a failure reproduces (a failing case is also
    // kept in journal_props.proptest-regressions and replayed first).
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x006a_6f75_726e_616c),
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_photo_is_ever_lost_or_duplicated(ops in prop::collection::vec(op(), 1..14)) {
        let dir = tempfile::tempdir().unwrap();
        let mut world = World::new(dir.path());
        for op in ops {
            world.apply(op);
            world.check();
        }
        world.crash_and_reopen();
        world.check();
        world.undo_all();
    }
}
