//! The router service: resolves a model alias to an upstream deployment,
//! calls it, and streams the answer back to the edge over gRPC.

mod balance;
mod breaker;
mod catalog;
mod config;
mod metrics;
#[doc(hidden)]
pub mod microbench;
mod provider;
mod relay;
mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use llmgw_proto::router_v1::router_server::RouterServer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

pub use config::{
    BreakerConfig, Config, DeploymentConfig, FallbackOn, ModelConfig, Provider, Retries, Strategy,
    Timeouts,
};

use crate::catalog::{Catalog, Defaults};
use crate::metrics::Metrics;

/// What every call shares.
pub(crate) struct State {
    catalog: Catalog,
    client: reqwest::Client,
    retries: Retries,
    metrics: Arc<Metrics>,
}

/// Serves the router on `listener` until `shutdown` resolves, then waits for
/// open calls to finish (the caller bounds that wait). The same port answers
/// `GET /metrics` over HTTP/1.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let catalog = Catalog::from_config(
        &config.models,
        &Defaults {
            timeouts: config.timeouts,
            breaker: &config.breaker,
            metrics: &metrics,
        },
    )?;
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
        retries: config.retries,
        metrics: metrics.clone(),
    });
    let address = listener.local_addr()?;
    tracing::info!(%address, models = state.catalog.models().len(), "router listening");
    let routes = Routes::new(RouterServer::new(service::RouterService { state }));
    let routes = llmgw_telemetry::with_metrics_route(routes, move || metrics.render());
    tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes)
        // Small frames (one chunk each) must leave at once, not wait for Nagle.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .context("router server failed")
}
