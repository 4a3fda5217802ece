//! Garbage collection in a SQLite store (what is kept: see [`crate::gc`]).

use rusqlite::{Connection, params};
use time::OffsetDateTime;

use super::ops::{ABSENT_SEQ, decode_seqs, encode_seqs};
use super::schema::sql_error;
use crate::codec;
use crate::error::{Result, StateStoreError};
use crate::gc::{self, Cutoffs, GcReport};
use crate::id::StateDataRef;

mod steps;
pub(crate) use steps::{Plan, Progress, Step, plan, run as run_step};

/// Runs a collection inside the caller's transaction, in a savepoint of its own that a dry
/// run (or an error) rolls back.
pub(crate) fn collect(tx: &Connection, cut: Cutoffs) -> Result<GcReport> {
    let run = |sql: &str| {
        tx.execute_batch(sql)
            .map_err(sql_error("collecting garbage"))
    };
    run("SAVEPOINT gc")?;
    let result = collect_in(tx, cut);
    if tx.is_autocommit() {
        // Some failures (a full disk, an I/O error) make SQLite roll back the whole
        // transaction, savepoint and all: there is nothing left to roll back or release,
        // and the error to report is the one that did it.
        return Err(result.err().unwrap_or_else(|| {
            StateStoreError::Backend(crate::error::BackendError::new(
                "collecting garbage",
                "SQLite ended the transaction while collecting; nothing was removed",
            ))
        }));
    }
    if cut.dry_run || result.is_err() {
        // A failure to roll back must not hide the error that asked for it.
        if let Err(e) = run("ROLLBACK TO gc") {
            return Err(result.err().unwrap_or(e));
        }
    }
    run("RELEASE gc")?;
    result
}

/// Every node's seq, in order, with its parents (as indices into that order) and what its
/// state's age allows.
struct Nodes {
    seqs: Vec<i64>,
    /// `parents[starts[i]..starts[i + 1]]` are node `i`'s parents in order, [`ABSENT`] for
    /// one not stored here.
    starts: Vec<usize>,
    parents: Vec<u32>,
    /// Older than the grace period.
    old: Vec<bool>,
    /// Older than the history pruning cut.
    pruned: Vec<bool>,
    generations: Vec<u64>,
    /// The state each node holds, read for a dry run only (which counts states by it; a
    /// collection deletes them with SQL).
    data_refs: Vec<StateDataRef>,
}

/// A parent that is not stored here, in [`Nodes::parents`].
const ABSENT: u32 = u32::MAX;

impl Nodes {
    /// Reads every node, in one scan of the node table, and finds where `roots` are.
    fn read(tx: &Connection, cut: &Cutoffs, roots: &mut Roots) -> Result<Self> {
        let ctx = sql_error("reading the nodes to collect garbage");
        // The table itself, never an index: see [`Roots`].
        let mut stmt = tx
            .prepare(
                "SELECT seq, parent_seqs, data_ref, created_s, created_ns, generation, id
                 FROM state_nodes NOT INDEXED ORDER BY seq",
            )
            .map_err(&ctx)?;
        let mut rows = stmt.query([]).map_err(&ctx)?;
        let (mut seqs, mut old, mut pruned) = (Vec::new(), Vec::new(), Vec::new());
        let mut generations = Vec::new();
        let mut data_refs = Vec::new();
        // Each node's parent seqs, concatenated: `raw[raw_starts[i]..raw_starts[i + 1]]`.
        let (mut raw, mut raw_starts) = (Vec::new(), vec![0]);
        while let Some(row) = rows.next().map_err(&ctx)? {
            let seq: i64 = row.get(0).map_err(&ctx)?;
            let parent_seqs: Vec<u8> = row.get(1).map_err(&ctx)?;
            let data_ref: Vec<u8> = row.get(2).map_err(&ctx)?;
            let data_ref = <[u8; 16]>::try_from(data_ref.as_slice())
                .map(StateDataRef::from_bytes)
                .map_err(|_| corrupt(seq, "its data ref is not 16 bytes"))?;
            // A time that does not decode (fsck reports it) cannot make a node new.
            let created_at = codec::join_time(row.get(3).map_err(&ctx)?, row.get(4).map_err(&ctx)?)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            raw.extend(decode_seqs(&parent_seqs)?);
            raw_starts.push(raw.len());
            let id = row.get_ref(6).map_err(&ctx)?;
            if let Ok(id) = id.as_blob() {
                roots.found(id, seqs.len())?;
            }
            seqs.push(seq);
            generations.push(row.get::<_, i64>(5).map_err(&ctx)? as u64);
            old.push(cut.is_old_node(&data_ref, created_at));
            pruned.push(cut.is_pruned(&data_ref, created_at));
            if cut.dry_run {
                data_refs.push(data_ref);
            }
        }
        let mut nodes = Nodes {
            seqs,
            starts: Vec::with_capacity(raw_starts.len()),
            parents: Vec::with_capacity(raw.len()),
            old,
            pruned,
            generations,
            data_refs,
        };
        nodes.starts.push(0);
        for (i, window) in raw_starts.windows(2).enumerate() {
            for &parent in &raw[window[0]..window[1]] {
                if parent == ABSENT_SEQ {
                    nodes.parents.push(ABSENT);
                    continue;
                }
                let index = nodes.index(parent).ok_or_else(|| {
                    corrupt(
                        nodes.seqs[i],
                        &format!("its parent (row {parent}) is not stored"),
                    )
                })?;
                nodes.parents.push(index as u32);
            }
            nodes.starts.push(nodes.parents.len());
        }
        Ok(nodes)
    }

