//! `branch`, `tag` and `reflog`: refs, every change a compare-and-swap.

use std::io::Write;

use serde::Serialize;
use stategraph::{StateNodeId, StateStore, StateStoreError, validate_ref_name};

use crate::Ctx;
use crate::args::{RefArgs, ReflogArgs};
use crate::error::{CliError, CliResult, explain};
use crate::output::{Paint, Theme, printable, rfc3339, rfc3339_seconds, write_json};
use crate::revs::resolve;

/// Which kind of ref a `branch`/`tag` invocation handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every ref outside `tags/`.
    Branch,
    /// Refs under `tags/`.
    Tag,
}

pub const TAGS: &str = "tags/";

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Branch => "branch",
            Kind::Tag => "tag",
        }
    }

    /// The name as people say it: `v1` for the tag `tags/v1`.
    fn short(self, full: &str) -> &str {
        match self {
            Kind::Tag => full.strip_prefix(TAGS).unwrap_or(full),
            Kind::Branch => full,
        }
    }

    /// The full ref name for what the user typed.
    fn full_name(self, name: &str) -> String {
        match self {
            Kind::Tag if !name.starts_with(TAGS) => format!("{TAGS}{name}"),
            _ => name.to_owned(),
        }
    }
}

#[derive(Serialize)]
struct BranchJson {
    name: String,
    target: String,
    label: Option<String>,
}

#[derive(Serialize)]
struct TagJson {
    name: String,
    r#ref: String,
    target: String,
    label: Option<String>,
}

fn label_of(store: &dyn StateStore, id: &StateNodeId) -> Option<String> {
    store.get_node(id).ok().and_then(|n| n.metadata.label)
}

fn short_label(store: &dyn StateStore, t: Theme, id: &StateNodeId) -> String {
    let mut text = t.paint(Paint::Id, &id.to_short_hex(12));
    if let Some(label) = label_of(store, id) {
        text.push_str(&format!(" ({})", printable(&label, false)));
    }
    text
}

/// Refuses a ref name the library accepts but the command line could not use well: for a
/// branch, one under `tags/` (tags move only with `tag -f`); and, when the ref is `new`, one
/// that `resolve` would read as a node id or id prefix (4 or more hex digits and nothing
/// else), or that would read as an option (a leading `-`). (`validate_ref_name` already
/// refuses `:`, so no name looks like a `blake3:` id.)
///
/// A new branch may not take a tag's short name either: see [`check_new_branch`].
pub fn check_ref_name(full: &str, kind: Kind, new: bool) -> CliResult {
    validate_ref_name(full)?;
    let refuse = |why: &str| CliError::new(format!("will not create a ref named {full:?}: {why}"));
    if kind == Kind::Branch && full.starts_with(TAGS) {
        // Said whether the branch was to be made, moved or deleted.
        return Err(
            CliError::new(format!("{full:?} is a tag name, not a branch name")).hint(format!(
                "tags are made and moved with `stategraph tag [-f] {tag} REV`, and deleted \
                 with `stategraph tag -d {tag}`",
                tag = &full[TAGS.len()..]
            )),
        );
    }
    if !new {
        return Ok(());
    }
    // What people type for this ref: a tag by its short name.
    let typed = kind.short(full);
    if kind == Kind::Tag && typed.starts_with(TAGS) {
        // Listed as `tags/x`, it would be the tag `x` to `tag -d tags/x`.
        return Err(
            refuse("a tag listed as tags/… would be read as another tag's full name")
                .hint(format!("name it {:?}", &typed[TAGS.len()..])),
        );
    }
    if typed.len() >= 4 && typed.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(refuse("it reads as a node id or id prefix"));
    }
    if typed.starts_with('-') {
        return Err(refuse("it would read as an option"));
    }
    if full.chars().any(crate::output::is_invisible) {
        return Err(refuse(
            "it holds invisible or direction-changing characters, which make one name look \
             like another",
        ));
    }
    Ok(())
}

/// [`check_ref_name`] for a branch about to be created, and more: a tag of the same short
/// name would from then on be shadowed by the branch (a name is read as a tag's short name
/// only while no ref of that name exists), silently.
pub fn check_new_branch(store: &dyn StateStore, name: &str) -> CliResult {
    check_ref_name(name, Kind::Branch, true)?;
    if store.get_ref(&format!("{TAGS}{name}"))?.is_some() {
        return Err(CliError::new(format!(
            "will not create a branch named {name:?}: the tag {name:?} exists, and \
             {name:?} would then name the branch instead"
        ))
        .hint("choose another name for the branch"));
    }
    Ok(())
}

