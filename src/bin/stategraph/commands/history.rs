//! `log`, `show` and `graph`: reading the history.

use std::collections::{HashMap, VecDeque};
use std::io::Write;

use serde::Serialize;
use stategraph::{
    ContentHash, History as _, Log, ShownParents, SnapshotInfo, StateNode, StateNodeId, StateStore,
    StateStoreError,
};

use crate::Ctx;
use crate::args::{GraphArgs, LogArgs, ShowArgs};
use crate::error::{CliError, CliResult, explain};
use crate::output::{
    NodeJson, Paint, Theme, ids, note, printable, rfc3339, rfc3339_seconds, write_json,
};
use crate::render::GraphRenderer;
use crate::revs::{Walk, WalkFlags, resolve, walk};

/// Ref names by the node they point at.
pub struct Decorations {
    by_node: HashMap<StateNodeId, Vec<String>>,
}

impl Decorations {
    /// Reads every ref once.
    pub fn load(store: &dyn StateStore) -> CliResult<Self> {
        let mut by_node: HashMap<StateNodeId, Vec<String>> = HashMap::new();
        for r in store.list_refs("")? {
            by_node.entry(r.target).or_default().push(r.name);
        }
        Ok(Self { by_node })
    }

    /// The refs pointing at `id`, sorted by name.
    pub fn refs(&self, id: &StateNodeId) -> &[String] {
        self.by_node.get(id).map_or(&[], Vec::as_slice)
    }
}

/// ` (main, tag: v1, snapshot)`, or nothing.
pub fn decoration(theme: Theme, refs: &[String], snapshot: bool) -> String {
    let mut parts: Vec<String> = refs
        .iter()
        .map(|name| match name.strip_prefix("tags/") {
            Some(tag) => theme.paint(Paint::Tag, &format!("tag: {}", printable(tag, false))),
            None => theme.paint(Paint::Branch, &printable(name, false)),
        })
        .collect();
    if snapshot {
        parts.push(theme.paint(Paint::Snapshot, "snapshot"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(
            " {}{}{}",
            theme.paint(Paint::Id, "("),
            parts.join(&theme.paint(Paint::Id, ", ")),
            theme.paint(Paint::Id, ")")
        )
    }
}

/// How `log` prints each node.
#[derive(Debug, Clone, Copy)]
pub struct LogStyle {
    /// Draw the graph.
    pub graph: bool,
    /// One line per node.
    pub oneline: bool,
}

fn node_lines(
    node: &StateNode,
    refs: &[String],
    snapshot: bool,
    style: LogStyle,
    theme: Theme,
) -> Vec<String> {
    let short = node.id.to_short_hex(12);
    let decor = decoration(theme, refs, snapshot);
    let label = node.metadata.label.as_deref().unwrap_or("");
    if style.oneline {
        let mut line = format!("{}{decor}", theme.paint(Paint::Id, &short));
        if !label.is_empty() {
            line.push(' ');
            line.push_str(&printable(label, false));
        }
        return vec![line];
    }
    let mut lines = vec![format!(
        "{}{decor}",
        theme.paint(Paint::Id, &format!("node {short}"))
    )];
    if node.parent_ids.len() > 1 {
        let parents: Vec<String> = node.parent_ids.iter().map(|p| p.to_short_hex(12)).collect();
        lines.push(format!("Merge: {}", parents.join(" ")));
    }
    lines.push(format!(
        "Date:  {}",
        rfc3339_seconds(node.metadata.created_at)
    ));
    if !label.is_empty() {
        lines.push(String::new());
        lines.extend(printable(label, true).lines().map(|l| format!("    {l}")));
    }
    lines
}

/// Which nodes of a walk `log` prints by when they were made (`--since`, `--until`), and
/// how many of those (`-n`, counted after the time filter). Not for graphs, which need
/// every node of the walk to draw its lines.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimeWindow {
    /// Nodes made before this are left out.
    pub since: Option<time::OffsetDateTime>,
    /// Nodes made after this are left out.
    pub until: Option<time::OffsetDateTime>,
    /// At most this many nodes are printed.
    pub limit: Option<usize>,
}

impl TimeWindow {
    /// Whether `node` is printed, counting it in `shown` when it is.
    fn admits(&self, node: &StateNode, shown: &mut usize) -> bool {
        let at = node.metadata.created_at;
        let inside = self.since.is_none_or(|since| at >= since)
            && self.until.is_none_or(|until| at <= until);
        *shown += usize::from(inside);
        inside
    }

    fn full(&self, shown: usize) -> bool {
        self.limit.is_some_and(|n| shown >= n)
    }
}

/// Prints the nodes of a walk as text. Shared by `log` and `demo`. Returns the parents the
/// walk reached that are not in the store (see [`boundary_note`]).
pub fn print_log(
    store: &dyn StateStore,
    walk: &Walk,
    style: LogStyle,
    window: TimeWindow,
    theme: Theme,
    out: &mut dyn Write,
) -> CliResult<Vec<StateNodeId>> {
    let decorations = Decorations::load(store)?;
    let log = store.log(&walk.options).map_err(|e| explain(store, e))?;
    let mut nodes = if style.graph && walk.excludes {
        Nodes::Shown(log.with_shown_parents())
    } else {
        Nodes::Followed {
            log,
            first_parent: walk.first_parent,
        }
    };
    print_nodes(store, &decorations, &mut nodes, style, window, theme, out)?;
    Ok(nodes.boundary().to_vec())
}

/// How many nodes a log reads ahead to look up their snapshots together.
const SNAPSHOT_PAGE: usize = 256;

/// Items of a walk, each with the snapshots of its node, read [`SNAPSHOT_PAGE`] items ahead
/// so that the snapshots are looked up a page at a time: one read instead of one per node,
/// which was most of the time of a long `log`.
pub(crate) struct WithSnapshots<'s, T> {
    store: &'s dyn StateStore,
    page: VecDeque<(T, Vec<SnapshotInfo>)>,
    /// An error the walk returned while a page was read: reported after the items before it.
    failed: Option<stategraph::StateStoreError>,
}