    fn index(&self, seq: i64) -> Option<usize> {
        self.seqs.binary_search(&seq).ok()
    }

    /// Node `i`'s parents in order, [`ABSENT`] for one not stored here.
    fn parents_of(&self, i: usize) -> &[u32] {
        &self.parents[self.starts[i]..self.starts[i + 1]]
    }

    /// Node `i`'s stored parents.
    fn stored_parents_of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.parents_of(i)
            .iter()
            .filter(|&&p| p != ABSENT)
            .map(|&p| p as usize)
    }
}

fn corrupt(seq: i64, detail: &str) -> StateStoreError {
    StateStoreError::corrupt(
        format!("node row {seq}"),
        format!("{detail}; garbage collection stopped and removed nothing"),
    )
}

/// An expired ref log entry, with `?1`/`?2` the cut's seconds and nanoseconds (both
/// `i64::MIN` when nothing expires, which no entry is before).
const EXPIRED: &str = "created_s < ?1 OR (created_s = ?1 AND created_ns < ?2)";

/// The ref log expiry cut as (seconds, nanoseconds) for [`EXPIRED`].
fn expiry(cut: &Cutoffs) -> (i64, i64) {
    match cut.ref_log_before {
        Some(Some(before)) => {
            let nanos = before.unix_timestamp_nanos();
            (
                nanos.div_euclid(1_000_000_000) as i64,
                nanos.rem_euclid(1_000_000_000) as i64,
            )
        }
        _ => (i64::MIN, i64::MIN),
    }
}

/// What gc keeps whatever its age: the nodes refs and snapshots name (and, within the grace
/// period, the ref log), read from their own tables, and matched to nodes while the node
/// table is scanned. No index is read to find them: a damaged index that lost a row would
/// make its node look unreachable, and the node would be deleted (the foreign key checks
/// that should stop that read the same indexes).
struct Roots {
    /// Node ids, sorted, with what names them ([`HEAD`], [`SNAPSHOT`], [`LOGGED`]) and the
    /// node's index once found.
    ids: Vec<([u8; 32], u8, Option<usize>)>,
}

const HEAD: u8 = 1;
const SNAPSHOT: u8 = 2;
const LOGGED: u8 = 4;

