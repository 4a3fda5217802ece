//! The SQLite graph cursor: what history walks read, with read-ahead.
//!
//! A walk asks for the parents of the node it just read. The cursor remembers those parents'
//! local `seq`s (from the node row's `parent_seqs`), so the next lookup is by rowid rather
//! than through the id index. Histories are mostly written parents-first, so a node's
//! ancestors sit at nearby, lower seqs: on a miss the cursor reads a window of rows ending at
//! the wanted seq in one range scan, and the window doubles while the rows it read ahead are
//! used (as a file system's read-ahead does). A walk that stops after a few nodes reads a few
//! rows; a walk over a long history reads it in large sequential steps. When the rows read
//! ahead go unused (many branches written in turn put a branch's parents far apart; an
//! octopus merge's parents come in rising seq order), the cursor reads single rows until
//! the seqs it is asked for come close together again.

use rusqlite::Connection;

use super::SqliteStateStore;
use super::ops::{self, ABSENT_SEQ, NodeRow};
use crate::error::{BackendError, Result, StateStoreError};
use crate::id::{IdMap, StateNodeId};
use crate::model::StateNode;
use crate::store::{self, GraphCursor};

/// The first read-ahead window, in rows.
const FIRST_WINDOW: i64 = 8;
/// The largest read-ahead window, in rows.
const MAX_WINDOW: i64 = 1024;
/// Bound on remembered seqs and read-ahead rows; past it they are dropped (lookups then fall
/// back to the id index), so memory stays bounded whatever the walk.
const MEMO_LIMIT: usize = 1 << 16;

/// A graph cursor holding one pooled read connection until dropped.
pub(super) struct SqliteCursor<'a> {
    store: &'a SqliteStateStore,
    conn: Option<Connection>,
    /// Seqs of parents of nodes already read, by id.
    parent_seqs: IdMap<StateNodeId, i64>,
    /// Rows read ahead, by seq.
    ahead: std::collections::HashMap<i64, NodeRow>,
    /// The size of the last read, in rows...
    window: i64,
    /// ...whether any row it read ahead has been used since...
    ahead_used: bool,
    /// ...and the seq last asked for.
    last_seq: Option<i64>,
    /// Range reads made and rows they returned (for tests).
    reads: u64,
    rows: u64,
}

impl<'a> SqliteCursor<'a> {
    pub(super) fn new(store: &'a SqliteStateStore, conn: Connection) -> Self {
        Self {
            store,
            conn: Some(conn),
            parent_seqs: IdMap::default(),
            ahead: std::collections::HashMap::new(),
            window: FIRST_WINDOW,
            ahead_used: false,
            last_seq: None,
            reads: 0,
            rows: 0,
        }
    }

    fn conn(&self) -> Result<&Connection> {
        self.conn.as_ref().ok_or_else(|| {
            StateStoreError::Backend(BackendError::new("walking the graph", "cursor was closed"))
        })
    }

    /// The row with this seq, from the read-ahead or by reading a new window ending at it.
    fn row_by_seq(&mut self, seq: i64) -> Result<Option<NodeRow>> {
        let near = self
            .last_seq
            .and_then(|last| last.checked_sub(seq))
            .is_some_and(|gap| (1..=FIRST_WINDOW).contains(&gap));
        self.last_seq = Some(seq);
        if let Some(row) = self.ahead.remove(&seq) {
            self.ahead_used = true;
            return Ok(Some(row));
        }
        if self.ahead.len() > MEMO_LIMIT {
            self.ahead.clear();
        }
        // Double while read-ahead pays; start small again when the wanted seqs are close;
        // otherwise read just the one row.
        self.window = if self.ahead_used {
            (self.window * 2).min(MAX_WINDOW)
        } else if near {
            FIRST_WINDOW
        } else {
            1
        };
        self.ahead_used = false;
        let low = seq.saturating_sub(self.window - 1).max(1);
        let rows = ops::find_nodes_by_seq_range(self.conn()?, low, seq)?;
        self.reads += 1;
        self.rows += rows.len() as u64;
        let mut wanted = None;
        for (row_seq, row) in rows {
            if row_seq == seq {
                wanted = Some(row);
            } else {
                self.ahead.insert(row_seq, row);
            }
        }
        Ok(wanted)
    }
}

