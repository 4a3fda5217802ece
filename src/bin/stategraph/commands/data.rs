//! `init`, `put`, `cat` and `commit`: getting state bytes in and out.

use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;

use stategraph::{
    History as _, SqliteStateStore, StateData, StateDataRef, StateMetadata, StateNodeId,
    StateStore, StateStoreError,
};

use crate::Ctx;
use crate::args::{CatArgs, CommitArgs, PutArgs};
use crate::commands::history::read_state_of;
use crate::commands::refs::{Kind, check_new_branch, check_ref_name};
use crate::error::{CliError, CliResult, explain};
use crate::output::note;
use crate::revs::resolve;

/// `init`: creates the store file (or confirms that one is there).
pub fn init(ctx: &Ctx) -> CliResult {
    let existed = std::fs::metadata(&ctx.db).is_ok_and(|m| m.len() > 0);
    let store = SqliteStateStore::open(&ctx.db)?;
    drop(store);
    let mut out = io::stdout().lock();
    if existed {
        writeln!(out, "store already exists at {}", ctx.db.display())?;
    } else {
        writeln!(out, "created empty store at {}", ctx.db.display())?;
    }
    Ok(())
}

/// Reads the input of `put`/`commit`: a file, `-` for stdin, or stdin when piped.
fn read_input(file: Option<&Path>) -> CliResult<Vec<u8>> {
    let mut bytes = Vec::new();
    match file {
        Some(path) if path != Path::new("-") => {
            bytes = std::fs::read(path)
                .map_err(|e| CliError::new(format!("cannot read {}: {e}", path.display())))?;
        }
        None if io::stdin().is_terminal() => {
            return Err(
                CliError::new("no input: pass a FILE, or pipe the state on stdin")
                    .hint("use - as FILE to type the state on the terminal (end with Ctrl-D)"),
            );
        }
        _ => {
            io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::new(format!("cannot read stdin: {e}")))?;
        }
    }
    Ok(bytes)
}

fn state(bytes: Vec<u8>, content_type: Option<&String>) -> StateData {
    StateData {
        bytes,
        content_type: content_type.cloned(),
    }
}

/// `put`: stores bytes, prints the data ref.
pub fn put(ctx: &Ctx, args: &PutArgs) -> CliResult {
    let store = ctx.open_write()?;
    let bytes = read_input(args.file.as_deref())?;
    let data_ref = store.put_state(state(bytes, args.content_type.as_ref()))?;
    writeln!(io::stdout().lock(), "{data_ref}")?;
    Ok(())
}

/// `cat`: the bytes of a data ref or of a node's state, unchanged.
pub fn cat(ctx: &Ctx, args: &CatArgs) -> CliResult {
    let store = ctx.open_read()?;
    let data = match args.target.parse::<StateDataRef>() {
        Ok(data_ref) => match store.get_state(&data_ref) {
            Ok(data) => data,
            // 32 hex digits are both a UUID and an id prefix: try the prefix too.
            Err(StateStoreError::MissingState { .. }) if !args.target.contains('-') => {
                let Ok(id) = store.resolve(&args.target) else {
                    return Err(CliError::new(format!(
                        "no state data with ref {data_ref} and no node {:?}",
                        args.target
                    )));
                };
                node_state(&store, &id)?
            }
            Err(e) => return Err(e.into()),
        },
        Err(_) => node_state(&store, &resolve(&store, &args.target)?)?,
    };
    let mut out = io::stdout().lock();
    if !args.raw && io::IsTerminal::is_terminal(&out) && !plain_text(&data.bytes) {
        // Escape sequences in a state (captured tool output, say) would recolour the
        // terminal, retitle it or move the cursor; binary makes a mess of it.
        return Err(CliError::new(format!(
            "this state ({} bytes) is not plain text: printed raw, its control characters \
             would act on the terminal",
            data.bytes.len()
        ))
        .hint("redirect it to a file or a pager (`| less`), or pass --raw to print it anyway"));
    }
    out.write_all(&data.bytes)?;
    out.flush()?;
    Ok(())
}

