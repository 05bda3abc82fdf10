//! `POST /v1/chat/completions`: authenticate, read and validate the body,
//! call the router, answer as JSON or as an SSE stream.
//!
//! The same pipeline serves `POST /v1/messages` and `POST /v1/embeddings`
//! ([`serve`] with another [`ClientApi`]): only parsing and validation
//! (`messages`, `embeddings`), the texts the input policy reads, the error
//! shape and the stream framing differ; authentication, limits, quota,
//! the router call and its accounting are the same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use llmgw_audit::{AuditContext, EDGE_ATTEMPT};
use llmgw_policy::Direction;
use llmgw_proto::ErrorCode;
use llmgw_proto::quota_v1::Subject;
use llmgw_proto::router_v1::{
    Api, ChatEvent, ChatRequest, Done, Envelope, Model, chat_event::Event,
};
use tracing::Instrument as _;

use crate::AppState;
use crate::error::ApiError;
use crate::outcome::Outcome;
use crate::prompt_policy::Shape;
use crate::quota::Demand;
use crate::router_call::RouterCall;
use crate::sse::Framing;
use crate::validate::Validated;
use crate::{embeddings, messages, prompt_policy, sse, validate};

/// The client APIs the edge serves through the router's `Chat` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    Chat,
    Messages,
    Embeddings,
}

impl ClientApi {
    /// The `route` label of the edge's metrics.
    fn route(self) -> &'static str {
        match self {
            ClientApi::Chat => "chat_completions",
            ClientApi::Messages => "messages",
            ClientApi::Embeddings => "embeddings",
        }
    }

    pub fn wire(self) -> Api {
        match self {
            ClientApi::Chat => Api::Chat,
            ClientApi::Messages => Api::Messages,
            ClientApi::Embeddings => Api::Embeddings,
        }
    }

    /// How users name it in an error message.
    fn name(self) -> &'static str {
        match self {
            ClientApi::Chat => "chat completions",
            ClientApi::Messages => "the Messages API",
            ClientApi::Embeddings => "embeddings",
        }
    }

    fn shape(self) -> Shape {
        match self {
            ClientApi::Chat => Shape::Chat,
            ClientApi::Messages => Shape::Messages,
            ClientApi::Embeddings => Shape::Embeddings,
        }
    }

    fn framing(self) -> Framing {
        match self {
            ClientApi::Chat | ClientApi::Embeddings => Framing::Openai,
            ClientApi::Messages => Framing::Anthropic,
        }
    }

    /// An error in the caller's protocol.
    pub fn error_response(self, error: ApiError) -> Response {
        match self {
            ClientApi::Chat | ClientApi::Embeddings => error.into_response(),
            ClientApi::Messages => error.into_anthropic_response(),
        }
    }

    fn status_of(self, error: &ApiError) -> u16 {
        match self {
            ClientApi::Chat | ClientApi::Embeddings => error.code.http_status().as_u16(),
            ClientApi::Messages => error.code.anthropic_status().as_u16(),
        }
    }
}

/// Whether `model` serves `api`. A catalog from a router older than the
/// field lists none: it served chat, and Messages through translation.
pub fn serves(model: &Model, api: ClientApi) -> bool {
    if model.apis.is_empty() {
        return matches!(api, ClientApi::Chat | ClientApi::Messages);
    }
    model.apis.contains(&(api.wire() as i32))
}

pub async fn chat_completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    serve(&state, request, ClientApi::Chat).await
}

/// One call of `api`, from the client's request to its whole answer.
pub async fn serve(state: &Arc<AppState>, request: Request, api: ClientApi) -> Response {
    let started = Instant::now();
    let request_id = request_id();
    let client_request_id = client_request_id(request.headers());
    let span = tracing::info_span!(
        "edge.chat",
        request_id = %request_id,
        client_request_id = client_request_id.as_ref().and_then(|id| id.to_str().ok()),
        api = api.route(),
        tenant = tracing::field::Empty,
        key_id = tracing::field::Empty,
        model = tracing::field::Empty,
        stream = tracing::field::Empty,
    );
    // In the request's span: the settle it sends at the end joins its trace.
    let outcome = span.in_scope(|| Outcome::new(state.metrics.clone(), api.route(), started));
    let mut response = respond(state, request, &request_id, outcome, api)
        .instrument(span)
        .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        if api == ClientApi::Messages {
            // Anthropic's SDKs read the id from `request-id`.
            response.headers_mut().insert("request-id", value.clone());
        }
        response.headers_mut().insert("x-request-id", value);
    }
    if let Some(value) = client_request_id {
        response.headers_mut().insert("x-client-request-id", value);
    }
    response
}

