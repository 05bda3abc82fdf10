//! The server side: one set-up for every gRPC service, over TCP and, inside
//! `llmgw all`, in process as well.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use llmgw_telemetry::{ExtractTraceContextLayer, ServerKind};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tower_layer::Layer as _;

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
    let tcp = TcpIncoming::from(tcp).with_nodelay(Some(true));
    let (health, health_service) = ServerHealth::new().await;
    let routes = llmgw_telemetry::with_metrics_route(routes.add_service(health_service), metrics);
    let trace_context = ExtractTraceContextLayer::new(ServerKind::Grpc);
    // Callers in this process call the same stack directly (see
    // `in_process`).
    let published = in_process
        .as_ref()
        .map(|listener| listener.publish(trace_context.layer(routes.clone())));
    health.serving().await;
    let withdrawn = published.clone();
    let shutdown = async move {
        shutdown.await;
        health.stopping().await;
        if let Some(published) = &withdrawn {
            published.withdraw();
        }
    };
    let served = tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(trace_context)
        .add_routes(routes)
        .serve_with_incoming_shutdown(tcp, shutdown)
        .await;
    // In-process calls still open drain like the TCP ones (withdrawn here
    // as well, in case the server ended before its shutdown).
    if let Some(published) = published {
        published.withdraw();
        published.drained().await;
    }
    drop(in_process);
    served
}
