//! Where output goes and how it looks: the pager, colours, time stamps and JSON shapes.
//!
//! Colour is used only on a terminal (or with `--color always`) and never when `NO_COLOR` is
//! set. Output is paged only when stdout is a terminal.

pub use stategraph::is_invisible;
use std::env;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::process::{Child, Command, Stdio};

use anstyle::{AnsiColor, Style};
use serde::Serialize;
use stategraph::{SnapshotInfo, StateNode, StateNodeId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::args::ColorChoice;

/// Colours of the parts of the output.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    enabled: bool,
}

/// What a piece of text is, for colouring.
#[derive(Debug, Clone, Copy)]
pub enum Paint {
    /// A node or snapshot id.
    Id,
    /// A branch name.
    Branch,
    /// A tag name.
    Tag,
    /// A snapshot marker.
    Snapshot,
    /// Secondary text: dates, counts.
    Dim,
    /// Headings and field names.
    Bold,
    /// `error:`.
    Error,
    /// `hint:` and notes.
    Hint,
}

/// The lane colours of `log --graph`, as git uses them.
pub const LANE_COLORS: [AnsiColor; 6] = [
    AnsiColor::Red,
    AnsiColor::Green,
    AnsiColor::Yellow,
    AnsiColor::Blue,
    AnsiColor::Magenta,
    AnsiColor::Cyan,
];

impl Theme {
    /// No colour, whatever the stream.
    pub const PLAIN: Self = Self { enabled: false };

    /// Colour on or off for a stream that is (or is not) a terminal.
    pub fn new(choice: ColorChoice, is_terminal: bool) -> Self {
        let no_color = env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = env::var_os("TERM").is_some_and(|t| t == "dumb");
        let enabled = match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_terminal && !no_color && !dumb,
        };
        Self { enabled }
    }

    /// Whether colour is on.
    pub fn enabled(self) -> bool {
        self.enabled
    }

    fn style(paint: Paint) -> Style {
        let fg = |c: AnsiColor| Style::new().fg_color(Some(c.into()));
        match paint {
            Paint::Id => fg(AnsiColor::Yellow),
            Paint::Branch => fg(AnsiColor::Green).bold(),
            Paint::Tag => fg(AnsiColor::Yellow).bold(),
            Paint::Snapshot => fg(AnsiColor::Cyan).bold(),
            Paint::Dim => Style::new().dimmed(),
            Paint::Bold => Style::new().bold(),
            Paint::Error => fg(AnsiColor::Red).bold(),
            Paint::Hint => fg(AnsiColor::Yellow).bold(),
        }
    }

    /// `text` in the colour for `paint` (plain when colour is off).
    pub fn paint(self, paint: Paint, text: &str) -> String {
        self.styled(Self::style(paint), text)
    }

    /// `text` in lane colour `lane`.
    pub fn lane(self, lane: usize, text: &str) -> String {
        let color = LANE_COLORS[lane % LANE_COLORS.len()];
        self.styled(Style::new().fg_color(Some(color.into())), text)
    }

    fn styled(self, style: Style, text: &str) -> String {
        if self.enabled && !text.is_empty() {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }
}

/// Standard output, possibly through a pager.
pub struct Out {
    writer: Box<dyn Write>,
    pager: Option<Child>,
}

impl Out {
    /// Stdout, through a pager when `page` is set and stdout is a terminal.
    pub fn new(page: bool) -> Self {
        if page
            && io::stdout().is_terminal()
            && let Some(child) = spawn_pager()
            && let Some(out) = Self::paged(child)
        {
            return out;
        }
        Self {
            writer: Box::new(BufWriter::new(io::stdout().lock())),
            pager: None,
        }
    }

    /// Output into a pager started with its stdin piped.
    fn paged(mut child: Child) -> Option<Self> {
        let stdin = child.stdin.take()?;
        Some(Self {
            writer: Box::new(BufWriter::new(stdin)),
            pager: Some(child),
        })
    }

    /// Flushes, closes the pager's input and waits for the pager to quit.
    pub fn finish(mut self) -> io::Result<()> {
        let flushed = self.writer.flush().map_err(|e| self.pager_gone(e));
        // Dropping the writer closes the pager's stdin so it sees the end of the text.
        self.writer = Box::new(io::sink());
        flushed?;
        if self.pager.is_some() {
            // The text may all have fit in the pipe before the pager failed to start.
            let gone = self.pager_gone(io::ErrorKind::BrokenPipe.into());
            self.pager = None;
            if gone.kind() != io::ErrorKind::BrokenPipe {
                return Err(gone);
            }
        }
        Ok(())
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let _ = self.writer.flush();
        self.writer = Box::new(io::sink());
        if let Some(mut child) = self.pager.take() {
            let _ = child.wait();
        }
    }
}

