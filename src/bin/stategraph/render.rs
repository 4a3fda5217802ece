//! `log --graph`: lanes assigned over the topological stream, drawn as `git log --graph`
//! draws them (`*` for a node, `|` `/` `\` `_` for the lines between nodes).
//!
//! The renderer holds one lane per line of history that is still waiting for its next node.
//! For every node it computes the lanes after the node and a mapping from screen positions to
//! those lanes, then emits rows: the node's row, a row splitting a merge into its parents,
//! and rows moving lanes left until every line sits in its column. The caller interleaves
//! the rows with the node's text; rows left over when the text is done are printed bare.

use std::collections::HashMap;
use std::hash::Hash;

use crate::output::Theme;

/// What the next row of the current node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The node's rows are all out; further rows just continue every lane.
    Padding,
    /// Rows that make room around a merge with three or more parents.
    Expand,
    /// The node's own row.
    Node,
    /// The row that fans a merge out into its parents.
    Merge,
    /// Rows that move lanes left into their final columns.
    Collapse,
}

/// Up to this many parents, finding a lane's id among them is a scan, cheaper than hashing.
const SCAN_PARENTS: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Lane<Id> {
    id: Id,
    color: usize,
}

/// One row of graph characters, tracking its visible width.
struct Row {
    text: String,
    width: usize,
    theme: Theme,
}

impl Row {
    fn new(theme: Theme) -> Self {
        Self {
            text: String::new(),
            width: 0,
            theme,
        }
    }

    fn put(&mut self, c: char, color: usize) {
        // Rows of a wide graph hold thousands of characters: no String per plain one.
        if self.theme.enabled() {
            let mut buf = [0u8; 4];
            self.text
                .push_str(&self.theme.lane(color, c.encode_utf8(&mut buf)));
        } else {
            self.text.push(c);
        }
        self.width += 1;
    }

    fn space(&mut self) {
        self.text.push(' ');
        self.width += 1;
    }

    fn pad(&mut self, width: usize) {
        while self.width < width {
            self.space();
        }
    }
}

/// The state of a graph being drawn node by node.
pub struct GraphRenderer<Id> {
    theme: Theme,
    /// Lanes before the current node.
    lanes: Vec<Lane<Id>>,
    /// Lanes after the current node.
    next: Vec<Lane<Id>>,
    /// The lane in `next` of each of `parents`, once placed. Lanes are unique, so only a
    /// parent can meet a lane already placed; looking up just the parents keeps a row's work
    /// linear in its width (an octopus merge with thousands of parents would otherwise search
    /// `next` once per lane per row).
    parent_lanes: Vec<Option<usize>>,
    /// Position in `parents` by id, for merges too wide to scan.
    parent_index: HashMap<Id, usize>,
    /// Screen position (2 per lane, lines between lanes at odd positions) -> lane in `next`.
    map: Vec<Option<usize>>,
    /// The mapping as the previous collapse row left it.
    old_map: Vec<Option<usize>>,
    /// Width in characters of the current node's rows.
    width: usize,
    node: Option<Id>,
    node_color: usize,
    parents: Vec<Id>,
    /// The current node's column, and the previous node's.
    col: usize,
    prev_col: usize,
    /// For a merge: 0 when its first parent is in a column to its left, else 1.
    layout: Option<usize>,
    /// Lines a merge adds to the right of its column (-1: joined an existing lane).
    added: isize,
    prev_added: isize,
    /// Expansion rows printed so far for an octopus merge.
    expansion: usize,
    phase: Phase,
    prev_phase: Phase,
    colors_used: usize,
}

impl<Id: Copy + Eq + Hash> GraphRenderer<Id> {
    /// An empty graph.
    pub fn new(theme: Theme) -> Self {
        Self {
            theme,
            lanes: Vec::new(),
            next: Vec::new(),
            parent_lanes: Vec::new(),
            parent_index: HashMap::new(),
            map: Vec::new(),
            old_map: Vec::new(),
            width: 0,
            node: None,
            node_color: 0,
            parents: Vec::new(),
            col: 0,
            prev_col: 0,
            layout: None,
            added: 0,
            prev_added: 0,
            expansion: 0,
            phase: Phase::Padding,
            prev_phase: Phase::Padding,
            colors_used: 0,
        }
    }

