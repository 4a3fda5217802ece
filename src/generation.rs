//! Generations of imported nodes: what a package's claim becomes, and what changes when a
//! node arrives that stored nodes were waiting for (their missing parent).
//!
//! A node whose parents are all stored has generation 1 + its largest parent's (DESIGN
//! invariant 4), and `verify` checks exactly that. A node with a parent that is not stored
//! here (below a shallow boundary) has a generation nobody here can check. It holds a
//! *placeholder*: at least 2 and above every stored parent, so that every stored edge still
//! goes up in generation, which is all that walks rely on. The placeholder starts as the
//! sender's claim, and becomes exact once the parents arrive.
//!
//! When a node arrives, the nodes waiting for it may have to change, and their descendants
//! with them. Honest claims agree with each other, so nothing changes. Claims that disagree
//! (damaged or forged packages) need a repair, and there are two ways to make one:
//! - *move the waiting side*: recompute the waiting nodes and their descendants;
//! - *move the arriving side*: give the new node, or the nearest placeholders among its
//!   ancestors, values under which the waiting nodes keep their generations (or, when they
//!   disagree among themselves, only rise).
//!
//! Both are simulated a step at a time, in turn, and the first to finish is applied, so a
//! repair costs about twice the cheaper of the two. When only the waiting side can move
//! (the waiting nodes are too low for the new node to fit below them), the placeholder that
//! decides the new node's generation is raised by as many generations as the repair changed
//! nodes: room for as many more ancestors to arrive below it without another repair.
//! Without that room, a chain imported newest first, every package claiming generation 2,
//! recomputed every descendant on each import: quadratic in the length of the chain. With
//! it the work is linear for a chain in that order (and measured near-linear in any order,
//! see the tests); histories with many merges, every claim forged, cost more.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::Hash;

use crate::codec;
use crate::error::Result;

/// The generation of an imported node as it is stored: exact when every parent is stored,
/// otherwise the sender's claim, raised if needed to stay above the parents that are stored.
///
/// # Errors
/// [`StateStoreError::InvalidInput`](crate::StateStoreError::InvalidInput) above
/// [`codec::MAX_GENERATION`].
pub(crate) fn import_generation(claimed: u64, parent_generations: &[Option<u64>]) -> Result<u64> {
    let above_stored = parent_generations
        .iter()
        .flatten()
        .max()
        .map_or(1, |g| g.saturating_add(1));
    let generation = if parent_generations.iter().all(Option::is_some) {
        above_stored
    } else {
        above_stored.max(claimed)
    };
    if generation > codec::MAX_GENERATION {
        return Err(codec::generation_too_large("node", generation));
    }
    Ok(generation)
}

/// The lowest placeholder a node below a shallow boundary may hold, given the generations
/// of its stored parents: 2 (it has parents), and above each of them.
fn floor(stored_parents: impl IntoIterator<Item = u64>) -> u64 {
    stored_parents
        .into_iter()
        .max()
        .map_or(2, |g| g.saturating_add(1).max(2))
}

/// Read access to the stored graph, as a backend sees it inside its write transaction.
pub(crate) trait GenerationGraph {
    /// How the backend names a stored node.
    type Key: Copy + Eq + Hash + Ord;

    /// A stored node's generation and its parents in order (`None` for a parent not stored
    /// here).
    ///
    /// # Errors
    /// Backend errors.
    fn node(&mut self, key: Self::Key) -> Result<(u64, Vec<Option<Self::Key>>)>;

    /// The stored nodes that list `key` as a parent.
    ///
    /// # Errors
    /// Backend errors.
    fn children(&mut self, key: Self::Key) -> Result<Vec<Self::Key>>;
}

/// What settling an arrival decided: the generations to store, and the work it took.
pub(crate) struct Settled<K> {
    /// `(node, new generation)`, each node once.
    pub(crate) changes: Vec<(K, u64)>,
    /// Nodes looked at, by every simulated repair together (a measure of the work done).
    // Read by the tests, which bound the work.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) steps: u64,
}

