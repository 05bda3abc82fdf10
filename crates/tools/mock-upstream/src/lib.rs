//! A fake OpenAI-compatible chat completions provider for tests, benchmarks
//! and the demo.
//!
//! It speaks the real wire format (JSON and SSE) with text and usage derived
//! deterministically from the request (see [`WORDS`]), configurable timing
//! and faults chosen per request. Per-request settings, highest precedence
//! first: the body field `"mock": {"chunks", "chunk_delay_ms",
//! "first_byte_latency_ms", "fault", "echo", "retry_after_secs", "content",
//! "write_bytes", "cache_read_tokens", "cache_write_tokens"}` (`content`:
//! the answer's text pieces, one content chunk each; `write_bytes`: stream
//! writes of that many bytes; `cache_*_tokens`: prompt-cache usage to
//! report); the
//! headers `x-mock-chunks`, `x-mock-chunk-delay-ms`,
//! `x-mock-first-byte-latency-ms`, `x-mock-fault`, `x-mock-retry-after`;
//! a `mock-fault-<fault>` model name; then [`Config`]. Faults: `429`, `500`,
//! `503`, `stall-first-byte`, `stall-mid-stream`, `truncate`, `invalid-json`.
//!
//! `POST /v1/messages` gives the same answers in Anthropic's Messages
//! format (with one more fault, `529`), and `POST /v1/messages/count_tokens`
//! their prompt's count. A request offering tools whose last user message
//! mentions the weather gets a call of the first tool (`{"city": "Paris"}`)
//! on both routes.
//!
//! `POST /v1/embeddings` answers OpenAI's embeddings format with vectors
//! derived from each input (the same input always gets the same vector;
//! `encoding_format` `float` or `base64`, `dimensions`, default 16).
//!
//! `GET /stats` reports what the mock saw (see [`Stats`]; its
//! `open_connections` leaves out the connection asking),
//! `GET /stats/requests[/<tag>]` what it produced for requests tagged with
//! `"mock": {"tag": ...}` (see [`production`]), and `POST /stats/reset`
//! forgets past requests.

mod anthropic;
mod chat;
mod completion;
mod config;
pub mod embeddings;
mod faults;
mod listener;
pub mod production;
mod stats;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, Method, StatusCode, Uri, header};
use llmgw_openai::{ModelList, ModelObject};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use completion::WORDS;
pub use config::Config;
pub use production::Production;
pub use stats::Stats;

use faults::Shutdown;
use listener::CountingListener;

/// Models listed by `GET /v1/models`. Any model name is accepted anyway.
const MODELS: [&str; 2] = ["mock", "mock-reasoner"];

/// Prompts in benchmarks can be large; axum's 2 MB default is too small.
const MAX_BODY_BYTES: usize = 64 << 20;

#[derive(Clone)]
struct AppState {
    config: Arc<Config>,
    stats: Stats,
    /// Numbers response ids; unlike `requests_total` it is never reset, so
    /// ids stay unique for the life of the server.
    ids: Arc<AtomicU64>,
    shutdown: Shutdown,
}

impl AppState {
    /// `None` when the request may proceed, else OpenAI's 401.
    fn check_auth(&self, headers: &HeaderMap) -> Option<Response> {
        let expected = self.config.api_key.as_deref()?;
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let message = match given {
            Some(key) if key == expected => return None,
            Some(_) => "Incorrect API key provided.",
            None => {
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            }
        };
        Some(faults::error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
            message,
        ))
    }
}

/// Serves until `shutdown` resolves, then finishes in-flight responses
/// (stalled ones are ended at once) and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (shutting_down, shutdown_rx) = watch::channel(false);
    let (app, stats) = build(config, shutdown_rx);
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "mock upstream listening");
    axum::serve(CountingListener::new(listener, stats), app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            shutting_down.send_replace(true);
        })
        .await?;
    Ok(())
}

/// The routes alone, for embedding. Served this way `open_connections`
/// stays 0 (only [`run`] counts connections) and stalls are not ended by a
/// graceful shutdown.
pub fn router(config: Config) -> (Router, Stats) {
    let (_never_sent, shutdown) = watch::channel(false);
    build(config, shutdown)
}

fn build(config: Config, shutdown: Shutdown) -> (Router, Stats) {
    let stats = Stats::default();
    let state = AppState {
        config: Arc::new(config),
        stats: stats.clone(),
        ids: Arc::new(AtomicU64::new(0)),
        shutdown,
    };
    let app = Router::new()
        .route("/v1/chat/completions", post(chat::chat))
        .route("/chat/completions", post(chat::chat))
        .route("/v1/messages", post(anthropic::messages))
        .route("/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/messages/count_tokens", post(anthropic::count_tokens))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/stats", get(get_stats))
        .route("/stats/reset", post(reset_stats))
        .route("/stats/requests", get(get_productions))
        .route("/stats/requests/{tag}", get(get_production))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state);
    (app, stats)
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(denied) = state.check_auth(&headers) {
        return denied;
    }
    let data = MODELS
        .iter()
        .map(|id| ModelObject {
            id: (*id).to_owned(),
            object: "model".to_owned(),
            // A fixed date keeps the listing byte-for-byte stable.
            created: 1_700_000_000,
            owned_by: "llmgw-mock".to_owned(),
        })
        .collect();
    Json(ModelList {
        object: "list".to_owned(),
        data,
    })
    .into_response()
}

async fn get_stats(State(state): State<AppState>) -> Json<Value> {
    let mut snapshot = state.stats.snapshot();
    // The connection asking is open by definition; report the others, so a
    // test can watch the gateway's upstream connections close.
    snapshot["open_connections"] = state.stats.open_connections().saturating_sub(1).into();
    Json(snapshot)
}

async fn get_productions(State(state): State<AppState>) -> Json<Value> {
    Json(state.stats.productions())
}

async fn get_production(
    State(state): State<AppState>,
    axum::extract::Path(tag): axum::extract::Path<String>,
) -> Response {
    match state.stats.production(&tag) {
        Some(production) => Json(production).into_response(),
        None => faults::error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            Some("tag"),
            format!("No request tagged {tag:?} since start or the last reset."),
        ),
    }
}

async fn reset_stats(State(state): State<AppState>) -> StatusCode {
    state.stats.reset();
    StatusCode::NO_CONTENT
}

async fn not_found(method: Method, uri: Uri) -> Response {
    faults::error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        None,
        None,
        format!("Invalid URL ({method} {uri})"),
    )
}