    fn fresh_color(&mut self) -> usize {
        self.colors_used += 1;
        self.colors_used - 1
    }

    /// Starts the next node. `parents` are the parents that will be shown (or may still be):
    /// leave out excluded ones. Call only when [`is_done`](Self::is_done).
    pub fn push(&mut self, id: Id, parents: &[Id]) {
        self.node = Some(id);
        self.parents = parents.to_vec();
        self.parent_lanes.clear();
        self.parent_lanes.resize(parents.len(), None);
        self.parent_index.clear();
        if parents.len() > SCAN_PARENTS {
            self.parent_index
                .extend(parents.iter().enumerate().map(|(k, &p)| (p, k)));
        }
        self.prev_col = self.col;
        std::mem::swap(&mut self.lanes, &mut self.next);
        self.next.clear();
        let most = self.lanes.len() + self.parents.len();
        self.map.clear();
        self.map.resize(2 * most + 2, None);
        self.width = 0;
        self.prev_added = self.added;
        self.added = 0;
        let count = self.lanes.len();
        let mut seen = false;
        for i in 0..=count {
            let lane = if i == count {
                if seen {
                    break;
                }
                None
            } else {
                Some(self.lanes[i])
            };
            if lane.is_none_or(|l| l.id == id) {
                seen = true;
                self.col = i;
                self.layout = None;
                self.node_color = match lane {
                    Some(l) => l.color,
                    None => self.fresh_color(),
                };
                for k in 0..self.parents.len() {
                    let color = if k == 0 {
                        self.node_color
                    } else {
                        self.fresh_color()
                    };
                    self.place(self.parents[k], Some(i), color);
                }
                if self.parents.is_empty() {
                    self.width += 2;
                }
            } else if let Some(lane) = lane {
                self.place(lane.id, None, lane.color);
            }
        }
        while self.map.len() > 1 && self.map.last() == Some(&None) {
            self.map.pop();
        }
        self.expansion = 0;
        self.phase = if self.needs_expansion() {
            Phase::Expand
        } else {
            Phase::Node
        };
    }

    /// Puts `id` into the lanes after the node (once) and records where its line is drawn.
    /// `from` is the node's column when `id` is one of its parents.
    fn place(&mut self, id: Id, from: Option<usize>, color: usize) {
        let parent = self.parent_position(id);
        let target = match parent.and_then(|k| self.parent_lanes[k]) {
            Some(t) => t,
            None => {
                self.next.push(Lane { id, color });
                let t = self.next.len() - 1;
                if let Some(k) = parent {
                    self.parent_lanes[k] = Some(t);
                }
                t
            }
        };
        let pos = match from {
            Some(from) if self.parents.len() > 1 && self.layout.is_none() => {
                // The first parent of a merge: lean its line left when that parent already
                // has a lane to the left of the merge.
                let distance = from as isize - target as isize;
                let shift = if distance > 1 { 2 * distance - 3 } else { 1 };
                let layout: usize = if distance > 0 { 0 } else { 1 };
                self.layout = Some(layout);
                self.added = self.parents.len() as isize + layout as isize - 2;
                let pos = self.width as isize + (layout as isize - 1) * shift;
                self.width += 2 * layout;
                pos.max(0) as usize
            }
            _ if self.added > 0
                && self.width >= 2
                && self.map.get(self.width - 2) == Some(&Some(target)) =>
            {
                // The lane right after a merge is the merge's last parent: join at once.
                self.added = -1;
                self.width - 2
            }
            _ => {
                self.width += 2;
                self.width - 2
            }
        };
        if pos >= self.map.len() {
            self.map.resize(pos + 1, None);
        }
        self.map[pos] = Some(target);
    }

