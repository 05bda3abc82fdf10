//! The router service: resolves a model alias to an upstream deployment,
//! calls it, and streams the answer back to the edge over gRPC.

pub mod balance;
pub mod breaker;
pub mod catalog;
mod config;
mod metrics;
pub mod provider;
mod relay;
mod service;
mod usage;

/// Only for `benches/spool.rs`, until the spool moves to its own crate.
#[doc(hidden)]
pub mod microbench {
    pub use crate::usage::bench as spool;
}

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use llmgw_proto::router_v1::router_server::RouterServer;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

/// The router's Prometheus metrics (served on `GET /metrics`); the catalog
/// registers each deployment's breaker state in them.
pub use metrics::Metrics;
/// What the relay accounts of each streamed chunk (finish reason, reported
/// usage, generated text).
pub use relay::tally::Tally;
/// Token counts with the model's tokenizer, for usage estimates.
pub use usage::tokens;

pub use config::{
    BreakerConfig, Config, DeploymentConfig, FallbackOn, ModelConfig, Provider, Retries, Strategy,
    Timeouts, UsageConfig,
};

use crate::catalog::{Catalog, Defaults};
use crate::usage::spool::{self, SpoolConfig, UsageSink};

/// What every call shares.
pub(crate) struct State {
    catalog: Catalog,
    client: reqwest::Client,
    retries: Retries,
    metrics: Arc<Metrics>,
    /// Where each attempt's usage event goes (the durable spool).
    usage: UsageSink,
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
    // The spool stops after the server has drained, so the last calls'
    // events are still written.
    let (spool_stop, spool_stopped) = tokio::sync::oneshot::channel::<()>();
    let (usage, spool_done) = start_spool(&config, &metrics, async {
        let _ = spool_stopped.await;
    })
    .await?;
    let state = Arc::new(State {
        catalog,
        client,
        retries: config.retries,
        metrics: metrics.clone(),
        usage,
    });
    let address = listener.local_addr()?;
    tracing::info!(%address, models = state.catalog.models().len(), "router listening");
    let routes = Routes::new(RouterServer::new(service::RouterService { state }));
    let routes = llmgw_telemetry::with_metrics_route(routes, move || metrics.render());
    let served = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(routes)
        // Small frames (one chunk each) must leave at once, not wait for Nagle.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
        .context("router server failed");
    let _ = spool_stop.send(());
    if let Some(done) = spool_done {
        done.await;
    }
    served
}

/// The durable usage spool delivering to billing, or a sink that discards
/// when no billing service is configured.
async fn start_spool(
    config: &Config,
    metrics: &Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(UsageSink, Option<impl Future<Output = ()> + Send + 'static>)> {
    let Some(billing_url) = &config.billing_url else {
        tracing::warn!("no billing_url: usage is not recorded");
        return Ok((UsageSink::disabled(), None));
    };
    let usage = &config.usage;
    let dir = usage
        .spool_dir
        .clone()
        .unwrap_or_else(|| "./data/spool".into());
    // Lazy: the router starts, and serves, while billing is down.
    let channel = tonic::transport::Endpoint::from_shared(billing_url.clone())
        .with_context(|| format!("billing_url {billing_url:?}"))?
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    let spool_config = SpoolConfig {
        dir,
        max_bytes: usage.max_bytes,
        segment_bytes: usage.segment_bytes,
        flush_interval: Duration::from_millis(usage.flush_interval_ms),
        batch_size: usage.batch_size,
    };
    let (sink, done) = spool::start(
        spool_config,
        llmgw_proto::billing_v1::ledger_client::LedgerClient::new(channel),
        metrics.clone(),
        shutdown,
        Duration::from_secs(usage.drain_timeout_secs),
    )
    .await?;
    Ok((sink, Some(done)))
}
