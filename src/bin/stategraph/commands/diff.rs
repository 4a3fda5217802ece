//! `diff`: how two states differ, line by line.

use std::io::Write;
use std::time::Duration;

use similar::{ChangeTag, TextDiff};
use stategraph::{StateNode, StateStore};

use crate::Ctx;
use crate::args::DiffArgs;
use crate::commands::history::read_state_of;
use crate::error::{CliResult, explain};
use crate::output::{Theme, escape_line};
use crate::revs::resolve;

/// How long the diff algorithm may look for the smallest diff of two large states before it
/// settles for a larger, still correct one.
const DIFF_DEADLINE: Duration = Duration::from_secs(2);

/// `diff`.
pub fn diff(ctx: &Ctx, args: &DiffArgs) -> CliResult {
    let store = ctx.open_read()?;
    // With one REV: its first parent, unless that is not stored here (a shallow boundary),
    // when it is compared with nothing, as a root is.
    let mut unstored_parent = None;
    let (from, to) = match &args.to {
        Some(to) => (Some(resolve(&store, &args.from)?), resolve(&store, to)?),
        None => {
            let to = resolve(&store, &args.from)?;
            let first_parent = store.get_node(&to)?.parent_ids.first().copied();
            match first_parent {
                Some(p) if matches!(store.get_node(&p), Err(e) if e.is_missing()) => {
                    unstored_parent = Some(p);
                    (None, to)
                }
                p => (p, to),
            }
        }
    };
    let read = |id| -> CliResult<(StateNode, Vec<u8>)> {
        let node = store.get_node(&id).map_err(|e| explain(&store, e))?;
        let bytes = read_state_of(&store, &id, || store.get_state(&node.data_ref))?.bytes;
        Ok((node, bytes))
    };
    let old = from.map(read).transpose()?;
    let new = read(to)?;
    let mut out = ctx.out(true);
    let t = ctx.theme;
    let old_name = match (&old, unstored_parent) {
        (Some((node, _)), _) => describe(node),
        (None, Some(p)) => format!(
            "(nothing: parent {} is not stored here, a shallow boundary)",
            p.to_short_hex(12)
        ),
        (None, None) => "(nothing: a root)".to_owned(),
    };
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

/// Both states as text to compare: pretty-printed JSON with sorted keys when both parse as
/// JSON (an empty side counts, for a root) and every number in them prints back as written,
/// else the UTF-8 text; `None` when either is not UTF-8. (A number that does not print back,
/// such as one beyond 64-bit precision or `1e2`, would show a change that is not there, or
/// hide one: such states are compared as they are.)
fn as_texts(old: &[u8], new: &[u8]) -> Option<(String, String)> {
    let parse = |bytes: &[u8]| -> Option<Option<serde_json::Value>> {
        if bytes.is_empty() {
            return Some(None);
        }
        let text = std::str::from_utf8(bytes).ok()?;
        if !numbers_print_back(text) {
            return None;
        }
        // A key given twice parses to its last value, hiding the first (which some readers
        // take): such states are compared as text.
        serde_json::from_str::<NoDuplicateKeys>(text).ok()?;
        serde_json::from_str(text).ok().map(Some)
    };
    if let (Some(a), Some(b)) = (parse(old), parse(new)) {
        let pretty = |v: Option<serde_json::Value>| {
            v.map_or_else(String::new, |v| {
                serde_json::to_string_pretty(&sorted(v)).unwrap_or_default() + "\n"
            })
        };
        return Some((pretty(a), pretty(b)));
    }
    let a = std::str::from_utf8(old).ok()?;
    let b = std::str::from_utf8(new).ok()?;
    Some((a.to_owned(), b.to_owned()))
}

/// `value` with every object's keys in order, whatever map serde_json was built with.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Whether every number in the JSON `text` (outside strings) is printed back exactly as
/// written once parsed: what pretty-printing it for a diff needs.
fn numbers_print_back(text: &str) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    let mut number = String::new();
    let check = |token: &str| {
        token.is_empty()
            || serde_json::from_str::<serde_json::Number>(token)
                .is_ok_and(|n| n.to_string() == token)
    };
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c.is_ascii_digit()
            || c == '-'
            || (!number.is_empty() && matches!(c, '+' | '.' | 'e' | 'E'))
        {
            // A number starts with a digit or '-' (`true`'s `e` is no number).
            number.push(c);
        } else {
            if !check(&number) {
                return false;
            }
            number.clear();
            in_string = c == '"';
        }
    }
    check(&number)
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
                // Only the line break goes: a `\r` before it shows (as `\r`), so a change
                // of line endings is visible.
                let line = escape_line(change.value().strip_suffix('\n').unwrap_or(change.value()));
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

/// JSON that parses only when no object in it holds a key twice.
struct NoDuplicateKeys;

impl<'de> serde::Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicateKeys)
    }
}

impl<'de> serde::de::Visitor<'de> for NoDuplicateKeys {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(self)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom("a key given twice"));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::{as_texts, numbers_print_back};

    #[test]
    fn numbers_that_print_back_are_the_ones_json_diffs_keep() {
        for ok in [
            r#"{"a": 1, "b": -2, "c": 0.5, "d": [true, false, null], "e": "1e2 in a string"}"#,
            r#"[12345678901234567890, 1.25, -0.75, "\"quoted\" 1e2"]"#,
            "",
        ] {
            assert!(numbers_print_back(ok), "{ok}");
        }
        for lossy in [
            r#"{"x": 0.1000000000000000001}"#,
            r#"{"x": 123456789012345678901234}"#,
            r#"{"x": 1e2}"#,
            "-0",
        ] {
            assert!(!numbers_print_back(lossy), "{lossy}");
        }
        // Compared as written, not pretty-printed, when a number would not print back.
        let (a, b) = as_texts(br#"{"x":0.1000000000000000001}"#, br#"{"x":0.1}"#).unwrap();
        assert_eq!(
            (a.as_str(), b.as_str()),
            (r#"{"x":0.1000000000000000001}"#, r#"{"x":0.1}"#)
        );
        let (a, _) = as_texts(br#"{"b":1,"a":[true]}"#, b"").unwrap();
        assert_eq!(a, "{\n  \"a\": [\n    true\n  ],\n  \"b\": 1\n}\n");
    }
}
