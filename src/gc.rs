//! Garbage collection: removing nodes, states and bytes that nothing leads to any more.
//!
//! What is kept (the roots, and every ancestor of a root):
//! - every node a ref points at, every snapshot's node, and every node a ref log entry
//!   mentions (entries older than [`GcOptions::expire_ref_log`] are removed first, if asked);
//! - every node made within the grace period ([`GcOptions::grace`]), so a writer between
//!   `commit_node` and `set_ref` does not lose its node;
//! - every state put within the grace period, so a writer between `put_state` and
//!   `commit_node` does not lose its state.
//!
//! Everything else goes: unreachable nodes, states no kept node holds, and bytes no state
//! holds. Ages come from the store's own clock: a [`StateDataRef`] is a UUID v7, which carries
//! the time `put_state` made it. A ref that is not a v7 UUID has no age and counts as new, so
//! it is kept. A node is as new as its state or as its own `created_at`, whichever is newer,
//! so a node committed just now on an old state (a revert to a known-good state) is new; a
//! `created_at` later than the collection's start (a clock ahead, a made-up time) is not
//! counted, or such a node would never age.

use std::time::Duration;

use time::OffsetDateTime;

use crate::id::StateDataRef;

/// How [`StateStore::gc`](crate::StateStore::gc) decides what to remove.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use stategraph::GcOptions;
///
/// // Keep unreachable things for a day, and forget ref moves older than 30 days.
/// let options = GcOptions::new()
///     .grace(Duration::from_secs(24 * 3600))
///     .expire_ref_log(Duration::from_secs(30 * 24 * 3600));
/// assert!(!options.is_dry_run());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    grace: Duration,
    /// Set by [`GcOptions::keep_newer_than`]: used instead of `grace`.
    keep_since: Option<OffsetDateTime>,
    ref_log_expiry: Option<Duration>,
    prune: Option<Prune>,
    dry_run: bool,
    rows_per_step: usize,
}

/// Where [`GcOptions::prune_history`] cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prune {
    OlderThan(Duration),
    Before(OffsetDateTime),
}

/// Two weeks, as git's `gc.pruneExpire`.
const DEFAULT_GRACE: Duration = Duration::from_secs(14 * 24 * 3600);

/// See [`GcOptions::rows_per_step`].
const DEFAULT_ROWS_PER_STEP: usize = 10_000;

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            keep_since: None,
            ref_log_expiry: None,
            prune: None,
            dry_run: false,
            rows_per_step: DEFAULT_ROWS_PER_STEP,
        }
    }
}

impl GcOptions {
    /// Two weeks of grace, every ref log entry kept, not a dry run.
    pub fn new() -> Self {
        Self::default()
    }