impl Roots {
    /// Reads them; ref log entries that `cut` expires name none (a real collection has
    /// deleted them by now, a dry run counts them as deleted).
    fn read(tx: &Connection, cut: &Cutoffs) -> Result<Self> {
        let ctx = sql_error("reading the roots to collect garbage");
        let mut ids: Vec<([u8; 32], u8, Option<usize>)> = Vec::new();
        let logged = |column: &str| {
            format!("SELECT {column} FROM ref_log NOT INDEXED WHERE NOT ({EXPIRED})")
        };
        let (new_nodes, old_nodes) = (logged("new_node"), logged("old_node"));
        for (sql, kind) in [
            ("SELECT node_id FROM refs NOT INDEXED", HEAD),
            ("SELECT node_id FROM snapshots NOT INDEXED", SNAPSHOT),
            (new_nodes.as_str(), LOGGED),
            (old_nodes.as_str(), LOGGED),
        ] {
            let mut stmt = tx.prepare(sql).map_err(&ctx)?;
            let mut rows = if kind == LOGGED {
                let (s, ns) = expiry(cut);
                stmt.query(params![s, ns])
            } else {
                stmt.query([])
            }
            .map_err(&ctx)?;
            while let Some(row) = rows.next().map_err(&ctx)? {
                let value = row.get_ref(0).map_err(&ctx)?;
                // A ref log entry without a node (a creation or deletion) names none.
                if kind == LOGGED && value == rusqlite::types::ValueRef::Null {
                    continue;
                }
                // Anything but a 32-byte id (the wrong length, or text: one bit of a record
                // header) would leave what it names unprotected: damage, and nothing removed.
                let id = value
                    .as_blob()
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok());
                let Some(id) = id else {
                    return Err(StateStoreError::corrupt(
                        match kind {
                            HEAD => "ref row",
                            SNAPSHOT => "snapshot row",
                            _ => "ref log row",
                        },
                        format!(
                            "its node id is not stored as 32 bytes ({:?}); garbage collection \
                             stopped and removed nothing",
                            value.data_type()
                        ),
                    ));
                };
                ids.push((id, kind, None));
            }
        }
        ids.sort_unstable_by_key(|e| e.0);
        // One entry per node, naming everything that names it.
        ids.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 |= later.1;
            }
            same
        });
        Ok(Self { ids })
    }

    /// The node that the root `id` names, if the node scan met it.
    fn index_of(&self, id: &[u8]) -> Option<usize> {
        let at = self.ids.binary_search_by(|e| e.0.as_slice().cmp(id)).ok()?;
        self.ids[at].2
    }

    /// The node scan met `id` as node `index`. Two rows with one id (the unique index
    /// damaged) are damage: which of them a root means cannot be told.
    fn found(&mut self, id: &[u8], index: usize) -> Result<()> {
        if let Ok(at) = self.ids.binary_search_by(|e| e.0.as_slice().cmp(id)) {
            if self.ids[at].2.is_some() {
                return Err(StateStoreError::corrupt(
                    format!(
                        "node {}",
                        crate::id::StateNodeId::from_bytes(self.ids[at].0)
                    ),
                    "two node rows hold its id; garbage collection stopped and removed nothing",
                ));
            }
            self.ids[at].2 = Some(index);
        }
        Ok(())
    }

    /// The indices of the nodes that `kind` names. A ref or snapshot whose node the scan did
    /// not meet is damage (its foreign key forbids it): an error, so that nothing is removed.
    fn of(&self, kind: u8) -> Result<Vec<usize>> {
        let mut found = Vec::new();
        for (id, _, index) in self.ids.iter().filter(|e| e.1 & kind != 0) {
            match index {
                Some(i) => found.push(*i),
                None if kind == LOGGED => {}
                None => {
                    return Err(StateStoreError::corrupt(
                        if kind == HEAD {
                            "ref row"
                        } else {
                            "snapshot row"
                        },
                        format!(
                            "it names node {}, which is not stored; garbage collection stopped \
                             and removed nothing",
                            crate::id::StateNodeId::from_bytes(*id),
                        ),
                    ));
                }
            }
        }
        Ok(found)
    }
}

/// What a collection keeps: every node, which of them are kept, and what names them.
struct Reach {
    nodes: Nodes,
    kept: Vec<bool>,
    named: Roots,
}

impl Reach {
    /// Reads the graph and marks what is kept. Reads only.
    fn read(tx: &Connection, cut: &Cutoffs) -> Result<Self> {
        let mut named = Roots::read(tx, cut)?;
        let nodes = Nodes::read(tx, cut, &mut named)?;
        // What refs and snapshots point at is kept whatever its age; the rest only while
        // history pruning leaves it.
        let (heads, snapshotted) = (named.of(HEAD)?, named.of(SNAPSHOT)?);
        let mut roots: Vec<usize> = heads.iter().chain(&snapshotted).copied().collect();
        if cut.prune_before.is_some() && !snapshotted.is_empty() {
            let mut has_snapshot = vec![false; nodes.seqs.len()];
            for &i in &snapshotted {
                has_snapshot[i] = true;
            }
            roots.extend(gc::restore_paths(
                nodes.seqs.len(),
                heads,
                |i| nodes.generations[i],
                |i| has_snapshot[i],
                |i| nodes.stored_parents_of(i).collect(),
                |i| {
                    let first = *nodes.parents_of(i).first()?;
                    (first != ABSENT).then_some(first as usize)
                },
            ));
        }
        let mut others: Vec<usize> = (0..nodes.seqs.len()).filter(|&i| !nodes.old[i]).collect();
        others.extend(named.of(LOGGED)?);
        roots.extend(others.into_iter().filter(|&i| !nodes.pruned[i]));
        let kept = gc::mark(nodes.seqs.len(), roots, |i| {
            nodes
                .stored_parents_of(i)
                .filter(|&p| !nodes.pruned[p])
                .collect()
        });
        Ok(Self { nodes, kept, named })
    }