/// `branch` / `tag`: list, create, move or delete.
pub fn branch(ctx: &Ctx, args: &RefArgs, kind: Kind) -> CliResult {
    let Some(name) = &args.name else {
        return list(ctx, args.json, kind);
    };
    let full = kind.full_name(name);
    check_ref_name(&full, kind, false)?;
    let store = ctx.open_write()?;
    let t = ctx.theme;
    let word = kind.word();
    let current = store.get_ref(&full)?;
    let shown = kind.short(&full);
    let mut out = std::io::stdout().lock();
    if args.delete {
        let Some(current) = current else {
            return Err(explain(&store, StateStoreError::MissingRef { name: full }));
        };
        store
            .delete_ref(&full, &current)
            .map_err(|e| conflict(e, word, shown))?;
        writeln!(
            out,
            "deleted {word} {shown} (was {})",
            short_label(&store, t, &current)
        )?;
        return Ok(());
    }
    let rev = match &args.rev {
        Some(rev) => rev.clone(),
        None if store.get_ref("main")?.is_some() => "main".to_owned(),
        None => {
            return Err(CliError::new(format!(
                "no REV given, and there is no main branch to start {full} from"
            ))
            .hint(format!("name the node: stategraph {word} {name} REV")));
        }
    };
    let target = resolve(&store, &rev)?;
    match (kind, &current) {
        (Kind::Branch, None) => check_new_branch(&store, &full)?,
        _ => check_ref_name(&full, kind, current.is_none())?,
    }
    match current {
        Some(existing) if !args.force => Err(CliError::new(format!(
            "{word} {shown} already exists (at {})",
            short_label(&store, t, &existing)
        ))
        .hint(format!(
            "move it with `stategraph {word} -f {name} {}`, or delete it with `stategraph {word} -d {name}`",
            args.rev.as_deref().unwrap_or("REV")
        ))),
        Some(existing) if existing == target => {
            writeln!(out, "{word} {shown} already at {}", short_label(&store, t, &target))?;
            Ok(())
        }
        Some(existing) => {
            let message = format!("{word}: moved to {rev}");
            store
                .set_ref_with_message(&full, Some(&existing), &target, Some(&message))
                .map_err(|e| conflict(e, word, shown))?;
            writeln!(
                out,
                "moved {word} {shown}: {} -> {}",
                t.paint(Paint::Id, &existing.to_short_hex(12)),
                short_label(&store, t, &target)
            )?;
            Ok(())
        }
        None => {
            let message = format!("{word}: created from {rev}");
            store
                .set_ref_with_message(&full, None, &target, Some(&message))
                .map_err(|e| conflict(e, word, shown))?;
            writeln!(out, "created {word} {shown} at {}", short_label(&store, t, &target))?;
            // A branch of the same name comes first where a revision is read.
            if kind == Kind::Tag && store.get_ref(shown)?.is_some() {
                crate::output::note(
                    ctx.err_theme,
                    &format!(
                        "the branch {shown} exists, and {shown:?} names it; name this tag \
                         {full:?}"
                    ),
                );
            }
            Ok(())
        }
    }
}

/// A compare-and-swap that lost a race, in words.
fn conflict(e: StateStoreError, word: &str, full: &str) -> CliError {
    match e {
        StateStoreError::RefConflict { actual, .. } => {
            let now = actual.map_or_else(
                || "it no longer exists".to_owned(),
                |a| format!("it is now at {}", a.to_short_hex(12)),
            );
            CliError::new(format!(
                "{word} {full} was changed by another writer meanwhile: {now}"
            ))
            .hint("nothing was changed; look again and retry")
        }
        e => e.into(),
    }
}

