//! The in-process transport: inside `llmgw all` the services call each
//! other through in-memory pipes (`tokio::io::duplex`) instead of loopback
//! sockets: no syscalls, no ports, the same HTTP/2 and gRPC on top. A server
//! registers a name in a process-wide registry; a channel to `inproc://name`
//! opens a pipe and hands the server its end.

use std::collections::HashMap;
use std::future::Ready;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll};

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tonic::transport::{Endpoint, Uri};

pub(crate) const SCHEME: &str = "inproc://";

/// Bytes buffered in each direction of a pipe: a few HTTP/2 frames, so a
/// streaming answer is not paced by task switches.
const PIPE_BYTES: usize = 256 * 1024;

type Registry = HashMap<String, mpsc::UnboundedSender<DuplexStream>>;

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);
/// Names are unique per process: tests run several gateways in one.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // The map stays consistent whatever panicked while holding the lock.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The in-process side of a server's [`crate::Listener`]: accepts the
/// connections of channels to [`url`](Self::url) until dropped.
#[derive(Debug)]
pub struct InProcessListener {
    name: String,
    connections: mpsc::UnboundedReceiver<DuplexStream>,
}

impl InProcessListener {
    /// Registers a new in-process address for `service` (a name for logs,
    /// e.g. `router`; the address gets a unique suffix).
    pub fn bind(service: &str) -> InProcessListener {
        let name = format!("{service}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let (sender, connections) = mpsc::unbounded_channel();
        registry().insert(name.clone(), sender);
        InProcessListener { name, connections }
    }

    /// The URL that [`crate::channel`] connects to this listener with.
    pub fn url(&self) -> String {
        format!("{SCHEME}{}", self.name)
    }

    pub(crate) fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Option<DuplexStream>> {
        self.connections.poll_recv(cx)
    }
}

impl Drop for InProcessListener {
    fn drop(&mut self) {
        // From now on, connecting is refused, as with a closed port.
        registry().remove(&self.name);
    }
}

/// A lazily connected channel to the in-process server `name`.
pub(crate) fn connect_lazy(name: &str) -> anyhow::Result<tonic::transport::Channel> {
    // The URI only names the `:authority` of the calls; `Connector` decides
    // where they go.
    let endpoint = Endpoint::from_shared(format!("http://{name}"))
        .with_context(|| format!("invalid in-process address {SCHEME}{name}"))?;
    Ok(endpoint.connect_with_connector_lazy(Connector {
        name: name.to_owned(),
    }))
}

/// Opens a pipe to the registered server on every (re)connection.
struct Connector {
    name: String,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<DuplexStream>;
    type Error = io::Error;
    type Future = Ready<io::Result<TokioIo<DuplexStream>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        std::future::ready(connect(&self.name).map(TokioIo::new))
    }
}

fn connect(name: &str) -> io::Result<DuplexStream> {
    let refused = || {
        io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("no in-process service {SCHEME}{name} is running"),
        )
    };
    let server = registry().get(name).cloned().ok_or_else(refused)?;
    let (client_end, server_end) = tokio::io::duplex(PIPE_BYTES);
    server.send(server_end).map_err(|_| refused())?;
    Ok(client_end)
}