    fn dead(&self) -> Vec<usize> {
        (0..self.nodes.seqs.len())
            .filter(|&i| !self.kept[i])
            .collect()
    }

    /// The kept nodes that lose a parent (history pruning): they mark the new boundary.
    fn boundary(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.seqs.len()).filter(|&child| {
            self.kept[child]
                && self
                    .nodes
                    .parents_of(child)
                    .iter()
                    .any(|&p| p != ABSENT && !self.kept[p as usize])
        })
    }
}

fn collect_in(tx: &Connection, cut: Cutoffs) -> Result<GcReport> {
    let ctx = sql_error("collecting garbage");
    let mut report = GcReport {
        dry_run: cut.dry_run,
        ..GcReport::default()
    };
    if cut.ref_log_before.is_some() {
        let (s, ns) = expiry(&cut);
        report.ref_log_entries_removed = tx
            .execute(
                &format!("DELETE FROM ref_log WHERE {EXPIRED}"),
                params![s, ns],
            )
            .map_err(&ctx)? as u64;
    }
    let reach = Reach::read(tx, &cut)?;
    let dead = reach.dead();
    report.nodes_removed = dead.len() as u64;
    report.nodes_kept = (reach.nodes.seqs.len() - dead.len()) as u64;
    if !dead.is_empty() {
        if cut.prune_before.is_some() {
            report.boundary_nodes = mark_boundary(tx, &reach)?;
            report.ref_log_entries_removed += forget_moves(tx, &reach, &cut)?;
        }
        remove_nodes(tx, &reach.nodes, &dead)?;
    }
    remove_states(tx, &cut, &mut report)?;
    // What a collection in steps that stopped left (see `steps::STEP_INDEXES`).
    steps::drop_indexes(tx)?;
    Ok(report)
}

/// History pruning: every kept node with a parent about to go records it as not stored here
/// (a shallow boundary, as an import without ancestors leaves), and loses the edge to it.
/// Returns how many nodes that made boundary nodes.
fn mark_boundary(tx: &Connection, reach: &Reach) -> Result<u64> {
    let (nodes, kept) = (&reach.nodes, &reach.kept);
    let ctx = sql_error("recording the shallow boundary of pruned history");
    let mut update = tx
        .prepare("UPDATE state_nodes SET parent_seqs = ?1 WHERE seq = ?2")
        .map_err(&ctx)?;
    let mut shallow = tx
        .prepare(
            "INSERT INTO shallow_edges (parent_id, child) \
             SELECT id, ?2 FROM state_nodes WHERE seq = ?1",
        )
        .map_err(&ctx)?;
    let mut edge = tx
        .prepare("DELETE FROM node_children WHERE parent = ?1 AND child = ?2")
        .map_err(&ctx)?;
    let mut count = 0;
    let cut = |p: u32| p != ABSENT && !kept[p as usize];
    for child in reach.boundary() {
        let parents = nodes.parents_of(child);
        let seq = nodes.seqs[child];
        let seqs: Vec<i64> = parents
            .iter()
            .map(|&p| {
                if p == ABSENT || cut(p) {
                    ABSENT_SEQ
                } else {
                    nodes.seqs[p as usize]
                }
            })
            .collect();
        for &p in parents.iter().filter(|&&p| cut(p)) {
            let parent = nodes.seqs[p as usize];
            shallow.execute(params![parent, seq]).map_err(&ctx)?;
            edge.execute(params![parent, seq]).map_err(&ctx)?;
        }
        update
            .execute(params![encode_seqs(&seqs), seq])
            .map_err(&ctx)?;
        count += 1;
    }
    Ok(count)
}

