//! The server side: one set-up for every gRPC service, over TCP and, inside
//! `llmgw all`, in process as well.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::StreamExt as _;
use llmgw_telemetry::{ExtractTraceContextLayer, ServerKind};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::service::Routes;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::InProcessListener;
use crate::health::ServerHealth;

/// Where a server accepts connections: its TCP port (for other processes,
/// and for `/metrics`) and, optionally, an in-process address.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    in_process: Option<InProcessListener>,
}

impl From<TcpListener> for Listener {
    fn from(tcp: TcpListener) -> Listener {
        Listener {
            tcp,
            in_process: None,
        }
    }
}

impl Listener {
    /// `tcp`, and `in_process` for callers in this process.
    pub fn new(tcp: TcpListener, in_process: Option<InProcessListener>) -> Listener {
        Listener { tcp, in_process }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serves `routes`, the gRPC health service and `GET /metrics` (the
/// OpenMetrics text `metrics` renders; HTTP/1 on the same port) on
/// `listener` until `shutdown` resolves, then stops accepting and waits for
/// open calls to finish (the caller bounds that wait). Call it once the
/// service's start-up work is done: health is SERVING from here on, and
/// NOT_SERVING from the moment `shutdown` resolves (see [`crate::health`]).
/// A call carrying a trace context is handled in a `grpc.server` span that
/// carries the caller's trace on.
pub async fn serve(
    routes: Routes,
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let Listener { tcp, in_process } = listener.into();
    // Small frames (one chunk, one Acquire) must leave at once, not wait
    // for Nagle's algorithm.
    let tcp = TcpIncoming::from(tcp)
        .with_nodelay(Some(true))
        .map(|accepted| accepted.map(Connection::Tcp));
    let mut in_process = in_process;
    let in_process = futures_util::stream::poll_fn(move |cx| match &mut in_process {
        Some(listener) => listener
            .poll_accept(cx)
            .map(|accepted| accepted.map(|pipe| Ok(Connection::InProcess(pipe)))),
        // Never ends: the TCP side decides when accepting is over.
        None => Poll::Pending,
    });
    let incoming = futures_util::stream::select(tcp, in_process);
    let (health, health_service) = ServerHealth::new().await;
    let routes = routes.add_service(health_service);
    health.serving().await;
    let shutdown = async move {
        shutdown.await;
        health.stopping().await;
    };
    tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(ExtractTraceContextLayer::new(ServerKind::Grpc))
        .add_routes(llmgw_telemetry::with_metrics_route(routes, metrics))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// One accepted connection, whichever transport it came over.
enum Connection {
    Tcp(TcpStream),
    InProcess(DuplexStream),
}

impl Connected for Connection {
    // The TCP one, so `Request::remote_addr` works as before; an in-process
    // connection has no addresses.
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Connection::Tcp(stream) => stream.connect_info(),
            Connection::InProcess(_) => TcpConnectInfo {
                local_addr: None,
                remote_addr: None,
            },
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::InProcess(pipe) => Pin::new(pipe).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::InProcess(pipe) => Pin::new(pipe).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Connection::InProcess(pipe) => Pin::new(pipe).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Connection::Tcp(stream) => stream.is_write_vectored(),
            Connection::InProcess(pipe) => pipe.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Connection::InProcess(pipe) => Pin::new(pipe).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Connection::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::InProcess(pipe) => Pin::new(pipe).poll_shutdown(cx),
        }
    }
}
