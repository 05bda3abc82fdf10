//! The client side: one channel builder for every service-to-service call.

use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::TryFutureExt as _;
use futures_util::future::{BoxFuture, Either, ErrInto};
use llmgw_telemetry::InjectTraceContext;
use tonic::body::Body;
use tonic::transport::Endpoint;
use tower_service::Service;

use crate::in_process::{self, InProcessChannel};

/// The transport of every generated client: a tonic channel whose calls
/// carry the trace context of the span they are made from.
pub type Channel = InjectTraceContext<Transport>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service that does not accept a connection within this is down; the
/// call fails at once instead of waiting for the OS's minutes-long timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A channel to the service at `url`: `http://host:port` over TCP, or
/// `inproc://name` to a server of this process ([`crate::InProcessListener`]).
/// Connected on first use and reconnected after a failure, so a service
/// starts, and stays alive, whether or not the other one is up yet. Fails
/// only on a malformed URL.
pub fn channel(url: &str) -> anyhow::Result<Channel> {
    let transport = match url.strip_prefix(in_process::SCHEME) {
        Some(name) => Route::InProcess(InProcessChannel::new(name)),
        None => Route::Network(
            Endpoint::from_shared(url.to_owned())
                .with_context(|| format!("invalid service URL {url:?}"))?
                // Small messages (one chunk, one Acquire) must leave at once,
                // not wait for Nagle's algorithm.
                .tcp_nodelay(true)
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_lazy(),
        ),
    };
    Ok(InjectTraceContext::new(Transport(transport)))
}

/// Whether `channel`'s calls stay in this process: each is then a function
/// call, and batching calls into a stream would only add task switches.
pub fn is_in_process(channel: &Channel) -> bool {
    matches!(channel.get_ref().0, Route::InProcess(_))
}

/// Where a channel's calls go: HTTP/2 to another process, or straight into
/// a server of this one.
#[derive(Clone)]
pub struct Transport(Route);

#[derive(Clone)]
enum Route {
    Network(tonic::transport::Channel),
    InProcess(InProcessChannel),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Route::Network(channel) => channel.fmt(f),
            Route::InProcess(_) => f.write_str("InProcess"),
        }
    }
}

impl Service<http::Request<Body>> for Transport {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Either<
        ErrInto<tonic::transport::channel::ResponseFuture, BoxError>,
        BoxFuture<'static, Result<http::Response<Body>, BoxError>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.0 {
            Route::Network(channel) => channel.poll_ready(cx).map_err(Into::into),
            Route::InProcess(channel) => channel.poll_ready(cx),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match &mut self.0 {
            Route::Network(channel) => Either::Left(channel.call(request).err_into()),
            Route::InProcess(channel) => Either::Right(channel.call(request)),
        }
    }
}