    /// How old an unreachable node or an unused state must be before it is removed (two weeks
    /// by default). Shorter than the longest gap between a writer's `put_state` and its
    /// `commit_node`, or between `commit_node` and the `set_ref` that makes the node
    /// reachable, and that writer's next call fails with `MissingState` or `MissingNode`.
    /// [`commit_on`](crate::StateStore::commit_on) and batches have no such gap.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self.keep_since = None;
        self
    }

    /// Instead of a grace period: removes unreachable nodes and unused states made before
    /// `at`, and keeps those made since (for instance, everything left over from before a
    /// restart). The same caution as for [`grace`](Self::grace) applies to writers still
    /// running.
    pub fn keep_newer_than(mut self, at: OffsetDateTime) -> Self {
        self.keep_since = Some(at);
        self
    }

    /// Removes ref log entries older than `older_than` first, so the nodes only they
    /// mention can go too (by default every entry is kept: a branch moved every tick then
    /// keeps its whole history of moves, and every node it passed). `NAME@{N}` then reaches
    /// back only as far as the entries kept.
    pub fn expire_ref_log(mut self, older_than: Duration) -> Self {
        self.ref_log_expiry = Some(older_than);
        self
    }

    /// Also removes history that is still reachable, once it is older than `older_than`:
    /// every node made before then goes, except the nodes a ref or a snapshot points at
    /// itself and, for each ref, the nodes between it and the newest snapshot in its history
    /// (those [`latest_snapshot`](crate::History::latest_snapshot) walks, with their parents,
    /// so that a program restarting from the ref still finds its restore point). The nodes
    /// kept above a removed one record it as a shallow boundary (as a snapshot imported
    /// without its ancestors does), so their ids still verify and walks stop there and say
    /// so. Ref log entries that name a removed node go with it. Off by default; it makes a
    /// store whose branches move every tick stop growing, as long as they take snapshots as
    /// they go: a branch keeps everything above its newest snapshot (a program that took
    /// one snapshot at its start keeps all its history).
    ///
    /// This wins over the grace period for nodes older than `older_than`: a writer still
    /// working on a node that old loses it.
    pub fn prune_history(mut self, older_than: Duration) -> Self {
        self.prune = Some(Prune::OlderThan(older_than));
        self
    }

    /// [`prune_history`](Self::prune_history) at a point in time rather than an age.
    pub fn prune_history_before(mut self, at: OffsetDateTime) -> Self {
        self.prune = Some(Prune::Before(at));
        self
    }

    /// Counts what would be removed, and removes nothing. It only reads: the SQLite backend
    /// counts in one read transaction on a read connection, so it works on a read-only
    /// handle and writers carry on meanwhile. It reads the graph as a collection does, but
    /// damage that a collection meets only at its deletes (a row still pointing at a node it
    /// removes) stops the collection with [`StateStoreError::Corrupt`] (see [`rows_per_step`](Self::rows_per_step)) and
    /// not the dry run. [`SqliteStateStore::verify`](crate::SqliteStateStore::verify) reports
    /// the known kinds: a stray child edge or boundary row, a state ref that is not 16 bytes.
    ///
    /// [`StateStoreError::Corrupt`]: crate::StateStoreError::Corrupt
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// How many rows (nodes, states and byte strings) a SQLite collection removes per write
    /// transaction: 10,000 by default, at least 1. It works out what to remove in a read
    /// transaction, without the write lock, then removes it in steps of this many rows,
    /// each its own transaction, so writers wait for one step at a time rather than for the
    /// whole collection (a million nodes: seconds). A collection that fits in one step is all
    /// or nothing; a larger one that stops (damage, a full disk, the process killed) keeps
    /// what its earlier steps removed, which was garbage, and a later gc removes the rest.
    /// A step checks each row it removes against what writers did since: a node that a new
    /// child, ref, snapshot or ref log entry names stays, with its ancestors and its state.
    /// History pruning is stepped only above its cuts: the cuts and the history below them
    /// go in one last transaction, with writers waiting (see the README's gc section).
    /// `usize::MAX` makes every collection one transaction that reads the graph and deletes
    /// by set under the write lock, as before steps: the least work in all (1M unreachable
    /// nodes here: about 10 s, against about 30 s in steps), all of it with writers
    /// waiting. The in-memory store ignores it.
    pub fn rows_per_step(mut self, rows: usize) -> Self {
        self.rows_per_step = rows.max(1);
        self
    }

    /// See [`rows_per_step`](Self::rows_per_step).
    pub fn step_rows(&self) -> usize {
        self.rows_per_step
    }

    /// The grace period.
    pub fn grace_period(&self) -> Duration {
        self.grace
    }

    /// The ref log expiry, if any.
    pub fn ref_log_expiry(&self) -> Option<Duration> {
        self.ref_log_expiry
    }

    /// Whether this is a dry run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run
    }

    /// The cut-off times for a collection starting at `now`.
    pub(crate) fn cutoffs(&self, now: OffsetDateTime) -> Cutoffs {
        Cutoffs {
            unused_before: self
                .keep_since
                .or_else(|| now.checked_sub(self.grace.try_into().unwrap_or(time::Duration::MAX))),
            ref_log_before: self
                .ref_log_expiry
                .map(|d| now.checked_sub(d.try_into().unwrap_or(time::Duration::MAX))),
            prune_before: self.prune.and_then(|p| match p {
                Prune::Before(at) => Some(at),
                Prune::OlderThan(d) => now.checked_sub(d.try_into().unwrap_or(time::Duration::MAX)),
            }),
            dry_run: self.dry_run,
            now,
        }
    }
}

