//! `diff`: how two states differ, line by line.

use std::io::Write;
use std::time::Duration;

use similar::{ChangeTag, TextDiff};
use stategraph::{StateNode, StateStore};

use crate::Ctx;
use crate::args::DiffArgs;
use crate::error::{CliResult, explain};
use crate::output::{Theme, escape_line};
use crate::revs::resolve;

/// How long the diff algorithm may look for the smallest diff of two large states before it
/// settles for a larger, still correct one.
const DIFF_DEADLINE: Duration = Duration::from_secs(2);

/// `diff`.
pub fn diff(ctx: &Ctx, args: &DiffArgs) -> CliResult {
    let store = ctx.open_read()?;
    let (from, to) = match &args.to {
        Some(to) => (Some(resolve(&store, &args.from)?), resolve(&store, to)?),
        None => {
            let to = resolve(&store, &args.from)?;
            let first_parent = store.get_node(&to)?.parent_ids.first().copied();
            (first_parent, to)
        }
    };
    let read = |id| -> CliResult<(StateNode, Vec<u8>)> {
        let node = store.get_node(&id).map_err(|e| explain(&store, e))?;
        let bytes = store.get_state(&node.data_ref)?.bytes;
        Ok((node, bytes))
    };
    let old = match from {
        // A parent beyond a shallow boundary has no state here to compare with.
        Some(id) => Some(read(id)?),
        None => None,
    };
    let new = read(to)?;
    let mut out = ctx.out(true);
    let t = ctx.theme;
    let old_name = old.as_ref().map_or_else(
        || "(nothing: a root)".to_owned(),
        |(node, _)| describe(node),
    );
    let new_name = describe(&new.0);
    let old_bytes = old.as_ref().map_or(&[][..], |(_, b)| b.as_slice());
    if old_bytes == new.1.as_slice() {
        out.finish()?;
        return Ok(());
    }
    let Some((a, b)) = as_texts(old_bytes, &new.1) else {
        writeln!(
            out,
            "{}",
            t.paint(
                crate::output::Paint::Bold,
                &format!(
                    "states are not text: {} bytes ({old_name}) -> {} bytes ({new_name})",
                    old_bytes.len(),
                    new.1.len()
                )
            )
        )?;
        out.finish()?;
        return Ok(());
    };
    if a == b {
        // Other bytes, the same JSON: whitespace or key order.
        writeln!(
            out,
            "states differ only in JSON layout or key order: {} bytes ({old_name}) -> {} bytes \
             ({new_name})",
            old_bytes.len(),
            new.1.len()
        )?;
        out.finish()?;
        return Ok(());
    }
    print_diff(&mut out, t, &a, &b, (&old_name, &new_name), args.context)?;
    out.finish()?;
    Ok(())
}

/// How a diff header names a node: its short id and label.
fn describe(node: &StateNode) -> String {
    match &node.metadata.label {
        Some(label) => format!(
            "{} {}",
            node.id.to_short_hex(12),
            crate::output::printable(label, false)
        ),
        None => node.id.to_short_hex(12),
    }
}

/// Both states as text to compare: pretty-printed JSON (sorted keys) when both parse as
/// JSON (an empty side counts, for a root), else the UTF-8 text; `None` when either is not
/// UTF-8.
fn as_texts(old: &[u8], new: &[u8]) -> Option<(String, String)> {
    let parse = |bytes: &[u8]| -> Option<Option<serde_json::Value>> {
        if bytes.is_empty() {
            return Some(None);
        }
        serde_json::from_slice(bytes).ok().map(Some)
    };
    if let (Some(a), Some(b)) = (parse(old), parse(new)) {
        // serde_json's map keeps keys sorted (no `preserve_order` feature here).
        let pretty = |v: Option<serde_json::Value>| {
            v.map_or_else(String::new, |v| {
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
            })
        };
        return Some((pretty(a), pretty(b)));
    }
    let a = std::str::from_utf8(old).ok()?;
    let b = std::str::from_utf8(new).ok()?;
    Some((a.to_owned(), b.to_owned()))
}

/// A unified diff of `a` and `b`, with `context` lines around each change.
fn print_diff(
    out: &mut dyn Write,
    t: Theme,
    a: &str,
    b: &str,
    (old_name, new_name): (&str, &str),
    context: usize,
) -> std::io::Result<()> {
    let diff = TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(a, b);
    writeln!(
        out,
        "{}",
        t.paint(crate::output::Paint::Bold, &format!("--- {old_name}"))
    )?;
    writeln!(
        out,
        "{}",
        t.paint(crate::output::Paint::Bold, &format!("+++ {new_name}"))
    )?;
    for group in diff.grouped_ops(context) {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        let old = first.old_range().start..last.old_range().end;
        let new = first.new_range().start..last.new_range().end;
        let hunk = format!(
            "@@ -{} +{} @@",
            range(old.start, old.len()),
            range(new.start, new.len())
        );
        writeln!(out, "{}", t.lane(5, &hunk))?;
        for op in &group {
            for change in diff.iter_changes(op) {
                let line = escape_line(change.value().trim_end_matches(['\n', '\r']));
                match change.tag() {
                    ChangeTag::Delete => writeln!(out, "{}", t.lane(0, &format!("-{line}")))?,
                    ChangeTag::Insert => writeln!(out, "{}", t.lane(1, &format!("+{line}")))?,
                    ChangeTag::Equal => writeln!(out, " {line}")?,
                }
                if change.missing_newline() {
                    writeln!(out, "\\ No newline at end of state")?;
                }
            }
        }
    }
    Ok(())
}

/// A hunk header's `start,len` (1-based; `start` is the line before an empty range).
fn range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        n => format!("{},{n}", start + 1),
    }
}
