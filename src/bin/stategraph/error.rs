//! Errors as the user sees them: one `error:` line, optional `hint:` lines, an exit code.

use std::fmt::Write as _;
use std::io::{self, Write as _};

use stategraph::{StateNodeId, StateStore, StateStoreError};

use crate::output::{Paint, Theme, printable};

/// Exit code for a "no" answer (`is-ancestor` false, `merge-base` with no base).
pub const EXIT_FALSE: u8 = 1;
/// Exit code for every error.
pub const EXIT_ERROR: u8 = 2;

/// What a command failed with.
#[derive(Debug)]
pub struct CliError {
    /// The one-line message (no `error:` prefix).
    pub message: String,
    /// Follow-up lines printed as `hint: ...`.
    pub hints: Vec<String>,
    /// The process exit code.
    pub code: u8,
    /// Exit with `code` without printing anything (a false answer, a closed pipe).
    pub silent: bool,
}

/// Result of a command.
pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: one_line(&message.into()),
            hints: Vec::new(),
            code: EXIT_ERROR,
            silent: false,
        }
    }

    /// Exits with `code` and prints nothing.
    pub fn silent(code: u8) -> Self {
        Self {
            message: String::new(),
            hints: Vec::new(),
            code,
            silent: true,
        }
    }

    /// Adds a `hint:` line.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(one_line(&hint.into()));
        self
    }
}

/// Prints an error as `main` does: its `error:` line and its hints, on stderr.
pub fn report(err: &CliError, theme: Theme) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(
        stderr,
        "{} {}",
        theme.paint(Paint::Error, "error:"),
        err.message
    );
    for hint in &err.hints {
        let _ = writeln!(stderr, "{} {hint}", theme.paint(Paint::Hint, "hint:"));
    }
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

impl From<StateStoreError> for CliError {
    fn from(e: StateStoreError) -> Self {
        let hint = match &e {
            StateStoreError::NotAStore { .. } => {
                Some("choose the store with --db PATH or the STATEGRAPH_DB environment variable")
            }
            StateStoreError::RefConflict {
                expected, actual, ..
            } => Some(match (expected, actual) {
                (Some(_), Some(_)) => {
                    "another writer moved the ref meanwhile; look again and retry"
                }
                (None, _) => "another writer created the ref meanwhile; look again and retry",
                (_, None) => "another writer deleted the ref meanwhile; look again and retry",
            }),
            StateStoreError::Corrupt { .. } => {
                Some("`stategraph fsck` lists the damage and says what can restore it")
            }
            e if e.is_in_doubt() => Some(
                "the write may still show up the next time the store is opened: look (`log`, \
                 `show`) before doing it again",
            ),
            e if e.is_busy() => Some(
                "another program is writing to this store (or holds it locked); retry when it \
                 is done",
            ),
            _ => None,
        };
        let err = Self::new(e.to_string());
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            // The reader went away (`stategraph log | head`): not an error.
            return Self::silent(0);
        }
        Self::new(format!("cannot write output: {e}"))
    }
}

impl From<serde_json::Error> for CliError {
    fn from(e: serde_json::Error) -> Self {
        if e.io_error_kind() == Some(io::ErrorKind::BrokenPipe) {
            return Self::silent(0);
        }
        Self::new(format!("cannot write JSON: {e}"))
    }
}

