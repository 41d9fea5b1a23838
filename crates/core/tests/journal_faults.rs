//! The journal's fault points (`cargo test -p gc-core --features failpoints --test journal_faults`):
//! a write that fails before the `begin`, after it, or after the rename leaves the photo in one place,
//! and the next open recovers the move and keeps it undoable.
#![cfg(feature = "failpoints")]

use gc_core::dataset::journal::{Journal, Move};

#[test]
fn a_failure_at_each_journal_fault_point_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for class in ["female", "male"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
    }
    let (from, to) = (root.join("female/a.jpg"), root.join("male/a.jpg"));
    std::fs::write(&from, b"a").unwrap();
    let scenario = fail::FailScenario::setup();
    // (point, the file moved?, moves completed by recovery, moves rolled back by recovery)
    for (point, moved, completed, rolled_back) in
        [("journal::begin", false, 0, 0), ("journal::begun", false, 0, 1), ("journal::renamed", true, 1, 0)]
    {
        let (mut j, _) = Journal::open(root).unwrap();
        j.start_batch("relabel 1 photo as male", None).unwrap();
        fail::cfg(point, "return").unwrap();
        let e = j.move_into(&from, &root.join("male")).unwrap_err();
        fail::remove(point);
        assert!(e.to_string().contains(point), "{e}");
        assert_eq!((from.exists(), to.exists()), (!moved, moved), "{point}");
        drop(j);
        let (mut j, rec) = Journal::open(root).unwrap();
        assert_eq!((rec.completed.len(), rec.rolled_back.len()), (completed, rolled_back), "{point}");
        let history = j.undo_history().unwrap();
        if moved {
            assert_eq!(history.len(), 1, "{point}");
            assert_eq!(history[0].moves, vec![Move { from: from.clone(), to: to.clone() }]);
            j.start_batch("undo", Some(history[0].id)).unwrap();
            j.apply(&history[0].moves[0].reversed()).unwrap();
        } else {
            assert!(history.is_empty(), "{point}: {history:?}");
        }
        assert!(from.exists() && !to.exists(), "{point}");
    }
    scenario.teardown();
}
