//! The quota service: rate limits, concurrency limits and monthly budgets per
//! key, tenant and (key, model), checked and reserved in one Redis round trip
//! shared by every replica (`llmgw-limiter` holds the algorithms), on one
//! Redis or a Redis Cluster. Redis being down never blocks a request for
//! long: once its connection fails, or a call or health probe goes
//! unanswered for `redis_timeout_ms`, decisions follow `on_redis_failure`
//! at once until a probe answers again (`redis_health`). With `billing_url`, tenants' budget
//! counters are rebuilt from the usage ledger's month-to-date spend
//! (`budget_sync`), so a Redis that lost them does not reset budgets.

mod budget_sync;
mod config;
mod incidents;
mod metrics;
mod redis_health;
mod rules;
mod service;
mod session;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use llmgw_proto::quota_v1::quota_server::QuotaServer;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

pub use config::{Config, FailMode, FailurePolicy, LimitTables, LimitsConfig};

use crate::metrics::Metrics;
use crate::rules::Rules;
use crate::service::{QuotaService, State};
use crate::store::Store;

/// Serves the quota service on `listener` until `shutdown` resolves. The same
/// port answers `GET /metrics` over HTTP/1. Invalid limits (a bad budget
/// amount) fail here, before serving; Redis being down does not: the
/// service starts, degrades per policy and connects when Redis answers.
pub async fn run(
    config: Config,
    listener: impl Into<llmgw_grpc::Listener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = listener.into();
    anyhow::ensure!(
        config.redis_timeout_ms > 0,
        "quota.redis_timeout_ms must be at least 1"
    );
    anyhow::ensure!(
        config.lease_timeout_secs > 0,
        "quota.lease_timeout_secs must be at least 1"
    );
    let rules = Rules::from_config(&config.limits).context("invalid quota limits")?;
    let metrics = Arc::new(Metrics::new());
    let store = Store::start(&config, metrics.clone())?;
    let state = Arc::new(State {
        rules,
        store,
        metrics: metrics.clone(),
        lease_timeout: Duration::from_secs(config.lease_timeout_secs),
    });
    // Stops when `run` returns: the handle aborts the task when dropped.
    let budget_sync = budget_sync::start(&config, state.clone())?;
    let address = listener.local_addr()?;
    tracing::info!(
        %address,
        redis = config.redis_url.as_deref().is_some_and(|url| !url.is_empty()),
        redis_timeout_ms = config.redis_timeout_ms,
        budget_sync = budget_sync.is_some(),
        "quota listening"
    );
    // Sessions end when shutdown starts (the server waits for open calls,
    // and a session would otherwise never end).
    let stopping = CancellationToken::new();
    let shutdown = {
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            stopping.cancel();
        }
    };
    let routes = Routes::new(QuotaServer::new(QuotaService { state, stopping }));
    llmgw_grpc::serve(routes, move || metrics.render(), listener, shutdown)
        .await
        .context("quota server failed")
}
