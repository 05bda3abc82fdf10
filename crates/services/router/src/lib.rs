//! The router service: resolves a model alias to an upstream deployment,
//! calls it, and streams the answer back to the edge over gRPC.

pub mod balance;
pub mod breaker;
pub mod catalog;
mod config;
mod count_tokens;
mod metrics;
pub mod provider;
mod relay;
mod service;
mod usage;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use llmgw_audit::AuditTrail;
use llmgw_policy::feed::PolicyFeed;
use llmgw_proto::router_v1::router_server::RouterServer;
use llmgw_spool::SpoolConfig;
use tonic::service::Routes;

/// The router's Prometheus metrics (served on `GET /metrics`); the catalog
/// registers each deployment's breaker state in them.
pub use metrics::Metrics;
/// The content policy's scan of one answer (streamed chunk by chunk, or
/// whole), as the relay runs it.
pub use relay::output_scan::{CONTENT_FILTER, Field, Found, OutputScan, Verdict};
/// What the relay accounts of each streamed chunk (finish reason, reported
/// usage, generated text).
pub use relay::tally::Tally;
/// Token counts with the model's tokenizer, for usage estimates.
pub use usage::tokens;

pub use config::{
    BreakerConfig, ClientApi, Config, DeploymentConfig, FallbackOn, ModelConfig, Provider, Retries,
    Strategy, Timeouts, UsageConfig,
};

use crate::catalog::{Catalog, Defaults};
use crate::usage::spool::{LedgerDelivery, UsageSink};

/// What every call shares.
pub(crate) struct State {
    catalog: Catalog,
    client: reqwest::Client,
    retries: Retries,
    metrics: Arc<Metrics>,
    /// Where each attempt's usage event goes (the durable spool).
    usage: UsageSink,
    /// The content policies in force (kept current from billing).
    policies: Arc<PolicyFeed>,
    /// Where the audit events of policy hits in answers go (the durable
    /// audit spool).
    audit: AuditTrail,
}

/// Serves the router on `listener` until `shutdown` resolves, then waits for
/// open calls to finish (the caller bounds that wait). The same port answers
/// `GET /metrics` over HTTP/1.
pub async fn run(
    config: Config,
    listener: impl Into<llmgw_grpc::Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = listener.into();
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
    // Estimates (cancelled and cut answers) need the BPEs. They load on
    // first use, not at start: o200k_base alone is 46 MB resident, which a
    // router whose answers all report usage never needs. A drain, though,
    // cuts the streams still open and bills them by estimate within a
    // bounded grace, so the load starts with the drain, beside it.
    let upstream_models: Vec<String> = config
        .models
        .iter()
        .flat_map(|model| {
            let deployments = model.deployments.iter().map(|d| d.upstream_model.clone());
            model.upstream_model.clone().into_iter().chain(deployments)
        })
        .collect();
    let shutdown = async move {
        shutdown.await;
        drop(tokio::task::spawn_blocking(move || {
            usage::tokens::warm(upstream_models.iter().map(String::as_str));
        }));
    };
    // The spool stops after the server has drained, so the last calls'
    // events are still written.
    let (spool_stop, spool_stopped) = tokio::sync::oneshot::channel::<()>();
    let (usage, spool_done) = start_spool(&config, &metrics, async {
        let _ = spool_stopped.await;
    })
    .await?;
    let (policies, audit, policy_done) = start_policy(&config, &metrics).await?;
    let state = Arc::new(State {
        catalog,
        client,
        retries: config.retries,
        metrics: metrics.clone(),
        usage,
        policies,
        audit,
    });
    let address = listener.local_addr()?;
    tracing::info!(%address, models = state.catalog.models().len(), "router listening");
    let routes = Routes::new(RouterServer::new(service::RouterService { state }));
    let served = llmgw_grpc::serve(routes, move || metrics.render(), listener, shutdown)
        .await
        .context("router server failed");
    let _ = spool_stop.send(());
    if let Some(done) = spool_done {
        done.await;
    }
    policy_done.stop().await;
    served
}

/// What stops the policy feed and the audit spool after the server drained.
struct PolicyStop {
    stop: tokio::sync::oneshot::Sender<()>,
    feed: Option<tokio::task::JoinHandle<()>>,
    audit: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl PolicyStop {
    async fn stop(self) {
        let _ = self.stop.send(());
        if let Some(audit) = self.audit {
            audit.await;
        }
        if let Some(feed) = self.feed {
            feed.abort();
        }
    }
}

/// The policy feed (the config file's set, then billing's, polled every
/// `policy_refresh_secs`) and the audit trail of answers (its durable spool
/// delivering to billing's `Audit.RecordAudit`).
async fn start_policy(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Arc<PolicyFeed>, AuditTrail, PolicyStop)> {
    let source = config.policy.clone();
    let feed_metrics = metrics.policy_feed.clone();
    // Compiling large word lists takes a while: off the runtime's workers.
    let policies = tokio::task::spawn_blocking(move || PolicyFeed::new(&source, feed_metrics))
        .await
        .context("compiling the content policies")?
        .context("the `policy:` section")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (trail, audit_done) = AuditTrail::start(
        "router-audit",
        &config.audit,
        config.billing_url.as_deref(),
        "./data/audit-spool/router".into(),
        metrics.audit.clone(),
        async {
            let _ = stopped.await;
        },
    )
    .await?;
    let feed = match &config.billing_url {
        Some(billing_url) => {
            let channel = llmgw_grpc::channel(billing_url)
                .with_context(|| format!("router.billing_url {billing_url:?}"))?;
            let refresh = Duration::from_secs(config.policy_refresh_secs);
            // Stopped with the task when the server has drained.
            Some(policies.follow(channel, refresh, std::future::pending()))
        }
        None => None,
    };
    let audit = audit_done.map(|done| Box::pin(done) as Pin<Box<dyn Future<Output = ()> + Send>>);
    Ok((policies, trail, PolicyStop { stop, feed, audit }))
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
    let channel = llmgw_grpc::channel(billing_url)
        .with_context(|| format!("router.billing_url {billing_url:?}"))?;
    let spool_config = SpoolConfig {
        name: "usage",
        dir,
        max_bytes: usage.max_bytes,
        segment_bytes: usage.segment_bytes,
        flush_interval: Duration::from_millis(usage.flush_interval_ms),
        batch_size: usage.batch_size,
    };
    let (sink, done) = llmgw_spool::start(
        spool_config,
        LedgerDelivery::new(channel),
        metrics.spool.clone(),
        shutdown,
        Duration::from_secs(usage.drain_timeout_secs),
    )
    .await?;
    Ok((sink, Some(done)))
}
