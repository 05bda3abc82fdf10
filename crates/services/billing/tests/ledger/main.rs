//! The usage ledger through the real service (gRPC `Ledger` and the admin
//! usage routes), each test on a fresh Postgres database and on a fresh
//! SQLite file: redelivery, concurrency, partitions, reports and their
//! edges, CSV, bad input.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

#[path = "../support/mod.rs"]
mod support;

mod fixtures;
mod ingest;
mod input;
mod reports;
