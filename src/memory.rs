//! The in-memory backend: hash maps behind one lock, for tests and short runs.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::codec;
use crate::error::{Result, StateStoreError};
use crate::id::{ContentHash, SnapshotId, StateDataRef, StateNodeId};
use crate::model::{StateData, StateMetadata, StateNode, StateSnapshot};
use crate::store::{self, StateStore};

/// A state store that keeps everything in memory. Data is lost when it is dropped.
///
/// It has the same semantics and produces the same ids as
/// [`SqliteStateStore`](crate::SqliteStateStore).
///
/// # Example
///
/// ```
/// use stategraph::{InMemoryStateStore, StateData, StateMetadata, StateStore};
///
/// let store = InMemoryStateStore::new();
/// let data_ref = store.put_state(StateData::new(vec![1, 2, 3]))?;
/// let node = store.commit_node(vec![], data_ref, StateMetadata::now(Some("seed".into())))?;
/// let snapshot = store.load_snapshot(&store.snapshot(&node)?)?;
/// assert_eq!(snapshot.state.bytes, vec![1, 2, 3]);
/// # Ok::<(), stategraph::StateStoreError>(())
/// ```
#[derive(Debug, Default)]
pub struct InMemoryStateStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bytes keyed by their hash, so identical states are held once.
    blobs: HashMap<ContentHash, Arc<[u8]>>,
    states: HashMap<StateDataRef, StoredState>,
    nodes: HashMap<StateNodeId, StateNode>,
    snapshots: HashMap<SnapshotId, StateNodeId>,
}

#[derive(Debug)]
struct StoredState {
    hash: ContentHash,
    content_type: Option<String>,
}

impl InMemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    // Every write validates before it mutates, so a panic elsewhere while the lock was held
    // cannot have left the maps half-updated: a poisoned lock is safe to keep using.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    fn node(&self, id: &StateNodeId) -> Result<&StateNode> {
        self.nodes
            .get(id)
            .ok_or(StateStoreError::MissingNode { id: *id })
    }

    fn state(&self, data_ref: &StateDataRef) -> Result<StateData> {
        let stored = self
            .states
            .get(data_ref)
            .ok_or(StateStoreError::MissingState {
                data_ref: *data_ref,
            })?;
        let bytes = self.blobs.get(&stored.hash).ok_or_else(|| {
            StateStoreError::corrupt(
                format!("state data {data_ref}"),
                format!("its bytes ({}) are missing", stored.hash),
            )
        })?;
        Ok(StateData {
            bytes: bytes.to_vec(),
            content_type: stored.content_type.clone(),
        })
    }
}

impl StateStore for InMemoryStateStore {
    fn put_state(&self, data: StateData) -> Result<StateDataRef> {
        let hash = data.hash();
        let data_ref = StateDataRef::new_v7();
        let mut inner = self.write();
        inner
            .blobs
            .entry(hash)
            .or_insert_with(|| Arc::from(data.bytes));
        inner.states.insert(
            data_ref,
            StoredState {
                hash,
                content_type: data.content_type,
            },
        );
        Ok(data_ref)
    }

    fn get_state(&self, data_ref: &StateDataRef) -> Result<StateData> {
        self.read().state(data_ref)
    }

    fn commit_node(
        &self,
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> Result<StateNodeId> {
        codec::check_parents(&parent_ids)?;
        let mut inner = self.write();
        let stored = inner
            .states
            .get(&data_ref)
            .ok_or(StateStoreError::MissingState { data_ref })?;
        let (hash, content_type) = (stored.hash, stored.content_type.clone());
        let generations = parent_ids
            .iter()
            .map(|p| inner.node(p).map(|n| n.generation))
            .collect::<Result<Vec<_>>>()?;
        let node = store::build_node(
            parent_ids,
            data_ref,
            hash,
            content_type,
            generations,
            metadata,
        );
        let id = node.id;
        // Idempotent: the first write of an id stays.
        inner.nodes.entry(id).or_insert(node);
        Ok(id)
    }

    fn get_node(&self, id: &StateNodeId) -> Result<StateNode> {
        self.read().node(id).cloned()
    }

    fn snapshot(&self, node_id: &StateNodeId) -> Result<SnapshotId> {
        let mut inner = self.write();
        inner.node(node_id)?;
        let id = codec::snapshot_id(node_id);
        inner.snapshots.entry(id).or_insert(*node_id);
        Ok(id)
    }

    fn load_snapshot(&self, snapshot_id: &SnapshotId) -> Result<StateSnapshot> {
        let inner = self.read();
        let node_id = *inner
            .snapshots
            .get(snapshot_id)
            .ok_or(StateStoreError::MissingSnapshot { id: *snapshot_id })?;
        let node = inner.node(&node_id)?;
        let state = inner.state(&node.data_ref)?;
        Ok(StateSnapshot { node_id, state })
    }
}
