//! Unit tests of the move journal: moves, recovery, non-UTF-8 names, the lock and the undo history.

use super::*;

fn dataset() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for class in ["male", "female"] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
    }
    dir
}

fn journal_text(root: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(root.join(STATE_DIR).join(JOURNAL_FILE)).unwrap()).into_owned()
}

fn append_lines(root: &Path, lines: &[serde_json::Value]) {
    let mut f = OpenOptions::new().append(true).create(true).open(root.join(STATE_DIR).join(JOURNAL_FILE)).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

/// Undoes `batch` the way the app does: an undo batch naming it, the moves reversed in reverse order.
fn undo(j: &mut Journal, batch: &UndoBatch) {
    j.start_batch(&format!("undo {}", batch.label), Some(batch.id)).unwrap();
    for mv in batch.moves.iter().rev() {
        j.apply(&mv.reversed()).unwrap();
    }
}

#[test]
fn move_undo_and_name_clash_never_lose_a_file() {
    let dir = dataset();
    let root = dir.path();
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
    assert!(e.to_string().contains("already exists"), "{e}");
    assert_eq!(std::fs::read(root.join("female/a.jpg")).unwrap(), b"two");
}

#[test]
fn recovery_completes_or_rolls_back_interrupted_moves() {
    let dir = dataset();
    let root = dir.path();
    std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
    // Crash after rename (file at destination), before rename (file at source), between the link and
    // the unlink (the file under both names), plus a torn line.
    std::fs::write(root.join("moved.jpg"), b"x").unwrap();
    std::fs::write(root.join("still.jpg"), b"y").unwrap();
    std::fs::write(root.join("linked.jpg"), b"z").unwrap();
    std::fs::hard_link(root.join("linked.jpg"), root.join("male/linked.jpg")).unwrap();
    let log = format!(
        "{}\n{}\n{}\n{{\"op\":\"be",
        serde_json::json!({"op":"begin","id":0,"from":root.join("gone.jpg"),"to":root.join("moved.jpg")}),
        serde_json::json!({"op":"begin","id":1,"from":root.join("still.jpg"),"to":root.join("never.jpg")}),
        serde_json::json!({"op":"begin","id":2,"from":root.join("linked.jpg"),"to":root.join("male/linked.jpg")}),
    );
    std::fs::write(root.join(STATE_DIR).join(JOURNAL_FILE), log).unwrap();
    let (j, rec) = Journal::open(root).unwrap();
    assert_eq!(rec.completed.len(), 1);
    assert_eq!(rec.rolled_back.len(), 2);
    assert!(root.join("still.jpg").exists() && root.join("moved.jpg").exists() && root.join("linked.jpg").exists());
    assert!(!root.join("male/linked.jpg").exists(), "the half-made second name is gone");
    assert!(j.undo_history().unwrap().is_empty(), "moves outside batches are not undoable");
    drop(j);
    let (_, again) = Journal::open(root).unwrap();
    assert_eq!(again, Recovery::default(), "recovery is recorded and not redone");
}

#[cfg(unix)]
#[test]
fn a_non_utf8_name_moves_reopens_and_undoes() {
    use std::os::unix::ffi::OsStrExt;
    let dir = dataset();
    let root = dir.path();
    let name = std::ffi::OsStr::from_bytes(b"caf\xff.jpg");
    let from = root.join("male").join(name);
    std::fs::write(&from, b"bytes").unwrap();
    std::fs::write(root.join("female").join(name), b"other").unwrap();
    let (mut j, _) = Journal::open(root).unwrap();
    j.start_batch("relabel 1 photo as female", None).unwrap();
    let mv = j.move_into(&from, &root.join("female")).unwrap();
    assert_eq!(
        mv.to,
        root.join("female").join(std::ffi::OsStr::from_bytes(b"caf\xff (1).jpg")),
        "the name keeps its bytes"
    );
    assert_eq!(std::fs::read(&mv.to).unwrap(), b"bytes");
    assert!(journal_text(root).contains(",255,"), "{}", journal_text(root));
    drop(j);
    let (mut j, rec) = Journal::open(root).unwrap();
    assert_eq!(rec, Recovery::default());
    let history = j.undo_history().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].moves, vec![mv]);
    undo(&mut j, &history[0]);
    assert_eq!(std::fs::read(&from).unwrap(), b"bytes");
    assert_eq!(std::fs::read(root.join("female").join(name)).unwrap(), b"other");
    assert!(j.undo_history().unwrap().is_empty());
}

#[test]
fn a_second_open_is_read_only_until_the_first_closes() {
    let dir = dataset();
    let (first, _) = Journal::open(dir.path()).unwrap();
    let e = Journal::open(dir.path()).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e:?}");
    assert!(e.to_string().contains("read-only"), "{e}");
    drop(first);
    Journal::open(dir.path()).unwrap();
}