impl<'s, T> WithSnapshots<'s, T> {
    pub(crate) fn new(store: &'s dyn StateStore) -> Self {
        Self {
            store,
            page: VecDeque::new(),
            failed: None,
        }
    }

    /// The next item `pull` gives, with the snapshots of the node `id` names in it.
    pub(crate) fn next(
        &mut self,
        mut pull: impl FnMut() -> stategraph::Result<Option<T>>,
        id: impl Fn(&T) -> StateNodeId,
    ) -> stategraph::Result<Option<(T, Vec<SnapshotInfo>)>> {
        if self.page.is_empty() && self.failed.is_none() {
            let mut items = Vec::with_capacity(SNAPSHOT_PAGE);
            while items.len() < SNAPSHOT_PAGE {
                match pull() {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => break,
                    Err(e) => {
                        self.failed = Some(e);
                        break;
                    }
                }
            }
            let ids: Vec<StateNodeId> = items.iter().map(&id).collect();
            let snapshots = self.store.snapshots_of_each(&ids)?;
            self.page.extend(items.into_iter().zip(snapshots));
        }
        match self.page.pop_front() {
            Some(item) => Ok(Some(item)),
            None => self.failed.take().map_or(Ok(None), Err),
        }
    }
}

/// The nodes of a walk, each with the parents its graph lines go to.
enum Nodes<'a> {
    /// Every parent the walk follows. A parent that is not stored (a shallow boundary) ends
    /// its line, as a root does; the walk has already met it, and `boundary_note` names it.
    Followed { log: Log<'a>, first_parent: bool },
    /// With exclusions, only the parents the walk shows too: the walk reads ahead as far as
    /// it takes to know.
    Shown(ShownParents<'a>),
}

impl Nodes<'_> {
    fn next(&mut self) -> stategraph::Result<Option<(StateNode, Vec<StateNodeId>)>> {
        match self {
            Self::Followed { log, first_parent } => {
                let Some(node) = log.next().transpose()? else {
                    return Ok(None);
                };
                let parents = node
                    .parent_ids
                    .iter()
                    .take(if *first_parent { 1 } else { usize::MAX })
                    .filter(|p| !log.is_boundary(p))
                    .copied()
                    .collect();
                Ok(Some((node, parents)))
            }
            Self::Shown(walk) => walk.next().transpose(),
        }
    }

    fn boundary(&self) -> &[StateNodeId] {
        match self {
            Self::Followed { log, .. } => log.boundary(),
            Self::Shown(walk) => walk.boundary(),
        }
    }
}

