//! Revision arguments: single revisions, `A..B` ranges and `^A` exclusions.

use stategraph::{History, LogOptions, StateNodeId, StateStore, StateStoreError};

use crate::commands::refs::TAGS;
use crate::error::{CliError, CliResult, explain};

/// Resolves what a person typed to a node id, with hints on failure.
pub fn resolve(store: &dyn StateStore, text: &str) -> CliResult<StateNodeId> {
    resolve_plain(store, text).map_err(|e| explain(store, e))
}

/// [`resolve`] with the library's error, for callers that handle some errors themselves.
pub fn resolve_plain(store: &dyn StateStore, text: &str) -> Result<StateNodeId, StateStoreError> {
    store.resolve(text).or_else(|e| match e {
        // A tag by its own name, as listings show it (`tag: v1`) and git reads it.
        StateStoreError::UnknownRevision { .. } if tag_named(store, text) => {
            let full = format!("{TAGS}{text}");
            // Errors quote the revision as it was typed, not as it was read.
            store.resolve(&full).map_err(|e| match e {
                StateStoreError::InvalidInput { what, detail } => StateStoreError::InvalidInput {
                    what,
                    detail: detail.replace(&format!("{full:?}"), &format!("{text:?}")),
                },
                e => e,
            })
        }
        e => Err(e),
    })
}

/// Whether `text` starts with the name of a tag given without its `tags/` (what comes before
/// `~`, `^` or `@{`), when no ref of that name exists or ever did.
fn tag_named(store: &dyn StateStore, text: &str) -> bool {
    let name = text.find(['~', '^']).map_or(text, |end| &text[..end]);
    let name = name.split_once("@{").map_or(name, |(name, _)| name);
    // As `reflog` reads a name: a ref that exists, or whose log does (a deleted branch).
    let known = |name: &str| {
        matches!(store.get_ref(name), Ok(Some(_)))
            || store.ref_log_tail(name, 1).is_ok_and(|log| !log.is_empty())
    };
    !name.is_empty() && !known(name) && known(&format!("{TAGS}{name}"))
}

/// What to walk, parsed from `log`/`graph` arguments.
pub struct Walk {
    /// The library's walk options.
    pub options: LogOptions,
    /// Whether anything is excluded (then some parents are not shown).
    pub excludes: bool,
    /// True when there was nothing to start from (a store without refs).
    pub empty: bool,
    /// Only first parents are followed.
    pub first_parent: bool,
}

/// How to walk from the starting points.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalkFlags {
    /// Start from every ref as well.
    pub all: bool,
    /// Follow only first parents.
    pub first_parent: bool,
    /// Stop after this many nodes.
    pub limit: Option<usize>,
}

/// Parses `REV`, `A..B` and `^A` arguments. With no starting point (or only exclusions),
/// walks from `main` if it exists, else from every ref; `all` adds every ref.
pub fn walk(store: &dyn StateStore, revs: &[String], flags: WalkFlags) -> CliResult<Walk> {
    let all = flags.all;
    let mut options = LogOptions::new().first_parent(flags.first_parent);
    if let Some(n) = flags.limit {
        options = options.limit(n);
    }
    let mut starts = 0usize;
    let mut excludes = false;
    for rev in revs {
        if rev.contains("...") {
            return Err(CliError::new(format!(
                "{rev:?}: the symmetric difference A...B is not supported"
            ))
            .hint("use A..B (in B, not in A) and B..A"));
        }
        if let Some((a, b)) = rev.split_once("..") {
            if a.is_empty() || b.is_empty() {
                return Err(CliError::new(format!(
                    "{rev:?}: a range needs a revision on both sides of `..`"
                ))
                .hint("there is no HEAD to default to; write e.g. main~5..main"));
            }
            options = options.exclude(resolve(store, a)?).from(resolve(store, b)?);
            starts += 1;
            excludes = true;
        } else if let Some(a) = rev.strip_prefix('^') {
            options = options.exclude(resolve(store, a)?);
            excludes = true;
        } else {
            options = options.from(resolve(store, rev)?);
            starts += 1;
        }
    }
    if all || starts == 0 {
        let main = if all { None } else { store.get_ref("main")? };
        match main {
            Some(id) => {
                options = options.from(id);
                starts += 1;
            }
            None => {
                for r in store.list_refs("")? {
                    options = options.from(r.target);
                    starts += 1;
                }
            }
        }
    }
    Ok(Walk {
        options,
        excludes,
        empty: starts == 0,
        first_parent: flags.first_parent,
    })
}
