//! The streaming history walk behind `log`, `ancestors` and `descendants`.

use std::collections::HashSet;

use super::frontier::{Direction, Frontier};
use crate::error::{Result, StateStoreError};
use crate::id::StateNodeId;
use crate::model::StateNode;
use crate::store::{GraphCursor, StateStore};

/// The order in which [`log`](crate::History::log) yields nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum LogOrder {
    /// A node always comes before its parents; among nodes that could come next, the larger
    /// generation first, then the newer `created_at`, then the larger id.
    #[default]
    Topological,
}

/// A starting or excluded point of a walk: a node or a ref.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Tip {
    Node(StateNodeId),
    Ref(String),
}

/// What [`log`](crate::History::log) walks: git's `rev-list` options.
///
/// # Example
/// ```
/// use stategraph::{History, InMemoryStateStore, LogOptions, StateData, StateMetadata, StateStore};
///
/// let store = InMemoryStateStore::new();
/// let mut head = None;
/// for tick in 0..5u8 {
///     let data = store.put_state(StateData::new(vec![tick]))?;
///     let node = store.commit_node(head.into_iter().collect(), data, StateMetadata::now(None))?;
///     head = Some(node);
/// }
/// store.set_ref("main", None, &head.unwrap())?;
/// let newest_two: Vec<_> =
///     store.log(&LogOptions::new().from_ref("main").limit(2))?.collect::<Result<_, _>>()?;
/// assert_eq!(newest_two.len(), 2);
/// assert_eq!(newest_two[1].id, newest_two[0].parent_ids[0]);
/// # Ok::<(), stategraph::StateStoreError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    from: Vec<Tip>,
    exclude: Vec<Tip>,
    first_parent: bool,
    pub(crate) limit: Option<usize>,
    order: LogOrder,
}

impl LogOptions {
    /// No starting points yet; add some with [`from`](Self::from) or
    /// [`from_ref`](Self::from_ref) (a walk without one is an
    /// [`InvalidInput`](crate::StateStoreError::InvalidInput) error, not an empty history).
    pub fn new() -> Self {
        Self::default()
    }

    /// git's `a..b`: what is reachable from `to` but not from `from`.
    pub fn range(from: StateNodeId, to: StateNodeId) -> Self {
        Self::new().from(to).exclude(from)
    }

    /// Walks from this node (included in the output).
    #[must_use]
    pub fn from(mut self, id: StateNodeId) -> Self {
        self.from.push(Tip::Node(id));
        self
    }

    /// Walks from where this ref points.
    #[must_use]
    pub fn from_ref(mut self, name: impl Into<String>) -> Self {
        self.from.push(Tip::Ref(name.into()));
        self
    }

    /// Leaves out this node and everything reachable from it.
    #[must_use]
    pub fn exclude(mut self, id: StateNodeId) -> Self {
        self.exclude.push(Tip::Node(id));
        self
    }

    /// Leaves out where this ref points and everything reachable from it.
    #[must_use]
    pub fn exclude_ref(mut self, name: impl Into<String>) -> Self {
        self.exclude.push(Tip::Ref(name.into()));
        self
    }

    /// Follows only the first parent of each node (the mainline).
    #[must_use]
    pub fn first_parent(mut self, yes: bool) -> Self {
        self.first_parent = yes;
        self
    }

    /// Stops after this many nodes.
    #[must_use]
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// The order of the output.
    #[must_use]
    pub fn order(mut self, order: LogOrder) -> Self {
        self.order = order;
        self
    }
}

const UNINTERESTING: u64 = 1;

/// Turns one walk step into an iterator item; the walk ends at its end or its first error.
fn finish_step(done: &mut bool, step: Result<Option<StateNode>>) -> Option<Result<StateNode>> {
    let item = step.transpose();
    if !matches!(item, Some(Ok(_))) {
        *done = true;
    }
    item
}

/// A streaming walk of the history, yielding nodes in [`LogOrder::Topological`] order.
///
/// Work and memory are proportional to what is taken and to the width of the history's
/// frontier, not to its length: taking 20 entries of a million-node chain reads about 20
/// nodes. After an error the iterator ends.
pub struct Log<'a> {
    cursor: Box<dyn GraphCursor + 'a>,
    frontier: Frontier,
    /// Queued nodes that will be yielded (not excluded); the walk ends when none are left.
    interesting: usize,
    first_parent: bool,
    remaining: Option<usize>,
    hidden: HashSet<StateNodeId>,
    /// In the order met, and as a set for lookups.
    boundary: Vec<StateNodeId>,
    boundary_set: HashSet<StateNodeId>,
    done: bool,
}

impl std::fmt::Debug for Log<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("queued", &self.interesting)
            .field("remaining", &self.remaining)
            .field("boundary", &self.boundary)
            .finish_non_exhaustive()
    }
}

fn resolve_tip(store: &(impl StateStore + ?Sized), tip: &Tip) -> Result<StateNodeId> {
    match tip {
        Tip::Node(id) => Ok(*id),
        Tip::Ref(name) => store
            .get_ref(name)?
            .ok_or_else(|| StateStoreError::MissingRef { name: name.clone() }),
    }
}