/// How the router answered, once its first event is in.
enum Answer {
    Stream {
        /// `None` when the first token was slow and the stream started
        /// with keep-alives.
        first: Option<Bytes>,
        call: Box<RouterCall>,
    },
    Json {
        completion: Bytes,
        done: Done,
    },
}

async fn respond(
    state: &AppState,
    request: Request,
    request_id: &str,
    mut outcome: Outcome,
    api: ClientApi,
) -> Response {
    let result = call_router(state, request, request_id, &mut outcome, api).await;
    let rate_headers = std::mem::take(&mut outcome.rate_headers);
    let mut response = match result {
        Err(error) => {
            outcome.status = api.status_of(&error);
            api.error_response(error)
        }
        Ok(Answer::Json { completion, done }) => {
            outcome.status = 200;
            outcome.done = Some(done);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                completion,
            )
                .into_response()
        }
        Ok(Answer::Stream { first, call }) => {
            if first.is_some() {
                outcome
                    .metrics()
                    .first_token(&outcome.model, outcome.started());
            }
            outcome.streaming();
            let body = sse::body(
                first,
                *call,
                outcome,
                state.drain_expired.clone(),
                keepalive(&state.config),
                api.framing(),
            );
            (
                [
                    (header::CONTENT_TYPE, "text/event-stream"),
                    (header::CACHE_CONTROL, "no-cache"),
                    // Tell nginx-style proxies not to buffer the stream.
                    (http::HeaderName::from_static("x-accel-buffering"), "no"),
                ],
                Body::from_stream(body),
            )
                .into_response()
        }
    };
    response.headers_mut().extend(rate_headers);
    response
}

async fn call_router(
    state: &AppState,
    request: Request,
    request_id: &str,
    outcome: &mut Outcome,
    api: ClientApi,
) -> Result<Answer, ApiError> {
    if state.stopping.is_cancelled() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "the gateway is shutting down; retry the request",
        ));
    }
    let principal = state.keys.authenticate(request.headers()).await?;
    let span = tracing::Span::current();
    span.record("tenant", principal.tenant.as_str());
    span.record("key_id", principal.key_id.as_str());

    let versions = messages::versions(request.headers());
    let body = read_body(request, state.config.max_body_bytes).await?;
    let valid = validated(state, api, &body)?;
    if !serves(&valid.model, api) {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "The model `{}` does not serve {}.",
                valid.model.alias,
                api.name()
            ),
        )
        .with_param("model"));
    }
    if !principal.may_use(&valid.model.alias) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "This API key may not use the model `{}`.",
                valid.model.alias
            ),
        )
        .with_param("model"));
    }
    outcome.model.clone_from(&valid.model.alias);
    span.record("model", valid.model.alias.as_str());
    span.record("stream", valid.stream);

    // The input content policy: before quota and before anything leaves.
    let policies = state.policies.current();
    let body = match policies.for_tenant(&principal.tenant) {
        Some(policy) if policy.checks(Direction::Input) => {
            let context = AuditContext {
                request_id: request_id.to_owned(),
                attempt: EDGE_ATTEMPT,
                tenant: principal.tenant.clone(),
                key_id: principal.key_id.clone(),
                model: valid.model.alias.clone(),
                policy: policy.name().to_owned(),
            };
            prompt_policy::enforce(api.shape(), policy, &state.audit, body, context).await?
        }
        _ => body,
    };
    drop(policies);

    // The quota reservation, settled when the router call ends.
    let mut settlement = None;
    if let Some(quota) = &state.quota {
        let subject = Subject {
            tenant: principal.tenant.clone(),
            key_id: principal.key_id.clone(),
            model: valid.model.alias.clone(),
        };
        let (lease, headers) = quota
            .acquire(
                request_id,
                subject,
                principal.limits,
                Demand {
                    model: &valid.model,
                    prices: state.catalog.prices(&valid.model.alias),
                    prompt_chars: valid.prompt_chars,
                    max_tokens: valid.max_tokens,
                },
            )
            .await;
        outcome.rate_headers = headers;
        settlement = lease?;
    }
    let envelope = Envelope {
        request_id: request_id.to_owned(),
        tenant: principal.tenant,
        key_id: principal.key_id,
        model: valid.model.alias.clone(),
        stream: valid.stream,
        deadline_unix_ms: crate::unix_ms() + state.config.request_timeout_secs * 1000,
        include_usage: valid.include_usage,
        api: api.wire().into(),
        anthropic_version: versions.version,
        anthropic_beta: versions.beta,
    };
    let request = ChatRequest {
        envelope: Some(envelope),
        openai_request: body,
    };
    let timeout = Duration::from_secs(state.config.request_timeout_secs);
    let mut call = RouterCall::start(&state.router, request, timeout, settlement)
        .await
        .map_err(|status| ApiError::from_status(&status))?;

    // A slow first token: start the stream anyway and send keep-alives (an
    // error after that arrives as an SSE error event, not a status code).
    // `RouterCall::message` is cancel-safe, so losing the race loses nothing.
    let first = match keepalive(&state.config) {
        Some(interval) if valid.stream => tokio::select! {
            first = next_event(&mut call) => first?,
            () = tokio::time::sleep(interval) => return Ok(Answer::Stream { first: None, call: Box::new(call) }),
        },
        _ => next_event(&mut call).await?,
    };
    match (valid.stream, first) {
        (true, Event::Chunk(first)) => Ok(Answer::Stream {
            first: Some(first),
            call: Box::new(call),
        }),
        (false, Event::Completion(completion)) => match next_event(&mut call).await? {
            Event::Done(done) => {
                call.read_trailers().await;
                Ok(Answer::Json { completion, done })
            }
            other => Err(unexpected(&other)),
        },
        (_, other) => Err(unexpected(&other)),
    }
}

