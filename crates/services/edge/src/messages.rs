//! `POST /v1/messages` (Anthropic's Messages API) and
//! `POST /v1/messages/count_tokens`.
//!
//! Messages calls go through the same pipeline as chat completions
//! (`chat::serve`): the key (`x-api-key`, or `Authorization: Bearer`), the
//! same limits, the input policy, quota, the router. Validation follows the
//! Messages API (`max_tokens` is required, roles are `user` and
//! `assistant`, `temperature` is 0..1); errors have Anthropic's shape and
//! statuses, so the Anthropic SDKs raise their own exception classes. The
//! client's `anthropic-version` and `anthropic-beta` headers travel in the
//! envelope to Anthropic deployments.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Json, Response};
use http::HeaderMap;
use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::{CountTokensRequest, Envelope};
use serde::Deserialize;
use serde_json::value::RawValue;
use tracing::Instrument as _;

use crate::AppState;
use crate::catalog::Models;
use crate::chat::{self, ClientApi};
use crate::error::ApiError;
use crate::outcome::Outcome;
use crate::validate::Validated;

pub async fn messages(State(state): State<Arc<AppState>>, request: Request) -> Response {
    chat::serve(&state, request, ClientApi::Messages).await
}

/// The client's `anthropic-version` and `anthropic-beta` (empty when not
/// sent, or not a plain header value).
#[derive(Debug, Default)]
pub struct Versions {
    pub version: String,
    pub beta: String,
}

/// Longest `anthropic-beta` passed on (a list of feature names).
const MAX_VERSION_HEADER: usize = 1024;

pub fn versions(headers: &HeaderMap) -> Versions {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .filter(|value| value.len() <= MAX_VERSION_HEADER)
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    Versions {
        version: header("anthropic-version"),
        beta: header("anthropic-beta"),
    }
}

/// What the edge reads of a Messages request.
#[derive(Debug, Deserialize)]
struct MessagesRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default, borrow)]
    system: Option<Content<'a>>,
    #[serde(default, borrow)]
    messages: Option<Vec<Message<'a>>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
}

/// A string or content blocks (text, images, tool use, tool results...).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content<'a> {
    #[serde(borrow)]
    Text(Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

#[derive(Debug, Deserialize)]
struct Block<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    /// A tool result's content.
    #[serde(default, borrow)]
    content: Option<Box<Content<'a>>>,
}

impl Content<'_> {
    /// Content blocks, with those inside tool results: 0 for a string.
    fn block_count(&self) -> usize {
        match self {
            Content::Text(_) => 0,
            Content::Blocks(blocks) => blocks
                .iter()
                .map(|block| {
                    1 + block
                        .content
                        .as_ref()
                        .map_or(0, |inner| inner.block_count())
                })
                .sum(),
        }
    }

    /// Characters of prompt text: text blocks and tool results' text (as
    /// chat completions count message contents).
    fn text_chars(&self) -> usize {
        match self {
            Content::Text(text) => text.chars().count(),
            Content::Blocks(blocks) => blocks
                .iter()
                .map(|block| {
                    block.text.as_ref().map_or(0, |text| text.chars().count())
                        + block.content.as_ref().map_or(0, |inner| inner.text_chars())
                })
                .sum(),
        }
    }
}

