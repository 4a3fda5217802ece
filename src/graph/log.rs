//! The streaming history walk behind `log`, `ancestors` and `descendants`.

use std::collections::{BinaryHeap, HashSet, VecDeque};

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
    pub(super) first_parent: bool,
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
    pub(super) first_parent: bool,
    remaining: Option<usize>,
    hidden: HashSet<StateNodeId>,
    /// (generation, id) of queued excluded nodes, largest first; entries of nodes since
    /// taken off the queue are dropped when they reach the top (see `drop_passed_excluded`).
    excluded: BinaryHeap<(u64, StateNodeId)>,
    /// In the order met, and as a set for lookups.
    boundary: Vec<StateNodeId>,
    boundary_set: HashSet<StateNodeId>,
    /// An error met reading the parents of the node just yielded: the next item.
    failed: Option<StateStoreError>,
    /// The walk ended in an error: it did not read all it would have.
    broken: bool,
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
            excluded: BinaryHeap::new(),
            boundary: Vec::new(),
            boundary_set: HashSet::new(),
            failed: None,
            broken: false,
            done: false,
        };
        for (tips, ids, flags) in [
            (&options.exclude, exclude, UNINTERESTING),
            (&options.from, from, 0),
        ] {
            for (tip, mut id) in tips.iter().zip(ids) {
                let mut moves = 0;
                let node = loop {
                    if let Some(node) = log.cursor.node(&id)? {
                        break node;
                    }
                    let Tip::Ref(name) = tip else {
                        return Err(StateStoreError::MissingNode { id });
                    };
                    // The ref may have moved, and a gc removed the node it named, between
                    // reading the ref and reading its node: read the ref again.
                    let now = resolve_tip(store, tip)?;
                    if now == id || moves == 3 {
                        // A ref names a stored node (SQLite's foreign key holds it to
                        // that): one that does not is damage, and which ref it is matters.
                        return Err(StateStoreError::corrupt(
                            format!("ref {name}"),
                            format!("it names node {id}, which is not stored"),
                        ));
                    }
                    id = now;
                    moves += 1;
                };
                log.enqueue(node, flags);
            }
        }
        Ok(log)
    }

    /// Ends the walk at its next read of a node once `stop` returns true: the read fails with
    /// [`StateStoreError::Backend`], which ends the walk like any error. For a consumer that
    /// goes away while the walk is between the nodes it yields (passing through excluded
    /// history yields nothing for as long as that history is).
    #[cfg(feature = "async")]
    pub(crate) fn stop_when(mut self, stop: impl Fn() -> bool + 'a) -> Self {
        self.cursor = Box::new(Stoppable {
            inner: self.cursor,
            stop,
        });
        self
    }

    /// Leaves these nodes out of the output while still walking through them.
    pub(crate) fn hide(mut self, ids: impl IntoIterator<Item = StateNodeId>) -> Self {
        self.hidden.extend(ids);
        self
    }

    /// Parent ids the walk reached that are not stored here: the shallow boundary of an
    /// imported history (or, in a store that was never shallow, missing nodes that `fsck`
    /// reports). Complete once the walk has [finished](Self::is_finished); a walk that its
    /// [`limit`](LogOptions::limit) stopped early gives only what it met.
    ///
    /// A walk reads node by node and holds no snapshot of the store between reads. History
    /// that a `gc` running meanwhile removes (nothing a ref, snapshot or ref log entry
    /// reaches: say, a deleted branch's) is no boundary: the walk fails with
    /// [`RemovedDuringWalk`](crate::StateStoreError::RemovedDuringWalk) when it finds a parent
    /// missing and the node it came from gone too.
    pub fn boundary(&self) -> &[StateNodeId] {
        &self.boundary
    }

    /// Whether no node is left to yield: the walk has read all it will (it reached its
    /// roots or its boundary), so [`boundary`](Self::boundary) is complete. False while nodes
    /// remain, also once a [`limit`](LogOptions::limit) has stopped the walk.
    pub fn is_finished(&self) -> bool {
        self.interesting == 0 && self.failed.is_none() && !self.broken
    }

    /// Whether the walk has met `id` as a parent that is not stored here (see
    /// [`boundary`](Self::boundary)). A node's parents are met before the node is yielded, so
    /// right after a node comes out, this answers for each of its parents the walk follows.
    pub fn is_boundary(&self, id: &StateNodeId) -> bool {
        self.boundary_set.contains(id)
    }

    /// Pairs each node with those of its parents that the walk yields too: what a drawing of
    /// the walk connects it to (`stategraph log --graph`). Only parents the walk follows count
    /// (the first alone in a first-parent walk); excluded ones and ones not stored here do
    /// not. A parent past a [`limit`](LogOptions::limit) counts unless the walk had excluded
    /// it by the time the limit stopped it (a drawing runs its line off the end, as it does
    /// for any parent past the limit of a walk without exclusions).
    ///
    /// Nodes come in the walk's order, each once it is settled which of its parents are
    /// shown, so the iterator reads ahead of what it returns:
    /// - without exclusions or a limit, not at all;
    /// - with exclusions, until no excluded node is left above the parent's generation
    ///   (excluded lines that run beside the shown ones, as in `main~100..main`, settle
    ///   within a node or two; a merge of an old line, with excluded history still above
    ///   it, waits until the walk gets down there);
    /// - with a limit, until the parent comes out or the limit is reached.
    ///
    /// # Example
    /// ```
    /// use stategraph::{History, InMemoryStateStore, LogOptions, StateData, StateMetadata, StateStore};
    ///
    /// // a - b - m, a - c - m
    /// let store = InMemoryStateStore::new();
    /// let data = store.put_state(StateData::new(b"{}".to_vec()))?;
    /// let node = |parents, label: &str| {
    ///     store.commit_node(parents, data, StateMetadata::now(Some(label.to_owned())))
    /// };
    /// let a = node(vec![], "a")?;
    /// let b = node(vec![a], "b")?;
    /// let c = node(vec![a], "c")?;
    /// let m = node(vec![b, c], "m")?;
    ///
    /// // c..m is m and b: m's line to c is not drawn, b's to a neither.
    /// let walk = store.log(&LogOptions::range(c, m))?.with_shown_parents();
    /// let shown: Vec<_> = walk.collect::<Result<_, _>>()?;
    /// assert_eq!(shown, vec![(store.get_node(&m)?, vec![b]), (store.get_node(&b)?, vec![])]);
    /// # Ok::<(), stategraph::StateStoreError>(())
    /// ```
    pub fn with_shown_parents(self) -> ShownParents<'a> {
        ShownParents {
            log: self,
            ahead: VecDeque::new(),
            ahead_ids: HashSet::new(),
            walk_over: false,
            failed: false,
        }
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
        let (id, generation) = (node.id, node.generation);
        let was = self.frontier.push(node, flags);
        self.account(id, generation, was, flags);
    }

    /// Keeps `interesting` and `excluded` in step with a queued node's flags changing from
    /// `was` (`None`: newly queued) to `was | flags`.
    fn account(&mut self, id: StateNodeId, generation: u64, was: Option<u64>, flags: u64) {
        let now_uninteresting = flags & UNINTERESTING != 0;
        let was_interesting = was.is_none_or(|old| old & UNINTERESTING == 0);
        match was {
            None if !now_uninteresting => self.interesting += 1,
            Some(old) if old & UNINTERESTING == 0 && now_uninteresting => self.interesting -= 1,
            _ => {}
        }
        if was_interesting && now_uninteresting {
            self.excluded.push((generation, id));
        }
    }

    /// Drops the top entries of `excluded` whose nodes are no longer queued, so the top is
    /// the largest generation still queued as excluded. A node leaves the queue only by
    /// being taken, and is never queued again, so this runs after every take.
    fn drop_passed_excluded(&mut self) {
        while let Some((_, id)) = self.excluded.peek() {
            if self.frontier.flags(id).is_some() {
                break;
            }
            self.excluded.pop();
        }
    }

    /// Queues `child`'s parent `id` with `flags`, or records it as the boundary when it is
    /// not stored.
    fn visit_parent(&mut self, child: &StateNodeId, id: &StateNodeId, flags: u64) -> Result<()> {
        if let Some(generation) = self.frontier.generation(id) {
            let was = self.frontier.merge(id, flags);
            self.account(*id, generation, was, flags);
            return Ok(());
        }
        match self.cursor.node(id)? {
            Some(node) => self.enqueue(node, flags),
            None => {
                super::missing_parent(self.cursor.as_mut(), child)?;
                if self.boundary_set.insert(*id) {
                    self.boundary.push(*id);
                }
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<StateNode>> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        while self.interesting > 0 {
            let Some((node, flags)) = self.frontier.pop() else {
                break;
            };
            self.drop_passed_excluded();
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
            let shown = !uninteresting && !self.hidden.contains(&node.id);
            for parent in node.parent_ids.iter().take(follow) {
                if let Err(e) = self.visit_parent(&node.id, parent, flags) {
                    // A parent that cannot be read (a damaged row) fails the walk after the
                    // node, which was read whole: a log shows everything above the damage.
                    if !shown {
                        return Err(e);
                    }
                    self.failed = Some(e);
                    break;
                }
            }
            if shown {
                return Ok(Some(node));
            }
        }
        Ok(None)
    }
}

/// A cursor whose reads fail once `stop` says so (see [`Log::stop_when`]).
#[cfg(feature = "async")]
struct Stoppable<'a, F> {
    inner: Box<dyn GraphCursor + 'a>,
    stop: F,
}

