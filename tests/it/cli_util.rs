//! Helpers for the CLI tests.