/// Validates a Messages request against the catalog, with the Messages
/// API's rules and the model's limits (the same as for chat completions).
pub fn validate(
    body: &[u8],
    models: &Models,
    caps: &crate::validate::RequestCaps,
) -> Result<Validated, ApiError> {
    let request: MessagesRequest = serde_json::from_slice(body).map_err(|error| {
        let message = if error.is_data() {
            format!("Invalid request body: {error}")
        } else {
            format!("The request body is not valid JSON: {error}")
        };
        ApiError::new(ErrorCode::InvalidRequest, message)
    })?;
    let alias = match request.model.as_deref() {
        None | Some("") => return Err(invalid("model", "model: Field required")),
        Some(alias) => alias,
    };
    let Some(max_tokens) = request.max_tokens else {
        return Err(invalid("max_tokens", "max_tokens: Field required"));
    };
    if max_tokens == 0 {
        return Err(invalid(
            "max_tokens",
            "max_tokens: Input should be greater than or equal to 1",
        ));
    }
    let messages = match &request.messages {
        None => return Err(invalid("messages", "messages: Field required")),
        Some(messages) if messages.is_empty() => {
            return Err(invalid(
                "messages",
                "messages: at least one message is required",
            ));
        }
        Some(messages) => messages,
    };
    caps.check_messages(messages.len())?;
    for (i, message) in messages.iter().enumerate() {
        if let Some(content) = &message.content {
            caps.check_parts(i, content.block_count())?;
        }
        match message.role.as_deref() {
            Some("user" | "assistant") => {}
            Some(_) => {
                return Err(invalid(
                    "messages",
                    format!("messages.{i}.role: Input should be 'user' or 'assistant'"),
                ));
            }
            None => {
                return Err(invalid(
                    "messages",
                    format!("messages.{i}.role: Field required"),
                ));
            }
        }
        if message.content.is_none() {
            return Err(invalid(
                "messages",
                format!("messages.{i}.content: Field required"),
            ));
        }
    }
    for (param, value) in [
        ("temperature", request.temperature),
        ("top_p", request.top_p),
    ] {
        if let Some(value) = value
            && !(0.0..=1.0).contains(&value)
        {
            return Err(invalid(
                param,
                format!("{param}: Input should be between 0 and 1, got {value}"),
            ));
        }
    }
    let model = models.get(alias).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ModelNotFound,
            format!("model: {}", not_found(alias)),
        )
        .with_param("model")
    })?;
    let prompt_chars = (request.system.as_ref().map_or(0, Content::text_chars)
        + messages
            .iter()
            .filter_map(|message| message.content.as_ref())
            .map(Content::text_chars)
            .sum::<usize>()) as u64;
    if model.max_prompt_chars > 0 && prompt_chars > model.max_prompt_chars {
        return Err(ApiError::new(
            ErrorCode::ContextLengthExceeded,
            format!(
                "prompt is too long: {prompt_chars} characters > {} maximum",
                model.max_prompt_chars
            ),
        )
        .with_param("messages"));
    }
    if model.max_output_tokens > 0 && max_tokens > model.max_output_tokens {
        return Err(invalid(
            "max_tokens",
            format!(
                "max_tokens: {max_tokens} > {}, which is the maximum allowed number of output tokens for {alias}",
                model.max_output_tokens
            ),
        ));
    }
    Ok(Validated {
        model: model.clone(),
        stream: request.stream.unwrap_or(false),
        // The router always reads usage; a Messages stream carries it in
        // `message_delta`, never as a chunk of its own.
        include_usage: false,
        prompt_chars,
        max_tokens: Some(max_tokens),
    })
}

fn not_found(alias: &str) -> String {
    let shown: String = alias.chars().take(64).collect();
    format!("The model `{shown}` does not exist or you do not have access to it.")
}

fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::invalid(param, message)
}

/// What `count_tokens` reads: the model, and that there is a conversation.
#[derive(Debug, Deserialize)]
struct CountRequest<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, counted by the
/// Anthropic deployment or estimated by the router. Free: no quota is
/// reserved and nothing is billed, as with Anthropic.
pub async fn count_tokens(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = chat::request_id();
    let span = tracing::info_span!(
        "edge.count_tokens",
        request_id = %request_id,
        tenant = tracing::field::Empty,
        key_id = tracing::field::Empty,
    );
    let mut outcome =
        span.in_scope(|| Outcome::new(state.metrics.clone(), "count_tokens", started));
    let answer = count(&state, request, &request_id, &mut outcome)
        .instrument(span)
        .await;
    match answer {
        Ok(input_tokens) => {
            outcome.status = 200;
            Json(serde_json::json!({ "input_tokens": input_tokens })).into_response()
        }
        Err(error) => {
            outcome.status = error.code.anthropic_status().as_u16();
            error.into_anthropic_response()
        }
    }
}