#[cfg(feature = "async")]
impl<F: Fn() -> bool> Stoppable<'_, F> {
    fn check(&self) -> Result<()> {
        if (self.stop)() {
            return Err(StateStoreError::Backend(crate::error::BackendError::new(
                "walking the history",
                "stopped: no one reads this walk any more",
            )));
        }
        Ok(())
    }
}

#[cfg(feature = "async")]
impl<F: Fn() -> bool> GraphCursor for Stoppable<'_, F> {
    fn node(&mut self, id: &StateNodeId) -> Result<Option<StateNode>> {
        self.check()?;
        self.inner.node(id)
    }

    fn children(&mut self, id: &StateNodeId) -> Result<Vec<StateNodeId>> {
        self.check()?;
        self.inner.children(id)
    }

    fn is_stored(&mut self, id: &StateNodeId) -> Result<bool> {
        self.check()?;
        self.inner.is_stored(id)
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
        self.broken |= step.is_err();
        finish_step(&mut self.done, step)
    }
}

/// What is known of whether a parent is shown.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Shown,
    Hidden,
    /// Not settled yet; the parent is queued with this generation.
    Open(u64),
}

/// A node read ahead by [`ShownParents`], with what is known of its parents.
#[derive(Debug)]
struct Ahead {
    node: StateNode,
    parents: Vec<(StateNodeId, Fate)>,
    /// Parents before this index are settled.
    settled: usize,
}