impl Out {
    /// A write that failed because the pager is gone: a pager the shell could not run
    /// (a name that is not a command) is an error to report, where a pager the reader quit
    /// early is the reader going away.
    fn pager_gone(&mut self, e: io::Error) -> io::Error {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return e;
        }
        let Some(child) = self.pager.as_mut() else {
            return e;
        };
        match child.wait().map(|status| status.code()) {
            // The shell's "not executable" and "not found".
            Ok(Some(code @ (126 | 127))) => io::Error::other(format!(
                "the pager could not be run (the shell exited with {code}: {}); set \
                 STATEGRAPH_PAGER (or PAGER) to a pager that is installed, or to `cat` for none",
                if code == 127 {
                    "command not found"
                } else {
                    "not executable"
                }
            )),
            _ => e,
        }
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf).map_err(|e| self.pager_gone(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().map_err(|e| self.pager_gone(e))
    }
}

/// `$STATEGRAPH_PAGER`, else `$PAGER`, else `less -FRX`; `None` when it is empty, `cat`, or
/// cannot be started.
fn spawn_pager() -> Option<Child> {
    let configured = env::var("STATEGRAPH_PAGER")
        .ok()
        .or_else(|| env::var("PAGER").ok());
    let mut command = match configured.as_deref().map(str::trim) {
        Some("" | "cat") => return None,
        Some(pager) => shell(pager),
        None => {
            let mut c = Command::new("less");
            c.arg("-FRX");
            c
        }
    };
    if env::var_os("LESS").is_none() {
        command.env("LESS", "FRX");
    }
    command.stdin(Stdio::piped()).spawn().ok()
}

#[cfg(unix)]
fn shell(line: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(line);
    c
}

#[cfg(not(unix))]
fn shell(line: &str) -> Command {
    let mut parts = line.split_whitespace();
    let mut c = Command::new(parts.next().unwrap_or("more"));
    c.args(parts);
    c
}

/// RFC 3339 with full precision, as `show` and JSON print times.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// RFC 3339 to the second, as `log` prints times.
pub fn rfc3339_seconds(t: OffsetDateTime) -> String {
    rfc3339(t.replace_nanosecond(0).unwrap_or(t))
}

/// A node as `log --json` prints it.
#[derive(Debug, Serialize)]
pub struct NodeJson {
    /// Full node id.
    pub id: String,
    /// Full parent ids, first parent first.
    pub parents: Vec<String>,
    /// 1 for a root, else 1 + the largest parent generation.
    pub generation: u64,
    /// When the node was made (RFC 3339).
    pub created_at: String,
    /// The node's label.
    pub label: Option<String>,
    /// The data ref (UUID) of its state.
    pub data_ref: String,
    /// `blake3` of its state bytes.
    pub data_hash: String,
    /// Content type of its state.
    pub content_type: Option<String>,
    /// Names of the refs pointing at it.
    pub refs: Vec<String>,
    /// Ids of its snapshots.
    pub snapshots: Vec<String>,
}

impl NodeJson {
    /// The JSON form of `node`, with the refs and snapshots pointing at it.
    pub fn new(node: &StateNode, refs: &[String], snapshots: &[SnapshotInfo]) -> Self {
        Self {
            id: node.id.to_string(),
            parents: ids(&node.parent_ids),
            generation: node.generation,
            created_at: rfc3339(node.metadata.created_at),
            label: node.metadata.label.clone(),
            data_ref: node.data_ref.to_string(),
            data_hash: node.data_hash.to_string(),
            content_type: node.content_type.clone(),
            refs: refs.to_vec(),
            snapshots: snapshots.iter().map(|s| s.id.to_string()).collect(),
        }
    }
}

/// Full text forms of node ids.
pub fn ids(ids: &[StateNodeId]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

/// Writes `value` as one JSON document and a newline.
pub fn write_json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), crate::CliError> {
    let text = serde_json::to_string_pretty(value)?;
    writeln!(out, "{}", terminal_safe_json(text))?;
    Ok(())
}

