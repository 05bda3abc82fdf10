//! The in-process transport: inside `llmgw all` a generated client calls
//! the server's own service stack (the generated servers behind the same
//! trace-context layer [`crate::serve`] puts in front of them) directly, as a
//! function call: no sockets, no HTTP/2 framing, no HPACK, no connection task
//! on either side and no hop through a channel's buffer task. The messages
//! are still protobuf-encoded gRPC bodies, so clients, servers, codecs,
//! message limits, metadata and trace propagation are exactly those of the
//! network transport; only the bytes never leave the process.
//!
//! A server registers a name in a process-wide registry
//! ([`InProcessListener::bind`]); [`crate::serve`] publishes its service
//! under that name while it runs and withdraws it when it stops, then waits
//! for the calls still open (their answers streaming) before it returns, as
//! it does for its TCP connections.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::{Frame, SizeHint};
use llmgw_telemetry::ExtractTraceContext;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tower_service::Service;

pub(crate) const SCHEME: &str = "inproc://";

/// What a server publishes: its routes behind the server-side layers.
pub(crate) type Server = ExtractTraceContext<Routes>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One registered name and what runs there.
#[derive(Default)]
struct Address {
    state: RwLock<State>,
    /// Told when the state leaves `Bound`.
    opened: Notify,
}

#[derive(Default)]
enum State {
    /// Registered, the server not serving yet: calls wait, as a connection
    /// to a bound TCP port waits in the backlog.
    #[default]
    Bound,
    Serving(Published),
    /// The server stopped: calls are refused, as by a closed port.
    Closed,
}

struct Published {
    server: Server,
    /// Every open call holds a token until its answer has ended.
    calls: TaskTracker,
}

impl Address {
    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // The slot is a plain value: consistent whatever panicked.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: State) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = state;
        self.opened.notify_waiters();
    }

    /// Resolves once the server serves or has stopped.
    async fn opened(&self) {
        let opened = self.opened.notified();
        let mut opened = std::pin::pin!(opened);
        // Registered before the check, so a change in between wakes us.
        opened.as_mut().enable();
        if matches!(*self.state(), State::Bound) {
            opened.await;
        }
    }
}

type Registry = HashMap<String, Arc<Address>>;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);
/// Names are unique per process: tests run several gateways in one.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // The map stays consistent whatever panicked while holding the lock.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The in-process side of a server's [`crate::Listener`]: an address that
/// channels to [`url`](Self::url) reach while the server runs.
pub struct InProcessListener {
    name: String,
    address: Arc<Address>,
}

impl std::fmt::Debug for InProcessListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessListener")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl InProcessListener {
    /// Registers a new in-process address for `service` (a name for logs,
    /// e.g. `router`; the address gets a unique suffix).
    pub fn bind(service: &str) -> InProcessListener {
        let name = format!("{service}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let address = Arc::new(Address::default());
        registry().insert(name.clone(), address.clone());
        InProcessListener { name, address }
    }

    /// The URL that [`crate::channel`] connects to this listener with.
    pub fn url(&self) -> String {
        format!("{SCHEME}{}", self.name)
    }

    /// Makes `server` reachable at this address until the publication is
    /// withdrawn.
    pub(crate) fn publish(&self, server: Server) -> Publication {
        let calls = TaskTracker::new();
        self.address.set(State::Serving(Published {
            server,
            calls: calls.clone(),
        }));
        Publication {
            address: self.address.clone(),
            calls,
        }
    }
}

impl Drop for InProcessListener {
    fn drop(&mut self) {
        // From now on, calling is refused, as with a closed port.
        registry().remove(&self.name);
        self.address.set(State::Closed);
    }
}

/// A server's presence at its in-process address.
#[derive(Clone)]
pub(crate) struct Publication {
    address: Arc<Address>,
    calls: TaskTracker,
}

impl Publication {
    /// New calls are refused from now on (calls in progress go on).
    pub(crate) fn withdraw(&self) {
        self.address.set(State::Closed);
        self.calls.close();
    }

    /// Resolves once every call made before [`withdraw`](Self::withdraw)
    /// has ended: its answer read to the end, or dropped by the caller.
    pub(crate) async fn drained(&self) {
        self.calls.wait().await;
    }
}

