//! The `StateStore` contract, and the checks every backend shares.

use crate::codec;
use crate::error::{Result, StateStoreError};
use crate::gc::{GcOptions, GcReport};
use crate::id::{ContentHash, IdPrefix, SnapshotId, StateDataRef, StateNodeId};
use time::OffsetDateTime;

use crate::model::{
    Ref, RefLogEntry, SnapshotInfo, StateData, StateInfo, StateMetadata, StateNode, StateSnapshot,
};
use crate::package::SnapshotPackage;

/// Synchronous storage interface for state data, state graph nodes and snapshots.
///
/// Every implementation keeps the invariants of the design: node ids prove their content,
/// committing is idempotent, the graph is closed (parents and data exist before a node does),
/// and a failed call writes nothing (except a write whose error
/// [`is_in_doubt`](crate::StateStoreError::is_in_doubt)). The trait is object safe: use it as `&dyn StateStore` or
/// `Arc<dyn StateStore>`.
///
/// # Example
///
/// ```
/// use stategraph::{InMemoryStateStore, StateData, StateMetadata, StateStore};
///
/// let store = InMemoryStateStore::new();
/// let data_ref = store.put_state(StateData::new(b"tick 1".to_vec()))?;
/// let root = store.commit_node(Vec::new(), data_ref, StateMetadata::now(None))?;
/// let next_ref = store.put_state(StateData::new(b"tick 2".to_vec()))?;
/// let next = store.commit_node(vec![root], next_ref, StateMetadata::now(None))?;
/// assert_eq!(store.get_node(&next)?.parent_ids, vec![root]);
/// # Ok::<(), stategraph::StateStoreError>(())
/// ```
pub trait StateStore: Send + Sync {
    /// Stores state bytes and returns a fresh reference to them.
    ///
    /// Identical bytes are stored once; each call still returns a new reference.
    ///
    /// # Errors
    /// [`StateStoreError::ReadOnly`] on a read-only store;
    /// [`StateStoreError::InvalidInput`] for a state larger than the backend holds
    /// ([`SqliteStateStore`](crate::SqliteStateStore): [`MAX_STATE_LEN`](crate::MAX_STATE_LEN)
    /// bytes); backend and storage-full errors.
    fn put_state(&self, data: StateData) -> Result<StateDataRef> {
        self.apply(Writes::one(Op::put_state(data)))?
            .single()?
            .state()
    }

    /// Returns exactly the bytes and content type that were put under `data_ref`.
    ///
    /// # Errors
    /// [`StateStoreError::MissingState`] for an unknown ref; [`StateStoreError::Corrupt`] if
    /// the stored bytes no longer match their hash.
    fn get_state(&self, data_ref: &StateDataRef) -> Result<StateData>;