/// History pruning: deletes the ref log entries that name a node about to go (`NAME@{N}`
/// could not resolve them any more). Returns how many.
///
/// Reads the ref log once and matches each entry's nodes against the roots the collection
/// already read (every node a kept entry names is one of them), as [`count`] does: the cost
/// follows the ref log, not the number of nodes removed. (It used to copy the id of every
/// removed node into a temporary table first: random inserts into a B-tree as large as the
/// removed history, several seconds for a million nodes while writers wait.)
fn forget_moves(tx: &Connection, reach: &Reach, cut: &Cutoffs) -> Result<u64> {
    let ctx = sql_error("removing ref log entries of pruned history");
    let gone: Vec<i64> = moves_naming_dead(tx, reach, cut)?
        .into_iter()
        .map(|(entry, _)| entry.seq)
        .collect();
    let mut delete = tx
        .prepare("DELETE FROM ref_log WHERE seq = ?1")
        .map_err(&ctx)?;
    for seq in &gone {
        delete.execute([seq]).map_err(&ctx)?;
    }
    Ok(gone.len() as u64)
}

/// A ref log entry as a collection read it.
#[derive(Clone)]
struct Move {
    seq: i64,
    old: Option<Vec<u8>>,
    new: Option<Vec<u8>>,
}

/// History pruning: the ref log entries left after expiry that name a node the collection
/// removes, each with the removed nodes it names, from one scan of the ref log (matched
/// against the roots already read: every node a kept entry names is one of them).
fn moves_naming_dead(
    tx: &Connection,
    reach: &Reach,
    cut: &Cutoffs,
) -> Result<Vec<(Move, Vec<u32>)>> {
    let ctx = sql_error("reading the ref log to collect garbage");
    let (s, ns) = expiry(cut);
    let mut stmt = tx
        .prepare(&format!(
            "SELECT seq, old_node, new_node FROM ref_log NOT INDEXED WHERE NOT ({EXPIRED})"
        ))
        .map_err(&ctx)?;
    let mut rows = stmt.query(params![s, ns]).map_err(&ctx)?;
    let mut found = Vec::new();
    while let Some(row) = rows.next().map_err(&ctx)? {
        let mut named = [None, None];
        let mut dead = Vec::new();
        for column in 1..3 {
            if let Ok(Some(id)) = row.get_ref(column).map_err(&ctx)?.as_blob_or_null() {
                named[column - 1] = Some(id.to_vec());
                if let Some(i) = reach.named.index_of(id).filter(|&i| !reach.kept[i]) {
                    dead.push(i as u32);
                }
            }
        }
        if !dead.is_empty() {
            let [old, new] = named;
            let seq = row.get(0).map_err(&ctx)?;
            found.push((Move { seq, old, new }, dead));
        }
    }
    Ok(found)
}

