//! `merge-base` and `is-ancestor`.

use std::io::Write;

use stategraph::History as _;

use crate::Ctx;
use crate::args::{IsAncestorArgs, MergeBaseArgs};
use crate::error::{CliError, CliResult, EXIT_FALSE, explain};
use crate::output::{ids, write_json};
use crate::revs::resolve;

/// `merge-base A B [--all]`: full ids, one a line; exit 1 when there is none.
pub fn merge_base(ctx: &Ctx, args: &MergeBaseArgs) -> CliResult {
    let store = ctx.open_read()?;
    let a = resolve(&store, &args.a)?;
    let b = resolve(&store, &args.b)?;
    let bases = if args.all {
        store.merge_bases(&[a, b])
    } else {
        store
            .merge_base(&a, &b)
            .map(|base| base.into_iter().collect())
    }
    .map_err(|e| explain(&store, e))?;
    let mut out = ctx.out(false);
    if args.json {
        write_json(&mut out, &ids(&bases))?;
    } else {
        for base in &bases {
            writeln!(out, "{base}")?;
        }
    }
    out.finish()?;
    if bases.is_empty() {
        return Err(CliError::silent(EXIT_FALSE));
    }
    Ok(())
}

/// `is-ancestor A B`: exit 0 when A is an ancestor of B (or B itself), 1 when not.
pub fn is_ancestor(ctx: &Ctx, args: &IsAncestorArgs) -> CliResult {
    let store = ctx.open_read()?;
    let a = resolve(&store, &args.ancestor)?;
    let b = resolve(&store, &args.descendant)?;
    if store.is_ancestor(&a, &b).map_err(|e| explain(&store, e))? {
        Ok(())
    } else {
        Err(CliError::silent(EXIT_FALSE))
    }
}
