//! The in-memory backend: hash maps behind one lock, for tests and short runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::codec;
use crate::error::{Result, StateStoreError};
use time::OffsetDateTime;

use crate::id::{ContentHash, IdPrefix, SnapshotId, StateDataRef, StateNodeId};
use crate::model::{
    Ref, RefLogEntry, SnapshotInfo, StateData, StateMetadata, StateNode, StateSnapshot,
};
use crate::package::SnapshotPackage;
use crate::refs::validate_ref_name;
use crate::store::{self, GraphCursor, StateStore};

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
    nodes: BTreeMap<StateNodeId, StateNode>,
    /// Edges indexed from the parent side, for walks down the graph.
    children: HashMap<StateNodeId, Vec<StateNodeId>>,
    snapshots: HashMap<SnapshotId, SnapshotInfo>,
    refs: BTreeMap<String, StateNodeId>,
    /// Survives ref deletion, so deleted refs can be restored.
    ref_log: HashMap<String, Vec<RefLogEntry>>,
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
        if !inner.nodes.contains_key(&id) {
            for parent in &node.parent_ids {
                inner.children.entry(*parent).or_default().push(id);
            }
            inner.nodes.insert(id, node);
        }
        Ok(id)
    }

    fn get_node(&self, id: &StateNodeId) -> Result<StateNode> {
        self.read().node(id).cloned()
    }

    fn snapshot(&self, node_id: &StateNodeId) -> Result<SnapshotId> {
        let mut inner = self.write();
        inner.node(node_id)?;
        let id = codec::snapshot_id(node_id);
        inner.snapshots.entry(id).or_insert_with(|| SnapshotInfo {
            id,
            node_id: *node_id,
            created_at: OffsetDateTime::now_utc(),
        });
        Ok(id)
    }

    fn load_snapshot(&self, snapshot_id: &SnapshotId) -> Result<StateSnapshot> {
        let inner = self.read();
        let node_id = inner
            .snapshots
            .get(snapshot_id)
            .ok_or(StateStoreError::MissingSnapshot { id: *snapshot_id })?
            .node_id;
        let node = inner.node(&node_id)?;
        let state = inner.state(&node.data_ref)?;
        Ok(StateSnapshot { node_id, state })
    }

    fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut all: Vec<SnapshotInfo> = self.read().snapshots.values().cloned().collect();
        all.sort_by_key(|s| (s.created_at, s.id));
        Ok(all)
    }

    fn snapshots_of(&self, node_id: &StateNodeId) -> Result<Vec<SnapshotInfo>> {
        let id = codec::snapshot_id(node_id);
        Ok(self
            .read()
            .snapshots
            .get(&id)
            .cloned()
            .into_iter()
            .collect())
    }

    fn delete_snapshot(&self, snapshot_id: &SnapshotId) -> Result<()> {
        match self.write().snapshots.remove(snapshot_id) {
            Some(_) => Ok(()),
            None => Err(StateStoreError::MissingSnapshot { id: *snapshot_id }),
        }
    }

    fn set_ref_with_message(
        &self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
        message: Option<&str>,
    ) -> Result<()> {
        validate_ref_name(name)?;
        let mut inner = self.write();
        inner.node(new)?;
        let actual = inner.refs.get(name).copied();
        store::check_ref_cas(name, expected, actual)?;
        inner.refs.insert(name.to_owned(), *new);
        inner.log_ref_move(name, actual, Some(*new), message);
        Ok(())
    }

    fn get_ref(&self, name: &str) -> Result<Option<StateNodeId>> {
        validate_ref_name(name)?;
        Ok(self.read().refs.get(name).copied())
    }

    fn delete_ref(&self, name: &str, expected: &StateNodeId) -> Result<()> {
        validate_ref_name(name)?;
        let mut inner = self.write();
        let actual = inner.refs.get(name).copied();
        store::check_ref_cas(name, Some(expected), actual)?;
        inner.refs.remove(name);
        inner.log_ref_move(name, actual, None, None);
        Ok(())
    }

    fn list_refs(&self, prefix: &str) -> Result<Vec<Ref>> {
        let inner = self.read();
        Ok(inner
            .refs
            .range(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, target)| Ref {
                name: name.clone(),
                target: *target,
            })
            .collect())
    }

    fn ref_log(&self, name: &str) -> Result<Vec<RefLogEntry>> {
        validate_ref_name(name)?;
        Ok(self.read().ref_log.get(name).cloned().unwrap_or_default())
    }

    fn nodes_with_prefix(&self, prefix: &IdPrefix, limit: usize) -> Result<Vec<StateNodeId>> {
        let inner = self.read();
        let (low, _) = prefix.range();
        Ok(inner
            .nodes
            .range(StateNodeId::from_bytes(low)..)
            .map(|(id, _)| *id)
            .take_while(|id| prefix.matches(id.as_bytes()))
            .take(limit)
            .collect())
    }

    fn import_snapshot(&self, package: &SnapshotPackage) -> Result<SnapshotId> {
        let data_hash = package.verify()?;
        let mut inner = self.write();
        if !inner.nodes.contains_key(&package.node_id) {
            let generations: Vec<Option<u64>> = package
                .parent_ids
                .iter()
                .map(|p| inner.nodes.get(p).map(|n| n.generation))
                .collect();
            let data_ref = StateDataRef::new_v7();
            inner.insert_node(StateNode {
                id: package.node_id,
                parent_ids: package.parent_ids.clone(),
                data_ref,
                data_hash,
                content_type: package.content_type.clone(),
                metadata: package.metadata.clone(),
                generation: store::import_generation(package.generation, &generations),
            })?;
            let content_type = package.content_type.clone();
            inner.put(data_ref, data_hash, package.bytes.clone(), content_type);
        }
        drop(inner);
        self.snapshot(&package.node_id)
    }

    fn cursor(&self) -> Result<Box<dyn GraphCursor + '_>> {
        Ok(Box::new(MemoryCursor { store: self }))
    }
}