fn list(ctx: &Ctx, json: bool, kind: Kind) -> CliResult {
    let store = ctx.open_read()?;
    let refs: Vec<_> = match kind {
        Kind::Branch => store
            .list_refs("")?
            .into_iter()
            .filter(|r| !r.name.starts_with(TAGS))
            .collect(),
        Kind::Tag => store.list_refs(TAGS)?,
    };
    let mut out = ctx.out(!json);
    if json {
        match kind {
            Kind::Branch => {
                let list: Vec<BranchJson> = refs
                    .iter()
                    .map(|r| BranchJson {
                        name: r.name.clone(),
                        target: r.target.to_string(),
                        label: label_of(&store, &r.target),
                    })
                    .collect();
                write_json(&mut out, &list)?;
            }
            Kind::Tag => {
                let list: Vec<TagJson> = refs
                    .iter()
                    .map(|r| TagJson {
                        name: r.name[TAGS.len()..].to_owned(),
                        r#ref: r.name.clone(),
                        target: r.target.to_string(),
                        label: label_of(&store, &r.target),
                    })
                    .collect();
                write_json(&mut out, &list)?;
            }
        }
        out.finish()?;
        return Ok(());
    }
    // Escaped: a name the library took with invisible characters must not pass for another.
    let shown = |name: &str| match kind {
        Kind::Branch => printable(name, false),
        Kind::Tag => printable(&name[TAGS.len()..], false),
    };
    // Padded by characters, not bytes, so non-ASCII names line up too.
    let width = refs
        .iter()
        .map(|r| shown(&r.name).chars().count())
        .max()
        .unwrap_or(0);
    let t = ctx.theme;
    let paint = match kind {
        Kind::Branch => Paint::Branch,
        Kind::Tag => Paint::Tag,
    };
    for r in &refs {
        let name = shown(&r.name);
        let pad = " ".repeat(width - name.chars().count());
        let label = printable(&label_of(&store, &r.target).unwrap_or_default(), false);
        let line = format!(
            "{}{pad}  {} {label}",
            t.paint(paint, &name),
            t.paint(Paint::Id, &r.target.to_short_hex(12))
        );
        writeln!(out, "{}", line.trim_end())?;
    }
    out.finish()?;
    Ok(())
}

#[derive(Serialize)]
struct RefLogJson {
    /// The ref, and the entry as a revision (`NAME@{N}`, newest first from 0).
    name: String,
    selector: String,
    old: Option<String>,
    new: Option<String>,
    at: String,
    message: Option<String>,
}

/// `reflog NAME`: the ref's moves, newest first.
pub fn reflog(ctx: &Ctx, args: &ReflogArgs) -> CliResult {
    let store = ctx.open_read()?;
    // A tag by its own name, as `revs::resolve` reads revisions, when no ref of that name
    // exists or ever did.
    let known = |name: &str| -> CliResult<bool> {
        Ok(store.get_ref(name)?.is_some() || !store.ref_log_tail(name, 1)?.is_empty())
    };
    let tagged = format!("{TAGS}{}", args.name);
    let name = if !known(&args.name)? && known(&tagged)? {
        &tagged
    } else {
        &args.name
    };
    let entries = match args.limit {
        Some(n) => store.ref_log_tail(name, n)?,
        None => store.ref_log(name)?,
    };
    // No entries to show is an error only for a ref that never existed (not for `-n 0`).
    if entries.is_empty()
        && store.get_ref(name)?.is_none()
        && store.ref_log_tail(name, 1)?.is_empty()
    {
        return Err(explain(
            &store,
            StateStoreError::MissingRef { name: name.clone() },
        ));
    }
    let mut out = ctx.out(!args.json);
    if args.json {
        let list: Vec<RefLogJson> = entries
            .iter()
            .rev()
            .enumerate()
            .map(|(n, e)| RefLogJson {
                name: name.clone(),
                selector: format!("{name}@{{{n}}}"),
                old: e.old.map(|i| i.to_string()),
                new: e.new.map(|i| i.to_string()),
                at: rfc3339(e.at),
                message: e.message.clone(),
            })
            .collect();
        write_json(&mut out, &list)?;
        out.finish()?;
        return Ok(());
    }
    let t = ctx.theme;
    for (n, e) in entries.iter().rev().enumerate() {
        let id = match e.new {
            Some(id) => t.paint(Paint::Id, &id.to_short_hex(12)),
            None => t.paint(Paint::Dim, &format!("{:<12}", "(deleted)")),
        };
        let what = match (&e.message, e.old, e.new) {
            (Some(message), _, _) => printable(message, false),
            (None, None, _) => "created".to_owned(),
            (None, Some(old), Some(_)) => format!("moved from {}", old.to_short_hex(12)),
            (None, Some(old), None) => format!("deleted (was {})", old.to_short_hex(12)),
        };
        writeln!(
            out,
            "{id} {}: {what}  {}",
            t.paint(Paint::Branch, &format!("{name}@{{{n}}}")),
            t.paint(Paint::Dim, &rfc3339_seconds(e.at)),
        )?;
    }
    out.finish()?;
    Ok(())
}