    /// Creates (or finds) the node with these parents, state and metadata and returns its id.
    ///
    /// The id is a hash of the parents (in order), the state's hash and content type, and the
    /// metadata, so committing the same thing twice returns the same id and changes nothing.
    ///
    /// # Errors
    /// [`StateStoreError::MissingState`] for an unknown data ref,
    /// [`StateStoreError::MissingNode`] for an unknown parent,
    /// [`StateStoreError::InvalidInput`] for a parent listed twice. Nothing is written on error.
    fn commit_node(
        &self,
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> Result<StateNodeId> {
        let op = Op::commit_node(parent_ids, data_ref, metadata)?;
        self.apply(Writes::one(op))?.single()?.node()
    }

    /// Stores `data` and commits a node holding it, in one transaction: what a program that
    /// records its state every tick wants (one fsync per tick instead of two with
    /// `Durability::Immediate`). The same as [`put_state`](Self::put_state) followed by
    /// [`commit_node`](Self::commit_node), all or nothing.
    ///
    /// The returned data ref is always new, as `put_state`'s is. When the node already exists
    /// (the same parents, bytes and metadata were committed before), its id is returned and
    /// the node keeps the data ref it was first committed with; both refs read the same bytes,
    /// but no node holds the new one, so [`gc`](Self::gc) removes it once its grace period
    /// is over. Keep node ids, and read a node's state through its own
    /// [`data_ref`](crate::StateNode::data_ref).
    ///
    /// # Errors
    /// As [`commit_node`](Self::commit_node); nothing is written on error.
    fn commit_state(
        &self,
        parent_ids: Vec<StateNodeId>,
        data: StateData,
        metadata: StateMetadata,
    ) -> Result<(StateDataRef, StateNodeId)> {
        let data_ref = StateDataRef::new_v7();
        let put = Op::PutState {
            data_ref,
            hash: data.hash(),
            data,
        };
        let commit = Op::commit_node(parent_ids, data_ref, metadata)?;
        let mut applied = self.apply(Writes {
            ops: vec![put, commit],
        })?;
        let node = applied
            .outcomes
            .pop()
            .map_or_else(|| Err(Outcome::missing()), Outcome::node)?;
        Ok((data_ref, node))
    }

    /// One step of a branch, in one transaction: stores `data`, commits a node holding it
    /// whose only parent is `head` (a root when `head` is `None`), and moves the ref `name`
    /// from `head` to that node by compare-and-swap (creating the ref when `head` is `None`).
    /// What a program that keeps its state on a branch does every tick, with one fsync
    /// under `Durability::Immediate`; merges and other shapes take a
    /// [`Batch`](crate::Batch). The ref log records the move as `commit: LABEL`. The data
    /// ref returned is as [`commit_state`](Self::commit_state)'s.
    ///
    /// # Errors
    /// [`StateStoreError::RefConflict`] when `name` is not at `head` (another writer moved
    /// it), also when `head` is not stored (gc may have pruned it after the ref moved on: the
    /// caller reads the ref again and retries); [`StateStoreError::InvalidRefName`]. Nothing
    /// is written on error.
    fn commit_on(
        &self,
        name: &str,
        head: Option<&StateNodeId>,
        data: StateData,
        metadata: StateMetadata,
    ) -> Result<(StateDataRef, StateNodeId)> {
        let parents: Vec<StateNodeId> = head.into_iter().copied().collect();
        let hash = data.hash();
        // The id covers only what is at hand here, so the ref move can name the node before
        // the backend commits it; the backend's own check of the move (the node exists)
        // would fail the whole transaction if the two ever disagreed.
        let id = codec::node_id(&parents, &hash, data.content_type.as_deref(), &metadata);
        let message = match &metadata.label {
            Some(label) => format!("commit: {label}"),
            None => "commit".to_owned(),
        };
        let data_ref = StateDataRef::new_v7();
        let ops = vec![
            Op::PutState {
                data_ref,
                hash,
                data,
            },
            Op::commit_node(parents, data_ref, metadata)?,
            Op::set_ref(name, head, &id, Some(&message))?,
        ];
        if let Err(e) = self.apply(Writes { ops }) {
            // The node is committed before the ref moves, so a `head` that is not stored fails
            // first, as MissingNode; but the ref cannot be at a node that is not stored, so
            // it has moved on, and that is the answer a caller can act on.
            if let (StateStoreError::MissingNode { id: missing }, Some(expected)) = (&e, head)
                && missing == expected
                && let Ok(actual) = self.get_ref(name)
                && actual.as_ref() != Some(expected)
            {
                return Err(StateStoreError::RefConflict {
                    name: name.to_owned(),
                    expected: Some(*expected),
                    actual,
                });
            }
            return Err(e);
        }
        Ok((data_ref, id))
    }

    /// Returns the node with this id.
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`] for an unknown id; [`StateStoreError::Corrupt`] if the
    /// stored node no longer hashes to its id.
    fn get_node(&self, id: &StateNodeId) -> Result<StateNode>;

    /// Makes a durable restore point at `node_id` and returns its id.
    ///
    /// The snapshot id is derived from the node id, so snapshotting the same node twice
    /// returns the same id.
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`] for an unknown node.
    fn snapshot(&self, node_id: &StateNodeId) -> Result<SnapshotId> {
        self.apply(Writes::one(Op::snapshot(*node_id)))?
            .single()?
            .snapshot()
    }