#[test]
fn undo_history_survives_a_restart_and_a_batch_cut_by_a_crash() {
    let dir = dataset();
    let root = dir.path();
    for i in 0..6 {
        std::fs::write(root.join(format!("male/{i}.jpg")), format!("photo {i}")).unwrap();
    }
    // An old journal's move, outside any batch.
    std::fs::write(root.join("female/old.jpg"), b"old").unwrap();
    std::fs::create_dir_all(root.join(STATE_DIR)).unwrap();
    append_lines(
        root,
        &[
            serde_json::json!({"op":"begin","id":0,"from":root.join("male/old.jpg"),"to":root.join("female/old.jpg")}),
            serde_json::json!({"op":"done","id":0}),
        ],
    );
    let (mut j, _) = Journal::open(root).unwrap();
    let a = j.start_batch("relabel 2 photos as female", None).unwrap();
    for i in 0..2 {
        j.move_into(&root.join(format!("male/{i}.jpg")), &root.join("female")).unwrap();
    }
    let b = j.start_batch("relabel 3 photos as female", None).unwrap();
    for i in 2..4 {
        j.move_into(&root.join(format!("male/{i}.jpg")), &root.join("female")).unwrap();
    }
    drop(j);
    // The crash: the third move's begin is durable and the rename happened, its `done` is not.
    append_lines(
        root,
        &[
            serde_json::json!({"op":"begin","id":99,"batch":b.0,"from":root.join("male/4.jpg"),"to":root.join("female/4.jpg")}),
        ],
    );
    std::fs::rename(root.join("male/4.jpg"), root.join("female/4.jpg")).unwrap();
    let (mut j, rec) = Journal::open(root).unwrap();
    assert_eq!(rec.completed.len(), 1);
    let history = j.undo_history().unwrap();
    let labels: Vec<_> = history.iter().map(|h| (h.id, h.label.as_str(), h.moves.len())).collect();
    assert_eq!(labels, vec![(a, "relabel 2 photos as female", 2), (b, "relabel 3 photos as female", 3)]);
    // Undo of b cut after one move: b keeps its first two moves.
    j.start_batch("relabel 3 photos as female", Some(b)).unwrap();
    j.apply(&history[1].moves[2].reversed()).unwrap();
    drop(j);
    let (mut j, _) = Journal::open(root).unwrap();
    let history = j.undo_history().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].moves, history_moves(root, 2..4));
    undo(&mut j, &history[1]);
    undo(&mut j, &history[0]);
    assert!(j.undo_history().unwrap().is_empty());
    for i in 0..6 {
        assert_eq!(std::fs::read(root.join(format!("male/{i}.jpg"))).unwrap(), format!("photo {i}").as_bytes());
    }
    assert!(root.join("female/old.jpg").exists());
}

fn history_moves(root: &Path, range: std::ops::Range<usize>) -> Vec<Move> {
    range.map(|i| Move { from: root.join(format!("male/{i}.jpg")), to: root.join(format!("female/{i}.jpg")) }).collect()
}

#[test]
fn a_refused_move_is_recorded_as_aborted_and_not_undoable() {
    let dir = dataset();
    let root = dir.path();
    std::fs::write(root.join("male/a.jpg"), b"a").unwrap();
    let (mut j, _) = Journal::open(root).unwrap();
    j.start_batch("relabel 1 photo as female", None).unwrap();
    let e = j.apply(&Move { from: root.join("male/none.jpg"), to: root.join("female/a.jpg") }).unwrap_err();
    assert!(e.to_string().contains("no longer there"), "{e}");
    assert!(j.undo_history().unwrap().is_empty());
    j.end_batch();
    j.move_into(&root.join("male/a.jpg"), &root.join("female")).unwrap();
    assert!(j.undo_history().unwrap().is_empty(), "a move outside a batch is not undoable");
}

#[test]
fn every_move_gets_its_own_id_and_ids_go_on_after_a_reopen() {
    let dir = dataset();
    let root = dir.path();
    for name in ["a.jpg", "b.jpg", "c.jpg"] {
        std::fs::write(root.join("male").join(name), name).unwrap();
    }
    {
        let (mut j, _) = Journal::open(root).unwrap();
        j.move_into(&root.join("male/a.jpg"), &root.join("female")).unwrap();
        j.move_into(&root.join("male/b.jpg"), &root.join("female")).unwrap();
    }
    let (mut j, _) = Journal::open(root).unwrap();
    j.move_into(&root.join("male/c.jpg"), &root.join("female")).unwrap();
    drop(j);
    let text = std::fs::read_to_string(root.join(STATE_DIR).join("journal.jsonl")).unwrap();
    let ids: Vec<u64> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["op"] == "begin")
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1, 2], "{text}");
}
