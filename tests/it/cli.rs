//! End-to-end tests of the `stategraph` binary.
