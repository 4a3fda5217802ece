//! Placeholder; the core benchmarks are being written.
fn main() {}