/// Turns a library error into a CLI error, adding hints that need the store: names close to an
/// unknown ref, the candidates of an ambiguous prefix.
pub fn explain(store: &dyn StateStore, e: StateStoreError) -> CliError {
    match &e {
        StateStoreError::UnknownRevision { text } => {
            let base = text.split(['~', '^']).next().unwrap_or(text);
            let err = CliError::new(e.to_string());
            match snapshot_named(store, base) {
                // A snapshot id where a node was meant: point at the snapshot's node.
                Some(s) => snapshot_hint(err, base, &s),
                // A data ref (what `put` prints) where a node was meant.
                None if base
                    .parse::<stategraph::StateDataRef>()
                    .is_ok_and(|r| store.state_info(&r).is_ok()) =>
                {
                    err.hint(format!(
                        "{base} is a data ref (state stored by `put`), not a node; `stategraph cat \
                     {base}` prints its bytes"
                    ))
                }
                None => with_ref_hints(store, err, base),
            }
        }
        // A full snapshot id parses as a node id, and then is no node.
        StateStoreError::MissingNode { id } => {
            let id = *id;
            let text = id.to_short_hex(12);
            let err = CliError::from(e);
            match snapshot_named(store, &id.to_string()) {
                Some(s) => snapshot_hint(err, &text, &s),
                None => err,
            }
        }
        StateStoreError::ShallowHistory { question, parent } => CliError::new(format!(
            // The command's name, not the library call's.
            "cannot answer {}: the answer depends on history past parent {}, which is not \
             stored here (a shallow boundary: never imported, or pruned)",
            question.replace('_', "-"),
            parent.to_short_hex(12)
        ))
        .hint(
            "`stategraph log` shows where the stored history stops; importing the snapshots \
             in between (`stategraph import`, from a store that still has them) answers it",
        ),
        StateStoreError::MissingRef { name } => {
            with_ref_hints(store, CliError::new(e.to_string()), name)
        }
        StateStoreError::AmbiguousId { prefix, candidates } => {
            let mut err = CliError::new(format!(
                "ambiguous id prefix {prefix:?}: it matches {} or more nodes",
                candidates.len()
            ))
            .hint("use more digits; the candidates are:");
            for id in candidates {
                err = err.hint(format!("  {}", describe_node(store, Theme::PLAIN, id)));
            }
            err
        }
        _ => CliError::from(e),
    }
}

/// The one snapshot whose id is `text` or starts with it (at least 4 hex digits).
fn snapshot_named(store: &dyn StateStore, text: &str) -> Option<stategraph::SnapshotInfo> {
    let mut found = crate::commands::snapshots::snapshots_matching(store, text).ok()?;
    (found.len() == 1).then(|| found.remove(0))
}

/// The hint for a snapshot id given where a node was meant.
fn snapshot_hint(err: CliError, text: &str, s: &stategraph::SnapshotInfo) -> CliError {
    err.hint(format!(
        "{text} is snapshot {}, of node {}; name the node",
        s.id.to_short_hex(12),
        s.node_id.to_short_hex(12)
    ))
}

/// `3fa9c0d1e2b4 tick 5` (the label when the node can be read, made printable).
pub fn describe_node(store: &dyn StateStore, theme: Theme, id: &StateNodeId) -> String {
    let mut line = theme.paint(Paint::Id, &id.to_short_hex(12));
    if let Ok(node) = store.get_node(id)
        && let Some(label) = node.metadata.label
    {
        let _ = write!(line, " {}", printable(&label, false));
    }
    line
}

fn with_ref_hints(store: &dyn StateStore, err: CliError, wanted: &str) -> CliError {
    if wanted.is_empty() {
        return err.hint(
            "a revision starts with a ref name or a node id; ~N and ^N come after it, as in main~1",
        );
    }
    // A ref that was deleted keeps its log: say how to bring it back.
    if let Ok(tail) = store.ref_log_tail(wanted, 1)
        && tail.last().is_some_and(|entry| entry.new.is_none())
    {
        let (kind, short) = match wanted.strip_prefix("tags/") {
            Some(tag) => ("tag", tag),
            None => ("branch", wanted),
        };
        return err.hint(format!(
            "{wanted} was deleted; `stategraph {kind} {short} {wanted}@{{1}}` brings it back \
             (`stategraph reflog {wanted}` lists where it was)"
        ));
    }
    let refs = match store.list_refs("") {
        Ok(refs) => refs,
        Err(_) => return err,
    };
    let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    let close = similar_names(wanted, &names);
    if !close.is_empty() {
        return err.hint(format!("did you mean {}?", quote_list(&close)));
    }
    if wanted.len() < 4 && !wanted.is_empty() && wanted.chars().all(|c| c.is_ascii_hexdigit()) {
        return err.hint("an id prefix needs at least 4 hex digits");
    }
    if names.is_empty() {
        return err.hint("this store has no refs yet; name a node by its id");
    }
    const SHOWN: usize = 6;
    let mut list = quote_list(&names[..names.len().min(SHOWN)]);
    if names.len() > SHOWN {
        let _ = write!(
            list,
            " and {} more (see `stategraph branch` and `stategraph tag`)",
            names.len() - SHOWN
        );
    }
    err.hint(format!("refs in this store: {list}"))
}

