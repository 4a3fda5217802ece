//! Ref names: what a valid name looks like.
//!
//! Names are `/`-separated paths such as `main`, `agents/7/main` or `tags/v1`. The rules
//! keep names unambiguous on a command line and in revision syntax (`main~2`, `a..b`):
//!
//! - 1 to 255 bytes of UTF-8, no control characters and no whitespace;
//! - none of `~ ^ : ? * [ \` and no `..` or `@{`; the name is not `@`;
//! - no empty segment (no leading, trailing or doubled `/`);
//! - no segment starts with `.` or ends with `.lock` or `.`.

use crate::error::{Result, StateStoreError};

/// Longest accepted ref name, in bytes.
pub const MAX_REF_NAME_LEN: usize = 255;

/// Checks a ref name against the rules in this module's documentation.
///
/// # Errors
/// [`StateStoreError::InvalidRefName`] naming the rule that was broken.
///
/// # Example
/// ```
/// use stategraph::validate_ref_name;
/// assert!(validate_ref_name("agents/7/main").is_ok());
/// assert!(validate_ref_name("agents//main").is_err());
/// ```
pub fn validate_ref_name(name: &str) -> Result<()> {
    let reason = check(name);
    match reason {
        None => Ok(()),
        Some(reason) => Err(StateStoreError::InvalidRefName {
            name: name.to_owned(),
            reason,
        }),
    }
}

fn check(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > MAX_REF_NAME_LEN {
        return Some("it is longer than 255 bytes");
    }
    if name == "@" {
        return Some("`@` alone is reserved");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("it contains whitespace or a control character");
    }
    if let Some(c) = name.chars().find(|c| "~^:?*[\\".contains(*c)) {
        return Some(match c {
            '~' | '^' => "`~` and `^` are revision syntax",
            ':' => "`:` is not allowed",
            _ => "glob characters (`? * [ \\`) are not allowed",
        });
    }
    if name.contains("..") {
        return Some("`..` is range syntax");
    }
    if name.contains("@{") {
        return Some("`@{` is not allowed");
    }
    for segment in name.split('/') {
        if segment.is_empty() {
            return Some("it has an empty path segment (leading, trailing or doubled `/`)");
        }
        if segment.starts_with('.') {
            return Some("a path segment starts with `.`");
        }
        if segment.ends_with(".lock") {
            return Some("a path segment ends with `.lock`");
        }
        if segment.ends_with('.') {
            return Some("a path segment ends with `.`");
        }
    }
    None
}

/// Characters a terminal or a drawing shows as nothing, or that reorder the text around
/// them: zero-width spaces and joiners, direction marks, embeddings, overrides and isolates,
/// and the byte-order mark. Printed raw they make one name look like another; DOT output and
/// the `stategraph` command show them as escapes (and the command refuses them in new ref
/// names).
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "main",
            "agents/7/main",
            "tags/v1.0",
            "feature-x_y",
            "ünïcode/ok",
            "a",
        ] {
            assert!(validate_ref_name(name).is_ok(), "{name}");
        }
        assert!(validate_ref_name(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn rejects_each_rule() {
        for name in [
            "",
            "@",
            "a b",
            "a\tb",
            "a\u{7}b",
            "a~1",
            "a^2",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "a..b",
            "a@{1}",
            "/a",
            "a/",
            "a//b",
            ".hidden",
            "a/.b",
            "x.lock",
            "a/x.lock/b",
            "a.",
        ] {
            let err = validate_ref_name(name).unwrap_err();
            assert!(
                matches!(&err, StateStoreError::InvalidRefName { name: n, .. } if n == name),
                "{name:?}: {err}"
            );
        }
        assert!(validate_ref_name(&"a".repeat(256)).is_err());
    }
}
