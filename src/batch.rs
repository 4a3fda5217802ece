//! Atomic batches: many writes applied together or not at all.

use std::collections::{HashMap, HashSet};

use crate::codec;
use crate::error::Result;
use crate::id::{ContentHash, SnapshotId, StateDataRef, StateNodeId};
use crate::model::{StateData, StateMetadata};
use crate::package::SnapshotPackage;
use crate::store::{Op, StateStore, Writes};

/// Writes collected to be applied atomically by [`commit`](Self::commit): put states, commit
/// nodes (whose parents may be nodes of the same batch), take snapshots and move refs by
/// compare-and-swap. Nothing is written before `commit`; dropping the batch discards it.
///
/// Ids are returned as writes are added, so later writes can use them. Each write is checked
/// as it is added (unknown data or parents, invalid names fail at once) and checked again when
/// the batch is applied, where any failure (a ref moved meanwhile, say) applies nothing.
///
/// This is also the bulk-ingest path: a whole history in one transaction.
///
/// # Example
/// ```
/// use stategraph::{Batch, History, InMemoryStateStore, StateData, StateMetadata, StateStore};
///
/// let store = InMemoryStateStore::new();
/// let mut batch = store.batch();
/// let mut head = None;
/// for tick in 0..100u32 {
///     let data = batch.put_state(StateData::new(tick.to_be_bytes().to_vec()));
///     let node = batch.commit_node(head.into_iter().collect(), data, StateMetadata::now(None))?;
///     head = Some(node);
/// }
/// let head = head.unwrap();
/// batch.set_ref("main", None, &head)?;
/// batch.commit()?;
/// assert_eq!(store.get_ref("main")?, Some(head));
/// # Ok::<(), stategraph::StateStoreError>(())
/// ```
pub struct Batch<'a, S: StateStore + ?Sized> {
    store: &'a S,
    writes: Writes,
    /// States put by this batch: their hash and content type, for computing node ids.
    states: HashMap<StateDataRef, (ContentHash, Option<String>)>,
    /// Nodes committed by this batch.
    nodes: HashSet<StateNodeId>,
}

impl<S: StateStore + ?Sized> std::fmt::Debug for Batch<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl<'a, S: StateStore + ?Sized> Batch<'a, S> {
    /// An empty batch for `store`.
    pub fn new(store: &'a S) -> Self {
        Self {
            store,
            writes: Writes::default(),
            states: HashMap::new(),
            nodes: HashSet::new(),
        }
    }

    /// How many writes the batch holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// True when the batch holds no writes.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Adds state bytes; returns the ref they will be stored under.
    pub fn put_state(&mut self, data: StateData) -> StateDataRef {
        let data_ref = StateDataRef::new_v7();
        let hash = data.hash();
        self.states
            .insert(data_ref, (hash, data.content_type.clone()));
        self.writes.ops.push(Op::PutState {
            data_ref,
            hash,
            data,
        });
        data_ref
    }

    fn node_known(&self, id: &StateNodeId) -> Result<()> {
        if self.nodes.contains(id) {
            return Ok(());
        }
        self.store.get_node(id).map(drop)
    }

    /// Adds a node; returns its id. Parents may be nodes added earlier to this batch.
    ///
    /// # Errors
    /// As [`StateStore::commit_node`]: unknown data ref or parent, duplicate parents.
    pub fn commit_node(
        &mut self,
        parent_ids: Vec<StateNodeId>,
        data_ref: StateDataRef,
        metadata: StateMetadata,
    ) -> Result<StateNodeId> {
        // Checks in the order the store's own commit_node makes them, so both report the same
        // error for the same bad input.
        codec::check_parents(&parent_ids)?;
        let (hash, content_type) = match self.states.get(&data_ref) {
            Some(known) => known.clone(),
            None => {
                let info = self.store.state_info(&data_ref)?;
                (info.hash, info.content_type)
            }
        };
        for p in &parent_ids {
            self.node_known(p)?;
        }
        let id = codec::node_id(&parent_ids, &hash, content_type.as_deref(), &metadata);
        // The parents were checked above; `Op::commit_node` would check them again.
        self.writes.ops.push(Op::CommitNode {
            parent_ids,
            data_ref,
            metadata,
        });
        self.nodes.insert(id);
        Ok(id)
    }

