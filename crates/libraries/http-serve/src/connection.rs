//! One connection: the router behind hyper's connection, the header size
//! check, the idle timer and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

use crate::header_limit;

pub(crate) struct Settings {
    pub max_header_bytes: usize,
    pub idle_timeout: Duration,
}

/// Serves one connection until it closes; `_place` (its slot under the
/// connection cap) is released when it does.
pub(crate) async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    settings: Arc<Settings>,
    stopping: CancellationToken,
    _place: OwnedSemaphorePermit,
) {
    // Requests in flight on this connection: a response holds its count
    // until its body is finished or dropped (a stream counts until it ends).
    let (in_flight, watch_in_flight) = watch::channel(0usize);
    let in_flight = Arc::new(in_flight);
    let max_header_bytes = settings.max_header_bytes;
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let mut router = router.clone();
        let in_flight = in_flight.clone();
        async move {
            if let Some(refusal) = header_limit::refusal(&request, max_header_bytes) {
                return Ok::<_, Infallible>(refusal);
            }
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            in_flight.send_modify(|count| *count += 1);
            let busy = Busy(in_flight);
            let response = router
                .call(request)
                .await
                .unwrap_or_else(|never| match never {});
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _ = &busy;
                    frame
                }))
            }))
        }
    });
    let connection = builder.serve_connection(TokioIo::new(tcp), service);
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    // Resets, header timeouts, oversize headers: the
                    // client's doing, not worth more than a debug line.
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = stopping.cancelled(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle(watch_in_flight.clone(), settings.idle_timeout), if !closing => {
                tracing::debug!(%peer, "idle connection closed");
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Decrements the connection's in-flight count when dropped.
struct Busy(Arc<watch::Sender<usize>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count = count.saturating_sub(1));
    }
}

/// Resolves once the connection has had no request in flight for `timeout`.
async fn idle(mut in_flight: watch::Receiver<usize>, timeout: Duration) {
    loop {
        if in_flight.wait_for(|count| *count == 0).await.is_err() {
            // The service is gone: the connection is ending anyway.
            return std::future::pending().await;
        }
        tokio::select! {
            () = tokio::time::sleep(timeout) => return,
            changed = in_flight.changed() => if changed.is_err() {
                return std::future::pending().await;
            },
        }
    }
}
