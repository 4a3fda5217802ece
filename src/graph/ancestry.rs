//! Ancestry queries: `is_ancestor` and merge bases, stopping early by generation.

use super::frontier::{Direction, Frontier};
use crate::error::{Result, StateStoreError};
use crate::id::StateNodeId;
use crate::model::StateNode;
use crate::store::{GraphCursor, StateStore};

fn load(cursor: &mut dyn GraphCursor, id: &StateNodeId) -> Result<StateNode> {
    cursor
        .node(id)?
        .ok_or(StateStoreError::MissingNode { id: *id })
}

/// Whether `ancestor` is reachable from `descendant` (a node counts as its own ancestor).
pub(crate) fn is_ancestor(
    store: &(impl StateStore + ?Sized),
    ancestor: &StateNodeId,
    descendant: &StateNodeId,
) -> Result<bool> {
    let mut cursor = store.cursor()?;
    let target = load(cursor.as_mut(), ancestor)?;
    let start = load(cursor.as_mut(), descendant)?;
    if ancestor == descendant {
        return Ok(true);
    }
    // Everything above `target` in the graph has a larger generation; nothing else can lead
    // to it, so the walk only follows nodes above that line.
    let floor = target.generation;
    if start.generation <= floor {
        return Ok(false);
    }
    let mut frontier = Frontier::new(Direction::Up);
    frontier.push(start, 0);
    // The first parent met that is not stored (a shallow boundary) and could lead to
    // `target`: without it, "no" is only "not in the history stored here".
    let mut beyond = None;
    while let Some((node, _)) = frontier.pop() {
        for parent in &node.parent_ids {
            if parent == ancestor {
                return Ok(true);
            }
            if frontier.flags(parent).is_some() {
                continue;
            }
            match cursor.node(parent)? {
                Some(p) if p.generation > floor => {
                    frontier.push(p, 0);
                }
                Some(_) => {}
                // Its generation is below this node's; at or below the floor it cannot
                // lead to `target` (and is not `target`, which is stored).
                None if node.generation.saturating_sub(1) > floor => {
                    super::missing_parent(cursor.as_mut(), &node.id)?;
                    beyond.get_or_insert(*parent);
                }
                None => {}
            }
        }
    }
    match beyond {
        Some(parent) => Err(StateStoreError::ShallowHistory {
            question: "is_ancestor",
            parent,
        }),
        None => Ok(false),
    }
}

const STALE: u64 = 1 << 63;