/// A [`Log`] whose nodes come with the parents it shows; see [`Log::with_shown_parents`].
pub struct ShownParents<'a> {
    log: Log<'a>,
    /// Nodes taken from the walk and not returned yet, in walk order.
    ahead: VecDeque<Ahead>,
    /// The ids in `ahead`. A parent comes after its children, so a parent that the walk has
    /// yielded and that is not yet returned is here.
    ahead_ids: HashSet<StateNodeId>,
    walk_over: bool,
    failed: bool,
}

impl std::fmt::Debug for ShownParents<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShownParents")
            .field("log", &self.log)
            .field("ahead", &self.ahead.len())
            .finish_non_exhaustive()
    }
}

impl ShownParents<'_> {
    /// As [`Log::boundary`]: complete once the walk has ended.
    pub fn boundary(&self) -> &[StateNodeId] {
        self.log.boundary()
    }

    /// How many nodes are read ahead of the one returned last.
    #[cfg(test)]
    pub(crate) fn read_ahead(&self) -> usize {
        self.ahead.len()
    }

    fn take(&mut self, node: StateNode) {
        let follow = if self.log.first_parent { 1 } else { usize::MAX };
        let parents = node
            .parent_ids
            .iter()
            .take(follow)
            .map(|p| {
                // A followed parent is queued or, not being stored, on the boundary; it
                // cannot have been taken off the queue before its child.
                let fate = match self.log.frontier.generation(p) {
                    Some(generation) if !self.log.is_boundary(p) => Fate::Open(generation),
                    _ => Fate::Hidden,
                };
                (*p, fate)
            })
            .collect();
        self.ahead_ids.insert(node.id);
        self.ahead.push_back(Ahead {
            node,
            parents,
            settled: 0,
        });
    }
}