/// Decides which generations change now that `arrived` is stored (with the generation
/// [`import_generation`] or the commit gave it) and the nodes that listed it as a missing
/// parent are linked to it. Reads only; the backend writes the changes.
///
/// # Errors
/// [`StateStoreError::InvalidInput`](crate::StateStoreError::InvalidInput) when a
/// generation would pass [`codec::MAX_GENERATION`]; backend errors.
pub(crate) fn settle_arrival<G: GenerationGraph>(
    graph: &mut G,
    arrived: G::Key,
) -> Result<Settled<G::Key>> {
    let mut r = Reader::new(graph);
    let children = r.children(arrived)?;
    if children.is_empty() {
        return Ok(Settled {
            changes: Vec::new(),
            steps: 0,
        });
    }
    let (v0, parents) = r.node(arrived)?;
    let keep = keep_window(&mut r, arrived, &children)?;
    if keep.admits(v0) {
        // The claims agree: what honest packages always do.
        return Ok(Settled {
            changes: Vec::new(),
            steps: children.len() as u64,
        });
    }
    if parents.iter().any(Option::is_none) && !matches!(keep, Keep::Never { .. }) {
        let want = keep.target(v0);
        let stored_parents = stored_generations(&mut r, &parents)?;
        if want >= floor(stored_parents) {
            // The new node's own placeholder moves; the waiting nodes keep theirs.
            return Ok(Settled {
                changes: vec![(arrived, want)],
                steps: children.len() as u64,
            });
        }
    }
    // Two repairs race: the arrived node keeps its generation and the waiting side moves,
    // or it takes the one that keeps the waiting nodes (when they disagree: the highest one
    // asks for, under which the others only rise). Either way the waiting nodes are looked
    // at again.
    let mut plans = [
        Plan::moving(arrived, v0),
        Plan::moving(arrived, keep.target(v0)),
    ]
    .map(Some);
    for plan in plans.iter_mut().flatten() {
        plan.then = children.clone();
    }
    let mut steps = 0;
    let mut too_large = None;
    let mut aiming_failed = false;
    let (winner, plan) = 'race: loop {
        if plans.iter().all(Option::is_none) {
            // The arrived node's own generation fails only past the largest generation.
            let g = too_large.unwrap_or(u64::MAX);
            return Err(codec::generation_too_large("node", g));
        }
        for (i, slot) in plans.iter_mut().enumerate() {
            let Some(plan) = slot else { continue };
            steps += 1;
            match plan.step(&mut r)? {
                Status::Running => {}
                Status::Done => {
                    if let Some(plan) = slot.take() {
                        break 'race (i, plan);
                    }
                }
                Status::Infeasible => {
                    too_large = too_large.or(plan.too_large);
                    aiming_failed |= i == 1;
                    *slot = None;
                }
            }
        }
    };
    let mut changes = plan.changes(&mut r)?;
    if winner == 0 && aiming_failed && !matches!(keep, Keep::Never { .. }) && !changes.is_empty() {
        // Only the waiting side could move: leave room below the new node for as many
        // ancestors as this repair changed nodes, so the next ones fit without another.
        let room = u64::try_from(changes.len()).unwrap_or(u64::MAX);
        let raised = v0.saturating_add(room);
        if raised <= codec::MAX_GENERATION_CLAIM {
            let mut plan = Plan::moving(arrived, raised);
            plan.then = children.clone();
            loop {
                steps += 1;
                match plan.step(&mut r)? {
                    Status::Running => {}
                    Status::Done => {
                        changes = plan.changes(&mut r)?;
                        break;
                    }
                    // A root below, or past the largest generation: no room to make.
                    Status::Infeasible => break,
                }
            }
        }
    }
    Ok(Settled { changes, steps })
}

/// The generations of the stored parents in `parents`.
fn stored_generations<G: GenerationGraph>(
    r: &mut Reader<'_, G>,
    parents: &[Option<G::Key>],
) -> Result<Vec<u64>> {
    parents.iter().flatten().map(|p| r.generation(*p)).collect()
}

/// The generations of the arrived node under which every waiting node keeps its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Any generation up to this one.
    UpTo(u64),
    /// Exactly this one (a waiting node whose parents are now all stored takes its
    /// generation from the arrived node).
    Exactly(u64),
    /// None: the waiting nodes disagree. Under `highest`, the largest generation one of them
    /// asks for, the others only rise.
    Never { highest: u64 },
}

impl Keep {
    fn admits(self, g: u64) -> bool {
        match self {
            Keep::UpTo(up_to) => g <= up_to,
            Keep::Exactly(w) => g == w,
            Keep::Never { .. } => false,
        }
    }