/// Says, on stderr, where the history shown stops short because parents are not stored.
pub fn boundary_note(theme: Theme, boundary: &[StateNodeId]) {
    if boundary.is_empty() {
        return;
    }
    const SHOWN: usize = 5;
    let mut ids: Vec<String> = boundary
        .iter()
        .take(SHOWN)
        .map(|id| id.to_short_hex(12))
        .collect();
    if boundary.len() > SHOWN {
        ids.push(format!("and {} more", boundary.len() - SHOWN));
    }
    note(
        theme,
        &format!(
            "history stops at {} parent(s) not in this store: {} (a shallow boundary left by \
             `import` or `gc --prune-history`; import their snapshots to go further, or run \
             `stategraph fsck` if this store did neither)",
            boundary.len(),
            ids.join(", ")
        ),
    );
}

fn print_nodes(
    store: &dyn StateStore,
    decorations: &Decorations,
    nodes: &mut Nodes<'_>,
    style: LogStyle,
    window: TimeWindow,
    theme: Theme,
    out: &mut dyn Write,
) -> CliResult {
    let mut graph = GraphRenderer::new(theme);
    let mut first = true;
    let mut shown = 0;
    let mut paged = WithSnapshots::new(store);
    while !window.full(shown)
        && let Some(((node, parents), snapshots)) =
            paged.next(|| nodes.next(), |(node, _)| node.id)?
    {
        if !window.admits(&node, &mut shown) {
            continue;
        }
        let snapshot = !snapshots.is_empty();
        let lines = node_lines(&node, decorations.refs(&node.id), snapshot, style, theme);
        if !style.graph {
            if !first && !style.oneline {
                writeln!(out)?;
            }
            for line in &lines {
                writeln!(out, "{line}")?;
            }
            first = false;
            continue;
        }
        if !first {
            if !style.oneline {
                let row = if graph.is_done() {
                    graph.padding()
                } else {
                    graph.next_row().0
                };
                writeln!(out, "{}", row.trim_end())?;
            }
            while !graph.is_done() {
                writeln!(out, "{}", graph.next_row().0.trim_end())?;
            }
        }
        first = false;
        graph.push(node.id, &parents);
        loop {
            let (row, is_node) = graph.next_row();
            if is_node {
                writeln!(out, "{row}{}", lines[0])?;
                break;
            }
            writeln!(out, "{}", row.trim_end())?;
        }
        for line in &lines[1..] {
            let row = if graph.is_done() {
                graph.padding()
            } else {
                graph.next_row().0
            };
            writeln!(out, "{}", format!("{row}{line}").trim_end())?;
        }
    }
    while style.graph && !graph.is_done() {
        writeln!(out, "{}", graph.next_row().0.trim_end())?;
    }
    Ok(())
}

