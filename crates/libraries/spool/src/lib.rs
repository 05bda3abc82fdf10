//! A durable spool: events (protobuf messages) handed to [`Sink::emit`] are
//! written to an append-only log on local disk, fsynced in groups, and
//! delivered in batches through a [`Delivery`] until the receiver has
//! acknowledged them, across receiver outages and process restarts.
//!
//! - `segment`: the disk format (length + CRC-32 + protobuf records in
//!   segment files, a cursor file) and reading it back.
//! - `writer`: the thread that appends and fsyncs (group commit).
//! - `sender`: the task that reads what is durable and delivers it, with
//!   capped backoff, batch splitting for invalid events, segment deletion.
//! - `spool`: opening (lock, replay), the bound, the sink, stopping (drain).
//!
//! Delivery is at least once: after a crash, the batch in flight (or, if the
//! cursor file was lost, one segment) is sent again, so the receiver must
//! dedupe on an identity the events carry.

mod delivery;
mod metrics;
mod outage;
mod segment;
mod sender;
mod spool;
#[cfg(test)]
mod tests;
mod writer;

pub use delivery::{DELIVERY_TIMEOUT, Delivery, DeliveryError};
pub use metrics::{OldestAge, SpoolMetrics};
pub use spool::{EmitError, Sink, SpoolConfig, start};