    /// The generation to aim the arrived node at: the admitted one nearest to `g`, or the
    /// highest asked for.
    fn target(self, g: u64) -> u64 {
        match self {
            Keep::UpTo(up_to) => g.min(up_to),
            Keep::Exactly(w) | Keep::Never { highest: w } => w,
        }
    }
}

fn keep_window<G: GenerationGraph>(
    r: &mut Reader<'_, G>,
    arrived: G::Key,
    children: &[G::Key],
) -> Result<Keep> {
    let mut up_to = u64::MAX;
    // Generations the arrived node must have exactly, for a waiting node to keep its own.
    let mut lowest: Option<u64> = None;
    let mut highest: Option<u64> = None;
    let mut broken = false;
    for &child in children {
        let (generation, parents) = r.node(child)?;
        let below = generation.saturating_sub(1);
        up_to = up_to.min(below);
        if parents.iter().any(Option::is_none) {
            // Still below a boundary: it keeps its placeholder while the new node is under it.
            continue;
        }
        let others = parents.iter().flatten().filter(|p| **p != arrived);
        let others = others
            .map(|p| r.generation(*p))
            .collect::<Result<Vec<_>>>()?;
        let from_others = others.into_iter().max().map_or(1, |g| g.saturating_add(1));
        if from_others > generation {
            // Below a stored parent: only a damaged store has that; recomputing repairs it.
            broken = true;
        } else if from_others < generation {
            // The arrived node alone decides its generation.
            lowest = Some(lowest.map_or(below, |l| l.min(below)));
            highest = Some(highest.map_or(below, |h| h.max(below)));
        }
    }
    Ok(match (lowest, highest) {
        _ if broken => Keep::Never {
            highest: highest.unwrap_or(up_to),
        },
        (Some(l), Some(h)) if l == h && h == up_to => Keep::Exactly(h),
        (_, Some(h)) => Keep::Never { highest: h },
        _ => Keep::UpTo(up_to),
    })
}

/// A stored node as the settling reads it: its generation and its parents in order (`None`
/// for one not stored here).
type Row<K> = (u64, Vec<Option<K>>);

/// Stored nodes read so far, so that a repair reads each row once.
struct Reader<'g, G: GenerationGraph> {
    graph: &'g mut G,
    nodes: HashMap<G::Key, Row<G::Key>>,
    children: HashMap<G::Key, Vec<G::Key>>,
}

impl<'g, G: GenerationGraph> Reader<'g, G> {
    fn new(graph: &'g mut G) -> Self {
        Self {
            graph,
            nodes: HashMap::new(),
            children: HashMap::new(),
        }
    }

    fn node(&mut self, key: G::Key) -> Result<Row<G::Key>> {
        if let Some(row) = self.nodes.get(&key) {
            return Ok(row.clone());
        }
        let row = self.graph.node(key)?;
        self.nodes.insert(key, row.clone());
        Ok(row)
    }

    fn generation(&mut self, key: G::Key) -> Result<u64> {
        if let Some((generation, _)) = self.nodes.get(&key) {
            return Ok(*generation);
        }
        self.node(key).map(|(generation, _)| generation)
    }

    fn children(&mut self, key: G::Key) -> Result<Vec<G::Key>> {
        if let Some(children) = self.children.get(&key) {
            return Ok(children.clone());
        }
        let children = self.graph.children(key)?;
        self.children.insert(key, children.clone());
        Ok(children)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    Done,
    /// The plan cannot reach its goal (a placeholder would go below its floor, or a root
    /// would have to move, or a generation would pass the largest a store holds).
    Infeasible,
}

/// One repair, simulated a step at a time: first a walk up from a node to the placeholders
/// that decide its generation (when moving the arriving side), then the recomputation of
/// every node whose generation changes, in the order of their stored generations (parents
/// before children), with a node looked at again if a parent changes after it.
struct Plan<K> {
    /// Ancestors still to visit: `(node, the generation it should get)`.
    walk: Vec<(K, u64)>,
    /// What each visited node was asked for, so that paths that meet are walked once.
    asked: HashMap<K, u64>,
    /// Placeholders this plan sets.
    pinned: HashMap<K, u64>,
    /// Generations computed so far (equal to the stored one for a node that ends unchanged).
    values: HashMap<K, u64>,
    queue: BinaryHeap<Reverse<(u64, K)>>,
    queued: HashSet<K>,
    /// Nodes to look at once everything above is settled: the waiting nodes, whose stored
    /// generations may be below the arrived node's (so the order of stored generations
    /// would look at them too early).
    then: Vec<K>,
    /// A generation past the largest a store holds, met while recomputing.
    too_large: Option<u64>,
}

impl<K: Copy + Eq + Hash + Ord> Plan<K> {
    fn empty() -> Self {
        Self {
            walk: Vec::new(),
            asked: HashMap::new(),
            pinned: HashMap::new(),
            values: HashMap::new(),
            queue: BinaryHeap::new(),
            queued: HashSet::new(),
            then: Vec::new(),
            too_large: None,
        }
    }

