//! The router service: resolves a model alias to an upstream deployment,
//! calls it, and streams the answer back to the edge over gRPC.

mod catalog;
mod config;
mod provider;
mod relay;
mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use llmgw_proto::router_v1::router_server::RouterServer;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

pub use catalog::Catalog;
pub use config::{Config, ModelConfig, Provider, Timeouts};

/// What every call shares.
pub(crate) struct State {
    catalog: Catalog,
    client: reqwest::Client,
    timeouts: Timeouts,
}

/// Serves the router on `listener` until `shutdown` resolves, then waits for
/// open calls to finish (the caller bounds that wait).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let catalog = Catalog::from_config(&config.models)?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(config.timeouts.connect_ms))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        // Credentials must never follow a redirect to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the upstream HTTP client")?;
    let state = Arc::new(State {
        catalog,
        client,
        timeouts: config.timeouts,
    });
    let address = listener.local_addr()?;
    tracing::info!(%address, models = state.catalog.models().len(), "router listening");
    tonic::transport::Server::builder()
        .add_service(RouterServer::new(service::RouterService { state }))
        // Small frames (one chunk each) must leave at once, not wait for Nagle.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .context("router server failed")
}