/// `json` with the characters JSON allows raw in strings but a terminal may act on or hide
/// (C1 controls such as U+009B, which some terminals read as an escape sequence; line and
/// paragraph separators; invisible and direction-changing characters) written as `\uXXXX`
/// escapes: the same JSON value, safe to print. They can only occur inside strings.
pub fn terminal_safe_json(json: String) -> String {
    let unsafe_char =
        |c: char| matches!(c, '\u{80}'..='\u{9f}' | '\u{2028}' | '\u{2029}') || is_invisible(c);
    if !json.chars().any(unsafe_char) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints a note on stderr (`note: ...`).
pub fn note(theme: Theme, text: &str) {
    eprintln!("{} {text}", theme.paint(Paint::Hint, "note:"));
}

/// A byte count as people read it.
pub fn human_size(bytes: u64) -> String {
    if bytes < 10 * 1024 {
        format!("{bytes} bytes")
    } else if bytes < 10 * 1024 * 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{} MiB", bytes / (1024 * 1024))
    }
}

/// A progress bar on stderr for `len` items of work described by `what`; hidden when stderr
/// is not a terminal, so scripts and logs never see it.
pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let template = format!("{{spinner}} {what} {{pos}}/{{len}} {{wide_bar}} {{elapsed}}");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// A spinner on stderr for work of unknown length described by `what`; hidden when stderr
/// is not a terminal.
pub fn spinner(what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Text from the store (labels, content types, ref log messages: written by any program,
/// or imported from another store) made safe to print: control characters are shown as
/// escapes (`\u{1b}`, `\r`), so they cannot move the cursor, recolour the terminal or
/// forge lines. With `lines`, line breaks are kept; otherwise they are shown as `\n` too.
pub fn printable(text: &str, lines: bool) -> String {
    escaped(text, |c| lines && c == '\n')
}

/// `text` with its control and invisible characters escaped, except those `keep` names.
fn escaped(text: &str, keep: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if (c.is_control() || is_invisible(c)) && !keep(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One line of a state made safe to print (`show`'s preview, `diff`): control characters
/// and invisible ones escaped as in [`printable`], tabs kept.
pub fn escape_line(line: &str) -> String {
    escaped(line, |c| c == '\t')
}

#[cfg(test)]
mod tests {
    use super::{Out, printable, terminal_safe_json};
    use std::io::Write as _;

    /// What `finish` says after `text` went to the pager `line` runs as.
    #[cfg(unix)]
    fn through_pager(line: &str, text: &[u8]) -> std::io::Result<()> {
        let child = super::shell(line)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut out = Out::paged(child).expect("piped");
        out.write_all(text)?;
        out.finish()
    }

    #[cfg(unix)]
    #[test]
    fn a_pager_that_cannot_run_is_an_error_and_one_that_quits_is_not() {
        for text in [&b"short"[..], &[b'x'; 1 << 20]] {
            let err =
                through_pager("exec stategraph-no-such-pager", text).expect_err("a missing pager");
            assert!(
                err.to_string().contains("the pager could not be run")
                    && err.to_string().contains("command not found"),
                "{err}"
            );
            through_pager("cat >/dev/null", text).expect("a pager that reads it all");
        }
        // A reader that stops early (`q` in less): the reader went away, not an error.
        let err = through_pager("head -c 1 >/dev/null", &[b'x'; 1 << 20]).expect_err("gone");
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn json_output_escapes_what_a_terminal_would_act_on() {
        let value = serde_json::json!({"label": "csi \u{9b}31m rlo \u{202e}x sep \u{2028} ok é"});
        let text = terminal_safe_json(serde_json::to_string(&value).unwrap());
        assert_eq!(
            text,
            r#"{"label":"csi \u009b31m rlo \u202ex sep \u2028 ok é"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn printable_escapes_control_characters() {
        let text = "a\nb\u{1b}[31mRED\u{1b}[0m\rOVER\ttab é";
        assert_eq!(
            printable(text, false),
            "a\\nb\\u{1b}[31mRED\\u{1b}[0m\\rOVER\\ttab é"
        );
        assert_eq!(
            printable(text, true),
            "a\nb\\u{1b}[31mRED\\u{1b}[0m\\rOVER\\ttab é"
        );
        assert_eq!(printable("plain", false), "plain");
        assert_eq!(
            printable("evil\u{202e}niam\u{200b}", false),
            "evil\\u{202e}niam\\u{200b}"
        );
    }
}