/// A collection's cut-offs as points in time (a `None` time: before every possible time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cutoffs {
    /// Unreachable nodes and unused states made before this are removed.
    pub unused_before: Option<OffsetDateTime>,
    /// `Some`: ref log entries made before this are removed first.
    pub ref_log_before: Option<Option<OffsetDateTime>>,
    /// Reachable nodes made before this are removed too (but for ref and snapshot targets).
    pub prune_before: Option<OffsetDateTime>,
    pub dry_run: bool,
    /// When the collection started: a node's `created_at` after it is not counted.
    pub now: OffsetDateTime,
}

impl Cutoffs {
    /// Whether the state behind `data_ref` was put before the grace period began; false when
    /// the ref carries no time.
    pub(crate) fn is_old(&self, data_ref: &StateDataRef) -> bool {
        made_before(data_ref, self.unused_before)
    }

    /// Whether a node holding the state `data_ref` and made (by its metadata) at
    /// `created_at` is older than the grace period: its state is, and so is its own time.
    pub(crate) fn is_old_node(&self, data_ref: &StateDataRef, created_at: OffsetDateTime) -> bool {
        self.is_old(data_ref) && !self.made_since(created_at, self.unused_before)
    }

    /// Whether history pruning removes such a node (when no ref or snapshot points at it).
    pub(crate) fn is_pruned(&self, data_ref: &StateDataRef, created_at: OffsetDateTime) -> bool {
        made_before(data_ref, self.prune_before) && !self.made_since(created_at, self.prune_before)
    }

    /// Whether `created_at` is at or after `since` and not after the collection's start.
    fn made_since(&self, created_at: OffsetDateTime, since: Option<OffsetDateTime>) -> bool {
        since.is_some_and(|since| since <= created_at && created_at <= self.now)
    }

    /// Whether a ref log entry made at `at` is expired.
    pub(crate) fn ref_log_expired(&self, at: OffsetDateTime) -> bool {
        match self.ref_log_before {
            None => false,
            Some(None) => false,
            Some(Some(before)) => at < before,
        }
    }
}

/// Whether `data_ref` carries a time before `before`; false without one of either.
fn made_before(data_ref: &StateDataRef, before: Option<OffsetDateTime>) -> bool {
    let Some(before) = before else {
        return false;
    };
    if data_ref.as_uuid().get_version_num() != 7 {
        return false;
    }
    let Some(ts) = data_ref.as_uuid().get_timestamp() else {
        return false;
    };
    let (secs, nanos) = ts.to_unix();
    let made = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    made < before.unix_timestamp_nanos()
}

/// What a collection removed (or, for a dry run, would remove).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GcReport {
    /// Nodes removed.
    pub nodes_removed: u64,
    /// Nodes kept.
    pub nodes_kept: u64,
    /// State data refs removed.
    pub states_removed: u64,
    /// Distinct byte strings removed (identical states share one).
    pub blobs_removed: u64,
    /// Their total size. A SQLite file does not shrink: SQLite reuses the freed pages for
    /// new writes.
    pub bytes_removed: u64,
    /// Ref log entries removed: expired ([`GcOptions::expire_ref_log`]), or naming a node
    /// that history pruning removed.
    pub ref_log_entries_removed: u64,
    /// Kept nodes that lost a parent to history pruning and now mark a shallow boundary.
    pub boundary_nodes: u64,
    /// True when nothing was removed because it was a dry run.
    pub dry_run: bool,
}

/// How far a SQLite collection in steps has got, reported after each step by
/// [`SqliteStateStore::gc_with_progress`](crate::SqliteStateStore::gc_with_progress).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcProgress {
    /// Planned rows (nodes, states and byte strings) dealt with so far: removed, or kept
    /// because a writer named or held them meanwhile.
    pub rows_done: u64,
    /// Rows the plan removes.
    pub rows_planned: u64,
    /// Write transactions committed so far (the first ones build the temporary indexes the
    /// steps read).
    pub steps: u64,
}

impl GcReport {
    /// Whether the collection removes (or, as a dry run, would remove) nothing at all.
    pub(crate) fn removes_nothing(&self) -> bool {
        self.nodes_removed == 0
            && self.states_removed == 0
            && self.blobs_removed == 0
            && self.ref_log_entries_removed == 0
            && self.boundary_nodes == 0
    }
}