    /// Loads a snapshot: its node id and the state that node holds.
    ///
    /// # Errors
    /// [`StateStoreError::MissingSnapshot`] for an unknown id; [`StateStoreError::Corrupt`] if
    /// the stored state fails its hash check.
    fn load_snapshot(&self, snapshot_id: &SnapshotId) -> Result<StateSnapshot>;

    /// Lists every snapshot, oldest first.
    ///
    /// # Errors
    /// Backend errors only.
    fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>>;

    /// The record of one snapshot, `None` if there is none with this id: a lookup that does
    /// not read the others (the SQLite store reads one row, so a damaged record of another
    /// snapshot, which fails [`list_snapshots`](Self::list_snapshots), does not fail it).
    ///
    /// # Errors
    /// [`StateStoreError::Corrupt`] if this snapshot's record does not read; backend errors.
    fn snapshot_info(&self, id: &SnapshotId) -> Result<Option<SnapshotInfo>> {
        Ok(self.list_snapshots()?.into_iter().find(|s| s.id == *id))
    }

    /// Lists the snapshots of one node (at most one per node today, since snapshot ids are
    /// derived from node ids).
    ///
    /// # Errors
    /// Backend errors only; an unknown node simply has no snapshots.
    fn snapshots_of(&self, node_id: &StateNodeId) -> Result<Vec<SnapshotInfo>>;

    /// [`StateStore::snapshots_of`] for each of `node_ids`, in order, read in one go: what a
    /// log that marks its snapshotted nodes asks, a page of nodes at a time (on SQLite, one
    /// read transaction instead of one per node).
    ///
    /// # Errors
    /// Backend errors only; unknown nodes simply have no snapshots.
    fn snapshots_of_each(&self, node_ids: &[StateNodeId]) -> Result<Vec<Vec<SnapshotInfo>>> {
        node_ids.iter().map(|id| self.snapshots_of(id)).collect()
    }

    /// Deletes a snapshot. The node and its state stay.
    ///
    /// # Errors
    /// [`StateStoreError::MissingSnapshot`] if there is no such snapshot.
    fn delete_snapshot(&self, snapshot_id: &SnapshotId) -> Result<()> {
        self.apply(Writes::one(Op::DeleteSnapshot { id: *snapshot_id }))
            .map(drop)
    }

    /// Moves (or creates) the ref `name` to `new` if it currently points at `expected`, and
    /// appends the move, with `message`, to the ref log. `expected = None` means "the ref
    /// must not exist yet".
    ///
    /// # Errors
    /// [`StateStoreError::RefConflict`] when the ref is not at `expected` (nothing changes);
    /// [`StateStoreError::InvalidRefName`]; [`StateStoreError::MissingNode`] if `new` is not
    /// stored.
    fn set_ref_with_message(
        &self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
        message: Option<&str>,
    ) -> Result<()> {
        self.apply(Writes::one(Op::set_ref(name, expected, new, message)?))
            .map(drop)
    }

    /// [`set_ref_with_message`](Self::set_ref_with_message) without a message: the
    /// compare-and-swap every ref move goes through.
    ///
    /// # Errors
    /// As [`set_ref_with_message`](Self::set_ref_with_message).
    fn set_ref(&self, name: &str, expected: Option<&StateNodeId>, new: &StateNodeId) -> Result<()> {
        self.set_ref_with_message(name, expected, new, None)
    }

    /// Where the ref `name` points, or `None` if it does not exist.
    ///
    /// # Errors
    /// [`StateStoreError::InvalidRefName`]; backend errors.
    fn get_ref(&self, name: &str) -> Result<Option<StateNodeId>>;

    /// Deletes the ref `name` if it currently points at `expected`; the move is logged.
    ///
    /// # Errors
    /// [`StateStoreError::RefConflict`] when the ref is elsewhere or does not exist.
    fn delete_ref(&self, name: &str, expected: &StateNodeId) -> Result<()> {
        self.apply(Writes::one(Op::delete_ref(name, expected)?))
            .map(drop)
    }