/// [`sql_error`] for gc's deletes, except that a foreign key failure is damage: gc removes
/// only what nothing stored points at, by its own reading of the links, so a row that still
/// points at one means the links are not what they say (a parent seq that names the wrong
/// row, say), and nothing is removed.
fn delete_error(
    context: &'static str,
    stopped: &str,
) -> impl Fn(rusqlite::Error) -> StateStoreError {
    let stopped = stopped.to_owned();
    move |e| {
        if e.sqlite_error()
            .is_some_and(|f| f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
        {
            return StateStoreError::corrupt(
                "store",
                format!(
                    "{context}: a row still points at one gc found unreachable, so the stored \
                     links between nodes disagree ({e}); {stopped} (`stategraph fsck` shows \
                     where)"
                ),
            );
        }
        sql_error(context)(e)
    }
}

/// The indexes [`remove_nodes`] builds for the foreign key checks of its deletes (see there).
const NODE_DELETE_INDEXES: &str =
    "CREATE INDEX IF NOT EXISTS gc_node_children_by_child ON node_children(child);
     CREATE INDEX IF NOT EXISTS gc_shallow_edges_by_child ON shallow_edges(child);
     CREATE INDEX IF NOT EXISTS gc_refs_by_node ON refs(node_id);";
/// The index [`remove_states`] builds before deleting states.
const STATE_DELETE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS gc_state_nodes_by_data ON state_nodes(data_ref)";
/// The index [`remove_states`] builds before deleting bytes.
const BLOB_DELETE_INDEX: &str =
    "CREATE INDEX IF NOT EXISTS gc_state_data_by_blob ON state_data(blob_id)";

/// Deletes `dead` nodes and their edges. Every child of a dead node is dead too, or (history
/// pruning) has already lost its edge to it, so removing a node's edges to its parents
/// removes all its edges.
fn remove_nodes(tx: &Connection, nodes: &Nodes, dead: &[usize]) -> Result<()> {
    let ctx = delete_error(
        "removing unreachable nodes",
        "garbage collection stopped and removed nothing",
    );
    // SQLite checks every foreign key into a deleted row by looking for rows that point at
    // it; `node_children` and `shallow_edges` have no index by child, and `refs` none by
    // node, so without these each deleted node would scan all three tables (after history
    // pruning, `shallow_edges` holds a row per boundary node; a store with many branches
    // or tags holds a row per ref: quadratic time). They live for this transaction only.
    tx.execute_batch(NODE_DELETE_INDEXES).map_err(&ctx)?;
    // The dead nodes and their edges to stored parents go into temporary tables first, so
    // that each table is then cleared by one statement: a statement per row costs about
    // twice as much (a million removed nodes: 10.8 s against 5 s), all of it while writers
    // wait. Only the rows gc found by its own reading are named, never "every row whose
    // child is dead": a row that still points at a dead node after them is damage, which
    // the foreign key checks report and which stops the collection.
    tx.execute_batch(
        "CREATE TEMP TABLE gc_dead (seq INTEGER PRIMARY KEY, shallow INTEGER NOT NULL);
         CREATE TEMP TABLE gc_dead_edges (parent INTEGER, child INTEGER,
                                          PRIMARY KEY (parent, child)) WITHOUT ROWID;",
    )
    .map_err(&ctx)?;
    {
        let mut add_node = tx
            .prepare("INSERT INTO gc_dead (seq, shallow) VALUES (?1, ?2)")
            .map_err(&ctx)?;
        let mut add_edge = tx
            .prepare("INSERT OR IGNORE INTO gc_dead_edges (parent, child) VALUES (?1, ?2)")
            .map_err(&ctx)?;
        for &i in dead {
            let seq = nodes.seqs[i];
            for p in nodes.stored_parents_of(i) {
                add_edge
                    .execute(params![nodes.seqs[p], seq])
                    .map_err(&ctx)?;
            }
            // A parent not stored here is a boundary edge of this node's own.
            let shallow = nodes.parents_of(i).contains(&ABSENT);
            add_node.execute(params![seq, shallow]).map_err(&ctx)?;
        }
    }
    tx.execute_batch(
        "DELETE FROM node_children WHERE (parent, child) IN
             (SELECT parent, child FROM gc_dead_edges);
         DELETE FROM shallow_edges WHERE child IN (SELECT seq FROM gc_dead WHERE shallow);
         DELETE FROM state_nodes WHERE seq IN (SELECT seq FROM gc_dead);",
    )
    .map_err(&ctx)?;
    tx.execute_batch(
        "DROP TABLE gc_dead;
         DROP TABLE gc_dead_edges;
         DROP INDEX IF EXISTS gc_node_children_by_child;
         DROP INDEX IF EXISTS gc_shallow_edges_by_child;
         DROP INDEX IF EXISTS gc_refs_by_node;",
    )
    .map_err(&ctx)
}

/// Deletes the states no node holds that are older than the grace period, then the bytes no
/// state holds.
fn remove_states(tx: &Connection, cut: &Cutoffs, report: &mut GcReport) -> Result<()> {
    let ctx = sql_error("removing unused states");
    let unused: Vec<Vec<u8>> = {
        let mut stmt = tx
            .prepare(
                "SELECT data_ref FROM state_data \
                 WHERE data_ref NOT IN (SELECT data_ref FROM state_nodes)",
            )
            .map_err(&ctx)?;
        stmt.query_map([], |r| r.get(0))
            .map_err(&ctx)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&ctx)?
    };
    let old: Vec<Vec<u8>> = unused
        .into_iter()
        .filter(|raw| {
            <[u8; 16]>::try_from(raw.as_slice())
                .is_ok_and(|b| cut.is_old(&StateDataRef::from_bytes(b)))
        })
        .collect();
    if !old.is_empty() {
        // As for node edges: `state_nodes` has no index by data ref (commits do not need one),
        // and each deleted state would otherwise scan every node.
        tx.execute_batch(STATE_DELETE_INDEX).map_err(&ctx)?;
        // One statement for them all, as for nodes (`remove_nodes`).
        tx.execute_batch(
            "CREATE TEMP TABLE gc_old_states (data_ref BLOB PRIMARY KEY) WITHOUT ROWID",
        )
        .map_err(&ctx)?;
        {
            let mut add = tx
                .prepare("INSERT OR IGNORE INTO gc_old_states (data_ref) VALUES (?1)")
                .map_err(&ctx)?;
            for data_ref in &old {
                add.execute([data_ref]).map_err(&ctx)?;
            }
        }
        tx.execute_batch(
            "DELETE FROM state_data WHERE data_ref IN (SELECT data_ref FROM gc_old_states);
             DROP TABLE gc_old_states;
             DROP INDEX IF EXISTS gc_state_nodes_by_data;",
        )
        .map_err(&ctx)?;
    }
    report.states_removed = old.len() as u64;
    let (blobs, bytes): (i64, Option<i64>) = tx
        .query_row(
            "SELECT count(*), sum(length(bytes)) FROM blobs \
             WHERE id NOT IN (SELECT blob_id FROM state_data)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(&ctx)?;
    if blobs > 0 {
        // `state_data` has no index by blob either.
        tx.execute_batch(&format!(
            "{BLOB_DELETE_INDEX};
             DELETE FROM blobs WHERE id NOT IN (SELECT blob_id FROM state_data);
             DROP INDEX IF EXISTS gc_state_data_by_blob;"
        ))
        .map_err(&ctx)?;
    }
    report.blobs_removed = blobs as u64;
    report.bytes_removed = bytes.unwrap_or(0) as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rusqlite::OptionalExtension;

    use super::*;
    use crate::SqliteStateStore;

    /// SQLite checks a foreign key into a deleted row by looking for the rows that point at
    /// it: without an index whose first column is the pointing column, each deleted row
    /// scans the whole pointing table, and a collection costs (rows removed) x (rows in that
    /// table). `refs.node_id` had none: 100k unreachable nodes in a store with 10k tags took
    /// 24 s instead of 1.3 s, writers waiting throughout. Every foreign key into a table gc
    /// deletes from must be served by a permanent index or one gc builds while it deletes.
    #[test]
    fn every_foreign_key_into_a_table_gc_deletes_from_is_indexed_while_it_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(SqliteStateStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        // Those a one-transaction collection makes, then those a collection in steps makes.
        let at_once = format!("{NODE_DELETE_INDEXES}; {STATE_DELETE_INDEX}; {BLOB_DELETE_INDEX};");
        let in_steps: String = steps::STEP_INDEXES
            .iter()
            .map(|(name, on)| format!("CREATE INDEX {name} ON {on};"))
            .collect();
        for indexes in [at_once, in_steps] {
            conn.execute_batch(&format!("BEGIN; {indexes}")).unwrap();
            foreign_keys_are_indexed(&conn);
            conn.execute_batch("ROLLBACK").unwrap();
        }
    }

    fn foreign_keys_are_indexed(conn: &Connection) {
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        // The first column of each index (and of the primary key) of a table.
        let leading = |table: &str| -> Vec<String> {
            let mut first: Vec<String> = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{table}') WHERE pk = 1"
                ))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let indexes: Vec<String> = conn
                .prepare(&format!("SELECT name FROM pragma_index_list('{table}')"))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            for index in indexes {
                let column: Option<String> = conn
                    .query_row(
                        &format!("SELECT name FROM pragma_index_info('{index}') WHERE seqno = 0"),
                        [],
                        |r| r.get(0),
                    )
                    .optional()
                    .unwrap();
                first.extend(column);
            }
            first
        };
        let mut checked = 0;
        for table in &tables {
            let keys: Vec<(String, String)> = conn
                .prepare(&format!(
                    "SELECT \"table\", \"from\" FROM pragma_foreign_key_list('{table}')"
                ))
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            for (parent, column) in keys {
                if !["state_nodes", "state_data", "blobs"].contains(&parent.as_str()) {
                    continue;
                }
                assert!(
                    leading(table).contains(&column),
                    "{table}.{column} points into {parent}, from which gc deletes, but no \
                     index leads with it while gc deletes"
                );
                checked += 1;
            }
        }
        assert!(checked >= 6, "only {checked} foreign keys found");
    }
}