/// The request parsed and validated for `api`, against the catalog.
fn validated(state: &AppState, api: ClientApi, body: &[u8]) -> Result<Validated, ApiError> {
    let catalog = || {
        state.catalog.current().ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unavailable,
                "the gateway is starting; retry the request",
            )
        })
    };
    let caps = validate::RequestCaps::of(&state.config);
    // Before any parsing: a deeply nested or non-UTF-8 body costs a scan,
    // nothing more.
    caps.check_before_parsing(body)?;
    match api {
        ClientApi::Chat => {
            let chat = validate::parse(body)?;
            let models = catalog()?;
            validate::validate(&chat, &models, &caps)
        }
        ClientApi::Messages => messages::validate(body, &catalog()?, &caps),
        ClientApi::Embeddings => embeddings::validate(body, &catalog()?),
    }
}

fn keepalive(config: &crate::Config) -> Option<Duration> {
    (config.sse_keepalive_secs > 0).then(|| Duration::from_secs(config.sse_keepalive_secs))
}

/// The next event; a typed error from the router becomes the client's error.
async fn next_event(call: &mut RouterCall) -> Result<Event, ApiError> {
    match call.message().await {
        Ok(Some(ChatEvent {
            event: Some(Event::Error(error)),
            ..
        })) => Err(ApiError::from_proto(error)),
        Ok(Some(ChatEvent {
            event: Some(event), ..
        })) => Ok(event),
        Ok(Some(ChatEvent { event: None, .. }) | None) => Err(ApiError::new(
            ErrorCode::UpstreamError,
            "the answer ended unexpectedly",
        )),
        Err(status) => Err(ApiError::from_status(&status)),
    }
}

fn unexpected(event: &Event) -> ApiError {
    let kind = match event {
        Event::Chunk(_) => "chunk",
        Event::Completion(_) => "completion",
        Event::Done(_) => "done",
        Event::Error(_) => "error",
    };
    tracing::error!(kind, "router sent an event out of order");
    ApiError::new(
        ErrorCode::Internal,
        "the gateway could not complete the request",
    )
}

pub(crate) async fn read_body(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("Request body too large: the limit is {limit} bytes."),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "could not read the request body",
        )),
    }
}

/// A new id for every request. It names the quota lease and the usage
/// ledger rows, so it must be unique: a client-chosen id (reused by a
/// retrying client, or on purpose) would merge two requests' usage into one.
/// A UUIDv7 (a millisecond timestamp, then 74 random bits): unique like a
/// v4, and time-ordered, so the ledger's primary-key index on it grows at
/// its end instead of taking each row at a random page (with v4 ids, SQLite
/// wrote ~3 pages per row to its WAL; Postgres's B-tree likewise).
///
/// The random bits come from the thread's generator (`fastrand`, seeded
/// once per thread from the OS), not from `Uuid::now_v7`, which made two
/// `getrandom` system calls per id: an id must be unique, not secret.
pub(crate) fn request_id() -> String {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let mut random = [0u8; 10];
    fastrand::fill(&mut random);
    let id = uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid();
    id.simple()
        .encode_lower(&mut [0u8; uuid::fmt::Simple::LENGTH])
        .to_owned()
}

/// The client's own id (`x-client-request-id`, as OpenAI accepts it, or
/// `x-request-id`) when it is sane: logged and echoed back for correlation.
fn client_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    ["x-client-request-id", "x-request-id"]
        .into_iter()
        .filter_map(|name| headers.get(name))
        .find(|value| {
            let id = value.as_bytes();
            !id.is_empty()
                && id.len() <= 128
                && id
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
        })
        .cloned()
}