/// UTF-8 without control characters other than tabs and line ends (`\n`, `\r\n`), and
/// without invisible or direction-changing characters: safe to print on a terminal as it is.
fn plain_text(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let ok = match c {
            '\n' | '\t' => true,
            '\r' => chars.peek() == Some(&'\n'),
            c => !c.is_control() && !crate::output::is_invisible(c),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A node's state, checked against the hash the node holds. `get_state` checks the bytes
/// against their own hash, which cannot tell a damaged link from the node's state ref to
/// its bytes: that reads another state, whole and valid.
fn node_state(store: &dyn StateStore, id: &StateNodeId) -> CliResult<StateData> {
    let node = store.get_node(id)?;
    let data = read_state_of(store, id, || store.get_state(&node.data_ref))?;
    if data.hash() != node.data_hash {
        return Err(CliError::new(format!(
            "the state of node {} is damaged: the bytes stored under its state ref do not \
             match the node's data hash",
            id.to_short_hex(12)
        ))
        .hint("run `stategraph fsck` to check the whole store"));
    }
    Ok(data)
}

/// `commit`: put + commit + compare-and-swap the branch.
pub fn commit(ctx: &Ctx, args: &CommitArgs) -> CliResult {
    let store = ctx.open_write()?;
    let bytes = read_input(args.file.as_deref())?;
    let head = match &args.branch {
        Some(branch) => {
            let head = store.get_ref(branch)?;
            match head {
                None => check_new_branch(&store, branch)?,
                Some(_) => check_ref_name(branch, Kind::Branch, false)?,
            }
            head
        }
        None => None,
    };
    let parents: Vec<StateNodeId> = if args.parents.is_empty() {
        head.into_iter().collect()
    } else {
        args.parents
            .iter()
            .map(|p| resolve(&store, p))
            .collect::<CliResult<_>>()?
    };
    // State, node and branch move are one transaction: a conflict or a crash leaves nothing.
    let mut batch = store.batch();
    let data_ref = batch.put_state(state(bytes, args.content_type.as_ref()));
    let id = batch
        .commit_node(parents, data_ref, StateMetadata::now(args.label.clone()))
        .map_err(|e| explain(&store, e))?;
    if let Some(branch) = &args.branch {
        let message = match &args.label {
            Some(label) => format!("commit: {label}"),
            None => "commit".to_owned(),
        };
        batch.set_ref_with_message(branch, head.as_ref(), &id, Some(&message))?;
    }
    batch.commit().map_err(|e| match (e, &args.branch) {
        (StateStoreError::RefConflict { actual, .. }, Some(branch)) => CliError::new(format!(
            "branch {branch} moved while committing (now at {}); nothing was written",
            actual.map_or_else(|| "nothing: deleted".to_owned(), |a| a.to_short_hex(12)),
        ))
        .hint("run the commit again to build on the branch's new head"),
        (e, _) => e.into(),
    })?;
    writeln!(io::stdout().lock(), "{id}")?;
    // What the commit did besides, when it may not be what was meant: a typo in --branch
    // makes a new branch, and -p can move a branch off its own history.
    let theme = ctx.err_theme;
    match (&args.branch, head) {
        (None, _) => note(
            theme,
            "the new node is on no branch: give it one (`stategraph branch NAME ID`) or a \
             snapshot, or gc removes it once the grace period is over",
        ),
        (Some(branch), None) => note(theme, &format!("created branch {branch}")),
        (Some(branch), Some(old)) if !args.parents.is_empty() => {
            if let Ok(false) = store.is_ancestor(&old, &id) {
                note(
                    theme,
                    &format!(
                        "branch {branch} moved from {} to a node whose history does not \
                         contain it; the old head is {branch}@{{1}}",
                        old.to_short_hex(12)
                    ),
                );
            }
        }
        (Some(_), Some(_)) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::plain_text;

    #[test]
    fn plain_text_is_what_a_terminal_prints_as_it_is() {
        for ok in [
            "",
            "{\"a\": 1}\n",
            "tab\there",
            "windows\r\nlines\r\n",
            "héllo ✓",
        ] {
            assert!(plain_text(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            &b"\x1b[31mred"[..],
            b"bell\x07",
            b"over\rwrite",
            b"\xff\xfe binary",
            b"nul\0",
            "c1 \u{9b}31m".as_bytes(),
            "rtl \u{202e}evil".as_bytes(),
        ] {
            assert!(!plain_text(bad), "{bad:?}");
        }
    }
}
