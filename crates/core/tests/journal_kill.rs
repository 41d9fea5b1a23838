//! The journal under a real `kill -9`: a child process (this test binary, re-run) moves ~200 photos
//! between two class folders in batches, undoing some, until the parent kills it at a random moment.
//! After recovery the class folders hold exactly the original photos (by sha256), and undoing the
//! whole undo history puts every photo back at its first path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gc_core::dataset::journal::{Journal, STATE_DIR};
use sha2::{Digest, Sha256};

/// Set in the child: the dataset folder to work on.
const CHILD_DATASET: &str = "GC_JOURNAL_KILL_DATASET";
/// Set in the child: the seed of its choices.
const CHILD_SEED: &str = "GC_JOURNAL_KILL_SEED";
const CLASSES: [&str; 2] = ["female", "male"];
const PHOTOS: usize = 200;
const ROUNDS: u64 = 10;

/// A small deterministic generator (xorshift64*), so a failing round can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn ready_marker(root: &Path) -> PathBuf {
    root.join(STATE_DIR).join("child-ready")
}

/// The child's work: batches of moves back and forth, some undone, until it is killed.
#[test]
fn journal_kill_child() {
    let Some(root) = std::env::var_os(CHILD_DATASET).map(PathBuf::from) else { return };
    let seed: u64 = std::env::var(CHILD_SEED).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut rng = Rng(seed | 1);
    gc_core::fault::setup_from_env();
    let (mut journal, _) = Journal::open(&root).unwrap();
    std::fs::write(ready_marker(&root), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if rng.below(3) == 0 {
            let Some(last) = journal.undo_history().unwrap().pop() else { continue };
            journal.start_batch(&format!("undo {}", last.label), Some(last.id)).unwrap();
            for mv in last.moves.iter().rev() {
                journal.apply(&mv.reversed()).unwrap();
            }
            continue;
        }
        let from = rng.below(2) as usize;
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(root.join(CLASSES[from])).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        let n = 1 + rng.below(20) as usize;
        let start = rng.below(files.len() as u64) as usize;
        let chosen: Vec<PathBuf> = files.iter().skip(start).take(n).cloned().collect();
        let to = CLASSES[1 - from];
        journal.start_batch(&format!("relabel {} photos as {to}", chosen.len()), None).unwrap();
        for f in chosen {
            journal.move_into(&f, &root.join(to)).unwrap();
        }
    }
}

fn sha(path: &Path) -> [u8; 32] {
    Sha256::digest(std::fs::read(path).unwrap()).into()
}

/// The sorted sha256 of every file in the class folders.
fn digests(root: &Path) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    for class in CLASSES {
        for e in std::fs::read_dir(root.join(class)).unwrap() {
            out.push(sha(&e.unwrap().path()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_killed_process_loses_and_duplicates_nothing() {
    if std::env::var_os(CHILD_DATASET).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut moves_seen = 0;
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let firsts = make_dataset(root, round);
        let original = digests(root);
        let seed = rng.next();
        let delay = Duration::from_millis(2 + rng.below(200));
        let mut child = spawn_child(&exe, root, seed, None);
        let started = Instant::now();
        while !ready_marker(root).exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("round {round}: the child exited early ({status}) before opening the journal");
            }
            assert!(started.elapsed() < Duration::from_secs(60), "round {round}: the child never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(delay);
        let still_running = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(still_running, "round {round}: the child stopped by itself (seed {seed})");
        moves_seen +=
            recover_and_check(root, &original, &firsts, &format!("round {round} (seed {seed}, delay {delay:?})"));
    }
    assert!(moves_seen > 0, "the children never moved anything; the test tests nothing");
}

/// A kill (abort, as sudden as `kill -9`) at each fault point of the journal, on its 40th pass.
#[cfg(feature = "failpoints")]
#[test]
fn a_kill_at_each_journal_fault_point_loses_and_duplicates_nothing() {
    if std::env::var_os(CHILD_DATASET).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for (round, point) in
        ["journal::batch", "journal::begin", "journal::begun", "journal::renamed"].into_iter().enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let firsts = make_dataset(root, round as u64);
        let original = digests(root);
        let mut child = spawn_child(&exe, root, 7 + round as u64, Some(&format!("{point}=39*off->return(abort)")));
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{point}: the fault point was never reached");
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(status.code(), None, "{point}: the child died at the fault point, by a signal");
        let seen = recover_and_check(root, &original, &firsts, point);
        assert!(seen > 0, "{point}: nothing was moved before the kill");
    }
}

/// Writes `PHOTOS` photos over the two class folders; returns each one's sha256 and first path.
fn make_dataset(root: &Path, round: u64) -> Vec<([u8; 32], PathBuf)> {
    let mut firsts = Vec::new();
    for (i, class) in (0..PHOTOS).map(|i| (i, CLASSES[i % 2])) {
        std::fs::create_dir_all(root.join(class)).unwrap();
        // Names repeat across the classes, so moves meet name clashes.
        let path = root.join(class).join(format!("p{:03}.jpg", i / 4));
        let path = if path.exists() { root.join(class).join(format!("p{:03}-{i}.jpg", i / 4)) } else { path };
        std::fs::write(&path, format!("photo {i} of round {round}").repeat(1 + i % 7)).unwrap();
        firsts.push((sha(&path), path));
    }
    firsts
}

fn spawn_child(exe: &Path, root: &Path, seed: u64, failpoints: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "journal_kill_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DATASET, root)
        .env(CHILD_SEED, seed.to_string())
        .env_remove("FAILPOINTS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(f) = failpoints {
        cmd.env("FAILPOINTS", f);
    }
    cmd.spawn().unwrap()
}

/// Recovers the journal after a kill and checks that the class folders hold exactly the original
/// photos, then that undoing the whole history puts each back at its first path. Returns the
/// number of moves the child began.
fn recover_and_check(root: &Path, original: &[[u8; 32]], firsts: &[([u8; 32], PathBuf)], what: &str) -> usize {
    let (mut journal, recovery) = Journal::open(root).unwrap();
    let journal_text = std::fs::read_to_string(root.join(STATE_DIR).join("journal.jsonl")).unwrap_or_default();
    let began = journal_text.matches("\"op\":\"begin\"").count();
    assert_eq!(digests(root), original, "{what}: {recovery:?}");
    while let Some(last) = journal.undo_history().unwrap().pop() {
        journal.start_batch("undo", Some(last.id)).unwrap();
        for mv in last.moves.iter().rev() {
            journal.apply(&mv.reversed()).unwrap();
        }
    }
    for (digest, path) in firsts {
        assert_eq!(&sha(path), digest, "{what}: {} is not back", path.display());
    }
    assert_eq!(digests(root), original, "{what}: after undoing everything");
    began
}