/// The best common ancestors of `ids`: common ancestors that are not ancestors of another
/// common ancestor. Largest generation first. Empty when the histories are disjoint.
pub(crate) fn merge_bases(
    store: &(impl StateStore + ?Sized),
    ids: &[StateNodeId],
) -> Result<Vec<StateNodeId>> {
    if ids.is_empty() {
        return Err(StateStoreError::invalid(
            "merge base",
            "needs at least one node",
        ));
    }
    if ids.len() > 63 {
        return Err(StateStoreError::invalid(
            "merge base",
            "at most 63 nodes at once",
        ));
    }
    let n = ids.len();
    let all: u64 = (1u64 << n) - 1;
    let mut cursor = store.cursor()?;
    let mut frontier = Frontier::new(Direction::Up);
    // Entries not yet marked stale, in all and for each input: once no entry reached from
    // some input is left, no further result is possible (a best common ancestor must be
    // reached from every input by entries that are not stale).
    let mut live = 0usize;
    let mut live_from = vec![0usize; n];
    let bits = |flags: u64| (0..n).filter(move |i| flags & (1 << i) != 0);
    let account = |was: Option<u64>, flags: u64, live: &mut usize, live_from: &mut [usize]| {
        let live_bits = |f: u64| if f & STALE == 0 { f & all } else { 0 };
        let old = was.map_or(0, live_bits);
        let new = live_bits(was.unwrap_or(0) | flags);
        match was {
            None if flags & STALE == 0 => *live += 1,
            Some(old) if old & STALE == 0 && flags & STALE != 0 => *live -= 1,
            _ => {}
        }
        for i in bits(old & !new) {
            live_from[i] -= 1;
        }
        for i in bits(new & !old) {
            live_from[i] += 1;
        }
    };
    for (i, id) in ids.iter().enumerate() {
        let node = load(cursor.as_mut(), id)?;
        let was = frontier.push(node, 1 << i);
        account(was, 1 << i, &mut live, &mut live_from);
    }
    let mut bases = Vec::new();
    // Parents met that are not stored, from entries not below a base found: (the node that
    // met it, its flags, the parent). Whether the answer depends on them is settled at the
    // end: only if every input can reach history below them.
    let mut beyond: Vec<(u64, u64, StateNodeId)> = Vec::new();
    // For each input: whether it met a parent that is not stored, and the smallest
    // generation of an entry reached from it that was not stale.
    let mut met_missing = vec![false; n];
    let mut lowest = vec![u64::MAX; n];
    let mut stopped_early = false;
    // The highest node below a base that met a parent that is not stored, and that parent.
    let mut below_base: Option<(u64, StateNodeId)> = None;
    while live > 0 {
        if (0..n).any(|i| live_from[i] == 0 && !met_missing[i]) {
            stopped_early = true;
            break;
        }
        let Some((node, mut flags)) = frontier.pop() else {
            break;
        };
        if flags & STALE == 0 {
            live -= 1;
            for i in bits(flags) {
                live_from[i] -= 1;
                lowest[i] = lowest[i].min(node.generation);
            }
            if flags & all == all {
                // Reached from every input and from no common ancestor above it: a best
                // common ancestor. Everything below it is now only a worse one.
                if ids.contains(&node.id) {
                    // An input that is an ancestor of every other input is the one answer
                    // (every common ancestor is one of its ancestors), whatever history is
                    // missing elsewhere. The walk goes by generation, so no base came first.
                    return Ok(vec![node.id]);
                }
                bases.push(node.id);
                flags |= STALE;
            }
        }
        for parent in &node.parent_ids {
            if let Some(was) = frontier.merge(parent, flags) {
                account(Some(was), flags, &mut live, &mut live_from);
            } else if let Some(p) = cursor.node(parent)? {
                let was = frontier.push(p, flags);
                account(was, flags, &mut live, &mut live_from);
            } else if flags & STALE == 0 {
                super::missing_parent(cursor.as_mut(), &node.id)?;
                beyond.push((node.generation, flags, *parent));
                for i in bits(flags) {
                    met_missing[i] = true;
                }
            } else if below_base.is_none_or(|(g, _)| g < node.generation) {
                super::missing_parent(cursor.as_mut(), &node.id)?;
                below_base = Some((node.generation, *parent));
            }
        }
    }
    // A base is best only if it is not an ancestor of another base. Through stored history
    // the walk has marked such a base stale; through a parent that is not stored, it cannot
    // tell: walk on below the bases (stale entries only) down to the lowest base, and if a
    // parent is missing there, the answer depends on it.
    if bases.len() > 1 {
        let mut floor = u64::MAX;
        for base in &bases {
            floor = floor.min(load(cursor.as_mut(), base)?.generation);
        }
        if let Some((generation, parent)) = below_base
            && generation > floor
        {
            return Err(StateStoreError::ShallowHistory {
                question: "merge_base",
                parent,
            });
        }
        while let Some((node, flags)) = frontier.pop() {
            if node.generation <= floor {
                break;
            }
            if flags & STALE == 0 {
                continue;
            }
            for parent in &node.parent_ids {
                if frontier.merge(parent, flags).is_some() {
                    continue;
                }
                if let Some(p) = cursor.node(parent)? {
                    frontier.push(p, flags);
                } else {
                    super::missing_parent(cursor.as_mut(), &node.id)?;
                    return Err(StateStoreError::ShallowHistory {
                        question: "merge_base",
                        parent: *parent,
                    });
                }
            }
        }
    }
    // History below a missing parent (all of it below the generation of the node that met
    // it) can hold a better common ancestor only if every input can reach it: the inputs
    // that met it, and each other one through a missing parent of its own or through a
    // stored ancestor, not below a base, low enough to lie in that history. (After an early
    // stop, an input with entries left may have such ancestors further down.)
    let settles = |(generation, flags, _): &(u64, u64, StateNodeId)| {
        bits(all & !flags).any(|j| {
            !met_missing[j] && lowest[j] >= *generation && !(stopped_early && live_from[j] > 0)
        })
    };
    match beyond.iter().find(|b| !settles(b)) {
        Some(&(_, _, parent)) => Err(StateStoreError::ShallowHistory {
            question: "merge_base",
            parent,
        }),
        None => Ok(bases),
    }
}