/// `log`.
pub fn log(ctx: &Ctx, args: &LogArgs) -> CliResult {
    let store = ctx.open_read()?;
    let filtered = args.since.is_some() || args.until.is_some();
    // With a time filter, -n counts the nodes it lets through: the walk itself goes on.
    let window = TimeWindow {
        since: args.since,
        until: args.until,
        limit: if filtered { args.limit } else { None },
    };
    let flags = WalkFlags {
        all: args.all,
        first_parent: args.first_parent,
        limit: if filtered { None } else { args.limit },
    };
    let walk = walk(&store, &args.revs, flags)?;
    if walk.empty {
        note(
            ctx.err_theme,
            "this store has no refs; name a node to start from (stategraph log ID)",
        );
    }
    let mut out = ctx.out(true);
    let mut boundary = Vec::new();
    if args.json {
        write!(out, "[")?;
        let mut first = true;
        if !walk.empty {
            let decorations = Decorations::load(&store)?;
            let mut log = store.log(&walk.options).map_err(|e| explain(&store, e))?;
            let mut paged = WithSnapshots::new(&store);
            let mut shown = 0;
            while !window.full(shown)
                && let Some((node, snapshots)) =
                    paged.next(|| log.next().transpose(), |node| node.id)?
            {
                if !window.admits(&node, &mut shown) {
                    continue;
                }
                let json = NodeJson::new(&node, decorations.refs(&node.id), &snapshots);
                write!(out, "{}\n  ", if first { "" } else { "," })?;
                let line = crate::output::terminal_safe_json(serde_json::to_string(&json)?);
                out.write_all(line.as_bytes())?;
                first = false;
            }
            boundary = log.boundary().to_vec();
        }
        writeln!(out, "{}]", if first { "" } else { "\n" })?;
    } else if !walk.empty {
        let style = LogStyle {
            graph: args.graph,
            oneline: args.oneline,
        };
        boundary = print_log(&store, &walk, style, window, ctx.theme, &mut out)?;
    }
    out.finish()?;
    boundary_note(ctx.err_theme, &boundary);
    Ok(())
}

#[derive(Serialize)]
struct ShowJson {
    #[serde(flatten)]
    node: NodeJson,
    children: Vec<String>,
    /// `None` when the stored state cannot be read.
    size: Option<u64>,
    /// [`StateCheck::as_str`].
    state_check: &'static str,
}

/// What `show` found of a node's state. It reads only a preview's worth, so it checks the
/// bytes against the node's data hash only for states that fit in that read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StateCheck {
    Ok,
    /// What is wrong: bytes that do not match, or a state that cannot be read at all.
    Damaged(String),
    /// Larger than `show` reads: `fsck` checks it.
    Unchecked,
}

impl StateCheck {
    fn of(head: &[u8], size: u64, hash: &ContentHash) -> Self {
        if head.len() as u64 != size {
            Self::Unchecked
        } else if ContentHash::of(head) == *hash {
            Self::Ok
        } else {
            Self::Damaged(format!(
                "its {size} stored bytes do not match the node's data hash"
            ))
        }
    }

    fn as_str(&self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Damaged(_) => "damaged",
            Self::Unchecked => "unchecked",
        }
    }

    /// `show`'s exit: an error when the state is damaged (everything else was printed).
    fn exit(&self, id: &StateNodeId) -> CliResult {
        match self {
            Self::Damaged(what) => Err(CliError::new(format!(
                "the state of node {} is damaged: {what}",
                id.to_short_hex(12)
            ))
            .hint("run `stategraph fsck` to check the whole store")),
            Self::Ok | Self::Unchecked => Ok(()),
        }
    }
}

/// Reads (with `read`) the state of node `id`, which was read a moment before in a read
/// transaction of its own. A gc that removed the node since took its state with it, which is
/// no damage: a missing state whose node is gone too is `MissingNode`, as the same command
/// started a moment later would say.
pub(crate) fn read_state_of<T>(
    store: &dyn StateStore,
    id: &StateNodeId,
    read: impl FnOnce() -> stategraph::Result<T>,
) -> stategraph::Result<T> {
    match read() {
        Err(e)
            if e.is_missing()
                && matches!(store.get_node(id), Err(StateStoreError::MissingNode { .. })) =>
        {
            Err(StateStoreError::MissingNode { id: *id })
        }
        other => other,
    }
}

/// What `show` makes of reading node `id`'s state (see [`read_state_of`]): its size, the
/// bytes read and their check; an error when the node itself is gone (a gc removed it after
/// it was read: no damage, as `cat` and `diff` say).
fn state_check(
    read: stategraph::Result<(u64, Vec<u8>)>,
    id: &StateNodeId,
    hash: &ContentHash,
) -> CliResult<(Option<u64>, Vec<u8>, StateCheck)> {
    Ok(match read {
        Ok((size, head)) => {
            let check = StateCheck::of(&head, size, hash);
            (Some(size), head, check)
        }
        Err(e @ StateStoreError::MissingNode { id: gone }) if gone == *id => return Err(e.into()),
        Err(e) if e.is_corrupt() || e.is_missing() => {
            (None, Vec::new(), StateCheck::Damaged(e.to_string()))
        }
        Err(e) => return Err(e.into()),
    })
}

