//! The SQLite graph cursor: what history walks read, with read-ahead.
//!
//! A walk asks for the parents of the node it just read. The cursor remembers those parents'
//! local `seq`s (from the node row's `parent_seqs`), so the next lookup is by rowid rather
//! than through the id index. Histories are mostly written parents-first, so a node's
//! ancestors sit at nearby, lower seqs: on a miss the cursor reads a window of rows ending at
//! the wanted seq in one range scan, and the window doubles while misses keep coming (as a
//! file system's read-ahead does). A walk that stops after a few nodes reads a few rows; a
//! walk over a long history reads it in large sequential steps.

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
    window: i64,
}

impl<'a> SqliteCursor<'a> {
    pub(super) fn new(store: &'a SqliteStateStore, conn: Connection) -> Self {
        Self {
            store,
            conn: Some(conn),
            parent_seqs: IdMap::default(),
            ahead: std::collections::HashMap::new(),
            window: FIRST_WINDOW,
        }
    }

    fn conn(&self) -> Result<&Connection> {
        self.conn.as_ref().ok_or_else(|| {
            StateStoreError::Backend(BackendError::new("walking the graph", "cursor was closed"))
        })
    }

    /// The row with this seq, from the read-ahead or by reading a new window ending at it.
    fn row_by_seq(&mut self, seq: i64) -> Result<Option<NodeRow>> {
        if let Some(row) = self.ahead.remove(&seq) {
            return Ok(Some(row));
        }
        if self.ahead.len() > MEMO_LIMIT {
            self.ahead.clear();
        }
        let low = seq.saturating_sub(self.window - 1).max(1);
        let rows = ops::find_nodes_by_seq_range(self.conn()?, low, seq)?;
        self.window = (self.window * 2).min(MAX_WINDOW);
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
}

impl Drop for SqliteCursor<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.store.return_reader(conn);
        }
    }
}