    /// The refs whose names start with `prefix` (`""` for all), sorted by name.
    ///
    /// # Errors
    /// Backend errors only.
    fn list_refs(&self, prefix: &str) -> Result<Vec<Ref>>;

    /// Every recorded move of the ref `name`, oldest first (empty if it never existed).
    /// Entries survive the ref's deletion, so a deleted ref can be brought back.
    ///
    /// # Errors
    /// [`StateStoreError::InvalidRefName`]; backend errors.
    fn ref_log(&self, name: &str) -> Result<Vec<RefLogEntry>>;

    /// The newest `limit` moves of the ref `name`, oldest first: the end of
    /// [`ref_log`](Self::ref_log), read without the rest of it. A ref moved every tick has
    /// a log as long as its history; undoing the last move needs one entry.
    ///
    /// # Errors
    /// As [`ref_log`](Self::ref_log).
    fn ref_log_tail(&self, name: &str, limit: usize) -> Result<Vec<RefLogEntry>> {
        // For other implementations: correct, but reads the whole log. Both backends here
        // read only the tail.
        let mut log = self.ref_log(name)?;
        log.drain(..log.len().saturating_sub(limit));
        Ok(log)
    }

    /// Up to `limit` node ids that start with `prefix`, in id order.
    ///
    /// # Errors
    /// Backend errors only.
    fn nodes_with_prefix(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<StateNodeId>>;

    /// Packages a snapshot (its node, parent ids, metadata and bytes) for another store.
    ///
    /// # Errors
    /// [`StateStoreError::MissingSnapshot`] (also for one deleted while it is read);
    /// corruption errors from reading it back.
    fn export_snapshot(&self, snapshot_id: &SnapshotId) -> Result<SnapshotPackage> {
        let snapshot = self.load_snapshot(snapshot_id)?;
        // Two reads: a snapshot deleted after the first, and its node collected by a gc,
        // is a snapshot deleted before the export began, not a missing node.
        let node = match self.get_node(&snapshot.node_id) {
            Err(StateStoreError::MissingNode { .. })
                if self.snapshot_info(snapshot_id)?.is_none() =>
            {
                return Err(StateStoreError::MissingSnapshot { id: *snapshot_id });
            }
            other => other?,
        };
        Ok(SnapshotPackage {
            node_id: node.id,
            snapshot_id: *snapshot_id,
            parent_ids: node.parent_ids,
            content_type: node.content_type,
            metadata: node.metadata,
            // Only a claim, which receivers refuse above 2^62: a store can hold more only
            // when it built on a claim forged that high, and its own nodes must still export.
            generation: node.generation.min(crate::codec::MAX_GENERATION_CLAIM),
            bytes: snapshot.state.bytes,
        })
    }

    /// Imports a snapshot package, recomputing every hash before writing anything. Parents
    /// the store lacks are recorded as a shallow boundary: walks stop there and report them
    /// (see [`Log::boundary`](crate::Log::boundary)). Importing the same package twice
    /// changes nothing the second time, except that a SQLite store whose copy of the state,
    /// or whose row of the node, was damaged on disk (as
    /// [`SqliteStateStore::verify`](crate::SqliteStateStore::verify) reports) gets the
    /// package's bytes or node written back over it (the row keeps its place, generation and
    /// data ref, unless that data ref no longer holds the package's content).
    ///
    /// The package's generation is a claim no id covers. A node whose parents are all stored
    /// gets 1 + its largest parent's generation whatever it claims; one below the boundary
    /// starts at its claim (raised above the parents stored here) and may be moved when its
    /// ancestors arrive, so that claims that disagree are repaired without recomputing the
    /// whole history on every import. Once the history is complete, every generation is
    /// exact.
    ///
    /// A new snapshot is listed with its node's creation time: a package does not record
    /// when the snapshot was taken.
    ///
    /// # Errors
    /// [`StateStoreError::InvalidInput`] if the package's bytes, node id or snapshot id do not
    /// match its content, or its claimed generation is impossible (a root not at 1, another
    /// node above 2^62 or below 2) or would take a stored one past `i64::MAX`.
    fn import_snapshot(&self, package: &SnapshotPackage) -> Result<SnapshotId> {
        self.apply(Writes::one(Op::import(package)?))?
            .single()?
            .snapshot()
    }

    /// The hash, content type and length of stored state, without reading the bytes.
    ///
    /// # Errors
    /// [`StateStoreError::MissingState`] for an unknown ref.
    fn state_info(&self, data_ref: &StateDataRef) -> Result<StateInfo>;

    /// Up to `max_len` bytes from the start of stored state (all of it when it is shorter),
    /// without reading the rest: a preview of a state of any size. With
    /// [`state_info`](Self::state_info) for the length, what `stategraph show` prints.
    ///
    /// The bytes are not checked against the state's hash, which would need every byte: they
    /// are for showing, not for restoring. [`get_state`](Self::get_state) returns verified
    /// bytes, and [`SqliteStateStore::verify`](crate::SqliteStateStore::verify) checks a
    /// whole store.
    ///
    /// The default reads the whole state with `get_state`; both backends read only the
    /// prefix.
    ///
    /// # Example
    /// ```
    /// use stategraph::{InMemoryStateStore, StateData, StateStore};
    ///
    /// let store = InMemoryStateStore::new();
    /// let data_ref = store.put_state(StateData::new(b"{\"tick\": 1}".to_vec()))?;
    /// assert_eq!(store.state_prefix(&data_ref, 5)?, b"{\"tic");
    /// assert_eq!(store.state_prefix(&data_ref, 100)?, b"{\"tick\": 1}");
    /// # Ok::<(), stategraph::StateStoreError>(())
    /// ```
    ///
    /// # Errors
    /// [`StateStoreError::MissingState`] for an unknown ref; [`StateStoreError::Corrupt`] if
    /// the state's bytes are missing or unreadable.
    fn state_prefix(&self, data_ref: &StateDataRef, max_len: usize) -> Result<Vec<u8>> {
        let mut bytes = self.get_state(data_ref)?.bytes;
        bytes.truncate(max_len);
        Ok(bytes)
    }

    /// Removes what nothing leads to any more: nodes no ref, snapshot or ref log entry
    /// reaches, states no remaining node holds, and bytes no remaining state holds, once
    /// they are older than the grace period (see [`GcOptions`] for exactly what is kept).
    /// One transaction: it removes all of that or nothing, and concurrent writers wait for
    /// it. A SQLite store reads every node's parents once and holds them in memory (memory
    /// and time grow with the number of nodes). The graph stays closed: a kept node's
    /// ancestors are all kept. Freed space is reused by SQLite; the file shrinks only when
    /// [`SqliteStateStore::vacuum`](crate::SqliteStateStore::vacuum) rewrites it.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use stategraph::{GcOptions, InMemoryStateStore, StateData, StateMetadata, StateStore};
    ///
    /// let store = InMemoryStateStore::new();
    /// let (_, kept) = store.commit_on("main", None, StateData::new(b"a".to_vec()), StateMetadata::now(None))?;
    /// // A node nothing points at, and a state no node holds.
    /// store.commit_state(vec![kept], StateData::new(b"b".to_vec()), StateMetadata::now(None))?;
    /// store.put_state(StateData::new(b"c".to_vec()))?;
    ///
    /// // Within the grace period (two weeks by default) nothing goes.
    /// assert_eq!(store.gc(&GcOptions::new())?.nodes_removed, 0);
    /// let report = store.gc(&GcOptions::new().grace(Duration::ZERO))?;
    /// assert_eq!((report.nodes_removed, report.states_removed), (1, 2));
    /// assert!(store.get_node(&kept).is_ok());
    /// # Ok::<(), stategraph::StateStoreError>(())
    /// ```
    ///
    /// # Errors
    /// [`StateStoreError::ReadOnly`] on a read-only store; [`StateStoreError::Corrupt`] when a
    /// node's parents cannot be read (nothing is removed then) or a row points at one the
    /// collection removes (a SQLite collection in several steps keeps what its earlier steps
    /// removed: see [`GcOptions::rows_per_step`]); backend errors.
    fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        self.apply(Writes::one(Op::Collect(Box::new(options.clone()))))?
            .single()?
            .collected()
    }