/// `show`.
pub fn show(ctx: &Ctx, args: &ShowArgs) -> CliResult {
    let store = ctx.open_read()?;
    let id = resolve(&store, &args.rev)?;
    let node = store.get_node(&id)?;
    let mut children = store.cursor()?.children(&id)?;
    children.sort();
    // The size and a preview: never the whole state, which may be any size. A state that
    // cannot be read is reported with everything else about the node.
    let read = read_state_of(&store, &id, || {
        let info = store.state_info(&node.data_ref)?;
        let head = store.state_prefix(&node.data_ref, PREVIEW_READ)?;
        Ok((info.len, head))
    });
    let (size, head, check) = state_check(read, &id, &node.data_hash)?;
    let snapshots = store.snapshots_of(&id)?;
    let decorations = Decorations::load(&store)?;
    let refs = decorations.refs(&id);
    let mut out = ctx.out(!args.json);
    if args.json {
        let json = ShowJson {
            node: NodeJson::new(&node, refs, &snapshots),
            children: ids(&children),
            size,
            state_check: check.as_str(),
        };
        write_json(&mut out, &json)?;
        out.finish()?;
        return check.exit(&id);
    }
    let t = ctx.theme;
    let field = |name: &str| t.paint(Paint::Bold, &format!("{name:<11}"));
    let short_list = |list: &[StateNodeId], none: &str| {
        if list.is_empty() {
            t.paint(Paint::Dim, none)
        } else {
            list.iter()
                .map(|i| t.paint(Paint::Id, &i.to_short_hex(12)))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    let none = |text: &str| t.paint(Paint::Dim, text);
    writeln!(
        out,
        "{}{}",
        t.paint(Paint::Id, &format!("node {}", id.to_short_hex(12))),
        decoration(t, refs, !snapshots.is_empty())
    )?;
    writeln!(out, "{}{}", field("id"), id)?;
    writeln!(
        out,
        "{}{}",
        field("parents"),
        short_list(&node.parent_ids, "(none: a root)")
    )?;
    writeln!(
        out,
        "{}{}",
        field("children"),
        short_list(&children, "(none)")
    )?;
    writeln!(out, "{}{}", field("generation"), node.generation)?;
    writeln!(
        out,
        "{}{}",
        field("created"),
        rfc3339(node.metadata.created_at)
    )?;
    let label = node
        .metadata
        .label
        .as_deref()
        .map_or_else(|| none("(none)"), |l| printable(l, false));
    writeln!(out, "{}{}", field("label"), label)?;
    writeln!(out, "{}{}", field("data ref"), node.data_ref)?;
    match size {
        Some(size) => writeln!(out, "{}{size} bytes", field("size"))?,
        None => writeln!(out, "{}{}", field("size"), none("(unreadable)"))?,
    }
    writeln!(out, "{}{}", field("hash"), node.data_hash)?;
    let content_type = node
        .content_type
        .as_deref()
        .map_or_else(|| none("(none)"), |c| printable(c, false));
    writeln!(out, "{}{}", field("type"), content_type)?;
    if snapshots.is_empty() {
        writeln!(out, "{}{}", field("snapshots"), none("(none)"))?;
    }
    for (i, s) in snapshots.iter().enumerate() {
        let name = if i == 0 { "snapshots" } else { "" };
        writeln!(out, "{}{}", field(name), snapshot_line(t, s))?;
    }
    let refs_text = if refs.is_empty() {
        none("(none)")
    } else {
        refs.join(", ")
    };
    writeln!(out, "{}{}", field("refs"), refs_text)?;
    let preview = match &check {
        StateCheck::Damaged(what) => {
            vec![format!("(damaged: {what}; run `stategraph fsck`)")]
        }
        StateCheck::Ok | StateCheck::Unchecked => preview(&head, size.unwrap_or_default()),
    };
    if !preview.is_empty() {
        writeln!(out)?;
        for line in preview {
            writeln!(out, "    {line}")?;
        }
    }
    out.finish()?;
    check.exit(&id)
}

fn snapshot_line(t: Theme, s: &SnapshotInfo) -> String {
    format!(
        "{} {}",
        t.paint(Paint::Id, &s.id.to_short_hex(12)),
        t.paint(
            Paint::Dim,
            &format!("(taken {})", rfc3339_seconds(s.created_at))
        )
    )
}

/// The most lines and bytes of a state that `show` previews.
const PREVIEW_LINES: usize = 12;
const PREVIEW_BYTES: usize = 2048;
/// How much of a state `show` reads: enough to see every line the preview prints whole and
/// to tell that the next one does not fit, with room for a character cut at the end.
const PREVIEW_READ: usize = 2 * PREVIEW_BYTES;

/// What `show` prints of a state of `size` bytes whose first bytes are `head` (all of them
/// when `head.len() == size`): its first lines, or a line saying why there are none. Lines
/// are cut to what fits (a one-line JSON state is previewed too), and control and invisible
/// characters are escaped (tabs are kept). A state whose first bytes are not text gets a
/// note (as git does, the start decides: a text file with binary far into it is
/// previewed). Damaged bytes are not previewed (see `show`).
fn preview(head: &[u8], size: u64) -> Vec<String> {
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // A character cut where the read stopped.
        Err(e) if e.error_len().is_none() && (head.len() as u64) < size => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => {
            return vec![format!("(not text: {size} bytes; see `stategraph cat`)")];
        }
    };
    if text.is_empty() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let mut used = 0;
    // Each line with its line break (`\n` or `\r\n`), so that the bytes shown are counted
    // as stored.
    for raw in text.split_inclusive('\n') {
        if lines.len() == PREVIEW_LINES || used >= PREVIEW_BYTES {
            break;
        }
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let room = PREVIEW_BYTES - used;
        let (shown, cut) = if line.len() > room {
            let mut end = room;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            (&line[..end], true)
        } else {
            (line, false)
        };
        used += if cut { shown.len() } else { raw.len() };
        let mut printed = crate::output::escape_line(shown.trim_end());
        if cut {
            printed.push('…');
        }
        lines.push(printed);
    }
    let shown = used.min(text.len()) as u64;
    if shown < size {
        lines.push(format!(
            "... ({} more bytes; see `stategraph cat`)",
            size - shown
        ));
    }
    lines
}

/// `graph --format dot`.
pub fn graph(ctx: &Ctx, args: &GraphArgs) -> CliResult {
    let store = ctx.open_read()?;
    let flags = WalkFlags {
        all: args.all,
        first_parent: args.first_parent,
        limit: args.limit,
    };
    let walk = walk(&store, &args.revs, flags)?;
    let mut out = ctx.out(false);
    if walk.empty {
        out.write_all(stategraph::dot(&stategraph::HistoryGraph::new()).as_bytes())?;
    } else {
        // Written as the walk goes: a long history is never held whole.
        let lines = store
            .dot_lines(&walk.options)
            .map_err(|e| explain(&store, e))?;
        for line in lines {
            out.write_all(line?.as_bytes())?;
        }
    }
    out.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use stategraph::{InMemoryStateStore, StateData, StateMetadata, StateStoreError};

    use super::*;

    /// A node nothing keeps, read, then removed by a gc: what a command holds when a gc runs
    /// between its read of a node and its read of the node's state.
    fn read_then_collected(store: &InMemoryStateStore) -> (StateNodeId, StateNode) {
        let data = store.put_state(StateData::new(b"y".to_vec())).unwrap();
        let id = store
            .commit_node(vec![], data, StateMetadata::now(Some("gone".into())))
            .unwrap();
        let node = store.get_node(&id).unwrap();
        let gc = stategraph::GcOptions::new().grace(std::time::Duration::ZERO);
        assert_eq!(store.gc(&gc).unwrap().nodes_removed, 1);
        (id, node)
    }

    /// `show` turns a state read that found its node gone into an error about the node,
    /// not a damaged state with a hint to run fsck (it did: `read_state_of` answered
    /// `MissingNode`, which `show` took for a missing state).
    #[test]
    fn show_reports_a_node_a_gc_removed_as_gone_not_damaged() {
        let store = InMemoryStateStore::new();
        let (id, node) = read_then_collected(&store);
        let read = read_state_of(&store, &id, || {
            let info = store.state_info(&node.data_ref)?;
            Ok((info.len, Vec::new()))
        });
        let err = state_check(read, &id, &node.data_hash).unwrap_err();
        assert!(!err.message.contains("damaged"), "{}", err.message);
        assert!(
            err.hints.iter().all(|h| !h.contains("fsck")),
            "{:?}",
            err.hints
        );
        // A missing state of a stored node is still damage.
        let missing = Err(StateStoreError::MissingState {
            data_ref: node.data_ref,
        });
        let (_, _, check) = state_check(missing, &id, &node.data_hash).unwrap();
        assert_eq!(check.as_str(), "damaged");
    }

    /// `show`, `cat` and `diff` read a node, then its state, apart. A gc in between that
    /// removed the node took its state: that is a node gone, not a damaged state (they said
    /// "damaged ... run fsck" and exited 2; found by a soak run). A missing state of a node
    /// still stored is damage, and stays a missing state.
    #[test]
    fn a_state_a_gc_removed_with_its_node_is_a_node_gone() {
        let store = InMemoryStateStore::new();
        let data = store.put_state(StateData::new(b"x".to_vec())).unwrap();
        let kept = store
            .commit_node(vec![], data, StateMetadata::now(Some("kept".into())))
            .unwrap();
        store.set_ref("main", None, &kept).unwrap();
        let (id, node) = read_then_collected(&store);
        let err = read_state_of(&store, &id, || store.get_state(&node.data_ref)).unwrap_err();
        assert!(
            matches!(err, StateStoreError::MissingNode { id: i } if i == id),
            "{err}"
        );
        // The node is stored: whatever the read says stands.
        let missing = StateStoreError::MissingState {
            data_ref: node.data_ref,
        };
        let err = read_state_of(&store, &kept, || Err::<(), _>(missing)).unwrap_err();
        assert!(matches!(err, StateStoreError::MissingState { .. }), "{err}");
        assert_eq!(
            read_state_of(&store, &kept, || store.get_state(&data))
                .unwrap()
                .bytes,
            b"x"
        );
    }

    /// A walk that fails after some nodes still shows every node before the failure, then
    /// the failure, though the page being read ahead had already met it.
    #[test]
    fn a_failing_walk_yields_the_nodes_before_its_error() {
        let store = InMemoryStateStore::new();
        let data = store.put_state(StateData::new(b"x".to_vec())).unwrap();
        let ids: Vec<StateNodeId> = (0..3)
            .map(|i| {
                let meta =
                    StateMetadata::new(time::OffsetDateTime::UNIX_EPOCH, Some(format!("n{i}")));
                store.commit_node(vec![], data, meta).unwrap()
            })
            .collect();
        store.snapshot(&ids[1]).unwrap();
        let mut walk = ids.clone().into_iter();
        let mut pull = || match walk.next() {
            Some(id) => Ok(Some(id)),
            None => Err(StateStoreError::MissingNode { id: ids[0] }),
        };
        let mut paged = WithSnapshots::new(&store);
        let mut seen = Vec::new();
        let err = loop {
            match paged.next(&mut pull, |id| *id) {
                Ok(Some((id, snapshots))) => seen.push((id, snapshots.len())),
                Ok(None) => panic!("the walk's error was dropped"),
                Err(e) => break e,
            }
        };
        assert_eq!(seen, [(ids[0], 0), (ids[1], 1), (ids[2], 0)]);
        assert!(matches!(err, StateStoreError::MissingNode { .. }), "{err}");
    }
}
