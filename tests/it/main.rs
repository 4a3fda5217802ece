//! The integration tests of stategraph, in one test binary.
//!
//! Durability and concurrency: `crash` (SIGKILL at random moments), `multiprocess` (several
//! OS processes writing one file), `stress` (threads and tokio tasks on one store, WAL
//! growth). Child processes are this same binary re-invoked on an ignored test; see
//! `durability_util`.

mod crash;
mod durability_util;
mod multiprocess;
mod stress;