    /// Adds a snapshot of a node (stored, or added to this batch); returns its id.
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`](crate::StateStoreError::MissingNode) for an unknown node.
    pub fn snapshot(&mut self, node_id: &StateNodeId) -> Result<SnapshotId> {
        self.node_known(node_id)?;
        self.writes.ops.push(Op::snapshot(*node_id));
        Ok(codec::snapshot_id(node_id))
    }

    /// Adds a compare-and-swap ref move; see [`StateStore::set_ref`].
    ///
    /// # Errors
    /// [`StateStoreError::InvalidRefName`](crate::StateStoreError::InvalidRefName), [`StateStoreError::MissingNode`](crate::StateStoreError::MissingNode) at once; a
    /// [`StateStoreError::RefConflict`](crate::StateStoreError::RefConflict) only when the batch is applied.
    pub fn set_ref(
        &mut self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
    ) -> Result<()> {
        self.set_ref_with_message(name, expected, new, None)
    }

    /// [`set_ref`](Self::set_ref) with a message for the ref log.
    ///
    /// # Errors
    /// As [`set_ref`](Self::set_ref).
    pub fn set_ref_with_message(
        &mut self,
        name: &str,
        expected: Option<&StateNodeId>,
        new: &StateNodeId,
        message: Option<&str>,
    ) -> Result<()> {
        let op = Op::set_ref(name, expected, new, message)?;
        self.node_known(new)?;
        self.writes.ops.push(op);
        Ok(())
    }

    /// Adds a compare-and-delete of a ref; see [`StateStore::delete_ref`].
    ///
    /// # Errors
    /// [`StateStoreError::InvalidRefName`](crate::StateStoreError::InvalidRefName) at once; a conflict when the batch is applied.
    pub fn delete_ref(&mut self, name: &str, expected: &StateNodeId) -> Result<()> {
        self.writes.ops.push(Op::delete_ref(name, expected)?);
        Ok(())
    }

    /// Adds the import of a snapshot package; returns its snapshot id. The package is
    /// verified now; see [`StateStore::import_snapshot`]. Its node counts as known to later
    /// writes of the batch, as a committed one does. Many imports in one batch are one
    /// transaction: what a bulk import wants.
    ///
    /// # Errors
    /// [`StateStoreError::InvalidInput`](crate::StateStoreError::InvalidInput) at once for a
    /// package whose hashes or ids do not match or whose generation claim is impossible; a
    /// generation that would pass the largest a store holds only when the batch is applied.
    pub fn import_snapshot(&mut self, package: &SnapshotPackage) -> Result<SnapshotId> {
        self.writes.ops.push(Op::import(package)?);
        self.nodes.insert(package.node_id);
        Ok(package.snapshot_id)
    }

    /// The collected writes, to apply later with [`StateStore::apply`].
    pub fn into_writes(self) -> Writes {
        self.writes
    }

    /// Applies every write atomically.
    ///
    /// # Errors
    /// The first error a write meets (a ref that moved, a full disk, ...); nothing is applied.
    pub fn commit(self) -> Result<()> {
        if self.writes.is_empty() {
            return Ok(());
        }
        self.store.apply(self.writes).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use crate::{History, InMemoryStateStore, SqliteStateStore, StateStoreError};

    use super::*;

    fn meta(i: u32) -> StateMetadata {
        StateMetadata::new(OffsetDateTime::UNIX_EPOCH, Some(format!("n{i}")))
    }

    fn applies_all_or_nothing(store: &dyn StateStore) {
        let base = store.put_state(StateData::new(b"base".to_vec())).unwrap();
        let root = store.commit_node(vec![], base, meta(0)).unwrap();
        store.set_ref("main", None, &root).unwrap();

        // A batch whose last write conflicts applies nothing at all.
        let mut batch = store.batch();
        let data = batch.put_state(StateData::new(b"one".to_vec()));
        let one = batch.commit_node(vec![root], data, meta(1)).unwrap();
        let snap = batch.snapshot(&one).unwrap();
        batch.set_ref("main", None, &one).unwrap(); // wrong: main exists
        assert!(matches!(
            batch.commit(),
            Err(StateStoreError::RefConflict { .. })
        ));
        assert!(matches!(
            store.get_state(&data),
            Err(StateStoreError::MissingState { .. })
        ));
        assert!(matches!(
            store.get_node(&one),
            Err(StateStoreError::MissingNode { .. })
        ));
        assert!(matches!(
            store.load_snapshot(&snap),
            Err(StateStoreError::MissingSnapshot { .. })
        ));
        assert_eq!(store.get_ref("main").unwrap(), Some(root));
        assert_eq!(store.ref_log("main").unwrap().len(), 1);

        // The same batch done right applies everything, in order.
        let mut batch = store.batch();
        let data = batch.put_state(StateData::new(b"one".to_vec()));
        let one = batch.commit_node(vec![root], data, meta(1)).unwrap();
        let data2 = batch.put_state(StateData::new(b"two".to_vec()));
        let two = batch.commit_node(vec![one], data2, meta(2)).unwrap();
        let snap = batch.snapshot(&two).unwrap();
        batch.set_ref("main", Some(&root), &two).unwrap();
        assert_eq!(batch.len(), 6);
        batch.commit().unwrap();
        assert_eq!(store.get_node(&two).unwrap().parent_ids, vec![one]);
        assert_eq!(store.get_node(&two).unwrap().generation, 3);
        assert_eq!(store.load_snapshot(&snap).unwrap().state.bytes, b"two");
        assert_eq!(store.get_ref("main").unwrap(), Some(two));

        // Dropping a batch discards it.
        let mut batch = store.batch();
        let dropped = batch.put_state(StateData::new(b"dropped".to_vec()));
        drop(batch);
        assert!(store.get_state(&dropped).is_err());

        // Errors that need no store are reported as writes are added.
        let mut batch = store.batch();
        let ghost = StateNodeId::from_bytes([3; 32]);
        assert!(matches!(
            batch.commit_node(vec![ghost], data, meta(9)),
            Err(StateStoreError::MissingNode { .. })
        ));
        assert!(matches!(
            batch.commit_node(vec![root, root], data, meta(9)),
            Err(StateStoreError::InvalidInput { .. })
        ));
        assert!(matches!(
            batch.set_ref("bad name", None, &root),
            Err(StateStoreError::InvalidRefName { .. })
        ));
        // With two things wrong, the same error as the store's own call gives.
        for store_or_batch in [false, true] {
            let dup_ghosts = if store_or_batch {
                batch.commit_node(vec![ghost, ghost], data, meta(9))
            } else {
                store.commit_node(vec![ghost, ghost], data, meta(9))
            };
            assert!(
                matches!(dup_ghosts, Err(StateStoreError::InvalidInput { .. })),
                "{dup_ghosts:?}"
            );
            let bad_ghost = if store_or_batch {
                batch.set_ref("bad name", None, &ghost)
            } else {
                store.set_ref("bad name", None, &ghost)
            };
            assert!(
                matches!(bad_ghost, Err(StateStoreError::InvalidRefName { .. })),
                "{bad_ghost:?}"
            );
        }
        assert!(batch.is_empty());
    }

    #[test]
    fn in_memory() {
        applies_all_or_nothing(&InMemoryStateStore::new());
    }

    #[test]
    fn in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        applies_all_or_nothing(&SqliteStateStore::open(dir.path().join("b.db")).unwrap());
    }

    /// Imports in one batch are one transaction; later writes of the batch may name their
    /// nodes, and a package that fails its checks is refused before it joins the batch.
    #[test]
    fn imports_join_a_batch() {
        let sender = InMemoryStateStore::new();
        let mut packages = Vec::new();
        let mut head = None;
        for i in 0..3u32 {
            let data = sender
                .put_state(StateData::new(i.to_be_bytes().to_vec()))
                .unwrap();
            let node = sender
                .commit_node(head.into_iter().collect(), data, meta(i))
                .unwrap();
            packages.push(
                sender
                    .export_snapshot(&sender.snapshot(&node).unwrap())
                    .unwrap(),
            );
            head = Some(node);
        }
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStateStore::open(dir.path().join("b.db")).unwrap();
        let mut batch = store.batch();
        for p in packages.iter().rev() {
            assert_eq!(batch.import_snapshot(p).unwrap(), p.snapshot_id);
        }
        let mut forged = packages[0].clone();
        forged.bytes.push(0);
        assert!(matches!(
            batch.import_snapshot(&forged),
            Err(StateStoreError::InvalidInput { .. })
        ));
        assert_eq!(batch.len(), 3);
        let top = packages[2].node_id;
        batch.set_ref("main", None, &top).unwrap();
        batch.commit().unwrap();
        assert_eq!(store.write_counts().transactions, 1);
        assert_eq!(store.list_snapshots().unwrap().len(), 3);
        assert_eq!(store.get_node(&top).unwrap().generation, 3);
        assert_eq!(store.get_ref("main").unwrap(), Some(top));
    }

    #[test]
    fn ids_match_single_commits() {
        let a = InMemoryStateStore::new();
        let b = InMemoryStateStore::new();
        let mut batch = b.batch();
        let (mut head_a, mut head_b) = (None, None);
        for i in 0..10u32 {
            let data = StateData::new(i.to_be_bytes().to_vec()).with_content_type("x/y");
            let ra = a.put_state(data.clone()).unwrap();
            head_a = Some(
                a.commit_node(head_a.into_iter().collect(), ra, meta(i))
                    .unwrap(),
            );
            let rb = batch.put_state(data);
            head_b = Some(
                batch
                    .commit_node(head_b.into_iter().collect(), rb, meta(i))
                    .unwrap(),
            );
        }
        batch.commit().unwrap();
        assert_eq!(head_a, head_b);
        assert!(b.get_node(&head_b.unwrap()).is_ok());
    }
}
