//! The edge: llmgw's public HTTP API (OpenAI's chat completions, embeddings
//! and models; Anthropic's Messages). It authenticates, validates and
//! frames; the router does the rest over gRPC.

mod admission;
pub mod auth;
mod auth_throttle;
mod catalog;
mod chat;
mod config;
mod embeddings;
mod error;
mod messages;
mod metrics;
mod models;
mod outcome;
mod prompt_policy;
mod quota;
mod quota_session;
mod router_call;
mod sse;
mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http::StatusCode;
use llmgw_audit::AuditTrail;
use llmgw_grpc::Channel;
use llmgw_policy::feed::PolicyFeed;
use llmgw_proto::ErrorCode;
use llmgw_proto::billing_v1::accounts_client::AccountsClient;
use llmgw_proto::router_v1::router_client::RouterClient;
use llmgw_telemetry::{ExtractTraceContextLayer, ServerKind};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth_throttle::AuthThrottleConfig;
pub use config::{ApiKeyConfig, Config};
pub use quota::Unreachable as QuotaUnreachable;
pub use validate::{Validated, check_chat_request};

use crate::admission::Admission;
use crate::auth::Keys;
use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::metrics::Metrics;

pub(crate) struct AppState {
    config: Config,
    keys: Keys,
    catalog: Arc<Catalog>,
    router: RouterClient<Channel>,
    quota: Option<quota::Quota>,
    metrics: Arc<Metrics>,
    /// The content policies in force (kept current from billing).
    policies: Arc<PolicyFeed>,
    /// Where prompts' policy hits are recorded.
    audit: AuditTrail,
    /// Cancelled when shutdown begins: not ready, no new requests.
    stopping: CancellationToken,
    /// Cancelled when the drain deadline passes: open streams end.
    drain_expired: CancellationToken,
}

/// Serves the public API on `listener` until `shutdown` resolves; then stops
/// accepting, lets open streams finish for `drain_timeout_secs`, ends the
/// ones still open with an error event, and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let accounts = match &config.billing_url {
        None => None,
        Some(url) => Some(AccountsClient::new(channel(url, "billing_url")?)),
    };
    let keys = Keys::new(
        &config.api_keys,
        accounts,
        Duration::from_secs(config.auth_cache_ttl_secs),
        Duration::from_secs(config.auth_negative_ttl_secs),
    )?;
    // Embeddings answers (thousands of vectors) outgrow tonic's 4 MiB
    // default; the client's body limit bounds what it can ask for.
    let router = RouterClient::new(channel(&config.router_url, "router_url")?)
        .max_decoding_message_size(MAX_ANSWER_BYTES);
    let metrics = Metrics::new();
    let quota = match &config.quota_url {
        None => None,
        Some(url) => Some(quota::Quota::new(
            channel(url, "quota_url")?,
            Duration::from_millis(config.quota_timeout_ms),
            config.on_quota_unreachable,
            metrics.quota_unreachable.clone(),
            metrics.quota_decision.clone(),
        )),
    };
    let stopping = CancellationToken::new();
    let drain_expired = CancellationToken::new();
    // A bad `policy:` section fails the start (the binary checked it
    // already); billing's later sets replace it when they compile.
    let policies = PolicyFeed::new(&config.policy, metrics.policy_feed.clone())
        .context("the policy section does not compile")?;
    if let Some(url) = &config.billing_url {
        policies.follow(
            channel(url, "billing_url")?,
            Duration::from_secs(config.policy_refresh_secs),
            stopping.clone().cancelled_owned(),
        );
    }
    // The audit spool stops after the server has drained, so the last
    // requests' events are still written.
    let (audit_stop, audit_stopping) = tokio::sync::oneshot::channel::<()>();
    let (audit, audit_stopped) = AuditTrail::start(
        "edge-audit",
        &config.audit,
        config.billing_url.as_deref(),
        "./data/audit-spool/edge".into(),
        metrics.audit.clone(),
        async {
            let _ = audit_stopping.await;
        },
    )
    .await?;
    let catalog = Arc::new(Catalog::default());
    tokio::spawn(catalog.clone().refresh_loop(
        router.clone(),
        Duration::from_secs(config.catalog_refresh_secs.max(1)),
        stopping.clone(),
    ));
    let drain = Duration::from_secs(config.drain_timeout_secs);
    let state = Arc::new(AppState {
        config,
        keys,
        catalog,
        router,
        quota,
        metrics,
        policies,
        audit,
        stopping: stopping.clone(),
        drain_expired: drain_expired.clone(),
    });

    let signal = stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("edge shutting down: not ready, draining open requests");
        signal.cancel();
    });
    let served = serve(state, listener, drain).await;
    let _ = audit_stop.send(());
    if let Some(stopped) = audit_stopped {
        stopped.await;
    }
    served
}