impl<'a> Log<'a> {
    pub(crate) fn new(store: &'a (impl StateStore + ?Sized), options: &LogOptions) -> Result<Self> {
        if options.from.is_empty() {
            // An empty walk would look like an empty history; say what is missing instead.
            return Err(StateStoreError::InvalidInput {
                what: "log options",
                detail: "no starting point: add one with from(id) or from_ref(name)".into(),
            });
        }
        let from = options
            .from
            .iter()
            .map(|t| resolve_tip(store, t))
            .collect::<Result<Vec<_>>>()?;
        let exclude = options
            .exclude
            .iter()
            .map(|t| resolve_tip(store, t))
            .collect::<Result<Vec<_>>>()?;
        let mut log = Self {
            cursor: store.cursor()?,
            frontier: Frontier::new(Direction::Up),
            interesting: 0,
            first_parent: options.first_parent,
            remaining: options.limit,
            hidden: HashSet::new(),
            boundary: Vec::new(),
            boundary_set: HashSet::new(),
            done: false,
        };
        for (ids, flags) in [(exclude, UNINTERESTING), (from, 0)] {
            for id in ids {
                let node = log
                    .cursor
                    .node(&id)?
                    .ok_or(StateStoreError::MissingNode { id })?;
                log.enqueue(node, flags);
            }
        }
        Ok(log)
    }

    /// Leaves these nodes out of the output while still walking through them.
    pub(crate) fn hide(mut self, ids: impl IntoIterator<Item = StateNodeId>) -> Self {
        self.hidden.extend(ids);
        self
    }

    /// Parent ids the walk reached that are not stored here: the shallow boundary of an
    /// imported history (or, in a store that was never shallow, missing nodes that `fsck`
    /// reports). Complete once the walk has ended.
    pub fn boundary(&self) -> &[StateNodeId] {
        &self.boundary
    }

    /// Whether the walk has met `id` as a parent that is not stored here (see
    /// [`boundary`](Self::boundary)). A node's parents are met before the node is yielded, so
    /// right after a node comes out, this answers for each of its parents the walk follows.
    pub fn is_boundary(&self, id: &StateNodeId) -> bool {
        self.boundary_set.contains(id)
    }

    /// The generation of `id`, taken from the queue when it is queued, else read; `None`
    /// when it is not stored.
    pub(crate) fn generation_of(&mut self, id: &StateNodeId) -> Result<Option<u64>> {
        if let Some(generation) = self.frontier.generation(id) {
            return Ok(Some(generation));
        }
        Ok(self.cursor.node(id)?.map(|n| n.generation))
    }

    fn enqueue(&mut self, node: StateNode, flags: u64) {
        let was = self.frontier.push(node, flags);
        self.account(was, flags);
    }

    /// Keeps `interesting` in step with a node's flags changing from `was` to `was | flags`.
    fn account(&mut self, was: Option<u64>, flags: u64) {
        let now_uninteresting = flags & UNINTERESTING != 0;
        match was {
            None if !now_uninteresting => self.interesting += 1,
            Some(old) if old & UNINTERESTING == 0 && now_uninteresting => self.interesting -= 1,
            _ => {}
        }
    }

    fn visit_parent(&mut self, id: &StateNodeId, flags: u64) -> Result<()> {
        if let Some(was) = self.frontier.merge(id, flags) {
            self.account(Some(was), flags);
            return Ok(());
        }
        match self.cursor.node(id)? {
            Some(node) => self.enqueue(node, flags),
            None => {
                if self.boundary_set.insert(*id) {
                    self.boundary.push(*id);
                }
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<StateNode>> {
        while self.interesting > 0 {
            let Some((node, flags)) = self.frontier.pop() else {
                break;
            };
            let uninteresting = flags & UNINTERESTING != 0;
            if !uninteresting {
                self.interesting -= 1;
            }
            // Excluded history follows every parent, so everything reachable from an
            // excluded tip is excluded even in first-parent mode.
            let follow = if self.first_parent && !uninteresting {
                1
            } else {
                usize::MAX
            };
            for parent in node.parent_ids.iter().take(follow) {
                self.visit_parent(parent, flags)?;
            }
            if !uninteresting && !self.hidden.contains(&node.id) {
                return Ok(Some(node));
            }
        }
        Ok(None)
    }
}

impl Iterator for Log<'_> {
    type Item = Result<StateNode>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.remaining == Some(0) {
            return None;
        }
        let step = self.step();
        if let (Ok(Some(_)), Some(n)) = (&step, &mut self.remaining) {
            *n -= 1;
        }
        finish_step(&mut self.done, step)
    }
}

/// A streaming walk down the graph from one node: every descendant, parents before
/// children.
pub struct Descendants<'a> {
    cursor: Box<dyn GraphCursor + 'a>,
    frontier: Frontier,
    start: StateNodeId,
    done: bool,
}

impl std::fmt::Debug for Descendants<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Descendants")
            .field("start", &self.start)
            .finish_non_exhaustive()
    }
}

impl<'a> Descendants<'a> {
    pub(crate) fn new(store: &'a (impl StateStore + ?Sized), start: &StateNodeId) -> Result<Self> {
        let mut cursor = store.cursor()?;
        let node = cursor
            .node(start)?
            .ok_or(StateStoreError::MissingNode { id: *start })?;
        let mut frontier = Frontier::new(Direction::Down);
        frontier.push(node, 0);
        Ok(Self {
            cursor,
            frontier,
            start: *start,
            done: false,
        })
    }

    fn step(&mut self) -> Result<Option<StateNode>> {
        while let Some((node, _)) = self.frontier.pop() {
            for child in self.cursor.children(&node.id)? {
                if self.frontier.flags(&child).is_some() {
                    continue;
                }
                let child = self
                    .cursor
                    .node(&child)?
                    .ok_or(StateStoreError::MissingNode { id: child })?;
                self.frontier.push(child, 0);
            }
            if node.id != self.start {
                return Ok(Some(node));
            }
        }
        Ok(None)
    }
}

impl Iterator for Descendants<'_> {
    type Item = Result<StateNode>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.step();
        finish_step(&mut self.done, step)
    }
}