    /// Give `node` the generation `target` by moving the placeholders it depends on.
    fn moving(node: K, target: u64) -> Self {
        let mut plan = Self::empty();
        plan.walk.push((node, target));
        plan
    }

    fn enqueue<G: GenerationGraph<Key = K>>(
        &mut self,
        r: &mut Reader<'_, G>,
        node: K,
    ) -> Result<()> {
        if self.queued.insert(node) {
            let stored = r.generation(node)?;
            self.queue.push(Reverse((stored, node)));
        }
        Ok(())
    }

    fn value<G: GenerationGraph<Key = K>>(&self, r: &mut Reader<'_, G>, node: K) -> Result<u64> {
        match self.values.get(&node) {
            Some(v) => Ok(*v),
            None => r.generation(node),
        }
    }

    fn step<G: GenerationGraph<Key = K>>(&mut self, r: &mut Reader<'_, G>) -> Result<Status> {
        if let Some((node, target)) = self.walk.pop() {
            return self.walk_step(r, node, target);
        }
        let Some(Reverse((_, node))) = self.queue.pop() else {
            if self.then.is_empty() {
                return Ok(Status::Done);
            }
            for node in std::mem::take(&mut self.then) {
                self.enqueue(r, node)?;
            }
            return Ok(Status::Running);
        };
        self.queued.remove(&node);
        let (stored, parents) = r.node(node)?;
        let current = self.values.get(&node).copied().unwrap_or(stored);
        let mut above = Vec::with_capacity(parents.len());
        for p in parents.iter().flatten() {
            above.push(self.value(r, *p)?);
        }
        let new = if parents.is_empty() {
            1
        } else if parents.iter().all(Option::is_some) {
            above.iter().max().map_or(1, |g| g.saturating_add(1))
        } else {
            let floor = floor(above);
            match self.pinned.get(&node) {
                Some(&pin) => pin.max(floor),
                None => current.max(floor),
            }
        };
        if new > codec::MAX_GENERATION {
            self.too_large = Some(new);
            return Ok(Status::Infeasible);
        }
        if new != current {
            self.values.insert(node, new);
            for child in r.children(node)? {
                self.enqueue(r, child)?;
            }
        }
        Ok(Status::Running)
    }

    fn walk_step<G: GenerationGraph<Key = K>>(
        &mut self,
        r: &mut Reader<'_, G>,
        node: K,
        target: u64,
    ) -> Result<Status> {
        let (stored, parents) = r.node(node)?;
        let raising = target > stored;
        match self.asked.get(&node) {
            // Asked for as much already (up: at least as high; down: at least as low).
            Some(&asked) if (raising && asked >= target) || (!raising && asked <= target) => {
                return Ok(Status::Running);
            }
            _ => {}
        }
        self.asked.insert(node, target);
        if target == stored {
            return Ok(Status::Running);
        }
        if parents.iter().any(Option::is_none) {
            let stored_parents = stored_generations(r, &parents)?;
            if target < floor(stored_parents) {
                return Ok(Status::Infeasible);
            }
            self.pinned.insert(node, target);
            self.enqueue(r, node)?;
            return Ok(Status::Running);
        }
        let Some(below) = target.checked_sub(1).filter(|_| !parents.is_empty()) else {
            // A root's generation is 1, whatever is above it.
            return Ok(Status::Infeasible);
        };
        let mut highest: Option<(u64, K)> = None;
        for p in parents.iter().flatten() {
            let g = r.generation(*p)?;
            if raising {
                // One parent at `below` is enough: the first of the highest.
                if highest.is_none_or(|(h, _)| g > h) {
                    highest = Some((g, *p));
                }
            } else if g > below {
                // Every parent above `below` must come down.
                self.walk.push((*p, below));
            }
        }
        if let Some((_, p)) = highest {
            self.walk.push((p, below));
        }
        Ok(Status::Running)
    }