    /// Which of the current node's parents `id` is, if any.
    fn parent_position(&self, id: Id) -> Option<usize> {
        if self.parents.len() > SCAN_PARENTS {
            self.parent_index.get(&id).copied()
        } else {
            self.parents.iter().position(|&p| p == id)
        }
    }

    fn expansion_rows(&self) -> usize {
        2 * (self.parents.len() + self.layout.unwrap_or(1)).saturating_sub(3)
    }

    fn needs_expansion(&self) -> bool {
        self.parents.len() >= 3
            && self.col + 1 < self.lanes.len()
            && self.expansion < self.expansion_rows()
    }

    fn mapping_settled(&self) -> bool {
        self.map
            .iter()
            .enumerate()
            .all(|(i, t)| t.is_none_or(|t| t == i / 2))
    }

    fn set_phase(&mut self, phase: Phase) {
        self.prev_phase = self.phase;
        self.phase = phase;
    }

    /// Whether the current node's rows are all out (the next node may be pushed).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Padding
    }

    /// The next row, padded to the graph's width, and whether it is the node's own row.
    pub fn next_row(&mut self) -> (String, bool) {
        let mut row = Row::new(self.theme);
        let is_node = match self.phase {
            Phase::Padding => {
                self.padding_row(&mut row);
                false
            }
            Phase::Expand => {
                self.expand_row(&mut row);
                false
            }
            Phase::Node => {
                self.node_row(&mut row);
                true
            }
            Phase::Merge => {
                self.merge_row(&mut row);
                false
            }
            Phase::Collapse => {
                self.collapse_row(&mut row);
                false
            }
        };
        row.pad(self.width);
        (row.text, is_node)
    }

    /// A row continuing every lane, for text lines after the node's rows are out.
    pub fn padding(&self) -> String {
        let mut row = Row::new(self.theme);
        self.padding_row(&mut row);
        row.pad(self.width);
        row.text
    }

    fn lane_color(&self, target: usize) -> usize {
        self.next.get(target).map_or(self.node_color, |l| l.color)
    }

    fn padding_row(&self, row: &mut Row) {
        for lane in &self.next {
            row.put('|', lane.color);
            row.space();
        }
    }

    fn expand_row(&mut self, row: &mut Row) {
        let mut seen = false;
        for (i, lane) in self.lanes.iter().enumerate() {
            if Some(lane.id) == self.node {
                seen = true;
                row.put('|', lane.color);
                for _ in 0..self.expansion {
                    row.space();
                }
            } else if seen && self.expansion == 0 {
                let c = if self.prev_phase == Phase::Merge && self.prev_col < i {
                    '\\'
                } else {
                    '|'
                };
                row.put(c, lane.color);
            } else if seen {
                row.put('\\', lane.color);
            } else {
                row.put('|', lane.color);
            }
            row.space();
        }
        self.expansion += 1;
        if !self.needs_expansion() {
            self.set_phase(Phase::Node);
        }
    }

    fn node_row(&mut self, row: &mut Row) {
        let count = self.lanes.len();
        let mut seen = false;
        for i in 0..=count {
            let lane = if i == count {
                if seen {
                    break;
                }
                None
            } else {
                Some(self.lanes[i])
            };
            match lane {
                Some(lane) if Some(lane.id) != self.node => {
                    let c = if seen && self.added > 1 {
                        '\\'
                    } else if seen && self.added == 1 {
                        if self.prev_phase == Phase::Merge
                            && self.prev_added > 0
                            && self.prev_col < i
                        {
                            '\\'
                        } else {
                            '|'
                        }
                    } else if self.prev_phase == Phase::Collapse
                        && self.old_map.get(2 * i + 1) == Some(&Some(i))
                        && self.map.get(2 * i).copied().flatten().is_none_or(|t| t < i)
                    {
                        '/'
                    } else {
                        '|'
                    };
                    row.put(c, lane.color);
                }
                _ => {
                    seen = true;
                    row.put('*', self.node_color);
                    if self.parents.len() > 2 {
                        self.octopus_dashes(row);
                    }
                }
            }
            row.space();
        }
        if self.parents.len() > 1 {
            self.set_phase(Phase::Merge);
        } else if self.mapping_settled() {
            self.set_phase(Phase::Padding);
        } else {
            self.set_phase(Phase::Collapse);
        }
    }

    /// `*-.` / `*---.`: the extra parents of an octopus merge.
    fn octopus_dashes(&self, row: &mut Row) {
        let plain = 3 - self.layout.unwrap_or(1);
        let dashed = self.parents.len().saturating_sub(plain);
        for k in 0..dashed {
            let target = self.map.get((self.col + k + 2) * 2).copied().flatten();
            let color = target.map_or(self.node_color, |t| self.lane_color(t));
            row.put('-', color);
            row.put(if k + 1 == dashed { '.' } else { '-' }, color);
        }
    }

    fn merge_row(&mut self, row: &mut Row) {
        const FAN: [char; 3] = ['/', '|', '\\'];
        let count = self.lanes.len();
        let first_parent = self.parents.first().copied();
        let mut first_parent_color = None;
        let mut seen = false;
        for i in 0..=count {
            let lane = if i == count {
                if seen {
                    break;
                }
                None
            } else {
                Some(self.lanes[i])
            };
            let lane_id = lane.map(|l| l.id);
            match lane {
                Some(lane) if Some(lane.id) != self.node => {
                    if seen {
                        row.put(if self.added > 0 { '\\' } else { '|' }, lane.color);
                        row.space();
                    } else {
                        row.put('|', lane.color);
                        if self.layout != Some(0) || i + 1 != self.col {
                            match first_parent_color {
                                Some(color) => row.put('_', color),
                                None => row.space(),
                            }
                        }
                    }
                }
                _ => {
                    seen = true;
                    let mut fan = self.layout.unwrap_or(1);
                    let n = self.parents.len();
                    for j in 0..n {
                        let color =
                            self.parent_lanes[j].map_or(self.node_color, |t| self.lane_color(t));
                        row.put(FAN[fan], color);
                        if fan == 2 {
                            if self.added > 0 || j + 1 < n {
                                row.space();
                            }
                        } else {
                            fan += 1;
                        }
                    }
                    if self.added == 0 {
                        row.space();
                    }
                }
            }
            if lane_id.is_some() && lane_id == first_parent {
                first_parent_color = lane.map(|l| l.color);
            }
        }
        if self.mapping_settled() {
            self.set_phase(Phase::Padding);
        } else {
            self.set_phase(Phase::Collapse);
        }
    }

    fn collapse_row(&mut self, row: &mut Row) {
        std::mem::swap(&mut self.map, &mut self.old_map);
        let size = self.old_map.len();
        self.map.clear();
        self.map.resize(size, None);
        // The one line allowed to run horizontally (`_`) in this row: (position, lane).
        let mut horizontal: Option<(usize, usize)> = None;
        for i in 0..size {
            let Some(target) = self.old_map[i] else {
                continue;
            };
            if 2 * target == i {
                self.map[i] = Some(target);
            } else if i >= 1 && self.map[i - 1].is_none() {
                // Nothing to the left: move one step left.
                self.map[i - 1] = Some(target);
                if horizontal.is_none() {
                    horizontal = Some((i, target));
                    self.run_horizontally(target, i);
                }
            } else if i >= 1 && self.map[i - 1] == Some(target) {
                // The line to the left goes to the same lane: merge with it.
            } else if i >= 2 {
                // Cross over the line to the left, which goes elsewhere.
                self.map[i - 2] = Some(target);
                if horizontal.is_none() {
                    horizontal = Some((i - 1, target));
                    self.run_horizontally(target, i);
                }
            }
        }
        self.old_map.clone_from(&self.map);
        if self.map.last() == Some(&None) {
            self.map.pop();
        }
        let mut used_horizontal = false;
        for i in 0..self.map.len() {
            match self.map[i] {
                None => row.space(),
                Some(t) if 2 * t == i => row.put('|', self.lane_color(t)),
                Some(t) if horizontal.is_some_and(|(edge, lane)| lane == t && i + 1 != edge) => {
                    // Only the first `_` of a horizontal run continues into the next row.
                    if i != 2 * t + 3 {
                        self.map[i] = None;
                    }
                    used_horizontal = true;
                    row.put('_', self.lane_color(t));
                }
                Some(t) => {
                    if used_horizontal && horizontal.is_some_and(|(edge, _)| i < edge) {
                        self.map[i] = None;
                    }
                    row.put('/', self.lane_color(t));
                }
            }
        }
        if self.mapping_settled() {
            self.set_phase(Phase::Padding);
        }
    }

    fn run_horizontally(&mut self, target: usize, to: usize) {
        let mut j = 2 * target + 3;
        while j + 2 < to {
            self.map[j] = Some(target);
            j += 2;
        }
    }
}