/// Serves until shutdown and the drain are over.
async fn serve(state: Arc<AppState>, listener: TcpListener, drain: Duration) -> anyhow::Result<()> {
    let stopping = state.stopping.clone();
    let drain_expired = state.drain_expired.clone();
    let address = listener.local_addr()?;
    tracing::info!(%address, "edge listening");
    // Connection limits, TCP_NODELAY (each SSE frame leaves at once) and
    // the drain: on `stopping` the listener closes and connections finish
    // what is in flight.
    let limits = state.config.http.clone();
    let serve = llmgw_http_serve::serve(listener, routes(state.clone()), &limits, stopping.clone());
    let mut serve = std::pin::pin!(serve);
    tokio::select! {
        result = &mut serve => return result.context("edge server failed"),
        () = async { stopping.cancelled().await; tokio::time::sleep(drain).await } => {}
    }
    tracing::warn!(
        open_streams = state.metrics.open_streams.get(),
        "drain deadline passed; ending open streams"
    );
    drain_expired.cancel();
    // Give the streams a moment to write their final error event.
    match tokio::time::timeout(Duration::from_secs(2), serve).await {
        Ok(result) => result.context("edge server failed"),
        Err(_) => Ok(()),
    }
}

/// The largest answer the router may send in one event (an embeddings
/// list of 2048 inputs × 3072 dimensions as JSON is about 75 MB).
const MAX_ANSWER_BYTES: usize = 128 << 20;

/// A gRPC channel to another service (`llmgw_grpc::channel`: connected on
/// first use, so the edge starts, and stays alive, whether or not the
/// service is up yet).
fn channel(url: &str, setting: &str) -> anyhow::Result<Channel> {
    llmgw_grpc::channel(url).with_context(|| format!("invalid {setting} {url:?}"))
}

/// Milliseconds since the Unix epoch (deadlines and key expiry).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_millis() as u64)
}

fn routes(state: Arc<AppState>) -> Router {
    let admission = Admission::new(state.config.max_in_flight, state.metrics.clone());
    let throttle = Arc::new(auth_throttle::AuthThrottle::new(
        &state.config.auth_throttle,
        state.metrics.clone(),
    ));
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(messages::messages))
        .route("/v1/messages/count_tokens", post(messages::count_tokens))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
        // A client's `traceparent` becomes the parent of the request's spans.
        .layer(ExtractTraceContextLayer::new(ServerKind::Http))
        // Addresses that keep failing authentication get 429 before their
        // key is looked up.
        .layer(axum::middleware::from_fn_with_state(
            throttle,
            auth_throttle::throttle,
        ))
        // Outermost: a request refused for overload costs nothing more.
        .layer(axum::middleware::from_fn_with_state(
            admission,
            admission::admit,
        ))
}

/// Ready = the model catalog is loaded and we are not shutting down.
async fn ready(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.stopping.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if state.catalog.current().is_none() {
        (StatusCode::SERVICE_UNAVAILABLE, "model catalog not loaded")
    } else {
        (StatusCode::OK, "ready")
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    llmgw_telemetry::metrics_response(state.metrics.render())
}

async fn not_found(request: Request) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!(
            "Unknown request URL: {} {}.",
            request.method(),
            request.uri().path()
        ),
    )
}