    /// The generations that differ from the stored ones.
    fn changes<G: GenerationGraph<Key = K>>(self, r: &mut Reader<'_, G>) -> Result<Vec<(K, u64)>> {
        let mut changes = Vec::with_capacity(self.values.len());
        for (node, value) in self.values {
            if r.generation(node)? != value {
                changes.push((node, value));
            }
        }
        changes.sort_unstable();
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::StateStoreError;

    /// A graph of `parents` (index → parent indexes; every node has a true generation),
    /// imported one node at a time as a store would.
    struct Toy {
        parents: Vec<Vec<usize>>,
        stored: HashMap<usize, u64>,
        children: HashMap<usize, Vec<usize>>,
        steps: u64,
        changed: u64,
    }

    impl GenerationGraph for Toy {
        type Key = usize;

        fn node(&mut self, key: usize) -> Result<(u64, Vec<Option<usize>>)> {
            let parents = self.parents[key]
                .iter()
                .map(|p| self.stored.contains_key(p).then_some(*p))
                .collect();
            Ok((self.stored[&key], parents))
        }

        fn children(&mut self, key: usize) -> Result<Vec<usize>> {
            Ok(self
                .children
                .get(&key)
                .into_iter()
                .flatten()
                .copied()
                .filter(|c| self.stored.contains_key(c))
                .collect())
        }
    }

    impl Toy {
        fn new(parents: Vec<Vec<usize>>) -> Self {
            let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
            for (child, ps) in parents.iter().enumerate() {
                for p in ps {
                    children.entry(*p).or_default().push(child);
                }
            }
            Self {
                parents,
                stored: HashMap::new(),
                children,
                steps: 0,
                changed: 0,
            }
        }

        fn truth(&self) -> Vec<u64> {
            let mut g: Vec<u64> = Vec::with_capacity(self.parents.len());
            for ps in &self.parents {
                // Parents come first in `parents`.
                g.push(ps.iter().map(|p| g[*p] + 1).max().unwrap_or(1));
            }
            g
        }

        fn import(&mut self, node: usize, claim: u64) -> Result<()> {
            let claim = if self.parents[node].is_empty() {
                1
            } else {
                claim.max(2)
            };
            let parents: Vec<Option<u64>> = self.parents[node]
                .iter()
                .map(|p| self.stored.get(p).copied())
                .collect();
            let generation = import_generation(claim, &parents)?;
            self.stored.insert(node, generation);
            let settled = settle_arrival(self, node)?;
            self.steps += settled.steps;
            if false {
                eprintln!(
                    "BIG node {node} steps {} changes {} children {:?}",
                    settled.steps,
                    settled.changes.len(),
                    self.children.get(&node).map(|c| c
                        .iter()
                        .filter(|c| self.stored.contains_key(c))
                        .map(|c| (self.stored[c], c))
                        .collect::<Vec<_>>())
                );
            }
            self.changed += settled.changes.len() as u64;
            for (n, g) in settled.changes {
                self.stored.insert(n, g);
            }
            self.check();
            Ok(())
        }

        /// Invariant 4 where it can be checked, placeholders above their stored parents.
        fn check(&self) {
            for (&n, &g) in &self.stored {
                let stored: Vec<u64> = self.parents[n]
                    .iter()
                    .filter_map(|p| self.stored.get(p).copied())
                    .collect();
                if stored.len() == self.parents[n].len() {
                    let exact = stored.iter().max().map_or(1, |g| g + 1);
                    assert_eq!(g, exact, "node {n} has all its parents");
                } else {
                    assert!(g >= floor(stored), "node {n} ({g}) below its floor");
                }
            }
        }

        fn import_all(&mut self, order: &[usize], claim: impl Fn(usize) -> u64) {
            for &n in order {
                self.import(n, claim(n)).unwrap();
            }
            let truth = self.truth();
            for (n, t) in truth.iter().enumerate() {
                assert_eq!(self.stored[&n], *t, "node {n} once everything is stored");
            }
        }
    }

    fn chain(n: usize) -> Vec<Vec<usize>> {
        (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect()
    }

    /// A deterministic shuffle (xorshift), so failures reproduce.
    fn shuffled(n: usize, mut seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        order
    }

    /// Newest first in pairs: a lone node, then the node joining it to what is stored.
    fn pairs(n: usize) -> Vec<usize> {
        let mut order = vec![n - 1];
        let mut k = n - 1;
        while k >= 2 {
            order.extend([k - 2, k - 1]);
            k -= 2;
        }
        if k == 1 {
            order.push(0);
        }
        order
    }

    #[test]
    fn honest_claims_change_nothing_in_any_order() {
        let n = 500;
        for order in [(0..n).rev().collect(), pairs(n), shuffled(n, 7)] {
            let mut toy = Toy::new(chain(n));
            let truth = toy.truth();
            toy.import_all(&order, |i| truth[i]);
            assert_eq!(toy.changed, 0);
        }
    }

    /// The reported case: a chain imported newest first, every package claiming 2. Settling
    /// each arrival by recomputing the waiting side changed n²/2 generations.
    #[test]
    fn low_claims_newest_first_cost_linear_work() {
        let n = 4000;
        let mut toy = Toy::new(chain(n));
        toy.import_all(&(0..n).rev().collect::<Vec<_>>(), |_| 2);
        assert!(toy.changed <= 4 * n as u64, "{} changes", toy.changed);
        assert!(toy.steps <= 10 * n as u64, "{} steps", toy.steps);
    }

    #[test]
    fn adversarial_orders_and_claims_cost_near_linear_work() {
        let n = 1500;
        let bound = 40 * n as u64;
        type Claim = fn(usize) -> u64;
        let claims: [(&str, Claim); 4] = [
            ("2", |_| 2),
            ("huge", |_| 1 << 40),
            ("alternating", |i| if i % 2 == 0 { 2 } else { 1 << 30 }),
            ("descending", |i| 1 << (40 - (i % 40))),
        ];
        let orders = [
            ("newest first", (0..n).rev().collect()),
            ("pairs", pairs(n)),
            ("shuffled", shuffled(n, 0x9e37_79b9)),
        ];
        for (order_name, order) in &orders {
            for (claim_name, claim) in &claims {
                let mut toy = Toy::new(chain(n));
                toy.import_all(order, claim);
                assert!(
                    toy.steps <= bound,
                    "{order_name}, claims {claim_name}: {} steps",
                    toy.steps
                );
            }
        }
    }

    /// Merges and forks: every arrival keeps the checkable invariants, and the end is exact.
    #[test]
    fn a_dag_in_any_order_ends_exact() {
        let n = 300;
        let mut seed = 0x2545_f491_u64;
        let mut parents = Vec::with_capacity(n);
        for i in 0..n {
            let mut ps: Vec<usize> = Vec::new();
            for _ in 0..(i.min(3)) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let p = i - 1 - (seed as usize % i.min(20));
                if !ps.contains(&p) {
                    ps.push(p);
                }
            }
            if i > 0 && seed.is_multiple_of(5) {
                ps.truncate(1);
            }
            parents.push(ps);
        }
        for (k, order) in [(0..n).rev().collect(), pairs(n), shuffled(n, 3)]
            .into_iter()
            .enumerate()
        {
            for claim in [2, 7, 1 << 20] {
                let mut toy = Toy::new(parents.clone());
                toy.import_all(&order, |i| claim + (i as u64 * k as u64) % 5);
            }
        }
    }

    /// A waiting node that would have to rise past the largest generation a store holds is
    /// an error (the arrival's import fails and nothing of it stays), not a wrapped number.
    #[test]
    fn a_generation_past_the_largest_is_an_error() {
        // 3 is a merge of 1 and 2 (2 never arrives); 4 waits for 3 with a low claim; 1
        // claims nearly the largest generation, so 3 cannot fit below 4.
        let mut toy = Toy::new(vec![vec![], vec![0], vec![], vec![1, 2], vec![3]]);
        toy.import(4, 5).unwrap();
        toy.import(1, codec::MAX_GENERATION - 1).unwrap();
        let err = toy.import(3, 2).unwrap_err();
        assert!(matches!(err, StateStoreError::InvalidInput { .. }), "{err}");
    }
}