impl GraphCursor for SqliteCursor<'_> {
    fn node(&mut self, id: &StateNodeId) -> Result<Option<StateNode>> {
        // A remembered seq is only a hint (no id covers `parent_seqs`): if its row holds
        // another node, the link is damaged (`verify` reports it), and the id index decides.
        let hinted = match self.parent_seqs.remove(id) {
            Some(seq) => self.row_by_seq(seq)?.filter(|r| r.node.id == *id),
            None => None,
        };
        let row = match hinted {
            Some(row) => Some(row),
            None => ops::find_node(self.conn()?, id)?,
        };
        let Some(row) = row else { return Ok(None) };
        // Walks hand out what they read as surely as `get_node` does: a row edited behind
        // the store's back (a label, a parent list) is a `Corrupt` error, not history.
        store::verify_node(&row.node)?;
        if self.parent_seqs.len() > MEMO_LIMIT {
            self.parent_seqs.clear();
        }
        for (parent, &seq) in row.node.parent_ids.iter().zip(&row.parent_seqs) {
            if seq != ABSENT_SEQ {
                self.parent_seqs.insert(*parent, seq);
            }
        }
        Ok(Some(row.node))
    }

    fn children(&mut self, id: &StateNodeId) -> Result<Vec<StateNodeId>> {
        ops::children(self.conn()?, id)
    }

    fn is_stored(&mut self, id: &StateNodeId) -> Result<bool> {
        // By the id index, past the read-ahead, which may hold rows a gc has since removed.
        // The id index alone answers (no row to read and decode): a walk asks this at
        // every shallow boundary it meets.
        let conn = self.conn()?;
        let seq_of = |sql: &str| -> Result<Option<i64>> {
            conn.prepare_cached(sql)
                .and_then(|mut s| {
                    rusqlite::OptionalExtension::optional(
                        s.query_row([id.as_bytes()], |r| r.get(0)),
                    )
                })
                .map_err(super::schema::sql_error("reading a node"))
        };
        if seq_of("SELECT seq FROM state_nodes WHERE id = ?1")?.is_some() {
            return Ok(true);
        }
        // The walk read this node a moment ago, possibly by its seq (a parent hint), past
        // the id index. Before calling it removed by a gc, make sure the index did not just
        // lose its entry (damage): one scan of the table, only on this rare path.
        let scanned = seq_of("SELECT seq FROM state_nodes NOT INDEXED WHERE id = ?1")?;
        match scanned {
            None => Ok(false),
            Some(seq) => Err(StateStoreError::corrupt(
                format!("node {id}"),
                format!("stored (row {seq}), but the id index does not lead to it"),
            )),
        }
    }
}

impl Drop for SqliteCursor<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.store.return_reader(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StateData, StateMetadata};

    /// Walks the first-parent line from `head` to its root with a fresh cursor; the nodes
    /// walked, range reads made and rows they returned.
    fn walk(store: &SqliteStateStore, head: StateNodeId) -> (usize, u64, u64) {
        let mut cursor = SqliteCursor::new(store, store.take_reader().unwrap());
        let mut next = Some(head);
        let mut nodes = 0;
        while let Some(id) = next {
            let node = cursor.node(&id).unwrap().unwrap();
            nodes += 1;
            next = node.parent_ids.first().copied();
        }
        (nodes, cursor.reads, cursor.rows)
    }

    /// `branches` chains of `ticks` nodes each, committed round-robin; their heads.
    fn interleaved(store: &SqliteStateStore, branches: usize, ticks: usize) -> Vec<StateNodeId> {
        let mut heads: Vec<Option<StateNodeId>> = vec![None; branches];
        for t in 0..ticks {
            let mut batch = crate::History::batch(store);
            for (b, head) in heads.iter_mut().enumerate() {
                let data = batch.put_state(StateData::new(format!("{b}/{t}").into_bytes()));
                let parents = head.iter().copied().collect();
                *head = Some(
                    batch
                        .commit_node(parents, data, StateMetadata::now(None))
                        .unwrap(),
                );
            }
            batch.commit().unwrap();
        }
        heads.into_iter().map(Option::unwrap).collect()
    }

    #[test]
    fn a_chain_is_read_in_growing_windows() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(dir.path().join("s.db")).unwrap();
        let heads = interleaved(&store, 1, 3000);
        let (nodes, reads, rows) = walk(&store, heads[0]);
        assert_eq!(nodes, 3000);
        assert!(reads <= 12, "{reads} range reads for a 3000-node chain");
        assert!(
            rows <= 3000 + 1024,
            "{rows} rows read for a 3000-node chain"
        );
    }

    /// Many branches written in turn put a branch's parents `branches` seqs apart: the cursor
    /// must not read a whole window per node (it read up to 1024 rows to use one).
    #[test]
    fn far_apart_parents_are_read_one_row_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(dir.path().join("s.db")).unwrap();
        for (branches, ticks) in [(50, 60), (3, 400)] {
            let heads = interleaved(&store, branches, ticks);
            let (nodes, _, rows) = walk(&store, heads[0]);
            assert_eq!(nodes, ticks);
            // 3 apart: read ahead, a third of the rows used; 50 apart: a row per node.
            let bound = if branches <= FIRST_WINDOW as usize {
                branches * ticks + 2 * MAX_WINDOW as usize
            } else {
                ticks + 2 * FIRST_WINDOW as usize
            };
            assert!(
                rows as usize <= bound,
                "{branches} branches: {rows} rows read for {ticks} nodes"
            );
        }
    }
}