/// History pruning keeps what a program restarting from a ref needs: for each of `heads`,
/// every node [`History::latest_snapshot`](crate::History::latest_snapshot) can walk from it
/// before it meets the newest snapshot in its history (the ancestors of a generation at least
/// that snapshot's), the stored parents of those above it (so that the walk meets no shallow
/// boundary there), and the same along first parents only
/// ([`latest_snapshot_in`](crate::History::latest_snapshot_in) with `first_parent`). Returns
/// them, to be kept as roots (some more than once); a head with no snapshot in its history
/// adds nothing.
///
/// One pass over every node finds each node's newest snapshot below it, then one walk in
/// generation order, from all heads at once, keeps what lies above those snapshots: about
/// the cost of reading the graph once, however many heads share a history.
///
/// `parents` gives every stored parent, pruned or not, and `first_parent` the first parent
/// when it is stored; indices share one numbering, below `len`. A parent's generation is
/// below its child's.
pub(crate) fn restore_paths(
    len: usize,
    heads: impl IntoIterator<Item = usize>,
    generation: impl Fn(usize) -> u64,
    has_snapshot: impl Fn(usize) -> bool,
    parents: impl Fn(usize) -> Vec<usize>,
    first_parent: impl Fn(usize) -> Option<usize>,
) -> Vec<usize> {
    // The generation of the newest snapshot in each node's history (0: none), in all of it
    // and along first parents; parents before children.
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_unstable_by_key(|&i| generation(i));
    let (mut newest, mut newest_on_line) = (vec![0u64; len], vec![0u64; len]);
    for &i in &order {
        let own = if has_snapshot(i) { generation(i) } else { 0 };
        let below = parents(i).into_iter().map(|p| newest[p]).max();
        newest[i] = below.unwrap_or(0).max(own);
        newest_on_line[i] = first_parent(i).map_or(0, |p| newest_on_line[p]).max(own);
    }
    let heads: Vec<usize> = heads.into_iter().collect();
    let mut keep = Vec::new();

    // Each node's floor: the lowest snapshot generation that a head reaching it walks down
    // to. Nodes come out newest first, so a node's floor is final when it comes out (its
    // children, all newer, came out before).
    let mut floor = vec![u64::MAX; len];
    let mut queue = std::collections::BinaryHeap::new();
    for &head in &heads {
        let found = newest[head];
        if found == 0 {
            continue;
        }
        if floor[head] == u64::MAX {
            queue.push((generation(head), head));
        }
        floor[head] = floor[head].min(found);
    }
    while let Some((at, node)) = queue.pop() {
        keep.push(node);
        if at <= floor[node] {
            continue;
        }
        for parent in parents(node) {
            if generation(parent) < floor[node] {
                // Below the snapshot the walk stops at, but met as a parent on the way.
                keep.push(parent);
                continue;
            }
            if floor[parent] == u64::MAX {
                queue.push((generation(parent), parent));
            }
            floor[parent] = floor[parent].min(floor[node]);
        }
    }

    // Along first parents: each head's line down to its newest snapshot on it. Lowest
    // snapshots first, so a line shared by several heads is walked once, by the head that
    // goes deepest.
    let mut by_depth: Vec<usize> = heads
        .into_iter()
        .filter(|&h| newest_on_line[h] > 0)
        .collect();
    by_depth.sort_unstable_by_key(|&h| newest_on_line[h]);
    let mut line_floor = vec![u64::MAX; len];
    for head in by_depth {
        let found = newest_on_line[head];
        let mut at = Some(head);
        while let Some(node) = at {
            if generation(node) < found || line_floor[node] <= found {
                break;
            }
            line_floor[node] = found;
            keep.push(node);
            at = first_parent(node);
        }
    }
    keep
}