/// Draws a whole history (nodes in topological order, each with its shown parents) with one
/// line of text per node, as `git log --graph --oneline` does. Used by tests.
#[cfg(test)]
pub fn draw<Id: Copy + Eq + Hash>(nodes: &[(Id, Vec<Id>, &str)]) -> String {
    use crate::args::ColorChoice;
    let mut graph = GraphRenderer::new(Theme::new(ColorChoice::Never, false));
    let mut out = String::new();
    for (id, parents, text) in nodes {
        graph.push(*id, parents);
        loop {
            let (row, is_node) = graph.next_row();
            if is_node {
                out.push_str(&row);
                out.push_str(text);
                out.push('\n');
                break;
            }
            out.push_str(row.trim_end());
            out.push('\n');
        }
        while !graph.is_done() {
            out.push_str(graph.next_row().0.trim_end());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::draw;

    fn n(id: u32, parents: &[u32], text: &'static str) -> (u32, Vec<u32>, &'static str) {
        (id, parents.to_vec(), text)
    }

    thread_local! {
        static COMPARISONS: Cell<usize> = const { Cell::new(0) };
    }

    /// An id that counts how often it is compared: the renderer's work on lane lookups.
    #[derive(Debug, Clone, Copy, Eq)]
    struct Counted(u32);

    impl std::hash::Hash for Counted {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }

    impl PartialEq for Counted {
        fn eq(&self, other: &Self) -> bool {
            COMPARISONS.with(|c| c.set(c.get() + 1));
            self.0 == other.0
        }
    }

    /// A merge of `width` roots and the roots in the order given, as `draw` input.
    fn octopus(width: u32, roots: impl Iterator<Item = u32>) -> Vec<(u32, Vec<u32>, String)> {
        let mut nodes = vec![(0, (1..=width).collect(), "merge".to_owned())];
        nodes.extend(roots.map(|r| (r, Vec::new(), format!("r{r}"))));
        nodes
    }

    fn draw_owned(nodes: &[(u32, Vec<u32>, String)]) -> String {
        let borrowed: Vec<_> = nodes
            .iter()
            .map(|(id, parents, text)| (*id, parents.clone(), text.as_str()))
            .collect();
        draw(&borrowed)
    }

    /// Checks what holds for any drawing of `octopus(width, ..)`: each node's text on exactly
    /// one line, that line holding one `*`, every graph character one git uses, the merge
    /// fanned out into every parent. Returns the column of each root's `*` by root.
    fn check_octopus(drawing: &str, width: u32) -> Vec<usize> {
        let mut columns = vec![usize::MAX; width as usize + 1];
        let mut lines = drawing.lines();
        let dashes = "-".repeat(2 * (width as usize - 2) - 1);
        assert_eq!(lines.next(), Some(format!("*{dashes}.   merge").as_str()));
        let fan = format!("|{}", "\\ ".repeat(width as usize - 1));
        assert_eq!(lines.next(), Some(fan.trim_end()));
        for line in lines {
            let graph = line.trim_end_matches(|c: char| c.is_ascii_alphanumeric());
            assert!(
                graph.chars().all(|c| " |/\\_*".contains(c)),
                "stray character in {line:?}"
            );
            let text = &line[graph.len()..];
            let stars = graph.matches('*').count();
            if text.is_empty() {
                assert_eq!(stars, 0, "a node without text: {line:?}");
                continue;
            }
            assert_eq!(stars, 1, "{line:?}");
            let root: usize = text.strip_prefix('r').and_then(|r| r.parse().ok()).unwrap();
            assert_eq!(columns[root], usize::MAX, "r{root} drawn twice");
            let star = graph.find('*').unwrap();
            assert_eq!(star % 2, 0, "a node between columns: {line:?}");
            columns[root] = star / 2;
        }
        let missing: Vec<_> = (1..=width as usize)
            .filter(|&r| columns[r] == usize::MAX)
            .collect();
        assert!(missing.is_empty(), "roots not drawn: {missing:?}");
        columns
    }

    #[test]
    fn wide_octopus_newest_parent_first_keeps_every_lane_in_place() {
        // The last parent comes first: it is the rightmost lane, so each root ends its own
        // line and nothing moves, as git draws it.
        let width = 300;
        let drawing = draw_owned(&octopus(width, (1..=width).rev()));
        let columns = check_octopus(&drawing, width);
        for (r, &column) in columns.iter().enumerate().skip(1) {
            assert_eq!(column, r - 1, "r{r}");
        }
        assert_eq!(drawing.lines().count(), width as usize + 2);
        let r2 = drawing.lines().nth(width as usize).unwrap();
        assert_eq!(r2, "| * r2");
    }

    #[test]
    fn wide_octopus_first_parent_first_moves_lanes_left() {
        // The first parent comes first, in the leftmost lane: every later root is drawn there
        // once the lanes right of it have moved left, one collapse row after each root.
        let width = 300;
        let drawing = draw_owned(&octopus(width, 1..=width));
        let columns = check_octopus(&drawing, width);
        assert!(columns[1..].iter().all(|&c| c == 0), "{drawing}");
        assert_eq!(drawing.lines().count(), 2 * width as usize + 1);
        let after_r1 = drawing.lines().nth(3).unwrap();
        assert_eq!(
            after_r1,
            format!(" {}", "/ ".repeat(width as usize - 1)).trim_end()
        );
    }

    #[test]
    fn wide_octopus_joining_lanes_on_both_sides_matches_git() {
        // A merge of ten parents (past the scan limit) where three parents already have
        // lanes, and what `git log --all --graph --date-order` draws for it.
        let mut nodes = vec![
            n(12, &[11], "c"),
            n(15, &[2], "w"),
            n(14, &[5], "v"),
            n(13, &[9], "u"),
            n(11, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "m"),
        ];
        let labels = ["b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10"];
        nodes.extend((1..=10).rev().map(|b| (b, vec![0], labels[b as usize - 1])));
        nodes.push(n(0, &[], "c0"));
        let want = r"
* c
| * w
| | * v
| | | * u
| | | |
|  \ \ \
|   \ \ \
|    \ \ \
|     \ \ \
|      \ \ \
|       \ \ \
|        \ \ \
|         \ \ \
|          \ \ \
|           \ \ \
|            \ \ \
|             \ \ \
|              \ \ \
|               \ \ \
|                \ \ \
*---------------. \ \ \   m
|\ \ \ \ \ \ \ \ \ \ \ \
| | |_|_|_|_|_|_|_|/ / /
| |/| | | | | | | | / /
| | | | | |_|_|_|_|/ /
| | | | |/| | | | | /
| | | | | | | | | |/
| | | | | | | | |/|
| | | | | | | | | * b10
| | | | | | | | * | b9
| | | | | | | | |/
| | | | | | | * / b8
| | | | | | | |/
| | | | | | * / b7
| | | | | | |/
| | | | | * / b6
| | | | | |/
| | | | * / b5
| | | | |/
| | | * / b4
| | | |/
| | * / b3
| | |/
| * / b2
| |/
* / b1
|/
* c0
";
        assert_eq!(draw(&nodes), want.trim_start_matches('\n'));
    }

    #[test]
    fn lane_lookups_stay_linear_in_the_width_of_a_row() {
        // Every row of an octopus of width w is about w lanes wide, so drawing it is ~w^2
        // work; looking lanes up by scanning them made it ~w^3.
        let width = 400u32;
        let mut nodes = vec![(
            Counted(0),
            (1..=width).map(Counted).collect::<Vec<_>>(),
            "merge",
        )];
        nodes.extend((1..=width).rev().map(|r| (Counted(r), Vec::new(), "root")));
        COMPARISONS.with(|c| c.set(0));
        let drawing = draw(&nodes);
        let comparisons = COMPARISONS.with(Cell::get);
        assert_eq!(drawing.lines().count(), width as usize + 2);
        let w = width as usize;
        assert!(
            comparisons < 4 * w * w,
            "{comparisons} id comparisons for an octopus of {w}"
        );
    }

    #[test]
    fn linear() {
        let g = draw(&[n(3, &[2], "c"), n(2, &[1], "b"), n(1, &[], "a")]);
        assert_eq!(g, "* c\n* b\n* a\n");
    }

    #[test]
    fn branch_and_merge() {
        // m2 is newer than b1, so it comes between b2 and b1.
        let g = draw(&[
            n(6, &[5, 4], "merge"),
            n(4, &[3], "b2"),
            n(5, &[2], "m2"),
            n(3, &[2], "b1"),
            n(2, &[1], "m1"),
            n(1, &[], "root"),
        ]);
        let want = "\
*   merge
|\\
| * b2
* | m2
| * b1
|/
* m1
* root
";
        assert_eq!(g, want);
    }

    #[test]
    fn two_tips_share_a_base() {
        let g = draw(&[
            n(4, &[2], "x"),
            n(3, &[2], "y"),
            n(2, &[1], "base"),
            n(1, &[], "root"),
        ]);
        let want = "\
* x
| * y
|/
* base
* root
";
        assert_eq!(g, want);
    }

    #[test]
    fn octopus_crossings_and_roots_match_git() {
        // A random history and what `git log --all --graph --date-order` draws for it.
        let g = draw(&[
            n(17, &[14, 11], "c17"),
            n(16, &[11, 3], "c16"),
            n(15, &[12], "c15"),
            n(14, &[13], "c14"),
            n(13, &[8], "c13"),
            n(12, &[9], "c12"),
            n(11, &[1, 0, 7, 10], "c11"),
            n(10, &[7], "c10"),
            n(9, &[4], "c9"),
            n(8, &[], "c8"),
            n(7, &[6, 2], "c7"),
            n(6, &[5], "c6"),
            n(5, &[2], "c5"),
            n(4, &[0, 2, 1], "c4"),
            n(3, &[1], "c3"),
            n(2, &[0], "c2"),
            n(1, &[0], "c1"),
            n(0, &[], "c0"),
        ]);
        let want = r"
*   c17
|\
| | * c16
| |/|
| | | * c15
* | | | c14
* | | | c13
| | | * c12
| | | |
| |  \ \
| |   \ \
| |    \ \
| *---. \ \   c11
| |\ \ \ \ \
| | | | * | | c10
| | | |/ / /
| | | | | * c9
* | | | | | c8
 / / / / /
| | * | |   c7
| | |\ \ \
| | * | | | c6
| | * | | | c5
| | |/ / /
| | | | *   c4
| | |_|/|\
| |/| |/ /
| | |/| /
| |_|_|/
|/| | |
| | | * c3
| |_|/
|/| |
| | * c2
| |/
* / c1
|/
* c0
";
        assert_eq!(g, want.trim_start_matches('\n'));
    }
}
