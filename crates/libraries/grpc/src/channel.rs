//! The client side: one channel builder for every service-to-service call.

use std::time::Duration;

use anyhow::Context as _;
use llmgw_telemetry::InjectTraceContext;
use tonic::transport::Endpoint;

use crate::in_process;

/// The transport of every generated client: a tonic channel whose calls
/// carry the trace context of the span they are made from.
pub type Channel = InjectTraceContext<tonic::transport::Channel>;

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
        Some(name) => in_process::connect_lazy(name)?,
        None => Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("invalid service URL {url:?}"))?
            // Small messages (one chunk, one Acquire) must leave at once,
            // not wait for Nagle's algorithm.
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy(),
    };
    Ok(InjectTraceContext::new(transport))
}
