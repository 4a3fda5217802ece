//! The SQL of each logical operation, as functions over a connection or a transaction.
//!
//! Callers own the transaction: a single operation, a batch and a group commit all run these
//! same functions inside one `BEGIN IMMEDIATE`.

use rusqlite::{Connection, OptionalExtension, Row, params};
use time::OffsetDateTime;

use super::schema::sql_error;
use crate::codec;
use crate::error::{Result, StateStoreError};
use crate::generation::{self, GenerationGraph};
use crate::id::{ContentHash, IdMap, IdPrefix, SnapshotId, StateDataRef, StateNodeId};
use crate::model::{
    Ref, RefLogEntry, SnapshotInfo, StateData, StateInfo, StateMetadata, StateNode, StateSnapshot,
};
use crate::package::SnapshotPackage;
use crate::store;

/// The sentinel in `parent_seqs` for a parent that is not stored here (a shallow boundary).
pub(crate) const ABSENT_SEQ: i64 = 0;

/// What one write transaction has learned so far: states it put and nodes it inserted or
/// looked up. A batch that commits a chain then needs no lookups for the parents and data it
/// created itself. Valid for one transaction only; cleared when part of one rolls back.
#[derive(Default)]
pub(crate) struct TxCache {
    states: std::collections::HashMap<StateDataRef, (ContentHash, Option<String>)>,
    nodes: IdMap<StateNodeId, (i64, u64)>,
    /// Whether `shallow_edges` may have rows; `None` until first asked.
    shallow: Option<bool>,
}

impl TxCache {
    /// Forgets everything (after a savepoint rollback, some of it may no longer be true).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// `(seq, generation)` of a stored node.
    fn node(&mut self, tx: &Connection, id: &StateNodeId) -> Result<Option<(i64, u64)>> {
        if let Some(found) = self.nodes.get(id) {
            return Ok(Some(*found));
        }
        let found = parent_row(tx, id)?;
        if let Some(found) = found {
            self.nodes.insert(*id, found);
        }
        Ok(found)
    }

    fn shallow_possible(&mut self, tx: &Connection) -> Result<bool> {
        if let Some(known) = self.shallow {
            return Ok(known);
        }
        let any = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM shallow_edges)")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(sql_error("committing a node"))?;
        self.shallow = Some(any);
        Ok(any)
    }
}

pub(crate) fn blob32(what: &str, bytes: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| {
        StateStoreError::corrupt(
            what.to_owned(),
            format!("expected 32 bytes, found {}", bytes.len()),
        )
    })
}

fn data_ref_from(bytes: &[u8]) -> Result<StateDataRef> {
    <[u8; 16]>::try_from(bytes)
        .map(StateDataRef::from_bytes)
        .map_err(|_| {
            StateStoreError::corrupt(
                "state data ref",
                format!("expected 16 bytes, found {}", bytes.len()),
            )
        })
}

/// Encodes parent seqs as the `parent_seqs` column stores them.
pub(crate) fn encode_seqs(seqs: &[i64]) -> Vec<u8> {
    seqs.iter().flat_map(|s| s.to_be_bytes()).collect()
}