fn quote_list(names: &[&str]) -> String {
    names.join(", ")
}

/// Names that look like a mistyped `wanted`: a small edit distance, the same last path
/// segment, or one a prefix of the other. Closest first, at most five.
pub fn similar_names<'a>(wanted: &str, names: &[&'a str]) -> Vec<&'a str> {
    let wanted_lower = wanted.to_lowercase();
    let wanted_len = wanted_lower.chars().count();
    let allowed = (wanted_len / 3).max(2);
    let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    let mut scored: Vec<(usize, &str)> = names
        .iter()
        .filter_map(|&name| {
            let lower = name.to_lowercase();
            // Edit distances only for what could be a typo: a short name, of about the same
            // length (the distance is at least the difference). With many refs, anything
            // more made an error take seconds to print.
            if wanted_len <= TYPO_LEN
                && lower.chars().count().abs_diff(wanted_len) <= allowed
                && let Some(distance) = levenshtein_within(&wanted_lower, &lower, allowed)
            {
                return Some((distance, name));
            }
            let related = (lower.starts_with(&wanted_lower) || wanted_lower.starts_with(&lower))
                || last(&lower) == last(&wanted_lower)
                || lower.ends_with(&format!("/{wanted_lower}"));
            related.then_some((allowed + 1, name))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, n)| n).collect()
}

/// The longest name compared by edit distance in [`similar_names`].
const TYPO_LEN: usize = 64;

/// The edit distance between `a` and `b` if it is at most `limit`; stops as soon as every
/// path exceeds it.
fn levenshtein_within(a: &str, b: &str, limit: usize) -> Option<usize> {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        let mut best = row[0];
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
            best = best.min(row[j + 1]);
        }
        if best > limit {
            return None;
        }
    }
    Some(row[b.len()]).filter(|&d| d <= limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        let d = |a, b| levenshtein_within(a, b, usize::MAX);
        assert_eq!(d("main", "main"), Some(0));
        assert_eq!(d("mian", "main"), Some(2));
        assert_eq!(d("man", "main"), Some(1));
        assert_eq!(d("", "abc"), Some(3));
        // Bounded: the same distances within a limit, None past it.
        assert_eq!(levenshtein_within("mian", "main", 2), Some(2));
        assert_eq!(levenshtein_within("mian", "main", 1), None);
        assert_eq!(levenshtein_within("kitten", "sitting", 3), Some(3));
        assert_eq!(levenshtein_within("kitten", "sitting", 2), None);
    }

    #[test]
    fn suggests_close_names_first() {
        let names = ["agents/explorer", "main", "tags/v1", "mainline"];
        assert_eq!(similar_names("mian", &names), vec!["main"]);
        assert_eq!(similar_names("explorer", &names), vec!["agents/explorer"]);
        assert_eq!(similar_names("v1", &names), vec!["tags/v1"]);
        assert!(similar_names("zzzzzz", &names).is_empty());
        // A long name is matched by prefix or last segment, not by edit distance.
        let long = format!("agents/{}", "x".repeat(300));
        let names = [long.as_str(), "main"];
        assert_eq!(
            similar_names(&format!("{long}y"), &names),
            vec![long.as_str()]
        );
        assert!(similar_names(&"y".repeat(5000), &names).is_empty());
    }
}
