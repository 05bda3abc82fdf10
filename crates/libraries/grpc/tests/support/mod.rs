//! What the grpc crate's test files share.

use std::time::Duration;

/// Generous: bounds waits, never decides a pass.
const DEADLINE: Duration = Duration::from_secs(10);

/// `future`'s output; a panic naming `what` if it takes past the deadline.
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}