    /// Applies writes atomically: all of them, in order, or (on any error) none. Every write
    /// method of this trait is one call to `apply`, so a backend implements writing once;
    /// build several writes with [`Batch`](crate::Batch).
    ///
    /// # Errors
    /// The first error any write meets; nothing is applied then.
    fn apply(&self, writes: Writes) -> Result<Applied>;

    /// Read access to the graph's structure, for the history algorithms of
    /// [`History`](crate::History). A cursor may hold a read connection until dropped.
    ///
    /// # Errors
    /// Backend errors only.
    fn cursor(&self) -> Result<Box<dyn GraphCursor + '_>>;
}

/// Read access to the graph's structure: what history algorithms need from a backend.
pub trait GraphCursor {
    /// The node with this id, or `None` if it is not stored here (for a parent: a shallow
    /// boundary).
    ///
    /// # Errors
    /// Backend errors; [`StateStoreError::Corrupt`] for an undecodable row.
    fn node(&mut self, id: &StateNodeId) -> Result<Option<StateNode>>;

    /// The ids of the nodes that list `id` as a parent, in no particular order.
    ///
    /// # Errors
    /// Backend errors only.
    fn children(&mut self, id: &StateNodeId) -> Result<Vec<StateNodeId>>;

    /// Whether `id` is stored now, read afresh (past anything the cursor read ahead). A walk
    /// that finds a parent missing asks this of the child it came from: a child gone too
    /// was removed by a `gc` while the walk ran, where a child still stored has a parent
    /// that is missing for good (a shallow boundary).
    ///
    /// # Errors
    /// Backend errors; [`StateStoreError::Corrupt`] for an undecodable row.
    fn is_stored(&mut self, id: &StateNodeId) -> Result<bool> {
        Ok(self.node(id)?.is_some())
    }
}