impl Inner {
    fn put(
        &mut self,
        data_ref: StateDataRef,
        hash: ContentHash,
        bytes: Vec<u8>,
        content_type: Option<String>,
    ) {
        self.blobs.entry(hash).or_insert_with(|| Arc::from(bytes));
        self.states
            .insert(data_ref, StoredState { hash, content_type });
    }

    /// Children imported before `node` (with it as a missing parent) must stay above it.
    fn check_waiting_children(&self, node: &StateNode) -> Result<()> {
        let waiting = self.children.get(&node.id).into_iter().flatten();
        if waiting
            .filter_map(|c| self.nodes.get(c))
            .any(|c| c.generation <= node.generation)
        {
            return Err(StateStoreError::invalid(
                "node",
                format!(
                    "{} would have generation {}, not below its already stored children",
                    node.id, node.generation
                ),
            ));
        }
        Ok(())
    }

    /// Inserts a node unless its id is stored already (the first write stays). Edges are
    /// indexed from every parent, stored or not, so a parent imported later finds its
    /// children.
    fn insert_node(&mut self, node: StateNode) -> Result<()> {
        if self.nodes.contains_key(&node.id) {
            return Ok(());
        }
        self.check_waiting_children(&node)?;
        for parent in &node.parent_ids {
            self.children.entry(*parent).or_default().push(node.id);
        }
        self.nodes.insert(node.id, node);
        Ok(())
    }

    fn log_ref_move(
        &mut self,
        name: &str,
        old: Option<StateNodeId>,
        new: Option<StateNodeId>,
        message: Option<&str>,
    ) {
        self.ref_log
            .entry(name.to_owned())
            .or_default()
            .push(RefLogEntry {
                old,
                new,
                at: OffsetDateTime::now_utc(),
                message: message.map(str::to_owned),
            });
    }
}

/// Takes the read lock per call, never across calls, so a caller may commit while it walks.
struct MemoryCursor<'a> {
    store: &'a InMemoryStateStore,
}

impl GraphCursor for MemoryCursor<'_> {
    fn node(&mut self, id: &StateNodeId) -> Result<Option<StateNode>> {
        Ok(self.store.read().nodes.get(id).cloned())
    }

    fn children(&mut self, id: &StateNodeId) -> Result<Vec<StateNodeId>> {
        Ok(self
            .store
            .read()
            .children
            .get(id)
            .cloned()
            .unwrap_or_default())
    }
}