/// Whether the walk yields `parent` (queued at `generation` when its child came out), if that
/// is settled.
fn decide(
    log: &Log<'_>,
    ahead_ids: &HashSet<StateNodeId>,
    walk_over: bool,
    parent: &StateNodeId,
    generation: u64,
) -> Option<bool> {
    if ahead_ids.contains(parent) {
        return Some(true);
    }
    let flags = match log.frontier.flags(parent) {
        // Taken off the queue without being yielded: excluded or hidden.
        None => return Some(false),
        Some(flags) => flags,
    };
    if flags & UNINTERESTING != 0 || log.hidden.contains(parent) {
        // Flags only ever gain bits: excluded for good.
        return Some(false);
    }
    if walk_over {
        // Still queued and not excluded: only a limit can have stopped the walk before it.
        // It counts as shown, so its line runs off the end of a drawing as it does without
        // exclusions (the walk stopped before it could learn whether an excluded line
        // reaches it further down).
        return Some(log.remaining == Some(0));
    }
    // Only an excluded node can exclude the parent, by walking down to it: none queued above
    // its generation means none ever will be, so the walk will yield it (a limit may still
    // stop the walk first).
    let settled = log.excluded.peek().is_none_or(|(g, _)| *g <= generation);
    (settled && log.remaining.is_none()).then_some(true)
}

/// Settles what it can of `entry`'s parents; true once all are.
fn settle(
    entry: &mut Ahead,
    log: &Log<'_>,
    ahead_ids: &HashSet<StateNodeId>,
    walk_over: bool,
) -> bool {
    while let Some((parent, fate)) = entry.parents.get_mut(entry.settled) {
        if let Fate::Open(generation) = *fate {
            match decide(log, ahead_ids, walk_over, parent, generation) {
                Some(true) => *fate = Fate::Shown,
                Some(false) => *fate = Fate::Hidden,
                None => return false,
            }
        }
        entry.settled += 1;
    }
    true
}

impl Iterator for ShownParents<'_> {
    /// A node and its shown parents, in parent order.
    type Item = Result<(StateNode, Vec<StateNodeId>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let ready = match self.ahead.front_mut() {
                Some(front) => settle(front, &self.log, &self.ahead_ids, self.walk_over),
                None if self.walk_over => return None,
                None => false,
            };
            if ready {
                let entry = self.ahead.pop_front()?;
                self.ahead_ids.remove(&entry.node.id);
                let shown = entry
                    .parents
                    .into_iter()
                    .filter(|(_, fate)| matches!(fate, Fate::Shown))
                    .map(|(p, _)| p)
                    .collect();
                return Some(Ok((entry.node, shown)));
            }
            match self.log.next() {
                None => self.walk_over = true,
                Some(Ok(node)) => self.take(node),
                Some(Err(e)) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
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
                // Listed a moment ago and gone now: a gc running meanwhile removed it (and
                // everything below it), so it is no longer a descendant.
                // `is_stored` tells that from an id index that lost the child's entry
                // (damage: `children` found its row), which must not shorten the answer.
                match self.cursor.node(&child)? {
                    Some(child) => {
                        self.frontier.push(child, 0);
                    }
                    None if self.cursor.is_stored(&child)? => {
                        return Err(StateStoreError::corrupt(
                            format!("node {child}"),
                            "listed as a child and stored, but cannot be read by its id",
                        ));
                    }
                    None => {}
                }
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
