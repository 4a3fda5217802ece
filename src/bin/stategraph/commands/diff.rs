//! `diff`: how two states differ, line by line.

use std::borrow::Cow;
use std::io::Write;
use std::time::Duration;

use serde_json::value::RawValue;
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
/// JSON (an empty side counts, for a root), else the UTF-8 text; `None` when either is not
/// UTF-8. Numbers and `true`/`false`/`null` keep the text they were written with (so
/// `1e2` and `100` differ, as their bytes do); strings print with JSON's escapes.
///
/// One side is pretty-printed at a time, from values borrowed out of its bytes: it takes
/// about as much memory again as the printed text, not a parsed document many times the
/// size of the state.
fn as_texts<'a>(old: &'a [u8], new: &'a [u8]) -> Option<(Cow<'a, str>, Cow<'a, str>)> {
    let pretty = |bytes: &[u8]| -> Option<String> {
        if bytes.is_empty() {
            return Some(String::new());
        }
        // One parse of the whole document first: it fails at serde_json's nesting limit
        // before the printer, which parses each nested value again, would work down to it.
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).ok()?;
        let raw: &RawValue = serde_json::from_slice(bytes).ok()?;
        let mut out = String::with_capacity(bytes.len() + bytes.len() / 2);
        write_sorted(raw, 0, &mut out)?;
        out.push('\n');
        Some(out)
    };
    if let Some(a) = pretty(old)
        && let Some(b) = pretty(new)
    {
        return Some((Cow::Owned(a), Cow::Owned(b)));
    }
    let a = std::str::from_utf8(old).ok()?;
    let b = std::str::from_utf8(new).ok()?;
    Some((Cow::Borrowed(a), Cow::Borrowed(b)))
}

/// The deepest nesting [`write_sorted`] prints: a guard only, as documents nested deeper
/// than serde_json parses (127 levels) are compared as text before it.
const MAX_DEPTH: usize = 128;

