//! Graphviz DOT export: of a petgraph view, or streamed as a walk goes.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use super::HistoryGraph;
use super::log::Log;
use crate::error::Result;
use crate::id::StateNodeId;
use crate::model::StateNode;

const HEADER: [&str; 3] = [
    "digraph stategraph {\n",
    "  rankdir=BT;\n",
    "  node [shape=box, fontname=\"monospace\"];\n",
];
const FOOTER: &str = "}\n";

/// Renders a history graph as DOT.
pub fn dot(graph: &HistoryGraph) -> String {
    let mut out = HEADER.concat();
    for node in graph.node_weights() {
        out.push_str(&node_line(node));
    }
    for edge in graph.edge_indices() {
        if let Some((child, parent)) = graph.edge_endpoints(edge) {
            out.push_str(&edge_line(&graph[child].id, &graph[parent].id, graph[edge]));
        }
    }
    out.push_str(FOOTER);
    out
}

fn node_line(node: &StateNode) -> String {
    let mut label = node.id.to_short_hex(12);
    if let Some(l) = &node.metadata.label {
        label.push_str("\\n");
        label.push_str(&escape_dot(l));
    }
    format!("  \"{}\" [label=\"{label}\"];\n", node.id.to_hex())
}

/// An arrow from child to parent; dashed for any parent but the first.
fn edge_line(child: &StateNodeId, parent: &StateNodeId, position: usize) -> String {
    let style = if position == 0 { "" } else { " [style=dashed]" };
    let mut line = String::with_capacity(160);
    // Writing to a String cannot fail.
    let _ = writeln!(
        line,
        "  \"{}\" -> \"{}\"{style};",
        child.to_hex(),
        parent.to_hex()
    );
    line
}

/// A label as a DOT string: quotes and backslashes escaped, line breaks as DOT's `\n`, and
/// other control characters and invisible or direction-changing ones shown as Rust escapes
/// (`\u{1b}`), so a drawn label shows what the stored one holds.
fn escape_dot(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() || crate::refs::is_invisible(c) => {
                // Its escape's backslash, escaped for DOT.
                out.push_str(&c.escape_unicode().to_string().replace('\\', "\\\\"));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_dot;

    #[test]
    fn dot_labels_show_what_they_hold() {
        assert_eq!(escape_dot("a \"b\" \\ c\nd"), r#"a \"b\" \\ c\nd"#);
        assert_eq!(escape_dot("\u{1b}[2Jx"), r"\\u{1b}[2Jx");
        assert_eq!(escape_dot("abc\u{202e}fed"), r"abc\\u{202e}fed");
        assert_eq!(escape_dot("tab\tend"), r"tab\\u{9}end");
    }
}

/// Where a [`DotLines`] is in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Walk,
    Footer,
    Done,
}

/// The lines of a walk's DOT document, produced as the walk goes; see
/// [`History::dot_lines`](crate::History::dot_lines).
pub struct DotLines<'a> {
    log: Log<'a>,
    ready: VecDeque<String>,
    /// Edges from yielded nodes to parents not yielded yet, by (parent generation, parent):
    /// `(child, parent position)` in the order the children came.
    pending: BTreeMap<(u64, StateNodeId), Vec<(StateNodeId, usize)>>,
    part: Part,
}

impl std::fmt::Debug for DotLines<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DotLines")
            .field("log", &self.log)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<'a> DotLines<'a> {
    pub(crate) fn new(log: Log<'a>) -> Self {
        Self {
            log,
            ready: HEADER.iter().map(|&l| l.to_owned()).collect(),
            pending: BTreeMap::new(),
            part: Part::Walk,
        }
    }

    /// How many parents the document is waiting for (to draw the edges into them).
    #[cfg(test)]
    pub(crate) fn waiting_for(&self) -> usize {
        self.pending.len()
    }

    /// Takes the walk's next node: its line, the edges into it, and the edges out of it
    /// remembered until their parents come.
    fn advance(&mut self) -> Result<()> {
        let Some(node) = self.log.next().transpose()? else {
            self.part = Part::Footer;
            return Ok(());
        };
        self.ready.push_back(node_line(&node));
        if let Some(children) = self.pending.remove(&(node.generation, node.id)) {
            for (child, position) in children {
                self.ready.push_back(edge_line(&child, &node.id, position));
            }
        }
        // The walk goes by generation, largest first, and never comes back up: a parent
        // with a larger generation than this node that has not come by now never will
        // (it was excluded, or, in a first-parent walk, not on a path followed).
        while let Some(entry) = self.pending.last_entry() {
            if entry.key().0 <= node.generation {
                break;
            }
            entry.remove();
        }
        // A first-parent walk draws only the lines it follows, as `log --graph` does: a
        // later parent that the walk shows anyway (another tip reaches it) gets no edge.
        let drawn = if self.log.first_parent { 1 } else { usize::MAX };
        for (position, parent) in node.parent_ids.iter().enumerate().take(drawn) {
            if self.log.is_boundary(parent) {
                continue;
            }
            if let Some(generation) = self.log.generation_of(parent)? {
                self.pending
                    .entry((generation, *parent))
                    .or_default()
                    .push((node.id, position));
            }
        }
        Ok(())
    }
}

impl Iterator for DotLines<'_> {
    type Item = Result<String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                return Some(Ok(line));
            }
            match self.part {
                Part::Walk => {
                    if let Err(e) = self.advance() {
                        self.part = Part::Done;
                        return Some(Err(e));
                    }
                }
                Part::Footer => {
                    self.part = Part::Done;
                    self.pending.clear();
                    return Some(Ok(FOOTER.to_owned()));
                }
                Part::Done => return None,
            }
        }
    }
}
