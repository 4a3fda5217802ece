//! History algorithms written once over any [`StateStore`]: log, ancestry, merge bases,
//! revision parsing, restore, and graph export.

mod ancestry;
mod frontier;
mod graphviz;
mod log;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use graphviz::{DotLines, dot};
pub use log::{Descendants, Log, LogOptions, LogOrder, ShownParents};

use crate::batch::Batch;
use crate::error::{Result, StateStoreError};
use crate::id::{IdPrefix, SnapshotId, StateNodeId};
use crate::model::{SnapshotInfo, StateNode, StateSnapshot};
use crate::refs::validate_ref_name;
use crate::store::{GraphCursor, StateStore};

/// How many candidates an ambiguous prefix error lists.
const AMBIGUITY_LIST: usize = 8;

/// A petgraph view of part of the history: nodes weighted by the [`StateNode`], edges from
/// child to parent weighted by the parent's position (0 = first parent).
pub type HistoryGraph = petgraph::graph::DiGraph<StateNode, usize>;

/// Git-like history queries, available on every [`StateStore`] (including
/// `dyn StateStore`).
///
/// Every walk orders nodes by generation (DESIGN invariant 4), so it can stop as soon as the
/// answer is known and never needs memory proportional to the whole history.
pub trait History: StateStore {
    /// Starts an atomic [`Batch`] of writes on this store.
    fn batch(&self) -> Batch<'_, Self> {
        Batch::new(self)
    }

    /// Walks the history as `git rev-list` does; see [`LogOptions`].
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`] / [`StateStoreError::MissingRef`] for an unknown
    /// starting point; errors while walking come out of the iterator.
    fn log(&self, options: &LogOptions) -> Result<Log<'_>> {
        Log::new(self, options)
    }

    /// Every ancestor of `id` (not `id` itself), children before parents.
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`] for an unknown id.
    fn ancestors(&self, id: &StateNodeId) -> Result<Log<'_>> {
        Ok(Log::new(self, &LogOptions::new().from(*id))?.hide([*id]))
    }

    /// Every descendant of `id` (not `id` itself), parents before children. A child that a
    /// `gc` running meanwhile removes is left out, as are its own descendants (which that gc
    /// removes too: nothing keeps them).
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`] for an unknown id.
    fn descendants(&self, id: &StateNodeId) -> Result<Descendants<'_>> {
        Descendants::new(self, id)
    }

    /// Whether `ancestor` is reachable from `descendant` by following parents. A node is its
    /// own ancestor; disjoint histories give `Ok(false)`.
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`] if either id is unknown;
    /// [`StateStoreError::ShallowHistory`] when the walk from `descendant` meets a parent
    /// that is not stored (a shallow boundary) through which `ancestor` could be reached:
    /// the answer is then unknown here, not "no";
    /// [`StateStoreError::RemovedDuringWalk`] when a `gc` running meanwhile removed history
    /// the walk was on.
    fn is_ancestor(&self, ancestor: &StateNodeId, descendant: &StateNodeId) -> Result<bool> {
        ancestry::is_ancestor(self, ancestor, descendant)
    }

    /// The best common ancestor of `a` and `b` (when there are several, as after criss-cross
    /// merges, the one with the largest generation); `None` for disjoint histories.
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`] if either id is unknown;
    /// [`StateStoreError::ShallowHistory`] and [`StateStoreError::RemovedDuringWalk`] as for
    /// [`merge_bases`](Self::merge_bases).
    fn merge_base(&self, a: &StateNodeId, b: &StateNodeId) -> Result<Option<StateNodeId>> {
        Ok(ancestry::merge_bases(self, &[*a, *b])?.into_iter().next())
    }

    /// All best common ancestors of `ids` (1 to 63 nodes): common ancestors that are not
    /// ancestors of another common ancestor, largest generation first.
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`] for an unknown id; [`StateStoreError::InvalidInput`]
    /// for no ids or more than 63; [`StateStoreError::ShallowHistory`] when a walk meets a
    /// parent that is not stored (a shallow boundary) where a better common ancestor could
    /// lie. An input that is an ancestor of the others is answered whatever is missing, and
    /// so is a question the stored history settles: the walk stops once every ancestor of
    /// some input not below a base found has been seen (so a branch merged into a long,
    /// pruned `main` is answered, and quickly), and a missing parent counts only if every
    /// input could reach history below it; the check is conservative. Generations of shallow nodes
    /// are the sender's claims, so a package claiming too low a generation can still make
    /// a walk stop early and answer "no". [`StateStoreError::RemovedDuringWalk`] when a
    /// `gc` running meanwhile removed history the walk was on.
    fn merge_bases(&self, ids: &[StateNodeId]) -> Result<Vec<StateNodeId>> {
        ancestry::merge_bases(self, ids)
    }

    /// Turns what a person types into a node id: a ref name, a full id (`blake3:…` or bare
    /// hex), a unique prefix of at least 4 hex digits, or git's `NAME@{N}` (where the ref
    /// `NAME` pointed N moves ago, from its ref log: `main@{0}` is where it points now,
    /// `main@{1}` where it was before its last move), optionally followed by git's `~N`
    /// (N-th first-parent ancestor) and `^N` (N-th parent) suffixes, e.g. `main~2^2`.
    ///
    /// # Errors
    /// [`StateStoreError::UnknownRevision`] when nothing matches,
    /// [`StateStoreError::MissingNode`] for a well-formed full id that is not stored,
    /// [`StateStoreError::AmbiguousId`] listing candidates for an ambiguous prefix,
    /// [`StateStoreError::InvalidInput`] for a suffix that walks past a root, or a
    /// `NAME@{N}` past the start of the ref log or at a move that deleted the ref;
    /// [`StateStoreError::RemovedDuringWalk`] when a `gc` running meanwhile removed the
    /// history a suffix was walking.
    fn resolve(&self, text: &str) -> Result<StateNodeId> {
        resolve(self, text)
    }

    /// The snapshot of the newest node (largest generation) in the history of `from`, `from`
    /// included; `None` when no node in it has one. What a restarting program resumes from
    /// when its branch may have moved past its last snapshot:
    /// `restore(&latest_snapshot(&head)?.unwrap().id, ...)`. The history includes merged
    /// branches: after a merge, the newest snapshot may be of a node on the merged side.
    ///
    /// Walks the history newest first and stops at the first snapshot, looking nodes up in
    /// the snapshot index a page at a time (16 nodes first, doubling up to 1024): a history
    /// without snapshots is walked to its roots.
    ///
    /// # Errors
    /// [`StateStoreError::MissingNode`] for an unknown id; an error of the walk only if no
    /// node before it has a snapshot. [`StateStoreError::ShallowHistory`] when the walk met
    /// a shallow boundary (history cut by `gc` with
    /// [`prune_history`](crate::GcOptions::prune_history), or never imported) past which a
    /// stored snapshot newer than the answer may lie. `gc`'s history pruning keeps the way
    /// from each ref down to its newest snapshot, so from a ref this happens only where its
    /// history holds no snapshot (or, along first parents, its line holds none): with older
    /// snapshots stored elsewhere, the pruned store can no longer show that none lies below.
    fn latest_snapshot(&self, from: &StateNodeId) -> Result<Option<SnapshotInfo>> {
        self.latest_snapshot_in(&LogOptions::new().from(*from))
    }

    /// [`latest_snapshot`](Self::latest_snapshot) in the walk `options` describe: the first
    /// node of [`log(options)`](Self::log) that has a snapshot. With
    /// [`first_parent`](LogOptions::first_parent), the newest snapshot on a branch's own line,
    /// leaving out branches merged into it (a program that merges its agents' branches into
    /// `main` resumes `main` from `main`'s own state); with a limit or exclusions, only in
    /// the nodes they leave.
    ///
    /// ```
    /// use stategraph::{History, InMemoryStateStore, LogOptions, StateData, StateMetadata, StateStore};
    ///
    /// let store = InMemoryStateStore::new();
    /// let tick = |parents: Vec<_>, label: &str| {
    ///     let data = StateData::new(label.as_bytes().to_vec());
    ///     store.commit_state(parents, data, StateMetadata::now(label)).map(|(_, id)| id)
    /// };
    /// let base = tick(vec![], "base")?;
    /// let mine = tick(vec![base], "mine")?;
    /// let agent = tick(vec![base], "agent")?;
    /// store.snapshot(&mine)?;
    /// let agent_more = tick(vec![agent], "agent, later")?;
    /// store.snapshot(&agent_more)?;
    /// let merged = tick(vec![mine, agent_more], "merge")?;
    /// // The newest snapshot in the whole history is the agent's...
    /// assert_eq!(store.latest_snapshot(&merged)?.unwrap().node_id, agent_more);
    /// // ...and on the first-parent line, `mine`.
    /// let own_line = LogOptions::new().from(merged).first_parent(true);
    /// assert_eq!(store.latest_snapshot_in(&own_line)?.unwrap().node_id, mine);
    /// # Ok::<(), stategraph::StateStoreError>(())
    /// ```
    ///
    /// # Errors
    /// As [`latest_snapshot`](Self::latest_snapshot), and as [`log`](Self::log) for the
    /// options.
    fn latest_snapshot_in(&self, options: &LogOptions) -> Result<Option<SnapshotInfo>> {
        let mut log = self.log(options)?;
        let mut page = Vec::new();
        let mut size = 16;
        // The highest generation a node past a shallow boundary met so far can have.
        let mut hidden = 0;
        loop {
            page.clear();
            let mut failed = None;
            for node in log.by_ref().take(size) {
                match node {
                    Ok(node) => page.push(node),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            for node in &page {
                if node.parent_ids.iter().any(|p| log.is_boundary(p)) {
                    hidden = hidden.max(node.generation.saturating_sub(1));
                }
            }
            let ids: Vec<StateNodeId> = page.iter().map(|n| n.id).collect();
            let found = self
                .snapshots_of_each(&ids)?
                .into_iter()
                .zip(&page)
                .find_map(|(snapshots, node)| Some((snapshots.into_iter().next()?, node)));
            if let Some((snapshot, node)) = found {
                no_snapshot_hidden(self, &log, node.generation, hidden)?;
                return Ok(Some(snapshot));
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if page.len() < size {
                no_snapshot_hidden(self, &log, 0, hidden)?;
                return Ok(None);
            }
            size = (size * 2).min(1024);
        }
    }

    /// Moves the ref `name` (by compare-and-swap from `expected`) to the snapshot's node and
    /// returns the snapshot: the one call a restarting program needs. When the ref is
    /// already there (and `expected` says so), nothing is written, the ref log included.
    ///
    /// # Errors
    /// [`StateStoreError::MissingSnapshot`], [`StateStoreError::RefConflict`],
    /// [`StateStoreError::InvalidRefName`].
    fn restore(
        &self,
        snapshot_id: &SnapshotId,
        name: &str,
        expected: Option<&StateNodeId>,
    ) -> Result<StateSnapshot> {
        validate_ref_name(name)?;
        let snapshot = self.load_snapshot(snapshot_id)?;
        // Already there: nothing moves, so nothing goes into the ref log (a restart that
        // restores the same snapshot again would otherwise shift every `NAME@{N}`).
        if expected == Some(&snapshot.node_id) && self.get_ref(name)? == expected.copied() {
            return Ok(snapshot);
        }
        let message = format!("restore snapshot {}", snapshot_id.to_short_hex(12));
        self.set_ref_with_message(name, expected, &snapshot.node_id, Some(&message))?;
        Ok(snapshot)
    }

    /// The nodes a walk visits, as a petgraph graph with child → parent edges among them
    /// (in a [`first_parent`](LogOptions::first_parent) walk, first-parent edges only).
    ///
    /// # Errors
    /// As [`log`](Self::log).
    fn to_graph(&self, options: &LogOptions) -> Result<HistoryGraph> {
        let mut graph = HistoryGraph::new();
        let mut index = HashMap::new();
        for node in self.log(options)? {
            let node = node?;
            let id = node.id;
            index.insert(id, graph.add_node(node));
        }
        let edges: Vec<_> = graph
            .node_indices()
            .flat_map(|child| {
                let parents = &graph[child].parent_ids;
                let drawn = if options.first_parent { 1 } else { usize::MAX };
                parents
                    .iter()
                    .take(drawn)
                    .enumerate()
                    .filter_map(|(pos, p)| index.get(p).map(|&parent| (child, parent, pos)))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (child, parent, pos) in edges {
            graph.add_edge(child, parent, pos);
        }
        Ok(graph)
    }

    /// The nodes a walk visits as a Graphviz DOT document: one box per node labelled with
    /// its short id and label, arrows from child to parent (dashed for later parents) among
    /// them; a [`first_parent`](LogOptions::first_parent) walk draws first-parent arrows only. The whole document in one string; [`dot_lines`](Self::dot_lines) streams it.
    ///
    /// # Errors
    /// As [`log`](Self::log).
    fn to_dot(&self, options: &LogOptions) -> Result<String> {
        self.dot_lines(options)?.collect()
    }

    /// The document of [`to_dot`](Self::to_dot) a line at a time (each ending in `\n`),
    /// made as the walk goes: write them out as they come and a history of any length is
    /// exported in memory proportional to the walk's frontier, as [`log`](Self::log) is.
    ///
    /// Nodes come in walk order. Since a parent comes after its children, the arrow from a
    /// child to a parent follows the parent's own line, once the walk has shown the parent
    /// is part of it.
    ///
    /// # Example
    /// ```
    /// use std::io::Write;
    /// use stategraph::{History, InMemoryStateStore, LogOptions, StateData, StateMetadata, StateStore};
    ///
    /// let store = InMemoryStateStore::new();
    /// let data = store.put_state(StateData::new(b"{}".to_vec()))?;
    /// let root = store.commit_node(vec![], data, StateMetadata::now(Some("root".into())))?;
    /// let next = store.commit_node(vec![root], data, StateMetadata::now(Some("next".into())))?;
    ///
    /// let mut out = Vec::new(); // or a BufWriter on a file or stdout
    /// for line in store.dot_lines(&LogOptions::new().from(next))? {
    ///     out.write_all(line?.as_bytes()).expect("write");
    /// }
    /// let dot = String::from_utf8(out).expect("utf-8");
    /// assert!(dot.starts_with("digraph stategraph {"));
    /// assert!(dot.contains(&format!("\"{}\" -> \"{}\";", next.to_hex(), root.to_hex())));
    /// # Ok::<(), stategraph::StateStoreError>(())
    /// ```
    ///
    /// # Errors
    /// As [`log`](Self::log); errors while walking come out of the iterator, which then
    /// ends.
    fn dot_lines(&self, options: &LogOptions) -> Result<DotLines<'_>> {
        Ok(DotLines::new(self.log(options)?))
    }
}

/// For [`History::latest_snapshot`]: `ShallowHistory` when a stored snapshot's node has a
/// generation above `floor` and at most `hidden`, so that it could lie past the boundary `log`
/// met, newer than the answer. (Snapshot nodes are never pruned, and the walk would have met
/// any it reaches above `floor` first.) Any stored snapshot counts, also one on an unrelated
/// branch or excluded from the walk: which ones lie past the boundary cannot be known here.
fn no_snapshot_hidden<S: StateStore + ?Sized>(
    store: &S,
    log: &Log<'_>,
    floor: u64,
    hidden: u64,
) -> Result<()> {
    let Some(&parent) = log.boundary().first() else {
        return Ok(());
    };
    if hidden <= floor {
        return Ok(());
    }
    for snapshot in store.list_snapshots()? {
        let generation = store.get_node(&snapshot.node_id)?.generation;
        if generation > floor && generation <= hidden {
            return Err(StateStoreError::ShallowHistory {
                question: "latest_snapshot",
                parent,
            });
        }
    }
    Ok(())
}

impl<S: StateStore + ?Sized> History for S {}

fn resolve(store: &(impl StateStore + ?Sized), text: &str) -> Result<StateNodeId> {
    let split = text.find(['~', '^']).unwrap_or(text.len());
    let (base, mut suffix) = text.split_at(split);
    let id = resolve_base(store, base, text)?;
    // Steps read through a cursor, as walks do (a SQLite cursor reads a chain ahead instead
    // of one id lookup per step); opened only when there are steps. Each step goes from the
    // node it read last, so a node is read once.
    let mut walk: Option<(Box<dyn GraphCursor + '_>, StateNode)> = None;
    while let Some(op) = suffix.chars().next() {
        if op != '~' && op != '^' {
            return Err(StateStoreError::invalid(
                "revision",
                format!("{text:?}: expected ~N or ^N, found {suffix:?}"),
            ));
        }
        // `op` is one byte: the digits start right after it.
        let digits_end = suffix[1..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(suffix.len(), |i| i + 1);
        let digits = &suffix[1..digits_end];
        let n: usize = if digits.is_empty() {
            1
        } else {
            digits.parse().map_err(|_| {
                StateStoreError::invalid("revision", format!("{text:?}: {digits} is too large"))
            })?
        };
        suffix = &suffix[digits_end..];
        let (cursor, node) = match &mut walk {
            Some((cursor, node)) => (cursor, node),
            None => {
                let mut cursor = store.cursor()?;
                let node = cursor
                    .node(&id)?
                    .ok_or(StateStoreError::MissingNode { id })?;
                let (cursor, node) = walk.insert((cursor, node));
                (cursor, node)
            }
        };
        // `steps`: how far back a `~N` has gone before this step, for its message.
        let mut step = |node: &StateNode, pos: usize, steps: Option<usize>| -> Result<StateNode> {
            let Some(&parent) = node.parent_ids.get(pos) else {
                let detail = match steps {
                    Some(steps) if node.parent_ids.is_empty() => format!(
                        "{text:?} goes back past a root: {} ({steps} step(s) back) has no parents",
                        node.id.to_short_hex(12)
                    ),
                    _ => format!(
                        "{text:?}: node {} has {} parent(s), not a parent number {}",
                        node.id.to_short_hex(12),
                        node.parent_ids.len(),
                        pos + 1
                    ),
                };
                return Err(StateStoreError::invalid("revision", detail));
            };
            match cursor.node(&parent)? {
                Some(parent) => Ok(parent),
                None => {
                    missing_parent(cursor.as_mut(), &node.id)?;
                    Err(StateStoreError::invalid(
                        "revision",
                        format!(
                            "{text:?}: parent {} of {} is not stored here (a shallow boundary: \
                             never imported, or pruned)",
                            parent.to_short_hex(12),
                            node.id.to_short_hex(12)
                        ),
                    ))
                }
            }
        };
        if op == '~' {
            for steps in 0..n {
                *node = step(node, 0, Some(steps))?;
            }
        } else if n > 0 {
            *node = step(node, n - 1, None)?;
        }
    }
    Ok(walk.map_or(id, |(_, node)| node.id))
}

/// `NAME@{N}`: where the ref `name` pointed `moves` moves ago, read from the end of its log.
fn ref_log_position(
    store: &(impl StateStore + ?Sized),
    name: &str,
    moves: &str,
    text: &str,
) -> Result<StateNodeId> {
    let invalid =
        |detail: String| StateStoreError::invalid("revision", format!("{text:?}: {detail}"));
    if moves.is_empty() || !moves.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "expected a number of moves in NAME@{{N}}, found {moves:?}"
        )));
    }
    let n: usize = moves
        .parse()
        .map_err(|_| invalid(format!("{moves} is too large")))?;
    if validate_ref_name(name).is_err() {
        return Err(StateStoreError::UnknownRevision {
            text: text.to_owned(),
        });
    }
    let log = store.ref_log_tail(name, n.saturating_add(1))?;
    if log.is_empty() {
        if store.get_ref(name)?.is_some() {
            // The ref is there; gc removed its moves (expired, or naming pruned history).
            return Err(invalid(format!(
                "the ref log of {name} is empty (gc removed its moves); {name} names its \
                 current node"
            )));
        }
        return Err(StateStoreError::UnknownRevision {
            text: text.to_owned(),
        });
    }
    if log.len() <= n {
        return Err(invalid(format!(
            "the ref log of {name} has {} move(s); {name}@{{{}}} is the oldest",
            log.len(),
            log.len() - 1
        )));
    }
    log[log.len() - 1 - n].new.ok_or_else(|| {
        invalid(format!(
            "that move deleted {name}; {name}@{{{}}} is where it pointed before",
            n + 1
        ))
    })
}

fn resolve_base(store: &(impl StateStore + ?Sized), base: &str, text: &str) -> Result<StateNodeId> {
    let unknown = || StateStoreError::UnknownRevision {
        text: text.to_owned(),
    };
    if base.is_empty() {
        return Err(unknown());
    }
    if let Some((name, moves)) = base.strip_suffix('}').and_then(|b| b.rsplit_once("@{")) {
        return ref_log_position(store, name, moves, text);
    }
    if let Ok(id) = base.parse::<StateNodeId>() {
        return match store.get_node(&id) {
            Ok(_) => Ok(id),
            // The library accepts ref names that read as ids (the CLI refuses to make
            // them): a ref of that name is what the text names when no such node exists.
            Err(StateStoreError::MissingNode { .. })
                if validate_ref_name(base).is_ok()
                    && let Some(target) = store.get_ref(base)? =>
            {
                Ok(target)
            }
            Err(e) => Err(e),
        };
    }
    if validate_ref_name(base).is_ok()
        && let Some(id) = store.get_ref(base)?
    {
        return Ok(id);
    }
    let Ok(prefix) = IdPrefix::parse(base) else {
        return Err(unknown());
    };
    let mut found = store.nodes_with_prefix(&prefix, AMBIGUITY_LIST + 1)?;
    match found.len() {
        0 => Err(unknown()),
        1 => Ok(found[0]),
        _ => {
            found.truncate(AMBIGUITY_LIST);
            Err(StateStoreError::AmbiguousId {
                prefix: prefix.to_string(),
                candidates: found,
            })
        }
    }
}

/// What a walk makes of a parent of `child` that it found missing: a shallow boundary
/// (`Ok`) while `child` is still stored; [`StateStoreError::RemovedDuringWalk`] when `child`
/// is gone too, which only a `gc` running while the walk read can do (a gc keeps every
/// ancestor of a node it keeps, and history pruning keeps the node below its cut).
pub(crate) fn missing_parent(
    cursor: &mut (impl GraphCursor + ?Sized),
    child: &StateNodeId,
) -> Result<()> {
    if cursor.is_stored(child)? {
        Ok(())
    } else {
        Err(StateStoreError::RemovedDuringWalk { id: *child })
    }
}