/// Decodes the `parent_seqs` column.
pub(crate) fn decode_seqs(bytes: &[u8]) -> Result<Vec<i64>> {
    if !bytes.len().is_multiple_of(8) {
        return Err(StateStoreError::corrupt(
            "node parent list",
            format!("{} bytes is not a whole number of entries", bytes.len()),
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// Decodes the `parents` column (concatenated 32-byte ids).
fn decode_ids(bytes: &[u8]) -> Result<Vec<StateNodeId>> {
    if !bytes.len().is_multiple_of(32) {
        return Err(StateStoreError::corrupt(
            "node parent list",
            format!("{} bytes is not a whole number of ids", bytes.len()),
        ));
    }
    Ok(bytes
        .chunks_exact(32)
        .filter_map(StateNodeId::from_slice)
        .collect())
}

/// `SELECT` of every `state_nodes` column [`raw_node`] reads, in order, then `$tail`.
macro_rules! select_node {
    ($tail:literal) => {
        concat!(
            "SELECT seq, id, parents, parent_seqs, data_ref, data_hash, content_type, created_s, ",
            "created_ns, label, generation FROM state_nodes ",
            $tail
        )
    };
}

/// A node as stored, with its parents' local seqs.
pub(crate) struct NodeRow {
    pub parent_seqs: Vec<i64>,
    pub node: StateNode,
}

/// The raw column values of one `state_nodes` row, before validation.
type RawNode = (
    i64,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Vec<u8>,
    Option<String>,
    i64,
    i64,
    Option<String>,
    i64,
);

fn raw_node(r: &Row<'_>) -> rusqlite::Result<RawNode> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

impl NodeRow {
    fn decode(raw: RawNode) -> Result<Self> {
        let (
            _seq,
            id,
            parents,
            parent_seqs,
            data_ref,
            data_hash,
            content_type,
            s,
            ns,
            label,
            generation,
        ) = raw;
        let id = StateNodeId::from_bytes(blob32("node id", &id)?);
        let parent_ids = decode_ids(&parents)?;
        let parent_seqs = decode_seqs(&parent_seqs)?;
        if parent_seqs.len() != parent_ids.len() {
            return Err(StateStoreError::corrupt(
                format!("node {id}"),
                "its two parent lists differ in length",
            ));
        }
        let generation = u64::try_from(generation)
            .map_err(|_| StateStoreError::corrupt(format!("node {id}"), "negative generation"))?;
        let node = StateNode {
            id,
            parent_ids,
            data_ref: data_ref_from(&data_ref)?,
            data_hash: ContentHash::from_bytes(blob32("node data hash", &data_hash)?),
            content_type,
            metadata: StateMetadata {
                created_at: codec::join_time(s, ns)?,
                label,
            },
            generation,
        };
        Ok(Self { parent_seqs, node })
    }
}

/// Reads a node by id; `None` if it is not stored.
pub(crate) fn find_node(conn: &Connection, id: &StateNodeId) -> Result<Option<NodeRow>> {
    let raw = conn
        .prepare_cached(select_node!("WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id.as_bytes()], raw_node).optional())
        .map_err(sql_error("reading a node"))?;
    let row = raw.map(NodeRow::decode).transpose()?;
    // A damaged id index can lead to another node's row, which verifies as that node.
    if let Some(row) = &row
        && row.node.id != *id
    {
        return Err(StateStoreError::corrupt(
            format!("node {id}"),
            format!("the id index leads to the row of node {}", row.node.id),
        ));
    }
    Ok(row)
}

/// Reads the nodes with seqs in `low..=high`, with their seqs, in one range scan.
pub(crate) fn find_nodes_by_seq_range(
    conn: &Connection,
    low: i64,
    high: i64,
) -> Result<Vec<(i64, NodeRow)>> {
    let ctx = sql_error("reading nodes");
    let mut stmt = conn
        .prepare_cached(select_node!("WHERE seq BETWEEN ?1 AND ?2"))
        .map_err(&ctx)?;
    let rows = stmt.query_map([low, high], raw_node).map_err(&ctx)?;
    rows.map(|raw| {
        let raw = raw.map_err(&ctx)?;
        let seq = raw.0;
        Ok((seq, NodeRow::decode(raw)?))
    })
    .collect()
}

/// The largest state a SQLite store holds: SQLite's default `SQLITE_MAX_LENGTH` (10^9 bytes,
/// the bundled build keeps it) bounds a whole row, so the state's row keeps 100 bytes of it
/// for the content hash and the row header.
pub const MAX_STATE_LEN: usize = 1_000_000_000 - 100;

/// Stores state bytes (once per distinct content) under a new ref. True when the bytes were
/// new here; false when the content was stored already (deduplicated).
pub(crate) fn put_state(
    tx: &Connection,
    cache: &mut TxCache,
    data_ref: &StateDataRef,
    hash: &ContentHash,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<bool> {
    if bytes.len() > MAX_STATE_LEN {
        return Err(StateStoreError::invalid(
            "state",
            format!(
                "it is {} bytes; a SQLite store holds states of up to {MAX_STATE_LEN} bytes \
                 (SQLite's largest row, less room for the row's hash)",
                bytes.len()
            ),
        ));
    }
    let ctx = sql_error("storing state data");
    // New bytes are the common case: try the insert first, look up only on a duplicate.
    let inserted: Option<i64> = tx
        .prepare_cached(
            "INSERT INTO blobs (hash, bytes) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING
             RETURNING id",
        )
        .and_then(|mut s| {
            s.query_row(params![hash.as_bytes(), bytes], |r| r.get(0))
                .optional()
        })
        .map_err(&ctx)?;
    let new_bytes = inserted.is_some();
    let blob_id = match inserted {
        Some(id) => id,
        None => tx
            .prepare_cached("SELECT id FROM blobs WHERE hash = ?1")
            .and_then(|mut s| s.query_row([hash.as_bytes()], |r| r.get(0)))
            .map_err(&ctx)?,
    };
    let inserted = tx
        .prepare_cached(
            "INSERT INTO state_data (data_ref, blob_id, content_type) VALUES (?1, ?2, ?3)
             ON CONFLICT (data_ref) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![data_ref.as_bytes(), blob_id, content_type]))
        .map_err(&ctx)?;
    if inserted == 0 {
        // The same write applied again (a retry of one that landed) is done already; other
        // state under the ref is refused, and the request's rollback takes back the blob.
        let (stored_blob, stored_type): (i64, Option<String>) = tx
            .prepare_cached("SELECT blob_id, content_type FROM state_data WHERE data_ref = ?1")
            .and_then(|mut s| s.query_row([data_ref.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(&ctx)?;
        if stored_blob != blob_id || stored_type.as_deref() != content_type {
            return Err(crate::store::data_ref_taken(data_ref));
        }
    }
    cache
        .states
        .insert(*data_ref, (*hash, content_type.map(str::to_owned)));
    Ok(new_bytes)
}

/// The hash, content type and length of stored state.
pub(crate) fn state_info(conn: &Connection, data_ref: &StateDataRef) -> Result<StateInfo> {
    let row = conn
        .prepare_cached(
            "SELECT b.hash, d.content_type, length(b.bytes)
             FROM state_data d LEFT JOIN blobs b ON b.id = d.blob_id WHERE d.data_ref = ?1",
        )
        .and_then(|mut s| {
            s.query_row([data_ref.as_bytes()], |r| {
                Ok((
                    r.get::<_, Option<Vec<u8>>>(0)?,
                    r.get(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .optional()
        })
        .map_err(sql_error("reading state data"))?;
    let (hash, content_type, len) = row.ok_or(StateStoreError::MissingState {
        data_ref: *data_ref,
    })?;
    let (Some(hash), Some(len)) = (hash, len) else {
        return Err(missing_bytes(data_ref));
    };
    Ok(StateInfo {
        data_ref: *data_ref,
        hash: ContentHash::from_bytes(blob32("state data hash", &hash)?),
        content_type,
        len: u64::try_from(len).unwrap_or(0),
    })
}

/// Reads state bytes and checks them against their hash.
pub(crate) fn get_state(conn: &Connection, data_ref: &StateDataRef) -> Result<StateData> {
    type Row = (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT b.hash, b.bytes, d.content_type
             FROM state_data d LEFT JOIN blobs b ON b.id = d.blob_id WHERE d.data_ref = ?1",
        )
        .and_then(|mut s| {
            s.query_row([data_ref.as_bytes()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
        })
        .map_err(sql_error("reading state data"))?;
    let (hash, bytes, content_type) = row.ok_or(StateStoreError::MissingState {
        data_ref: *data_ref,
    })?;
    let (Some(hash), Some(bytes)) = (hash, bytes) else {
        return Err(missing_bytes(data_ref));
    };
    let hash = ContentHash::from_bytes(blob32("state data hash", &hash)?);
    store::verify_state(data_ref, &hash, &bytes)?;
    Ok(StateData {
        bytes,
        content_type,
    })
}

/// Up to `max_len` bytes from the start of a state, read through SQLite's incremental blob
/// I/O so that the rest of the blob is never loaded (`substr()` would load all of it).
pub(crate) fn state_prefix(
    conn: &Connection,
    data_ref: &StateDataRef,
    max_len: usize,
) -> Result<Vec<u8>> {
    let ctx = sql_error("reading state data");
    // One read transaction, so the blob opened is the row just found.
    let tx = conn.unchecked_transaction().map_err(&ctx)?;
    // `typeof()`, like `length()`, reads the row header only, not the value.
    let row: Option<(Option<i64>, Option<String>)> = tx
        .prepare_cached(
            "SELECT b.id, typeof(b.bytes)
             FROM state_data d LEFT JOIN blobs b ON b.id = d.blob_id WHERE d.data_ref = ?1",
        )
        .and_then(|mut s| {
            s.query_row([data_ref.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(&ctx)?;
    let (blob_id, kind) = row.ok_or(StateStoreError::MissingState {
        data_ref: *data_ref,
    })?;
    let Some(blob_id) = blob_id else {
        return Err(missing_bytes(data_ref));
    };
    if kind.as_deref() != Some("blob") {
        return Err(StateStoreError::corrupt(
            format!("state data {data_ref}"),
            format!(
                "its bytes are stored as {}, not as a blob",
                kind.as_deref().unwrap_or("nothing")
            ),
        ));
    }
    let blob = tx
        .blob_open(rusqlite::MAIN_DB, c"blobs", c"bytes", blob_id, true)
        .map_err(&ctx)?;
    let mut bytes = vec![0; blob.len().min(max_len)];
    blob.read_at_exact(&mut bytes, 0).map_err(&ctx)?;
    Ok(bytes)
}

/// The ref exists but the bytes it names are gone: the file was damaged, not misused.
fn missing_bytes(data_ref: &StateDataRef) -> StateStoreError {
    StateStoreError::corrupt(format!("state data {data_ref}"), "its bytes are missing")
}

/// Inserts a fully built node unless its id is already stored (the first write stays).
/// `parent_seqs` are the parents' local seqs, [`ABSENT_SEQ`] for one not stored here; those
/// edges are recorded in `shallow_edges`. Nodes already stored with this node as a missing
/// parent get their edge to it now.
pub(crate) fn insert_node(
    tx: &Connection,
    cache: &mut TxCache,
    node: &StateNode,
    parent_seqs: &[i64],
) -> Result<()> {
    let ctx = sql_error("committing a node");
    let generation = i64::try_from(node.generation).map_err(|_| {
        StateStoreError::invalid("parents", "generation overflows a 64-bit integer")
    })?;
    let parents = encode_parents(&node.parent_ids);
    let (created_s, created_ns) = codec::split_time(node.metadata.created_at);
    let inserted = tx
        .prepare_cached(
            "INSERT INTO state_nodes (id, parents, parent_seqs, data_ref, data_hash,
                 content_type, created_s, created_ns, label, generation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (id) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                node.id.as_bytes(),
                parents,
                encode_seqs(parent_seqs),
                node.data_ref.as_bytes(),
                node.data_hash.as_bytes(),
                node.content_type,
                created_s,
                created_ns,
                node.metadata.label,
                generation,
            ])
        })
        .map_err(&ctx)?;
    if inserted == 0 {
        // Idempotent: the node is stored already, and the first write stays.
        return Ok(());
    }
    let child = tx.last_insert_rowid();
    cache.nodes.insert(node.id, (child, node.generation));
    for (parent_id, &parent) in node.parent_ids.iter().zip(parent_seqs) {
        if parent == ABSENT_SEQ {
            tx.prepare_cached("INSERT INTO shallow_edges (parent_id, child) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![parent_id.as_bytes(), child]))
                .map_err(&ctx)?;
            cache.shallow = Some(true);
        } else {
            tx.prepare_cached("INSERT INTO node_children (parent, child) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute([parent, child]))
                .map_err(&ctx)?;
        }
    }
    if cache.shallow_possible(tx)? {
        adopt_waiting_children(tx, cache, node, child)?;
    }
    Ok(())
}

/// Joins children imported before `node` (which listed it as a missing parent) to it, and
/// settles the generations that change with it (DESIGN invariant 4; see
/// [`crate::generation`]).
fn adopt_waiting_children(
    tx: &Connection,
    cache: &mut TxCache,
    node: &StateNode,
    seq: i64,
) -> Result<()> {
    let ctx = sql_error("committing a node");
    // Each child's `parent_seqs` still says "not stored here" for this parent: point it at the
    // parent's row (the only change to a node row besides its generation; neither is part of
    // the node's id).
    let waiting: Vec<(i64, Vec<u8>, Vec<u8>)> = tx
        .prepare_cached(
            "SELECT n.seq, n.parents, n.parent_seqs
             FROM shallow_edges s JOIN state_nodes n ON n.seq = s.child WHERE s.parent_id = ?1",
        )
        .and_then(|mut s| {
            s.query_map([node.id.as_bytes()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect()
        })
        .map_err(&ctx)?;
    if waiting.is_empty() {
        return Ok(());
    }
    for (child, parents, parent_seqs) in waiting {
        let mut seqs = decode_seqs(&parent_seqs)?;
        for (parent, slot) in decode_ids(&parents)?.iter().zip(&mut seqs) {
            if *parent == node.id {
                *slot = seq;
            }
        }
        tx.prepare_cached("UPDATE state_nodes SET parent_seqs = ?1 WHERE seq = ?2")
            .and_then(|mut s| s.execute(params![encode_seqs(&seqs), child]))
            .map_err(&ctx)?;
    }
    tx.prepare_cached(
        "INSERT INTO node_children (parent, child)
         SELECT ?1, child FROM shallow_edges WHERE parent_id = ?2",
    )
    .and_then(|mut s| s.execute(params![seq, node.id.as_bytes()]))
    .map_err(&ctx)?;
    tx.prepare_cached("DELETE FROM shallow_edges WHERE parent_id = ?1")
        .and_then(|mut s| s.execute([node.id.as_bytes()]))
        .map_err(&ctx)?;
    let settled = generation::settle_arrival(&mut Graph { tx }, seq)?;
    if !settled.changes.is_empty() {
        // What the cache knew of generations may now be untrue.
        cache.nodes.clear();
    }
    for (node, new) in settled.changes {
        // Within i64: the settling refuses anything above codec::MAX_GENERATION.
        let new = i64::try_from(new).map_err(|_| codec::generation_too_large("node", new))?;
        tx.prepare_cached("UPDATE state_nodes SET generation = ?1 WHERE seq = ?2")
            .and_then(|mut s| s.execute([new, node]))
            .map_err(&ctx)?;
    }
    Ok(())
}

/// The stored graph inside a write transaction, as [`generation::settle_arrival`] reads it:
/// nodes by their seq.
struct Graph<'a> {
    tx: &'a Connection,
}

impl GenerationGraph for Graph<'_> {
    type Key = i64;

    fn node(&mut self, seq: i64) -> Result<(u64, Vec<Option<i64>>)> {
        let (generation, parent_seqs): (i64, Vec<u8>) = self
            .tx
            .prepare_cached("SELECT generation, parent_seqs FROM state_nodes WHERE seq = ?1")
            .and_then(|mut s| s.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(sql_error("committing a node"))?;
        let parents = decode_seqs(&parent_seqs)?
            .into_iter()
            .map(|p| (p != ABSENT_SEQ).then_some(p))
            .collect();
        Ok((u64::try_from(generation).unwrap_or(0), parents))
    }

    fn children(&mut self, seq: i64) -> Result<Vec<i64>> {
        self.tx
            .prepare_cached("SELECT child FROM node_children WHERE parent = ?1")
            .and_then(|mut s| s.query_map([seq], |r| r.get(0))?.collect())
            .map_err(sql_error("committing a node"))
    }
}

/// Imports a verified snapshot package: its state, its node (parents that are not stored
/// here become a shallow boundary) and the snapshot. Idempotent.
pub(crate) fn import_snapshot(
    tx: &Connection,
    cache: &mut TxCache,
    package: &SnapshotPackage,
    data_hash: &ContentHash,
    now: OffsetDateTime,
) -> Result<SnapshotId> {
    // Whether the package's bytes were just stored from the package itself: then there is
    // no older copy of them to check.
    let mut fresh_bytes = false;
    if cache.node(tx, &package.node_id)?.is_none() {
        let (seqs, generations) = stored_parents(tx, cache, &package.parent_ids)?;
        let data_ref = StateDataRef::new_v7();
        let content_type = package.content_type.as_deref();
        fresh_bytes = put_state(
            tx,
            cache,
            &data_ref,
            data_hash,
            &package.bytes,
            content_type,
        )?;
        let node = StateNode {
            id: package.node_id,
            parent_ids: package.parent_ids.clone(),
            data_ref,
            data_hash: *data_hash,
            content_type: package.content_type.clone(),
            metadata: package.metadata.clone(),
            generation: generation::import_generation(package.generation, &generations)?,
        };
        insert_node(tx, cache, &node, &seqs)?;
    } else {
        repair_node(tx, cache, package, data_hash)?;
    }
    if !fresh_bytes {
        repair_blob(tx, data_hash, &package.bytes)?;
    }
    snapshot(tx, cache, &package.node_id, now)
}

/// The seq of each of `parents` ([`ABSENT_SEQ`] for one not stored here) and its generation.
fn stored_parents(
    tx: &Connection,
    cache: &mut TxCache,
    parents: &[StateNodeId],
) -> Result<(Vec<i64>, Vec<Option<u64>>)> {
    let mut seqs = Vec::with_capacity(parents.len());
    let mut generations = Vec::with_capacity(parents.len());
    for p in parents {
        let row = cache.node(tx, p)?;
        seqs.push(row.map_or(ABSENT_SEQ, |(seq, _)| seq));
        generations.push(row.map(|(_, g)| g));
    }
    Ok((seqs, generations))
}

/// A node's parent ids as the `parents` column holds them: concatenated, in order.
fn encode_parents(parents: &[StateNodeId]) -> Vec<u8> {
    parents.iter().flat_map(|p| *p.as_bytes()).collect()
}

/// Writes the package's node over its stored row when that row no longer reads back as the
/// node its id names (damaged on disk, as `verify` reports): importing a package exported
/// before the damage repairs the node. The row keeps its place (its seq, so its edges, which
/// were written from the same parents), its generation (which `verify` checks on its own,
/// and which children were numbered from), and its data ref when that still holds the
/// package's content; the rest is written from the package.
fn repair_node(
    tx: &Connection,
    cache: &mut TxCache,
    package: &SnapshotPackage,
    data_hash: &ContentHash,
) -> Result<()> {
    let stored = find_node(tx, &package.node_id).ok().flatten();
    if let Some(row) = &stored
        && store::verify_node(&row.node).is_ok()
    {
        return Ok(());
    }
    let ctx = sql_error("repairing a damaged node from a package");
    // The stored data ref, if it still names a state holding the package's content.
    let kept_ref = tx
        .prepare_cached(
            "SELECT n.data_ref FROM state_nodes n
             JOIN state_data d ON d.data_ref = n.data_ref
             JOIN blobs b ON b.id = d.blob_id
             WHERE n.id = ?1 AND b.hash = ?2",
        )
        .and_then(|mut s| {
            s.query_row(
                params![package.node_id.as_bytes(), data_hash.as_bytes()],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
        })
        .map_err(&ctx)?
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .map(StateDataRef::from_bytes);
    let data_ref = match kept_ref {
        Some(data_ref) => data_ref,
        None => {
            let data_ref = StateDataRef::new_v7();
            put_state(
                tx,
                cache,
                &data_ref,
                data_hash,
                &package.bytes,
                package.content_type.as_deref(),
            )?;
            data_ref
        }
    };
    let (seqs, _) = stored_parents(tx, cache, &package.parent_ids)?;
    let parents = encode_parents(&package.parent_ids);
    let (created_s, created_ns) = codec::split_time(package.metadata.created_at);
    tx.prepare_cached(
        "UPDATE state_nodes SET parents = ?2, parent_seqs = ?3, data_ref = ?4, data_hash = ?5,
             content_type = ?6, created_s = ?7, created_ns = ?8, label = ?9
         WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            package.node_id.as_bytes(),
            parents,
            encode_seqs(&seqs),
            data_ref.as_bytes(),
            data_hash.as_bytes(),
            package.content_type,
            created_s,
            created_ns,
            package.metadata.label,
        ])
    })
    .map_err(&ctx)?;
    Ok(())
}

/// Writes `bytes` (verified to hash to `hash`) over the stored bytes of that content when
/// those no longer hash to it (damaged on disk, as `verify` reports): importing a package
/// exported before the damage repairs the state. Reads and hashes the stored copy, which an
/// import can afford; only for content that was stored before the import.
fn repair_blob(tx: &Connection, hash: &ContentHash, bytes: &[u8]) -> Result<()> {
    let ctx = sql_error("checking the stored copy of an imported state");
    let stored: Option<(i64, bool)> = tx
        .prepare_cached("SELECT id, bytes FROM blobs WHERE hash = ?1")
        .and_then(|mut s| {
            s.query_row([hash.as_bytes()], |r| {
                let intact = match r.get_ref(1)? {
                    rusqlite::types::ValueRef::Blob(b) => ContentHash::of(b) == *hash,
                    _ => false,
                };
                Ok((r.get(0)?, intact))
            })
            .optional()
        })
        .map_err(&ctx)?;
    if let Some((id, false)) = stored {
        tx.prepare_cached("UPDATE blobs SET bytes = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, bytes]))
            .map_err(&ctx)?;
    }
    Ok(())
}

/// A stored node's seq and generation, looked up by id.
fn parent_row(tx: &Connection, id: &StateNodeId) -> Result<Option<(i64, u64)>> {
    let row: Option<(i64, i64)> = tx
        .prepare_cached("SELECT seq, generation FROM state_nodes WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(sql_error("committing a node"))?;
    Ok(row.map(|(seq, g)| (seq, u64::try_from(g).unwrap_or(0))))
}

/// Creates (or finds) a node whose parents and data are all stored here.
pub(crate) fn commit_node(
    tx: &Connection,
    cache: &mut TxCache,
    parent_ids: &[StateNodeId],
    data_ref: &StateDataRef,
    metadata: &StateMetadata,
) -> Result<StateNodeId> {
    let (data_hash, content_type) = match cache.states.get(data_ref) {
        Some((hash, content_type)) => (*hash, content_type.clone()),
        None => {
            let info = state_info(tx, data_ref)?;
            (info.hash, info.content_type)
        }
    };
    let mut seqs = Vec::with_capacity(parent_ids.len());
    let mut generations = Vec::with_capacity(parent_ids.len());
    for p in parent_ids {
        let (seq, generation) = cache
            .node(tx, p)?
            .ok_or(StateStoreError::MissingNode { id: *p })?;
        seqs.push(seq);
        generations.push(generation);
    }
    let node = store::build_node(
        parent_ids.to_vec(),
        *data_ref,
        data_hash,
        content_type,
        generations,
        metadata.clone(),
    )?;
    insert_node(tx, cache, &node, &seqs)?;
    Ok(node.id)
}

/// Reads a node and checks that it still hashes to its id.
pub(crate) fn get_node(conn: &Connection, id: &StateNodeId) -> Result<StateNode> {
    let row = find_node(conn, id)?.ok_or(StateStoreError::MissingNode { id: *id })?;
    store::verify_node(&row.node)?;
    Ok(row.node)
}

/// Records the snapshot of a stored node (idempotent) and returns its id.
pub(crate) fn snapshot(
    tx: &Connection,
    cache: &mut TxCache,
    node_id: &StateNodeId,
    now: OffsetDateTime,
) -> Result<SnapshotId> {
    let ctx = sql_error("taking a snapshot");
    let id = codec::snapshot_id(node_id);
    if cache.node(tx, node_id)?.is_none() {
        return Err(StateStoreError::MissingNode { id: *node_id });
    }
    let (created_s, created_ns) = codec::split_time(now);
    tx.prepare_cached(
        "INSERT INTO snapshots (id, node_id, created_s, created_ns) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            id.as_bytes(),
            node_id.as_bytes(),
            created_s,
            created_ns
        ])
    })
    .map_err(&ctx)?;
    Ok(id)
}

/// Loads a snapshot's node id and state, checking every hash on the way.
pub(crate) fn load_snapshot(conn: &Connection, snapshot_id: &SnapshotId) -> Result<StateSnapshot> {
    /// The snapshot's node id, its node's row (`None` when missing), and the state's stored
    /// hash, bytes and content type (`None` when missing).
    type LoadRow = (
        Vec<u8>,
        Option<RawNode>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<String>,
    );
    // One query; the node row is then checked whole against the snapshot's node id, so a
    // damaged index that leads to another row cannot hand over another node's state.
    let row: LoadRow = conn
        .prepare_cached(
            "SELECT n.seq, n.id, n.parents, n.parent_seqs, n.data_ref, n.data_hash,
                 n.content_type, n.created_s, n.created_ns, n.label, n.generation,
                 s.node_id, b.hash, b.bytes, d.content_type
             FROM snapshots s
             LEFT JOIN state_nodes n ON n.id = s.node_id
             LEFT JOIN state_data d ON d.data_ref = n.data_ref
             LEFT JOIN blobs b ON b.id = d.blob_id
             WHERE s.id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([snapshot_id.as_bytes()], |r| {
                let node = match r.get::<_, Option<i64>>(0)? {
                    Some(_) => Some(raw_node(r)?),
                    None => None,
                };
                Ok((r.get(11)?, node, r.get(12)?, r.get(13)?, r.get(14)?))
            })
            .optional()
        })
        .map_err(sql_error("loading a snapshot"))?
        .ok_or(StateStoreError::MissingSnapshot { id: *snapshot_id })?;
    let (node_id, node, blob_hash, bytes, data_type) = row;
    let node_id = StateNodeId::from_bytes(blob32("snapshot node id", &node_id)?);
    if codec::snapshot_id(&node_id) != *snapshot_id {
        return Err(StateStoreError::corrupt(
            format!("snapshot {snapshot_id}"),
            format!("it points at {node_id}, whose snapshot id differs"),
        ));
    }
    let Some(node) = node else {
        return Err(StateStoreError::corrupt(
            format!("snapshot {snapshot_id}"),
            format!("its node {node_id} is missing"),
        ));
    };
    let node = NodeRow::decode(node)?.node;
    if node.id != node_id {
        return Err(StateStoreError::corrupt(
            format!("node {node_id}"),
            format!("the id index leads to the row of node {}", node.id),
        ));
    }
    store::verify_node(&node)?;
    let data_ref = node.data_ref;
    let (Some(blob_hash), Some(bytes)) = (blob_hash, bytes) else {
        return Err(missing_bytes(&data_ref));
    };
    if blob_hash != node.data_hash.as_bytes() || data_type != node.content_type {
        return Err(StateStoreError::corrupt(
            format!("node {node_id}"),
            format!("its state data {data_ref} is not the state the node hashed"),
        ));
    }
    store::verify_state(&data_ref, &node.data_hash, &bytes)?;
    Ok(StateSnapshot {
        node_id,
        state: StateData {
            bytes,
            content_type: node.content_type,
        },
    })
}

fn snapshot_info_row(r: &Row<'_>) -> rusqlite::Result<(Vec<u8>, Vec<u8>, i64, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn decode_snapshot_info(raw: (Vec<u8>, Vec<u8>, i64, i64)) -> Result<SnapshotInfo> {
    let (id, node_id, s, ns) = raw;
    let id = SnapshotId::from_bytes(blob32("snapshot id", &id)?);
    // Which snapshot, when its own id reads: deleting it (`snapshot -d`) is how to go on
    // without it.
    let named = |what: &'static str| {
        move |e: StateStoreError| match e {
            StateStoreError::Corrupt { detail, .. } => {
                StateStoreError::corrupt(format!("snapshot {id}"), format!("its {what}: {detail}"))
            }
            e => e,
        }
    };
    Ok(SnapshotInfo {
        id,
        node_id: StateNodeId::from_bytes(
            blob32("snapshot node id", &node_id).map_err(named("node id"))?,
        ),
        created_at: codec::join_time(s, ns).map_err(named("time"))?,
    })
}

/// One snapshot's record.
pub(crate) fn snapshot_info(conn: &Connection, id: &SnapshotId) -> Result<Option<SnapshotInfo>> {
    let ctx = sql_error("reading a snapshot");
    conn.prepare_cached("SELECT id, node_id, created_s, created_ns FROM snapshots WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.as_bytes()], snapshot_info_row).optional())
        .map_err(&ctx)?
        .map(decode_snapshot_info)
        .transpose()
}

/// Every snapshot, oldest first.
pub(crate) fn list_snapshots(conn: &Connection) -> Result<Vec<SnapshotInfo>> {
    let ctx = sql_error("listing snapshots");
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, node_id, created_s, created_ns FROM snapshots
             ORDER BY created_s, created_ns, id",
        )
        .map_err(&ctx)?;
    let rows = stmt.query_map([], snapshot_info_row).map_err(&ctx)?;
    rows.map(|r| decode_snapshot_info(r.map_err(&ctx)?))
        .collect()
}

/// The snapshots of one node.
pub(crate) fn snapshots_of(conn: &Connection, node_id: &StateNodeId) -> Result<Vec<SnapshotInfo>> {
    let ctx = sql_error("listing snapshots");
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, node_id, created_s, created_ns FROM snapshots WHERE node_id = ?1
             ORDER BY created_s, created_ns, id",
        )
        .map_err(&ctx)?;
    let rows = stmt
        .query_map([node_id.as_bytes()], snapshot_info_row)
        .map_err(&ctx)?;
    rows.map(|r| decode_snapshot_info(r.map_err(&ctx)?))
        .collect()
}

/// The snapshots of each node, in one read transaction (each statement outside one takes
/// and drops the file's read locks, which costs more than the lookup itself).
pub(crate) fn snapshots_of_each(
    conn: &Connection,
    node_ids: &[StateNodeId],
) -> Result<Vec<Vec<SnapshotInfo>>> {
    if node_ids.len() <= 1 {
        return node_ids.iter().map(|id| snapshots_of(conn, id)).collect();
    }
    let ctx = sql_error("listing snapshots");
    conn.prepare_cached("BEGIN")
        .and_then(|mut s| s.execute([]))
        .map_err(&ctx)?;
    let found: Result<Vec<_>> = node_ids.iter().map(|id| snapshots_of(conn, id)).collect();
    // A read transaction has nothing to lose: end it whatever happened, and never hand the
    // connection back to the pool inside one (its reads would stay on this snapshot).
    let ended = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]))
        .map_err(&ctx);
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let found = found?;
    ended?;
    Ok(found)
}

/// Deletes a snapshot row.
pub(crate) fn delete_snapshot(tx: &Connection, id: &SnapshotId) -> Result<()> {
    let deleted = tx
        .prepare_cached("DELETE FROM snapshots WHERE id = ?1")
        .and_then(|mut s| s.execute([id.as_bytes()]))
        .map_err(sql_error("deleting a snapshot"))?;
    if deleted == 0 {
        return Err(StateStoreError::MissingSnapshot { id: *id });
    }
    Ok(())
}

/// Where a ref points, if it exists.
pub(crate) fn get_ref(conn: &Connection, name: &str) -> Result<Option<StateNodeId>> {
    let raw: Option<Vec<u8>> = conn
        .prepare_cached("SELECT node_id FROM refs WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
        .map_err(sql_error("reading a ref"))?;
    raw.map(|b| Ok(StateNodeId::from_bytes(blob32("ref target", &b)?)))
        .transpose()
}

fn log_ref_move(
    tx: &Connection,
    name: &str,
    old: Option<&StateNodeId>,
    new: Option<&StateNodeId>,
    message: Option<&str>,
    now: OffsetDateTime,
) -> Result<()> {
    let (s, ns) = codec::split_time(now);
    tx.prepare_cached(
        "INSERT INTO ref_log (name, old_node, new_node, created_s, created_ns, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut st| {
        st.execute(params![
            name,
            old.map(|id| id.as_bytes().to_vec()),
            new.map(|id| id.as_bytes().to_vec()),
            s,
            ns,
            message
        ])
    })
    .map_err(sql_error("logging a ref move"))?;
    Ok(())
}

/// Compare-and-swap of a ref, logged.
pub(crate) fn set_ref(
    tx: &Connection,
    cache: &mut TxCache,
    name: &str,
    expected: Option<&StateNodeId>,
    new: &StateNodeId,
    message: Option<&str>,
    now: OffsetDateTime,
) -> Result<()> {
    let ctx = sql_error("moving a ref");
    if cache.node(tx, new)?.is_none() {
        return Err(StateStoreError::MissingNode { id: *new });
    }
    let actual = get_ref(tx, name)?;
    store::check_ref_cas(name, expected, actual)?;
    tx.prepare_cached(
        "INSERT INTO refs (name, node_id) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET node_id = excluded.node_id",
    )
    .and_then(|mut s| s.execute(params![name, new.as_bytes()]))
    .map_err(&ctx)?;
    log_ref_move(tx, name, actual.as_ref(), Some(new), message, now)
}

/// Compare-and-delete of a ref, logged.
pub(crate) fn delete_ref(
    tx: &Connection,
    name: &str,
    expected: &StateNodeId,
    now: OffsetDateTime,
) -> Result<()> {
    let actual = get_ref(tx, name)?;
    store::check_ref_cas(name, Some(expected), actual)?;
    tx.prepare_cached("DELETE FROM refs WHERE name = ?1")
        .and_then(|mut s| s.execute([name]))
        .map_err(sql_error("deleting a ref"))?;
    log_ref_move(tx, name, actual.as_ref(), None, None, now)
}

/// Refs whose names start with `prefix`, sorted by name.
pub(crate) fn list_refs(conn: &Connection, prefix: &str) -> Result<Vec<Ref>> {
    let ctx = sql_error("listing refs");
    let mut stmt = conn
        .prepare_cached("SELECT name, node_id FROM refs WHERE name >= ?1 ORDER BY name")
        .map_err(&ctx)?;
    let mut rows = stmt.query([prefix]).map_err(&ctx)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(&ctx)? {
        let name: String = row.get(0).map_err(&ctx)?;
        if !name.starts_with(prefix) {
            break;
        }
        let target: Vec<u8> = row.get(1).map_err(&ctx)?;
        out.push(Ref {
            name,
            target: StateNodeId::from_bytes(blob32("ref target", &target)?),
        });
    }
    Ok(out)
}

/// A ref's moves, oldest first: all of them, or the newest `limit`.
pub(crate) fn ref_log(
    conn: &Connection,
    name: &str,
    limit: Option<usize>,
) -> Result<Vec<RefLogEntry>> {
    let ctx = sql_error("reading a ref log");
    // Newest first, so that a limit reads only the entries it keeps (`ref_log_by_name` serves
    // both directions); reversed below. SQLite reads a negative limit as none.
    let limit = limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    let mut stmt = conn
        .prepare_cached(
            "SELECT old_node, new_node, created_s, created_ns, message FROM ref_log
             WHERE name = ?1 ORDER BY seq DESC LIMIT ?2",
        )
        .map_err(&ctx)?;
    let rows = stmt
        .query_map(rusqlite::params![name, limit], |r| {
            Ok((
                r.get::<_, Option<Vec<u8>>>(0)?,
                r.get::<_, Option<Vec<u8>>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .map_err(&ctx)?;
    let id = |b: Option<Vec<u8>>| -> Result<Option<StateNodeId>> {
        b.map(|b| Ok(StateNodeId::from_bytes(blob32("ref log entry", &b)?)))
            .transpose()
    };
    let mut log = rows
        .map(|r| {
            let (old, new, s, ns, message) = r.map_err(&ctx)?;
            Ok(RefLogEntry {
                old: id(old)?,
                new: id(new)?,
                at: codec::join_time(s, ns)?,
                message,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    log.reverse();
    Ok(log)
}

/// Up to `limit` node ids starting with `prefix`, in id order.
/// [`nodes_with_prefix`] for a prefix with an upper bound.
const NODES_IN_RANGE: &str =
    "SELECT id FROM state_nodes WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3";
/// [`nodes_with_prefix`] for a prefix of all `f`s, which has none (`?2` is not used).
const NODES_FROM: &str = "SELECT id FROM state_nodes WHERE id >= ?1 ORDER BY id LIMIT ?3";

pub(crate) fn nodes_with_prefix(
    conn: &Connection,
    prefix: &IdPrefix,
    limit: usize,
) -> Result<Vec<StateNodeId>> {
    let ctx = sql_error("looking up an id prefix");
    let (low, high) = prefix.range();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // Two statements rather than `(?2 IS NULL OR id < ?2)`: SQLite cannot bound an index
    // range by that, and would read on from the prefix to the end of the id index.
    let (mut stmt, high) = match high {
        Some(high) => (
            conn.prepare_cached(NODES_IN_RANGE).map_err(&ctx)?,
            high.to_vec(),
        ),
        None => (conn.prepare_cached(NODES_FROM).map_err(&ctx)?, Vec::new()),
    };
    let rows = stmt
        .query_map(params![low.as_slice(), high, limit], |r| {
            r.get::<_, Vec<u8>>(0)
        })
        .map_err(&ctx)?;
    rows.map(|r| {
        Ok(StateNodeId::from_bytes(blob32(
            "node id",
            &r.map_err(&ctx)?,
        )?))
    })
    .collect()
}

/// The ids of a node's children.
pub(crate) fn children(conn: &Connection, id: &StateNodeId) -> Result<Vec<StateNodeId>> {
    let ctx = sql_error("reading children");
    let mut stmt = conn
        .prepare_cached(
            "SELECT n.id FROM node_children c JOIN state_nodes n ON n.seq = c.child
             WHERE c.parent = (SELECT seq FROM state_nodes WHERE id = ?1)",
        )
        .map_err(&ctx)?;
    let rows = stmt
        .query_map([id.as_bytes()], |r| r.get::<_, Vec<u8>>(0))
        .map_err(&ctx)?;
    rows.map(|r| {
        Ok(StateNodeId::from_bytes(blob32(
            "node id",
            &r.map_err(&ctx)?,
        )?))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{InMemoryStateStore, SqliteStateStore, StateStore};

    /// A plain connection to a new, empty store (in the returned directory).
    /// Closes `conn` and checks the store in `dir` with `verify`.
    fn assert_verifies(dir: tempfile::TempDir, conn: Connection) {
        drop(conn);
        let report = SqliteStateStore::open(dir.path().join("s.db"))
            .unwrap()
            .verify(|_| {})
            .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    fn new_store_connection() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(SqliteStateStore::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        (dir, conn)
    }

    /// Looking up an id prefix reads the ids in the prefix's range, not every id from the
    /// prefix to the end of the index: a lookup that matches nothing stays as cheap in a
    /// large store as in a small one.
    #[test]
    fn an_id_prefix_lookup_reads_only_its_range() {
        use crate::History;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStateStore::open(&path).unwrap();
        let mut batch = store.batch();
        for i in 0..500u32 {
            let data = batch.put_state(StateData::new(i.to_be_bytes().to_vec()));
            let meta = StateMetadata::new(OffsetDateTime::UNIX_EPOCH, None);
            batch.commit_node(Vec::new(), data, meta).unwrap();
        }
        batch.commit().unwrap();
        drop(store);
        let conn = Connection::open(&path).unwrap();
        // The lowest 4-digit prefix that no stored id has: everything above it lies between it
        // and the end of the index.
        let ids: Vec<Vec<u8>> = conn
            .prepare("SELECT id FROM state_nodes")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let unused = (0u16..)
            .find(|p| !ids.iter().any(|id| id[..2] == p.to_be_bytes()))
            .unwrap();
        let prefix: IdPrefix = format!("{unused:04x}").parse().unwrap();
        assert!(nodes_with_prefix(&conn, &prefix, 2).unwrap().is_empty());
        let steps = conn
            .prepare_cached(NODES_IN_RANGE)
            .unwrap()
            .get_status(rusqlite::StatementStatus::VmStep);
        assert!(
            steps < 100,
            "{steps} VM steps for a prefix matching nothing"
        );
    }

    /// A group commit runs many requests in one transaction with one [`TxCache`]. A generation
    /// settled by an import must not be read back stale from the cache by a later request.
    #[test]
    fn a_settled_generation_is_not_read_stale_from_the_transaction_cache() {
        let sender = InMemoryStateStore::new();
        let mut chain: Vec<StateNodeId> = Vec::new();
        for i in 0..4u8 {
            let data = sender.put_state(StateData::new(vec![i])).unwrap();
            let parents = chain.last().copied().into_iter().collect();
            chain.push(
                sender
                    .commit_node(parents, data, StateMetadata::now(None))
                    .unwrap(),
            );
        }
        let package = |i: usize, claim: u64| {
            let mut p = sender
                .export_snapshot(&sender.snapshot(&chain[i]).unwrap())
                .unwrap();
            p.generation = claim;
            p
        };
        let (dir, mut conn) = new_store_connection();
        let tx = conn.transaction().unwrap();
        let mut cache = TxCache::default();
        let now = OffsetDateTime::now_utc();
        // d claims 2 with its parent c missing; a request commits on d (caching d's
        // generation); then c arrives claiming 10, which moves d above it: to 13 (c's 10,
        // raised by room for as many ancestors as nodes moved, two: see
        // `crate::generation`).
        let d = package(3, 2);
        import_snapshot(&tx, &mut cache, &d, &d.verify().unwrap(), now).unwrap();
        let on_d = |cache: &mut TxCache, byte: u8| {
            let data_ref = StateDataRef::new_v7();
            let bytes = vec![byte; 3];
            put_state(
                &tx,
                cache,
                &data_ref,
                &ContentHash::of(&bytes),
                &bytes,
                None,
            )
            .unwrap();
            commit_node(
                &tx,
                cache,
                &[chain[3]],
                &data_ref,
                &StateMetadata::now(None),
            )
            .unwrap()
        };
        let early = on_d(&mut cache, 1);
        let c = package(2, 10);
        import_snapshot(&tx, &mut cache, &c, &c.verify().unwrap(), now).unwrap();
        let late = on_d(&mut cache, 2);
        let generation = |id: &StateNodeId| get_node(&tx, id).unwrap().generation;
        assert_eq!(generation(&chain[2]), 12);
        assert_eq!(generation(&chain[3]), 13);
        assert_eq!(generation(&early), 14, "settled with its parent");
        assert_eq!(generation(&late), 14, "committed after the settling");
        tx.commit().unwrap();
        assert_verifies(dir, conn);
    }

    /// A chain imported newest first, one package per transaction, every package claiming
    /// generation 2: each arrival contradicts the claims stored before it. Settling used to
    /// recompute every descendant on each import (n²/2 rows updated); now the rows written
    /// stay linear in n, and the generations end exact.
    #[test]
    fn forged_generation_claims_imported_newest_first_write_linearly_many_rows() {
        let n: u64 = 1500;
        let (sender, chain) = InMemoryStateStore::chain_for_tests(n);
        let (dir, mut conn) = new_store_connection();
        let mut rows = 0;
        for (i, id) in chain.iter().enumerate().rev() {
            let mut package = sender
                .export_snapshot(&sender.snapshot(id).unwrap())
                .unwrap();
            if i > 0 {
                package.generation = 2;
            }
            let before = conn.total_changes();
            let tx = conn.transaction().unwrap();
            let hash = package.verify().unwrap();
            import_snapshot(
                &tx,
                &mut TxCache::default(),
                &package,
                &hash,
                OffsetDateTime::now_utc(),
            )
            .unwrap();
            tx.commit().unwrap();
            rows += conn.total_changes() - before;
        }
        // About 8 rows per import (state, blob, node, snapshot, the boundary edge recorded
        // and then replaced), plus the settling.
        assert!(rows <= 12 * n, "{rows} rows for {n} imports");
        for (i, id) in chain.iter().enumerate() {
            assert_eq!(get_node(&conn, id).unwrap().generation, i as u64 + 1);
        }
        assert_verifies(dir, conn);
    }

    /// A state past SQLite's largest value is an InvalidInput naming the limit, checked
    /// before SQLite sees it (which said only "string or blob too big"). (The zeroed buffer
    /// is never touched, so it costs no memory.)
    #[test]
    fn a_state_past_sqlites_limit_is_refused_with_the_limit() {
        let (_dir, mut conn) = new_store_connection();
        let tx = conn.transaction().unwrap();
        let mut cache = TxCache::default();
        let too_big = vec![0u8; MAX_STATE_LEN + 1];
        let hash = ContentHash::of(b"not checked before the length");
        let err = put_state(
            &tx,
            &mut cache,
            &StateDataRef::new_v7(),
            &hash,
            &too_big,
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&err, StateStoreError::InvalidInput { what: "state", .. })
                && err
                    .to_string()
                    .contains(&format!("{} bytes", MAX_STATE_LEN + 1)),
            "{err}"
        );
    }
}