async fn count(
    state: &AppState,
    request: Request,
    request_id: &str,
    outcome: &mut Outcome,
) -> Result<u64, ApiError> {
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
    let versions = versions(request.headers());
    let body = chat::read_body(request, state.config.max_body_bytes).await?;
    crate::validate::RequestCaps::of(&state.config).check_before_parsing(&body)?;
    let parsed: CountRequest = serde_json::from_slice(&body).map_err(|error| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("The request body is not valid JSON: {error}"),
        )
    })?;
    let alias = match parsed.model.as_deref() {
        None | Some("") => return Err(invalid("model", "model: Field required")),
        Some(alias) => alias.to_owned(),
    };
    if parsed.messages.is_none() {
        return Err(invalid("messages", "messages: Field required"));
    }
    let models = state.catalog.current().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "the gateway is starting; retry the request",
        )
    })?;
    let model = models.get(&alias).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ModelNotFound,
            format!("model: {}", not_found(&alias)),
        )
    })?;
    if !chat::serves(model, ClientApi::Messages) {
        return Err(invalid(
            "model",
            format!("The model `{alias}` does not serve the Messages API."),
        ));
    }
    if !principal.may_use(&alias) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("This API key may not use the model `{alias}`."),
        ));
    }
    outcome.model.clone_from(&alias);
    let envelope = Envelope {
        request_id: request_id.to_owned(),
        tenant: principal.tenant,
        key_id: principal.key_id,
        model: alias,
        api: ClientApi::Messages.wire().into(),
        anthropic_version: versions.version,
        anthropic_beta: versions.beta,
        ..Envelope::default()
    };
    let mut call = tonic::Request::new(CountTokensRequest {
        envelope: Some(envelope),
        body,
    });
    call.set_timeout(std::time::Duration::from_secs(
        state.config.request_timeout_secs,
    ));
    let answer = state
        .router
        .clone()
        .count_tokens(call)
        .await
        .map_err(|status| ApiError::from_status(&status))?
        .into_inner();
    match answer.error {
        Some(error) => Err(ApiError::from_proto(error)),
        None => Ok(answer.input_tokens),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use llmgw_proto::router_v1::Model;

    use super::*;

    fn models() -> Models {
        let model = Model {
            alias: "claude".to_owned(),
            max_prompt_chars: 20,
            max_output_tokens: 100,
            ..Model::default()
        };
        Arc::new(HashMap::from([("claude".to_owned(), model)]))
    }

    fn check(body: serde_json::Value) -> Result<Validated, ApiError> {
        validate(
            body.to_string().as_bytes(),
            &models(),
            &crate::validate::RequestCaps::default(),
        )
    }

    #[test]
    fn too_many_messages_or_blocks_are_refused_naming_the_field() {
        let caps = crate::validate::RequestCaps {
            max_json_depth: 64,
            max_messages: 3,
            max_content_parts: 2,
        };
        let message = serde_json::json!({"role": "user", "content": "a"});
        let body = serde_json::json!({
            "model": "claude", "max_tokens": 5, "messages": vec![message; 4],
        });
        let error = validate(body.to_string().as_bytes(), &models(), &caps).expect_err("refused");
        assert_eq!(error.param.as_deref(), Some("messages"));
        assert!(
            error.message.contains("maximum length 3"),
            "{}",
            error.message
        );
        let body = serde_json::json!({
            "model": "claude", "max_tokens": 5, "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "text", "text": "b"}, {"type": "tool_result", "content": [{"type": "text", "text": "c"}]}]},
            ],
        });
        let error = validate(body.to_string().as_bytes(), &models(), &caps).expect_err("refused");
        assert_eq!(error.param.as_deref(), Some("messages[1].content"));
    }

    #[test]
    fn a_valid_request_and_its_prompt_size() {
        let valid = check(serde_json::json!({
            "model": "claude", "max_tokens": 50, "stream": true,
            "system": [{"type": "text", "text": "abc"}],
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "héllo"},
                {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "xy"}]},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QUJD"}}
            ]}]
        }))
        .expect("valid");
        assert_eq!(valid.prompt_chars, 10);
        assert!(valid.stream);
        assert!(!valid.include_usage);
        assert_eq!(valid.max_tokens, Some(50));
    }

    #[test]
    fn messages_api_rules() {
        let base = || {
            serde_json::json!({"model": "claude", "max_tokens": 10,
                "messages": [{"role": "user", "content": "hi"}]})
        };
        let cases: Vec<(serde_json::Value, ErrorCode, &str)> = vec![
            (
                {
                    let mut body = base();
                    body.as_object_mut().map(|b| b.remove("max_tokens"));
                    body
                },
                ErrorCode::InvalidRequest,
                "max_tokens: Field required",
            ),
            (
                {
                    let mut body = base();
                    body["messages"][0]["role"] = "system".into();
                    body
                },
                ErrorCode::InvalidRequest,
                "messages.0.role",
            ),
            (
                {
                    let mut body = base();
                    body["temperature"] = 1.5.into();
                    body
                },
                ErrorCode::InvalidRequest,
                "temperature",
            ),
            (
                {
                    let mut body = base();
                    body["model"] = "nope".into();
                    body
                },
                ErrorCode::ModelNotFound,
                "`nope` does not exist",
            ),
            (
                {
                    let mut body = base();
                    body["max_tokens"] = 101.into();
                    body
                },
                ErrorCode::InvalidRequest,
                "maximum allowed number of output tokens",
            ),
            (
                {
                    let mut body = base();
                    body["messages"][0]["content"] = "x".repeat(21).into();
                    body
                },
                ErrorCode::ContextLengthExceeded,
                "prompt is too long",
            ),
        ];
        for (body, code, message) in cases {
            let error = check(body.clone()).expect_err("refused");
            assert_eq!(error.code, code, "{body}");
            assert!(error.message.contains(message), "{}", error.message);
        }
    }

    #[test]
    fn version_headers_are_passed_on_trimmed() {
        let mut headers = HeaderMap::new();
        headers.insert("anthropic-version", " 2023-06-01".parse().expect("value"));
        headers.insert(
            "anthropic-beta",
            "interleaved-thinking-2025-05-14".parse().expect("value"),
        );
        let versions = versions(&headers);
        assert_eq!(versions.version, "2023-06-01");
        assert_eq!(versions.beta, "interleaved-thinking-2025-05-14");
        assert!(super::versions(&HeaderMap::new()).version.is_empty());
    }
}