/// Builds the node a commit would create, given what the backend looked up inside its
/// transaction: the state's hash and content type, and each parent's generation (in order).
pub(crate) fn build_node(
    parent_ids: Vec<StateNodeId>,
    data_ref: StateDataRef,
    data_hash: ContentHash,
    content_type: Option<String>,
    parent_generations: impl IntoIterator<Item = u64>,
    metadata: StateMetadata,
) -> Result<StateNode> {
    let id = codec::node_id(&parent_ids, &data_hash, content_type.as_deref(), &metadata);
    let generation = parent_generations
        .into_iter()
        .max()
        .map_or(1, |g| g.saturating_add(1));
    if generation > codec::MAX_GENERATION {
        return Err(codec::generation_too_large("parents", generation));
    }
    Ok(StateNode {
        id,
        parent_ids,
        data_ref,
        data_hash,
        content_type,
        metadata: utc(metadata)?,
        generation,
    })
}

/// `metadata` with its time in UTC: the offset is not part of a node, and every backend reads
/// it back as UTC.
///
/// # Errors
/// [`StateStoreError::InvalidInput`] for a time whose UTC instant `time` cannot represent
/// (within a day of the end of year 9999, or of the start of year -9999, at an offset that
/// pushes it over): such a node could be stored, but never read back.
pub(crate) fn utc(mut metadata: StateMetadata) -> Result<StateMetadata> {
    metadata.created_at = codec::utc_time(metadata.created_at)?;
    Ok(metadata)
}

