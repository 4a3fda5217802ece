//! The priority queue every walk uses: nodes ordered by generation, each queued at most once.
//!
//! Walking up, the node with the largest generation comes out first (ties: newer time, then
//! larger id). Every child has a larger generation than its parents, so by the time a node
//! comes out, every path to it from the walk's starting points has already been walked: its
//! flags are final and it can never be queued again. That is why no "visited" set is needed
//! and memory stays proportional to the frontier, not to the history walked.
//! Walking down is the mirror image.

use std::cmp::Ordering;
use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BinaryHeap, HashMap};

use time::OffsetDateTime;

use crate::id::StateNodeId;
use crate::model::StateNode;

/// Which way a walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// From children to parents: largest generation first.
    Up,
    /// From parents to children: smallest generation first.
    Down,
}

#[derive(Debug, PartialEq, Eq)]
struct Key {
    generation: u64,
    created_at: OffsetDateTime,
    id: StateNodeId,
    direction: Direction,
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        let natural = (self.generation, self.created_at, self.id).cmp(&(
            other.generation,
            other.created_at,
            other.id,
        ));
        match self.direction {
            Direction::Up => natural,
            Direction::Down => natural.reverse(),
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Queued nodes with bit flags that merge when a node is reached more than once.
pub(crate) struct Frontier {
    direction: Direction,
    heap: BinaryHeap<Key>,
    queued: HashMap<StateNodeId, (StateNode, u64)>,
}

impl Frontier {
    pub(crate) fn new(direction: Direction) -> Self {
        Self {
            direction,
            heap: BinaryHeap::new(),
            queued: HashMap::new(),
        }
    }

    /// Flags of a queued node, if it is queued.
    pub(crate) fn flags(&self, id: &StateNodeId) -> Option<u64> {
        self.queued.get(id).map(|(_, f)| *f)
    }

    /// Generation of a queued node, if it is queued.
    pub(crate) fn generation(&self, id: &StateNodeId) -> Option<u64> {
        self.queued.get(id).map(|(n, _)| n.generation)
    }

    /// ORs `flags` into a node that is already queued; returns its previous flags, or `None`
    /// (and does nothing) if it is not queued.
    pub(crate) fn merge(&mut self, id: &StateNodeId, flags: u64) -> Option<u64> {
        self.queued.get_mut(id).map(|(_, f)| {
            let old = *f;
            *f |= flags;
            old
        })
    }

    /// Queues `node` with `flags`, or merges the flags if it is already queued. Returns the
    /// previous flags (`None` if it was newly queued).
    pub(crate) fn push(&mut self, node: StateNode, flags: u64) -> Option<u64> {
        match self.queued.entry(node.id) {
            MapEntry::Occupied(mut e) => {
                let old = e.get().1;
                e.get_mut().1 |= flags;
                Some(old)
            }
            MapEntry::Vacant(e) => {
                self.heap.push(Key {
                    generation: node.generation,
                    created_at: node.metadata.created_at,
                    id: node.id,
                    direction: self.direction,
                });
                e.insert((node, flags));
                None
            }
        }
    }

    /// Takes the next node in walk order, with its final flags.
    pub(crate) fn pop(&mut self) -> Option<(StateNode, u64)> {
        let key = self.heap.pop()?;
        self.queued.remove(&key.id)
    }
}
