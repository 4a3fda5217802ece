//! History walks and gc meeting: a walk reads node by node, so a gc can run between its
//! reads. What it then reports must be true: a node a gc removed is `RemovedDuringWalk`, a
//! store whose id index lost an entry is damage (`Corrupt`), a pruned line is a boundary.

use stategraph::{GcOptions, History, LogOptions, SqliteStateStore, StateData, StateStore};

use crate::sqlite_corruption::child_without_its_parent;
use crate::util::{meta, open_normal, raw, t};

/// Commits a child `d` of `c` and names it `main`.
fn main_on(s: &SqliteStateStore, c: stategraph::StateNodeId) -> stategraph::StateNodeId {
    let (_, d) = s
        .commit_state(
            vec![c],
            StateData::new(b"d".to_vec()),
            meta(t(3), Some("d")),
        )
        .unwrap();
    s.set_ref("main", None, &d).unwrap();
    d
}

/// Damages the id index of the store at `path` so that it no longer leads to `id`: flips a
/// bit of `id` where the index page holds it. The row itself stays as it was.
fn lose_index_entry(path: &std::path::Path, id: &stategraph::StateNodeId) {
    let page: i64 = raw(path)
        .query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'sqlite_autoindex_state_nodes_1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut file = std::fs::read(path).unwrap();
    let start = (page as usize - 1) * 4096;
    let at = file[start..start + 4096]
        .windows(32)
        .position(|w| w == id.as_bytes())
        .expect("id in index page")
        + start;
    file[at + 5] ^= 0x40;
    std::fs::write(path, file).unwrap();
}

/// A damaged id index that lost a shallow node's entry: a walk reaches the node by its seq
/// (read-ahead hint) and meets its missing parent. Asking the id index alone whether the
/// node is still stored said no, and the walk failed with RemovedDuringWalk ("nothing is
/// damaged, walk again") on a store no gc touched, every time. It is damage.
#[test]
fn a_walk_past_a_node_the_id_index_lost_reports_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let s = open_normal(&path);
    let pkg = child_without_its_parent();
    s.import_snapshot(&pkg).unwrap();
    let c = pkg.node_id;
    let d = main_on(&s, c);
    // Before damage: a boundary.
    let ok: Vec<_> = s.log(&LogOptions::new().from(d)).unwrap().collect();
    assert!(ok.iter().all(|r| r.is_ok()), "{ok:?}");
    drop(s);
    lose_index_entry(&path, &c);
    let s = open_normal(&path);
    let walk: Vec<_> = s.log(&LogOptions::new().from(d)).unwrap().collect();
    let err = walk.into_iter().find_map(|r| r.err());
    assert!(
        matches!(&err, Some(e) if e.is_corrupt()),
        "damage reported as a concurrent gc: {err:?}"
    );
}

/// A gc that fails with Corrupt (a bogus edge into a dead node) must leave no temporary
/// table or index behind: a second gc on the same handle, after the damage is repaired,
/// must work.
#[test]
fn a_gc_after_a_failed_gc_on_the_same_handle_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let s = open_normal(&path);
    let (_, kept) = s
        .commit_state(vec![], StateData::new(b"k".to_vec()), meta(t(1), None))
        .unwrap();
    s.set_ref("main", None, &kept).unwrap();
    let (_, dead) = s
        .commit_state(vec![], StateData::new(b"x".to_vec()), meta(t(2), None))
        .unwrap();
    let conn = raw(&path);
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    let seq = |id: &stategraph::StateNodeId| -> i64 {
        conn.query_row(
            "SELECT seq FROM state_nodes WHERE id = ?1",
            [id.as_bytes()],
            |r| r.get(0),
        )
        .unwrap()
    };
    let (ks, ds) = (seq(&kept), seq(&dead));
    conn.execute(
        "INSERT INTO node_children (parent, child) VALUES (?1, ?2)",
        [ds, ks],
    )
    .unwrap();
    let opts = GcOptions::new().grace(std::time::Duration::ZERO);
    let first = s.gc(&opts);
    assert!(matches!(&first, Err(e) if e.is_corrupt()), "{first:?}");
    conn.execute("DELETE FROM node_children WHERE parent = ?1", [ds])
        .unwrap();
    let second = s.gc(&opts);
    assert_eq!(second.expect("second gc").nodes_removed, 1);
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'gc_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

/// `descendants` leaves out a child that a gc removed after `children` listed it. A child
/// the id index lost (damage: `children` found its row) is an error, not a short answer.
#[test]
fn descendants_of_a_child_the_id_index_lost_report_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let s = open_normal(&path);
    let (_, c) = s
        .commit_state(vec![], StateData::new(b"c".to_vec()), meta(t(1), Some("c")))
        .unwrap();
    let d = main_on(&s, c);
    assert_eq!(s.descendants(&c).unwrap().count(), 1);
    drop(s);
    lose_index_entry(&path, &d);
    let s = open_normal(&path);
    let got: Vec<_> = s.descendants(&c).unwrap().collect();
    assert!(
        got.iter().any(|r| r.is_err()),
        "a short answer without an error: {got:?}"
    );
}

/// A prune while a walk runs: the walk either meets the new boundary below the kept line
/// (a shallow boundary: the node above it is still stored) or fails with RemovedDuringWalk
/// if it went down into what the prune removed. Never a wrong answer.
#[test]
fn a_walk_while_a_prune_cuts_its_history_never_answers_wrong() {
    use crate::history_util::{Counting, chain};
    for backend in 0..2 {
        for at in [2usize, 3, 5, 9, 12, 15, 20, 25] {
            let fixture = crate::history_util::sqlite();
            let memory = crate::history_util::memory();
            let inner: &dyn StateStore = if backend == 0 {
                &memory
            } else {
                &fixture.store
            };
            let main = chain(inner, 30, "main");
            inner.set_ref("main", None, &main[29]).unwrap();
            inner.snapshot(&main[20]).unwrap();
            let store = Counting::new(inner);
            store.take_reads();
            store.before_read(at, move || {
                let options = GcOptions::new()
                    .grace(std::time::Duration::ZERO)
                    .prune_history_before(
                        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
                    );
                let r = inner.gc(&options).unwrap();
                assert!(r.nodes_removed > 0);
            });
            let mut log = store.log(&LogOptions::new().from(main[29])).unwrap();
            let got: Vec<_> = log.by_ref().collect();
            let ok = got.iter().filter(|r| r.is_ok()).count();
            let err = got
                .iter()
                .find_map(|r| r.as_ref().err().map(|e| format!("{e:?}")));
            match &err {
                None => assert!(ok == 30 || (ok >= 10 && log.boundary().len() == 1), "{ok}"),
                Some(e) => assert!(e.starts_with("RemovedDuringWalk"), "{e}"),
            }
        }
    }
}