/// Checks that a node read back from storage still hashes to its id (and, for a root, that
/// its generation is 1; other generations depend on the parents and are checked by fsck).
pub(crate) fn verify_node(node: &StateNode) -> Result<()> {
    if node.parent_ids.is_empty() && node.generation != 1 {
        return Err(StateStoreError::corrupt(
            format!("node {}", node.id),
            format!(
                "a root with generation {} (roots have generation 1)",
                node.generation
            ),
        ));
    }
    let computed = codec::node_id(
        &node.parent_ids,
        &node.data_hash,
        node.content_type.as_deref(),
        &node.metadata,
    );
    if computed != node.id {
        return Err(StateStoreError::corrupt(
            format!("node {}", node.id),
            format!("its stored content hashes to {computed}"),
        ));
    }
    Ok(())
}

/// Checks that state bytes read back from storage still match their recorded hash.
pub(crate) fn verify_state(
    data_ref: &StateDataRef,
    hash: &ContentHash,
    bytes: &[u8],
) -> Result<()> {
    let actual = ContentHash::of(bytes);
    if &actual != hash {
        return Err(StateStoreError::corrupt(
            format!("state data {data_ref}"),
            format!("bytes hash to {actual}, expected {hash}"),
        ));
    }
    Ok(())
}

/// The compare step of a ref compare-and-swap, shared by every backend.
pub(crate) fn check_ref_cas(
    name: &str,
    expected: Option<&StateNodeId>,
    actual: Option<StateNodeId>,
) -> Result<()> {
    if expected.copied() != actual {
        return Err(StateStoreError::RefConflict {
            name: name.to_owned(),
            expected: expected.copied(),
            actual,
        });
    }
    Ok(())
}

/// Writes to apply atomically with [`StateStore::apply`]; build them with
/// [`Batch`](crate::Batch). Opaque so that every write is validated the same way.
#[derive(Debug, Clone, Default)]
pub struct Writes {
    pub(crate) ops: Vec<Op>,
}

impl Writes {
    pub(crate) fn one(op: Op) -> Self {
        Self { ops: vec![op] }
    }

    /// How many writes there are.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What [`StateStore::apply`] produced: one outcome per write, in order. Opaque; the write
/// methods of [`StateStore`] read it.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub(crate) outcomes: Vec<Outcome>,
}

impl Applied {
    /// How many writes were applied.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// The outcome of a one-write batch.
    pub(crate) fn single(mut self) -> Result<Outcome> {
        match (self.outcomes.pop(), self.outcomes.is_empty()) {
            (Some(outcome), true) => Ok(outcome),
            _ => Err(StateStoreError::Backend(crate::error::BackendError::new(
                "applying a write",
                "internal error: expected exactly one outcome",
            ))),
        }
    }
}

/// One write. Every mutation of every backend is expressed as these, so a single call, a
/// batch and a group commit all run the same code.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    PutState {
        data_ref: StateDataRef,
        hash: ContentHash,
        data: StateData,
    },
    CommitNode {
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    },
    /// Stamped with the time the backend applies it, as are ref moves: when it was written,
    /// not when it was asked for (a request may wait for the write lock).
    Snapshot {
        node_id: StateNodeId,
    },
    DeleteSnapshot {
        id: SnapshotId,
    },
    SetRef {
        name: String,
        expected: Option<StateNodeId>,
        new: StateNodeId,
        message: Option<String>,
    },
    DeleteRef {
        name: String,
        expected: StateNodeId,
    },
    Import {
        package: Box<SnapshotPackage>,
        data_hash: ContentHash,
        at: OffsetDateTime,
    },
    /// Garbage collection; only ever alone in its `Writes` (see [`StateStore::gc`]). The
    /// backend turns the options into cut-off times once it holds the write lock: a node
    /// committed while the collection waited for it is younger than the collection.
    Collect(Box<GcOptions>),
    /// One step of a SQLite collection planned beforehand (see `sqlite::gc::steps`); only
    /// ever alone in its `Writes`.
    CollectStep(std::sync::Arc<crate::sqlite::gc::Step>),
}