/// A client transport to the in-process server `name`, resolved on first
/// use (the server may be registered after the channel is made).
#[derive(Clone)]
pub(crate) struct InProcessChannel {
    name: Arc<str>,
    address: Arc<OnceLock<Arc<Address>>>,
}

impl InProcessChannel {
    pub(crate) fn new(name: &str) -> InProcessChannel {
        InProcessChannel {
            name: name.into(),
            address: Arc::default(),
        }
    }

    fn address(&self) -> Option<&Arc<Address>> {
        if let Some(address) = self.address.get() {
            return Some(address);
        }
        let found = registry().get(&*self.name).cloned()?;
        Some(self.address.get_or_init(|| found))
    }

    /// The running server and a token for one call.
    fn open(&self) -> Opened {
        let Some(address) = self.address() else {
            return Opened::Refused;
        };
        match &*address.state() {
            State::Bound => Opened::NotYet(address.clone()),
            // Under the read lock: once withdrawn (write lock), no call can
            // take a token the drain would not wait for.
            State::Serving(published) => {
                Opened::Serving(published.server.clone(), published.calls.token())
            }
            State::Closed => Opened::Refused,
        }
    }

    fn refused(&self) -> BoxError {
        Box::new(Status::unavailable(format!(
            "no in-process service {SCHEME}{} is running",
            self.name
        )))
    }
}

enum Opened {
    Serving(Server, TaskTrackerToken),
    NotYet(Arc<Address>),
    Refused,
}

impl Service<http::Request<Body>> for InProcessChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<http::Response<Body>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The server's routes are always ready (`Routes::poll_ready`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.open() {
            Opened::Serving(server, call) => Box::pin(answer(server, call, request)),
            Opened::NotYet(address) => {
                let channel = self.clone();
                Box::pin(async move {
                    address.opened().await;
                    match channel.open() {
                        Opened::Serving(server, call) => answer(server, call, request).await,
                        Opened::NotYet(_) | Opened::Refused => Err(channel.refused()),
                    }
                })
            }
            Opened::Refused => {
                let refused = self.refused();
                Box::pin(async move { Err(refused) })
            }
        }
    }
}

/// One call of `server`, its answer's body holding `call` until it ends.
async fn answer(
    mut server: Server,
    call: TaskTrackerToken,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, BoxError> {
    // Honoured as tonic's server and channel do over the network: a bound
    // on the wait for the answer's headers.
    let deadline = grpc_timeout(request.headers());
    let answer = server.call(request);
    let answer = match deadline {
        None => answer.await,
        Some(deadline) => tokio::time::timeout(deadline, answer)
            .await
            .map_err(|_| Status::cancelled("Timeout expired"))?,
    };
    let answer = answer.unwrap_or_else(|never| match never {});
    Ok(answer.map(|body| {
        Body::new(Tracked {
            body,
            call: Some(call),
        })
    }))
}

/// An answer's body that holds its call's token until it ends, so that a
/// stopping server waits for answers still streaming.
struct Tracked {
    body: Body,
    call: Option<TaskTrackerToken>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() || self.body.is_end_stream() {
            self.call = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The `grpc-timeout` header (gRPC over HTTP/2: up to 8 digits and a unit).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(amount * 3600),
        b"M" => Duration::from_secs(amount * 60),
        b"S" => Duration::from_secs(amount),
        b"m" => Duration::from_millis(amount),
        b"u" => Duration::from_micros(amount),
        b"n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout_of(value: &'static str) -> Option<Duration> {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", http::HeaderValue::from_static(value));
        grpc_timeout(&headers)
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit() {
        assert_eq!(timeout_of("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout_of("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout_of("30S"), Some(Duration::from_secs(30)));
        assert_eq!(timeout_of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout_of("7u"), Some(Duration::from_micros(7)));
        assert_eq!(
            timeout_of("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
    }

    #[test]
    fn malformed_grpc_timeouts_are_ignored() {
        for value in ["", "S", "123456789S", "12x", "-1S", "1.5S", "10"] {
            assert_eq!(timeout_of(value), None, "{value:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }
}
