//! The one thing a spool's owner provides: how a batch reaches the receiver,
//! and what the spool may say about an event in its logs.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// One `deliver` call may take this long; past it the batch is retried (a
/// hung receiver must not hold a batch forever). A delivery that can tell
/// its receiver a deadline (a gRPC timeout header) should pass this one.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a batch was not delivered, which decides what the sender does next.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver could not take it now (unreachable, overloaded, its
    /// database down): the same batch is retried with capped backoff.
    #[error("{0}")]
    RetryLater(String),
    /// The receiver refused the batch as invalid and would refuse it again:
    /// the sender splits the batch until the invalid events are isolated,
    /// delivers the rest and moves those to `rejected/`.
    #[error("{0}")]
    Invalid(String),
}

/// Delivers batches of one event type to their receiver.
///
/// The receiver must treat a batch as all or nothing and dedupe redelivered
/// events: the spool sends a batch again whenever it cannot be sure it
/// arrived.
pub trait Delivery: Send + Sync + 'static {
    /// The spooled event: any protobuf message. `Debug` is for one last
    /// resort: an event the receiver rejected that cannot be saved to
    /// `rejected/` is logged whole, as the only copy left.
    type Event: prost::Message + Default + Clone + fmt::Debug + Send + Sync + 'static;

    /// Sends one batch (at most `batch_size` events, under 1 MiB encoded).
    fn deliver(
        &self,
        batch: &[Self::Event],
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;

    /// A span naming `event` in the spool's log lines (an event refused,
    /// lost or rejected): its identity (ids, owner, cost), never its content.
    /// Created at ERROR level, as every line that needs it is an error.
    fn span(event: &Self::Event) -> tracing::Span;

    /// When `event` happened (Unix milliseconds), for the backlog-age gauge;
    /// `None` when it does not say (the time it is read back is used).
    fn occurred_at_ms(event: &Self::Event) -> Option<i64>;
}