/// Appends the JSON value `raw` to `out` as serde_json's pretty printer would print it with
/// every object's keys sorted, nested `depth` levels deep; `None` for an object holding a
/// key twice (it parses to its last value in some readers and its first in others: such
/// states are compared as text) or nesting deeper than [`MAX_DEPTH`].
fn write_sorted(raw: &RawValue, depth: usize, out: &mut String) -> Option<()> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let text = raw.get();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    match text.as_bytes().first()? {
        b'{' => {
            let Entries(mut entries) = serde_json::from_str(text).ok()?;
            if entries.is_empty() {
                out.push_str("{}");
                return Some(());
            }
            entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if entries.windows(2).any(|w| w[0].0 == w[1].0) {
                return None;
            }
            out.push('{');
            for (i, (key, value)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                out.push_str(&serde_json::to_string(key.as_ref()).ok()?);
                out.push_str(": ");
                write_sorted(value, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        b'[' => {
            let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
            if items.is_empty() {
                out.push_str("[]");
                return Some(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, depth + 1);
                write_sorted(item, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        b'"' => {
            let Key(string) = serde_json::from_str(text).ok()?;
            out.push_str(&serde_json::to_string(string.as_ref()).ok()?);
        }
        // A number, `true`, `false` or `null`, as written.
        _ => out.push_str(text),
    }
    Some(())
}

/// A JSON string, borrowed from the text when it has no escapes.
#[derive(serde::Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

/// An object's entries in the order written, duplicates kept, values unparsed.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(Key(key)) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(Visit)
    }
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
    // The lines both share at the start and the end, beyond the context a hunk shows, are
    // left out of the diff (the diff itself would find them equal): a small change to a
    // large state costs the diff the changed region, not two line tables of the state.
    let (skipped, a, b) = trim_common_lines(a, b, context);
    write_hunks(out, t, a, b, skipped, context)
}

/// The hunks of a unified diff of `a` and `b`, whose first lines are line `skipped + 1` of
/// the states.
fn write_hunks(
    out: &mut dyn Write,
    t: Theme,
    a: &str,
    b: &str,
    skipped: usize,
    context: usize,
) -> std::io::Result<()> {
    let diff = TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_lines(a, b);
    for group in diff.grouped_ops(context) {
        let (first, last) = (&group[0], &group[group.len() - 1]);
        let old = first.old_range().start..last.old_range().end;
        let new = first.new_range().start..last.new_range().end;
        let hunk = format!(
            "@@ -{} +{} @@",
            range(skipped + old.start, old.len()),
            range(skipped + new.start, new.len())
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

/// `a` and `b` without the whole lines they share at the start and at the end, except the
/// last `context` of those at the start and the first `context` of those at the end; and
/// how many lines went from the start (the same count for both), counted as the line diff
/// counts them: `similar` ends a line at a lone CR too.
fn trim_common_lines<'a>(a: &'a str, b: &'a str, context: usize) -> (usize, &'a str, &'a str) {
    let lines = |text: &'a str| text.split_inclusive('\n');
    let same_start = lines(a).zip(lines(b)).take_while(|(x, y)| x == y).count();
    let skipped = same_start.saturating_sub(context);
    let skipped_bytes: usize = lines(a).take(skipped).map(str::len).sum();
    let shared_bytes: usize = lines(a).take(same_start).map(str::len).sum();
    // The end is looked for only after the shared start, so the two never overlap.
    let (rest_a, rest_b) = (&a[shared_bytes..], &b[shared_bytes..]);
    let same_end = lines(rest_a)
        .rev()
        .zip(lines(rest_b).rev())
        .take_while(|(x, y)| x == y)
        .count();
    let dropped_bytes: usize = lines(rest_a)
        .rev()
        .take(same_end.saturating_sub(context))
        .map(str::len)
        .sum();
    (
        lines_as_diffed(&a[..skipped_bytes]),
        &a[skipped_bytes..a.len() - dropped_bytes],
        &b[skipped_bytes..b.len() - dropped_bytes],
    )
}

/// How many lines the line diff sees in `text`, which ends with a line break or is empty:
/// it ends a line at each LF, CRLF and lone CR (the trimming above cuts only after an LF,
/// so a lone CR is never the last byte).
fn lines_as_diffed(text: &str) -> usize {
    let bytes = text.as_bytes();
    let lone_crs = bytes
        .windows(2)
        .filter(|w| w[0] == b'\r' && w[1] != b'\n')
        .count();
    bytes.iter().filter(|&&b| b == b'\n').count() + lone_crs
}

/// A hunk header's `start,len` (1-based; `start` is the line before an empty range).
fn range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        n => format!("{},{n}", start + 1),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{as_texts, trim_common_lines, write_hunks};
    use crate::output::Theme;

    /// The printer as it was before it read borrowed values: serde_json's own pretty printer
    /// over a parsed document with its keys sorted.
    fn parsed_and_sorted(text: &str) -> String {
        fn sorted(value: serde_json::Value) -> serde_json::Value {
            use serde_json::Value;
            match value {
                Value::Object(map) => {
                    let mut entries: Vec<_> = map.into_iter().collect();
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                    Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
                }
                Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
                other => other,
            }
        }
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        serde_json::to_string_pretty(&sorted(value)).unwrap() + "\n"
    }

    #[test]
    fn json_prints_as_serde_json_prints_it_with_sorted_keys() {
        for doc in [
            r#"{"b":1,"a":[true,false,null],"c":{"z":"x","y":[]},"d":{}}"#,
            r#"[1, -2.5, "a\"b\\c\n\t\u0001", {"é": "ü", "\u00e9x": 1}, [[[]]], [{}]]"#,
            r#"  {"nested": {"deeper": {"k": [1, {"b": 2, "a": 1}]}}}  "#,
            r#""just a string with \/ and \u20ac""#,
            "12",
            "true",
            "null",
            "[]",
            "{}",
        ] {
            let (mine, _) = as_texts(doc.as_bytes(), b"").unwrap();
            assert_eq!(mine, parsed_and_sorted(doc), "{doc}");
        }
    }

    #[test]
    fn numbers_keep_how_they_were_written() {
        // serde_json's parsed numbers would print 1e2 as 100.0 and round the long ones.
        let (a, b) = as_texts(
            br#"{"x":1e2,"y":0.1000000000000000001,"z":123456789012345678901234,"w":-0}"#,
            br#"{"x":100}"#,
        )
        .unwrap();
        assert_eq!(
            a,
            "{\n  \"w\": -0,\n  \"x\": 1e2,\n  \"y\": 0.1000000000000000001,\n  \"z\": \
             123456789012345678901234\n}\n"
        );
        assert_eq!(b, "{\n  \"x\": 100\n}\n");
    }

    #[test]
    fn what_json_printing_cannot_show_faithfully_is_compared_as_written() {
        let as_written = |old: &str, new: &str| {
            let (a, b) = as_texts(old.as_bytes(), new.as_bytes()).unwrap();
            assert!(
                matches!((&a, &b), (Cow::Borrowed(_), Cow::Borrowed(_))),
                "{old}"
            );
            assert_eq!((a.as_ref(), b.as_ref()), (old, new));
        };
        // A key given twice, at the top and deep down; and the escaped spelling of a key
        // already there is the same key.
        as_written(r#"{"a":1,"a":2}"#, "{}");
        as_written("{}", r#"[{"k":{"a":1,"b":2,"a":3}}]"#);
        as_written(r#"{"a":1,"\u0061":2}"#, "{}");
        // Not JSON on one side.
        as_written("{}", "key = value");
        as_written("{\"a\":1} trailing", "{}");
        // Nested deeper than the printer goes.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        as_written(&deep, "[]");
        // Not UTF-8: no text at all.
        assert!(as_texts(b"{}", b"\xff\xfe").is_none());
    }

    /// Small texts of a few distinct lines, so that they share starts, ends and middles;
    /// some end without a line break.
    fn texts(seed: u64) -> (String, String) {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        fn edit(base: &[&'static str], next: &mut impl FnMut(u64) -> u64) -> String {
            let mut out = base.to_vec();
            for _ in 0..next(4) {
                let at = next(out.len() as u64 + 1) as usize;
                match next(3) {
                    0 if at < out.len() => {
                        out.remove(at);
                    }
                    1 => out.insert(at, ["x\n", "y\n", "a\n"][next(3) as usize]),
                    _ if at < out.len() => out[at] = ["q\n", "a\n"][next(2) as usize],
                    _ => {}
                }
            }
            let mut text = out.concat();
            if next(4) == 0 {
                text.pop();
            }
            text
        }
        let len = next(30);
        let base: Vec<&str> = (0..len)
            .map(|_| ["a\n", "b\n", "c\n", "d\n"][next(4) as usize])
            .collect();
        (edit(&base, &mut next), edit(&base, &mut next))
    }

    /// The text a printed diff turns `old` into, checking every line it says `old` has.
    fn apply(old: &str, diff: &str) -> String {
        let old: Vec<&str> = old.split_inclusive('\n').collect();
        let (mut new, mut at) = (String::new(), 0);
        let mut printed = diff.lines().peekable();
        while let Some(hunk) = printed.next() {
            let (from, len) = hunk
                .strip_prefix("@@ -")
                .and_then(|h| h.split(' ').next())
                .map(|r| match r.split_once(',') {
                    Some((s, l)) => (s.parse::<usize>().unwrap(), l.parse::<usize>().unwrap()),
                    None => (r.parse().unwrap(), 1),
                })
                .unwrap_or_else(|| panic!("not a hunk header: {hunk:?}"));
            let start = if len == 0 { from } else { from - 1 };
            assert!(start >= at, "hunks out of order in {diff:?}");
            new.extend(old[at..start].iter().copied());
            at = start;
            while let Some(line) = printed.next_if(|l| !l.starts_with("@@")) {
                let no_break = printed
                    .next_if_eq(&"\\ No newline at end of state")
                    .is_some();
                let text = format!("{}{}", &line[1..], if no_break { "" } else { "\n" });
                if line.starts_with('+') {
                    new.push_str(&text);
                } else {
                    assert_eq!(old[at], text, "line {} in {diff:?}", at + 1);
                    at += 1;
                    if line.starts_with(' ') {
                        new.push_str(&text);
                    }
                }
            }
        }
        new.extend(old[at..].iter().copied());
        new
    }

    #[test]
    fn leaving_out_shared_lines_keeps_the_diff_right_and_as_small() {
        for seed in 0..3000u64 {
            let (a, b) = texts(seed);
            for context in [0, 1, 3] {
                let print = |a: &str, b: &str, skipped| {
                    let mut out = Vec::new();
                    write_hunks(&mut out, Theme::PLAIN, a, b, skipped, context).unwrap();
                    String::from_utf8(out).unwrap()
                };
                let whole = print(&a, &b, 0);
                let (skipped, ta, tb) = trim_common_lines(&a, &b, context);
                let trimmed = print(ta, tb, skipped);
                let case = format!("seed {seed}, context {context}: {a:?} -> {b:?}\n{trimmed}");
                assert_eq!(apply(&a, &trimmed), b, "{case}");
                assert_eq!(apply(&a, &whole), b, "{case}");
                // As few changed lines as the diff of the whole states: the diff may place an
                // edit elsewhere among equal lines, nothing more.
                let count = |diff: &str, c: char| diff.lines().filter(|l| l.starts_with(c)).count();
                for c in ['-', '+'] {
                    assert_eq!(count(&trimmed, c), count(&whole, c), "{case}");
                }
            }
        }
    }

    #[test]
    fn shared_lines_go_only_beyond_the_context() {
        let a = "1\n2\n3\n4\nold\n5\n6\n7\n";
        let b = "1\n2\n3\n4\nnew\n5\n6\n7\n";
        assert_eq!(
            trim_common_lines(a, b, 1),
            (3, "4\nold\n5\n", "4\nnew\n5\n")
        );
        assert_eq!(trim_common_lines(a, b, 0), (4, "old\n", "new\n"));
        assert_eq!(trim_common_lines(a, b, 9), (0, a, b));
        // Equal texts: everything is shared start; nothing is counted twice as an end.
        assert_eq!(trim_common_lines(a, a, 2), (6, "6\n7\n", "6\n7\n"));
        // A last line without its line break is not the same line as one with it.
        assert_eq!(trim_common_lines("x\ny", "x\ny\n", 0), (1, "y", "y\n"));
    }

    /// The line diff splits lines at a lone CR too (`similar` does), so a shared start that
    /// holds one is that many lines longer than its LFs say: the hunks of the diff with the
    /// shared lines left out are numbered as those of the whole texts.
    #[test]
    fn shared_lines_holding_a_lone_carriage_return_are_counted_as_the_diff_counts_them() {
        let a = "one\rtwo\nsame\nold\nend\n";
        let b = "one\rtwo\nsame\nnew\nend\n";
        for context in [0, 1, 3] {
            let print = |a: &str, b: &str, skipped| {
                let mut out = Vec::new();
                write_hunks(&mut out, Theme::PLAIN, a, b, skipped, context).unwrap();
                String::from_utf8(out).unwrap()
            };
            let (skipped, ta, tb) = trim_common_lines(a, b, context);
            assert_eq!(print(ta, tb, skipped), print(a, b, 0), "context {context}");
        }
    }

    /// A random JSON document, and whether an object in it holds a key twice (once its
    /// escapes are read). Strings and keys come from characters that need escaping or
    /// not, each written plainly, with its short escape or as `\uXXXX` (a surrogate pair
    /// beyond the BMP); numbers are ones serde_json prints back as written; whitespace goes
    /// anywhere JSON allows it.
    fn json_doc(seed: u64) -> (String, bool) {
        struct Gen(u64);
        impl Gen {
            fn next(&mut self, n: u64) -> u64 {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 % n
            }
            fn space(&mut self, out: &mut String) {
                for _ in 0..self.next(4).saturating_sub(2) {
                    out.push([' ', '\t', '\n', '\r'][self.next(4) as usize]);
                }
            }
            fn string(&mut self, out: &mut String, keyish: bool) -> String {
                const CHARS: [char; 16] = [
                    'a', 'b', 'Z', '"', '\\', '/', '\n', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é',
                    '€', '\u{2028}', '😀', ' ',
                ];
                let len = self.next(if keyish { 3 } else { 6 });
                let text: String = (0..len).map(|_| CHARS[self.next(16) as usize]).collect();
                out.push('"');
                for c in text.chars() {
                    let short = match c {
                        '"' => Some("\\\""),
                        '\\' => Some("\\\\"),
                        '/' => Some("\\/"),
                        '\n' => Some("\\n"),
                        '\t' => Some("\\t"),
                        _ => None,
                    };
                    let must = matches!(c, '"' | '\\') || c < ' ';
                    match self.next(3) {
                        0 if !must => out.push(c),
                        1 if short.is_some() => out.push_str(short.unwrap()),
                        _ => {
                            let mut units = [0u16; 2];
                            for unit in c.encode_utf16(&mut units) {
                                if self.next(2) == 0 {
                                    out.push_str(&format!("\\u{unit:04x}"));
                                } else {
                                    out.push_str(&format!("\\u{unit:04X}"));
                                }
                            }
                        }
                    }
                }
                out.push('"');
                text
            }
            fn number(&mut self) -> String {
                let text = match self.next(6) {
                    0 => format!("{}", self.next(10)),
                    1 => format!("-{}", self.next(1 << 40)),
                    2 => format!("{}", u64::MAX - self.next(1000)),
                    3 => format!("{}", i64::MIN + self.next(1000) as i64),
                    4 => format!("{}.{}", self.next(1000), self.next(1000)),
                    _ => format!("{}e{}", 1 + self.next(9), self.next(40)),
                };
                // Only numbers that the parsed document prints back as written.
                match serde_json::from_str::<serde_json::Number>(&text) {
                    Ok(n) if n.to_string() == text => text,
                    _ => "7".to_owned(),
                }
            }
            /// Writes a value; whether an object in it holds a key twice.
            fn value(&mut self, out: &mut String, depth: u32) -> bool {
                // Mostly an object or an array at the top, and scalars deep down.
                let kind = match depth {
                    0 if self.next(4) != 0 => 5 + self.next(3),
                    5.. => self.next(5),
                    _ => self.next(8),
                };
                match kind {
                    0 => out.push_str(&self.number()),
                    1 => out.push_str(["true", "false", "null"][self.next(3) as usize]),
                    2..=4 => {
                        self.string(out, false);
                    }
                    5 | 6 => {
                        let mut twice = false;
                        let mut keys = Vec::new();
                        out.push('{');
                        self.space(out);
                        for i in 0..self.next(5) {
                            if i > 0 {
                                out.push(',');
                                self.space(out);
                            }
                            let key = self.string(out, true);
                            twice |= keys.contains(&key);
                            keys.push(key);
                            self.space(out);
                            out.push(':');
                            self.space(out);
                            twice |= self.value(out, depth + 1);
                            self.space(out);
                        }
                        out.push('}');
                        return twice;
                    }
                    _ => {
                        let mut twice = false;
                        out.push('[');
                        self.space(out);
                        for i in 0..self.next(5) {
                            if i > 0 {
                                out.push(',');
                                self.space(out);
                            }
                            twice |= self.value(out, depth + 1);
                            self.space(out);
                        }
                        out.push(']');
                        return twice;
                    }
                }
                false
            }
        }
        let mut g = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut out = String::new();
        g.space(&mut out);
        let twice = g.value(&mut out, 0);
        g.space(&mut out);
        (out, twice)
    }

    /// Over random documents, the borrowed printer prints what serde_json's parse-and-sort
    /// printed before, and compares as written exactly the documents with a key twice.
    #[test]
    fn random_json_prints_as_the_parsed_and_sorted_document_did() {
        let (mut printed, mut as_written) = (0, 0);
        for seed in 0..4000u64 {
            let (doc, twice) = json_doc(seed);
            let (mine, _) = as_texts(doc.as_bytes(), b"").unwrap();
            if twice {
                assert!(matches!(mine, Cow::Borrowed(_)), "{doc}");
                assert_eq!(mine, doc);
                as_written += 1;
            } else {
                assert!(matches!(mine, Cow::Owned(_)), "{doc}");
                assert_eq!(mine, parsed_and_sorted(&doc), "{doc}");
                printed += 1;
            }
        }
        // Both kinds, and many of each.
        assert!(printed > 1000 && as_written > 100, "{printed} {as_written}");
    }
}