/// Marks every node reachable from `roots` through `parents` (indices into the same
/// numbering); returns one flag per node.
pub(crate) fn mark(
    len: usize,
    roots: impl IntoIterator<Item = usize>,
    parents: impl Fn(usize) -> Vec<usize>,
) -> Vec<bool> {
    let mut kept = vec![false; len];
    let mut stack: Vec<usize> = Vec::new();
    for root in roots {
        if !kept[root] {
            kept[root] = true;
            stack.push(root);
        }
    }
    while let Some(node) = stack.pop() {
        for parent in parents(node) {
            if !kept[parent] {
                kept[parent] = true;
                stack.push(parent);
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `restore_paths` keeps each head's way down to the newest snapshot in its history, and
    /// reads each node's parents a bounded number of times however many heads share the
    /// history, wherever its snapshot lies.
    #[test]
    fn restore_paths_keep_the_way_to_a_snapshot_and_read_shared_history_once() {
        use std::cell::Cell;
        // A chain 0 <- 1 <- ... <- 999, and 100 heads (1000..1100) on top of 999.
        let parent_of = |i: usize| match i {
            0 => None,
            1..1000 => Some(i - 1),
            _ => Some(999),
        };
        let generation = |i: usize| if i < 1000 { i as u64 + 1 } else { 1001 };
        let reads = Cell::new(0);
        let parents = |i: usize| {
            reads.set(reads.get() + 1);
            parent_of(i).into_iter().collect()
        };
        let heads = 1000..1100;
        for snapshot in [None, Some(0), Some(500), Some(999)] {
            reads.set(0);
            let mut kept = restore_paths(
                1100,
                heads.clone(),
                generation,
                |i| Some(i) == snapshot,
                parents,
                parent_of,
            );
            // One pass to find the snapshots, then at most one read per node kept.
            assert!(
                reads.get() <= 2 * 1100,
                "{snapshot:?}: {} reads",
                reads.get()
            );
            kept.sort_unstable();
            kept.dedup();
            let expected: Vec<usize> = match snapshot {
                None => vec![],
                Some(s) => (s..1100).collect(),
            };
            assert_eq!(kept, expected, "{snapshot:?}");
        }
    }

    /// Above its snapshot, a head's walk meets no pruned parent: a merged branch with no
    /// snapshot keeps the parent the merge names, though the walk stops before it.
    #[test]
    fn restore_paths_keep_the_parents_of_what_they_walk() {
        // 0 <- 1 <- 2 (snapshot) <- 3 <- 5 (merge of 3 and 4) <- 6 (head); 0 <- 4.
        let parents_of = |i: usize| -> Vec<usize> {
            match i {
                0 => vec![],
                1 | 4 => vec![0],
                5 => vec![3, 4],
                _ => vec![i - 1],
            }
        };
        let generation = |i: usize| [1, 2, 3, 4, 2, 5, 6][i];
        let mut kept = restore_paths(
            7,
            [6],
            generation,
            |i| i == 2,
            parents_of,
            |i| parents_of(i).first().copied(),
        );
        kept.sort_unstable();
        kept.dedup();
        assert_eq!(kept, [2, 3, 4, 5, 6]);
    }

    /// What `restore_paths` must keep, worked out head by head the slow way: every
    /// ancestor at or above the newest snapshot below the head, the parents of those above
    /// it, and the first-parent line down to the newest snapshot on it.
    fn restore_paths_by_hand(
        parents: &[Vec<usize>],
        snapshots: &[bool],
        heads: &[usize],
    ) -> Vec<usize> {
        let generation = generations(parents);
        let mut keep = std::collections::BTreeSet::new();
        for &head in heads {
            let ancestors: Vec<usize> = (0..parents.len())
                .filter(|&a| {
                    let mut stack = vec![head];
                    let mut seen = std::collections::HashSet::new();
                    while let Some(n) = stack.pop() {
                        if n == a {
                            return true;
                        }
                        stack.extend(parents[n].iter().filter(|&&p| seen.insert(p)));
                    }
                    false
                })
                .collect();
            let newest = ancestors
                .iter()
                .filter(|&&a| snapshots[a])
                .map(|&a| generation[a])
                .max();
            if let Some(floor) = newest {
                for &a in ancestors.iter().filter(|&&a| generation[a] >= floor) {
                    keep.insert(a);
                    if generation[a] > floor {
                        keep.extend(&parents[a]);
                    }
                }
            }
            let mut line = vec![head];
            while let Some(&p) = parents[*line.last().unwrap()].first() {
                line.push(p);
            }
            if let Some(stop) = line.iter().position(|&n| snapshots[n]) {
                keep.extend(&line[..=stop]);
            }
        }
        keep.into_iter().collect()
    }

    fn generations(parents: &[Vec<usize>]) -> Vec<u64> {
        let mut generation = vec![0u64; parents.len()];
        for i in 0..parents.len() {
            generation[i] = 1 + parents[i].iter().map(|&p| generation[p]).max().unwrap_or(0);
        }
        generation
    }

    proptest::proptest! {
        /// `restore_paths` keeps exactly what the slow way does, on random graphs (parents
        /// among earlier nodes, in random order), snapshots and heads.
        #[test]
        fn restore_paths_match_the_slow_way(
            graph in proptest::collection::vec(
                (proptest::collection::vec(0usize..1000, 0..3), proptest::bool::weighted(0.15)),
                1..40,
            ),
            heads in proptest::collection::vec(0usize..1000, 1..5),
        ) {
            let parents: Vec<Vec<usize>> = graph
                .iter()
                .enumerate()
                .map(|(i, (ps, _))| {
                    let mut own: Vec<usize> = Vec::new();
                    for p in ps.iter().filter(|_| i > 0).map(|p| p % i) {
                        if !own.contains(&p) {
                            own.push(p);
                        }
                    }
                    own
                })
                .collect();
            let snapshots: Vec<bool> = graph.iter().map(|(_, s)| *s).collect();
            let heads: Vec<usize> = heads.iter().map(|h| h % parents.len()).collect();
            let generation = generations(&parents);
            let mut got = restore_paths(
                parents.len(),
                heads.iter().copied(),
                |i| generation[i],
                |i| snapshots[i],
                |i| parents[i].clone(),
                |i| parents[i].first().copied(),
            );
            got.sort_unstable();
            got.dedup();
            proptest::prop_assert_eq!(got, restore_paths_by_hand(&parents, &snapshots, &heads));
        }
    }

    #[test]
    fn mark_keeps_exactly_the_ancestors_of_the_roots() {
        // 0 <- 1 <- 2, 1 <- 3 (3 has parents 1 and 4), 4, 5 <- 6
        let parents = |n: usize| match n {
            1 => vec![0],
            2 => vec![1],
            3 => vec![1, 4],
            6 => vec![5],
            _ => vec![],
        };
        let kept = mark(7, [3], parents);
        assert_eq!(kept, [true, true, false, true, true, false, false]);
        let kept = mark(7, [2, 6], parents);
        assert_eq!(kept, [true, true, true, false, false, true, true]);
        assert_eq!(mark(7, [], parents), [false; 7]);
    }

    #[test]
    fn only_v7_refs_older_than_the_grace_period_are_old() {
        let now = OffsetDateTime::now_utc();
        let fresh = StateDataRef::new_v7();
        let cut = GcOptions::new()
            .grace(Duration::ZERO)
            .cutoffs(now + time::Duration::SECOND);
        assert!(cut.is_old(&fresh));
        let cut = GcOptions::new().cutoffs(now);
        assert!(!cut.is_old(&fresh), "within two weeks");
        // A v4 UUID has no time: never old.
        let v4 =
            StateDataRef::from_bytes([0x11, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        let cut = GcOptions::new().grace(Duration::ZERO).cutoffs(now);
        assert!(!cut.is_old(&v4));
        // A grace longer than the calendar: nothing is old.
        let cut = GcOptions::new().grace(Duration::MAX).cutoffs(now);
        assert!(!cut.is_old(&fresh));
    }

    #[test]
    fn ref_log_entries_expire_only_when_asked() {
        let now = OffsetDateTime::now_utc();
        let old = now - time::Duration::hours(2);
        assert!(!GcOptions::new().cutoffs(now).ref_log_expired(old));
        let cut = GcOptions::new()
            .expire_ref_log(Duration::from_secs(3600))
            .cutoffs(now);
        assert!(cut.ref_log_expired(old));
        assert!(!cut.ref_log_expired(now));
    }
}