/// What one [`Op`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    State(StateDataRef),
    Node(StateNodeId),
    Snapshot(SnapshotId),
    Collected(GcReport),
    Done,
}

// The constructors check what can be checked without the store (names, parent lists,
// package hashes) and stamp the time, so a rejected write never reaches a backend.
impl Op {
    pub(crate) fn put_state(data: StateData) -> Self {
        Self::PutState {
            data_ref: StateDataRef::new_v7(),
            hash: data.hash(),
            data,
        }
    }

    pub(crate) fn commit_node(
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> Result<Self> {
        codec::check_parents(&parent_ids)?;
        Ok(Self::CommitNode {
            parent_ids,
            data_ref,
            metadata,
        })
    }

    pub(crate) fn snapshot(node_id: StateNodeId) -> Self {
        Self::Snapshot { node_id }
    }

    pub(crate) fn set_ref(
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
        message: Option<&str>,
    ) -> Result<Self> {
        crate::refs::validate_ref_name(name)?;
        Ok(Self::SetRef {
            name: name.to_owned(),
            expected: expected.copied(),
            new: *new,
            message: message.map(str::to_owned),
        })
    }

    pub(crate) fn delete_ref(name: &str, expected: &StateNodeId) -> Result<Self> {
        crate::refs::validate_ref_name(name)?;
        Ok(Self::DeleteRef {
            name: name.to_owned(),
            expected: *expected,
        })
    }

    pub(crate) fn import(package: &SnapshotPackage) -> Result<Self> {
        let data_hash = package.verify()?;
        Ok(Self::Import {
            package: Box::new(package.clone()),
            data_hash,
            // A package does not say when its snapshot was taken; its node's time orders
            // imported snapshots along their history, where the import's time would order
            // them by file name.
            at: package.metadata.created_at,
        })
    }
}

impl Op {
    /// What the write does, for error messages ("the store is open read-only; reopen it
    /// writable to ...").
    pub(crate) fn describe(&self) -> &'static str {
        match self {
            Self::PutState { .. } => "put state",
            Self::CommitNode { .. } => "commit a node",
            Self::Snapshot { .. } => "take a snapshot",
            Self::DeleteSnapshot { .. } => "delete a snapshot",
            Self::SetRef { .. } => "move a ref",
            Self::DeleteRef { .. } => "delete a ref",
            Self::Import { .. } => "import a snapshot",
            Self::Collect(_) | Self::CollectStep(_) => "collect garbage",
        }
    }
}

impl Outcome {
    /// The value a single-operation call returns; the backend produced the matching outcome.
    pub(crate) fn node(self) -> Result<StateNodeId> {
        match self {
            Self::Node(id) => Ok(id),
            other => Err(Self::mismatch(other)),
        }
    }

    pub(crate) fn snapshot(self) -> Result<SnapshotId> {
        match self {
            Self::Snapshot(id) => Ok(id),
            other => Err(Self::mismatch(other)),
        }
    }

    pub(crate) fn state(self) -> Result<StateDataRef> {
        match self {
            Self::State(r) => Ok(r),
            other => Err(Self::mismatch(other)),
        }
    }

    pub(crate) fn collected(self) -> Result<GcReport> {
        match self {
            Self::Collected(report) => Ok(report),
            other => Err(Self::mismatch(other)),
        }
    }

    fn missing() -> StateStoreError {
        StateStoreError::Backend(crate::error::BackendError::new(
            "applying a write",
            "internal error: a write produced no outcome",
        ))
    }

    fn mismatch(other: Self) -> StateStoreError {
        StateStoreError::Backend(crate::error::BackendError::new(
            "applying a write",
            format!("internal error: unexpected outcome {other:?}"),
        ))
    }
}

/// The error for a put of state under a data ref that already names other state (data refs
/// are fresh UUIDs, so only a reused or hand-made ref gets here).
pub(crate) fn data_ref_taken(data_ref: &StateDataRef) -> StateStoreError {
    StateStoreError::invalid(
        "data ref",
        format!("{data_ref} already names other state; a data ref is stored once"),
    )
}
