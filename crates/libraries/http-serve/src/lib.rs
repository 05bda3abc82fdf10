//! Serves an axum [`Router`] on a [`TcpListener`] with hyper-util's server
//! (HTTP/1 and HTTP/2 on one port) and the limits a listener on the network
//! edge needs, which `axum::serve` does not offer:
//!
//! - a header size limit ([`HttpLimits::max_header_bytes`]): larger header
//!   sections get 431 with the OpenAI error body (code `headers_too_large`);
//! - a header read timeout (HTTP/1): a client that starts a request and
//!   stalls (slow-loris) is disconnected;
//! - an idle timeout: a connection with no request in flight is closed;
//! - HTTP/2 limits: concurrent streams per connection, and hyper's
//!   rapid-reset protection stated rather than left to defaults;
//! - a cap on open connections: past it, new connections wait in the
//!   kernel's accept queue (they are not accepted, so they cost nothing but
//!   a backlog slot) until an open one closes;
//! - TCP_NODELAY on every connection (an SSE frame leaves at once);
//! - graceful shutdown: when `stopping` is cancelled the listener closes,
//!   every connection finishes its in-flight requests (HTTP/1 closes after
//!   the current response, HTTP/2 sends GOAWAY) and [`serve`] returns once
//!   all are closed. Dropping the [`serve`] future aborts what is left.
//!
//! Each request carries `axum::extract::ConnectInfo<SocketAddr>` (the TCP
//! peer), as `into_make_service_with_connect_info` would provide.

mod connection;
mod header_limit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use header_limit::header_section_bytes;

/// The limits of one HTTP listener. Every field has a default suited to a
/// public listener; see docs/architecture.md, "Limits at the edge".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// Largest request header section (request line and all headers, as
    /// sent): larger ones get 431 `headers_too_large` with an OpenAI error
    /// body. Header sections over four times this (the read buffer hyper
    /// may fill while parsing them) are refused by hyper itself with a bare
    /// 431 (no body) and the connection is closed. HTTP/2 announces four
    /// times this as SETTINGS_MAX_HEADER_LIST_SIZE.
    pub max_header_bytes: usize,
    /// HTTP/1: how long a client has to send a request's whole header
    /// section, counted from when the connection starts waiting for it.
    /// hyper starts this clock also while an idle keep-alive connection
    /// waits for its next request, so an idle HTTP/1 connection is closed
    /// after the shorter of this and `idle_timeout_secs`.
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/2: GOAWAY, then close). Also closes a connection that never
    /// sends a request. Set it above the idle timeout of any load balancer
    /// in front, so the balancer, not the gateway, closes idle connections.
    pub idle_timeout_secs: u64,
    /// HTTP/2: streams (requests) one connection may have open at once
    /// (SETTINGS_MAX_CONCURRENT_STREAMS). Clients queue the rest; a stream
    /// over it is refused with RST_STREAM(REFUSED_STREAM).
    pub h2_max_concurrent_streams: u32,
    /// Open connections at once. Past it, new connections are not accepted
    /// until one closes: they wait in the kernel's accept queue (the
    /// listen backlog), and once that is full the kernel refuses or drops
    /// them. In-flight requests are bounded separately (the edge's
    /// `max_in_flight`).
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 32 * 1024,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            h2_max_concurrent_streams: 256,
            max_connections: 10_000,
        }
    }
}

/// HTTP/2 rapid reset (CVE-2023-44487): streams a client opened and reset
/// before they were served, kept at most this many at once per connection
/// before the connection is closed with GOAWAY (hyper's default, stated).
const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// HTTP/2: streams the server itself may reset for protocol errors on one
/// connection before closing it (hyper's default, stated).
const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 1024;
/// hyper's smallest allowed HTTP/1 read buffer.
const MIN_H1_BUFFER: usize = 8192;
/// The hard limit hyper enforces is this many times `max_header_bytes`;
/// between the two, the request reaches us and gets the JSON 431.
const HARD_LIMIT_FACTOR: usize = 4;
/// After a failed accept (out of file descriptors, say), wait this long
/// before the next: retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

impl HttpLimits {
    /// What is wrong with these limits, each naming its setting relative to
    /// the section holding them.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("max_header_bytes", self.max_header_bytes as u64),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            (
                "h2_max_concurrent_streams",
                u64::from(self.h2_max_concurrent_streams),
            ),
            ("max_connections", self.max_connections as u64),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be above 0"));
            }
        }
        // HTTP/2 announces the hard limit as a u32.
        if self.max_header_bytes > (u32::MAX as usize) / HARD_LIMIT_FACTOR {
            problems.push("max_header_bytes: must be below 1 GiB".to_owned());
        }
        problems
    }

    fn hard_header_limit(&self) -> usize {
        self.max_header_bytes
            .saturating_mul(HARD_LIMIT_FACTOR)
            .max(MIN_H1_BUFFER)
    }

    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(self.header_read_timeout_secs))
            .max_buf_size(self.hard_header_limit());
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(self.hard_header_limit()).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS);
        builder
    }
}

/// Serves `router` on `listener` with `limits` until `stopping` is
/// cancelled and every connection has finished (see the crate docs).
/// Returns early only if the listener's address cannot be read.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &HttpLimits,
    stopping: CancellationToken,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    let builder = Arc::new(limits.builder());
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let settings = Arc::new(connection::Settings {
        max_header_bytes: limits.max_header_bytes,
        idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
    });
    let mut connections = JoinSet::new();
    let mut at_capacity_logged = false;
    loop {
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
        // A place first, then accept: past the cap, connections stay in the
        // kernel's queue instead of being accepted and dropped.
        let place = match places.clone().try_acquire_owned() {
            Ok(place) => {
                at_capacity_logged = false;
                place
            }
            Err(_) => {
                if !at_capacity_logged {
                    tracing::warn!(
                        %address,
                        max_connections = limits.max_connections,
                        "connection cap reached: new connections wait until one closes"
                    );
                    at_capacity_logged = true;
                }
                tokio::select! {
                    () = stopping.cancelled() => break,
                    place = places.clone().acquire_owned() => match place {
                        Ok(place) => place,
                        Err(_) => break,
                    },
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            () = stopping.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Per-connection failures (a reset before accept) are
                    // the client's; others (no file descriptors) pass.
                    tracing::debug!(%address, %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        // Each SSE frame must leave at once, not wait for Nagle's algorithm.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        connections.spawn(connection::run(
            tcp,
            peer,
            router.clone(),
            builder.clone(),
            settings.clone(),
            stopping.clone(),
            place,
        ));
    }
    // Stop accepting: new connections are refused from here on.
    drop(listener);
    tracing::debug!(%address, open = connections.len(), "listener closed; draining connections");
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The peer address `serve` attaches to each request.
pub fn peer_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0)
}

#[cfg(test)]
mod tests;
