//! The Anthropic Messages API (`POST /v1/messages`, version `2023-06-01`).
//!
//! Chat completions clients: for an Anthropic deployment the router
//! translates the client's request into a Messages request
//! ([`build_request`]), and the answer back into exactly what an
//! OpenAI-compatible upstream would have sent: a `chat.completion`
//! ([`completion_to_openai`]) or `chat.completion.chunk`s
//! ([`StreamTranslator`]). Everything downstream (accounting, the edge, the
//! client's SDK) therefore never learns which protocol served the call.
//!
//! Messages clients: [`native`] passes their calls through to Anthropic
//! deployments; [`inbound`] translates them for OpenAI-compatible ones.

pub mod inbound;
mod messages;
pub mod native;
mod request;
mod response;
mod stream;

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use llmgw_openai::{PromptTokensDetails, Usage};
use llmgw_proto::ErrorCode;
use serde::Deserialize;

use super::upstream_error::{invalid_json, timeout};
use super::{Failure, ProviderError};
use crate::catalog::Deployment;

pub use request::build_request;
pub use response::completion_to_openai;
pub use stream::StreamTranslator;

/// What one streamed Anthropic event becomes.
#[derive(Debug, Default)]
pub struct Translated {
    /// OpenAI chunk payloads (JSON, without `data: `), in order.
    pub chunks: Vec<bytes::Bytes>,
    /// `message_stop` arrived: the answer is complete.
    pub done: bool,
}

/// The API version this translation is written against. Anthropic keeps a
/// version's wire format stable, so pinning it protects us from changes.
const API_VERSION: &str = "2023-06-01";

/// Sends the request to `url` and waits for the response headers. A
/// Messages client's own `anthropic-version` and `anthropic-beta` go with
/// it (`client`); translated calls use the version this code is written
/// against.
pub async fn send(
    client: &reqwest::Client,
    deployment: &Deployment,
    url: &reqwest::Url,
    body: Vec<u8>,
    first_byte_timeout: Duration,
    versions: &super::ClientHeaders<'_>,
) -> Result<reqwest::Response, ProviderError> {
    let mut headers = http::HeaderMap::new();
    llmgw_telemetry::inject_context(&mut headers);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let version = versions
        .anthropic_version
        .and_then(|version| HeaderValue::from_str(version).ok())
        .unwrap_or(HeaderValue::from_static(API_VERSION));
    headers.insert(HeaderName::from_static("anthropic-version"), version);
    if let Some(beta) = versions
        .anthropic_beta
        .and_then(|beta| HeaderValue::from_str(beta).ok())
    {
        headers.insert(HeaderName::from_static("anthropic-beta"), beta);
    }
    if let Some(key) = deployment.api_key() {
        let mut value = HeaderValue::from_str(key).map_err(|_| {
            // The key comes from our own environment: an operator error.
            tracing::error!(deployment = %deployment.name, "the provider API key is not a valid header value");
            ProviderError::new(
                ErrorCode::Internal,
                "the gateway's provider credentials are misconfigured",
            )
        })?;
        // Keeps the key out of any debug output of the request.
        value.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-api-key"), value);
    }
    let request = client.post(url.clone()).headers(headers).body(body);
    let Failure {
        status,
        retry_after,
        body,
    } = match super::exchange(deployment, request, first_byte_timeout).await? {
        Ok(response) => return Ok(response),
        Err(failure) => failure,
    };
    let upstream: Option<ErrorEnvelope> = serde_json::from_slice(&body).ok();
    let (kind, message) = upstream.map_or((None, None), |body| {
        (Some(body.error.kind), Some(body.error.message.into_owned()))
    });
    // Anthropic's error messages describe the request, not its content, so
    // they are safe to log; the body itself is not logged.
    tracing::warn!(
        deployment = %deployment.name,
        status = status.as_u16(),
        upstream_error_type = kind.as_deref().unwrap_or(""),
        upstream_error = message.as_deref().unwrap_or(""),
        "upstream returned an error"
    );
    let mut error = status_error(status.as_u16(), message);
    error.retry_after = retry_after;
    Err(error)
}

/// `{"type":"error","error":{"type","message"}}`, as an HTTP error body or a
/// streamed `error` event.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope<'a> {
    #[serde(borrow)]
    error: ErrorView<'a>,
}

#[derive(Debug, Deserialize)]
struct ErrorView<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    message: Cow<'a, str>,
}

impl ErrorView<'_> {
    /// An error Anthropic reported inside a 200 (a streamed `error` event):
    /// mapped as the HTTP status its type stands for.
    fn into_provider_error(self) -> ProviderError {
        tracing::warn!(
            upstream_error_type = %self.kind,
            upstream_error = %self.message,
            "upstream reported an error mid-answer"
        );
        let status = match self.kind.as_ref() {
            "invalid_request_error" => 400,
            "authentication_error" => 401,
            "billing_error" => 402,
            "permission_error" => 403,
            "not_found_error" => 404,
            "request_too_large" => 413,
            "rate_limit_error" => 429,
            "timeout_error" => 504,
            "overloaded_error" => 529,
            // `api_error` and types added after this was written.
            _ => 500,
        };
        status_error(status, Some(self.message.into_owned()))
    }
}

/// Maps an Anthropic error status. Only a 400's own message reaches the
/// client (it is about the client's request); other details stay in logs.
fn status_error(status: u16, message: Option<String>) -> ProviderError {
    match status {
        400 | 422 => {
            let message =
                message.unwrap_or_else(|| "the model provider rejected the request".to_owned());
            let code = if is_context_length(&message) {
                ErrorCode::ContextLengthExceeded
            } else {
                ErrorCode::InvalidRequest
            };
            ProviderError::new(code, message)
        }
        401 | 403 => ProviderError::new(
            ErrorCode::UpstreamError,
            "the model provider rejected the gateway's credentials",
        ),
        404 => ProviderError::new(
            ErrorCode::UpstreamError,
            "the model provider does not know this model or endpoint (status 404)",
        ),
        413 => ProviderError::new(
            ErrorCode::RequestTooLarge,
            "the request is too large for the model provider",
        ),
        429 => ProviderError::new(
            ErrorCode::UpstreamRateLimited,
            "the model provider is rate limiting requests; retry later",
        ),
        408 | 504 => timeout(),
        529 => ProviderError::new(
            ErrorCode::UpstreamError,
            "the model provider is overloaded; retry later",
        ),
        _ => ProviderError::new(
            ErrorCode::UpstreamError,
            format!("the model provider failed (status {status})"),
        ),
    }
}

/// Anthropic words it "prompt is too long: 201234 tokens > 200000 maximum"
/// or "input length and `max_tokens` exceed context limit: ...".
fn is_context_length(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "prompt is too long",
        "context limit",
        "context window",
        "context length",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

/// Anthropic's `usage`, in a response or in `message_start`/`message_delta`.
/// Every field is optional: `message_delta` carries only some of them.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct UsageView {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

impl UsageView {
    /// Fields present in `newer` replace ours (`message_delta` counts are
    /// cumulative, not increments).
    fn update(&mut self, newer: UsageView) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
    }

    /// OpenAI counts every prompt token in `prompt_tokens`, cached or not;
    /// Anthropic reports the uncached, cache-read and cache-written parts
    /// separately, so they are summed. `cached_tokens` is the cache reads.
    fn to_openai(self) -> Usage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let prompt_tokens = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(cached)
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0));
        let completion_tokens = self.output_tokens.unwrap_or(0);
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: cached,
                cache_creation_tokens: self.cache_creation_input_tokens.unwrap_or(0),
            }),
            completion_tokens_details: None,
        }
    }
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // `end_turn`, `stop_sequence`, `pause_turn` and reasons added later:
        // the model stopped on its own terms.
        _ => "stop",
    }
}

/// `created` for translated answers: Anthropic does not send one.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn invalid_json_error(_: serde_json::Error) -> ProviderError {
    invalid_json()
}

fn encode_error(_: serde_json::Error) -> ProviderError {
    ProviderError::new(ErrorCode::Internal, "could not encode the answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_like_openai_upstreams() {
        let cases = [
            (401, ErrorCode::UpstreamError),
            (403, ErrorCode::UpstreamError),
            (404, ErrorCode::UpstreamError),
            (408, ErrorCode::UpstreamTimeout),
            (413, ErrorCode::RequestTooLarge),
            (429, ErrorCode::UpstreamRateLimited),
            (500, ErrorCode::UpstreamError),
            (502, ErrorCode::UpstreamError),
            (503, ErrorCode::UpstreamError),
            (504, ErrorCode::UpstreamTimeout),
            (529, ErrorCode::UpstreamError),
        ];
        for (status, code) in cases {
            assert_eq!(status_error(status, None).code, code, "{status}");
        }
        let error = status_error(400, Some("max_tokens: Field required".to_owned()));
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert_eq!(error.message, "max_tokens: Field required");
        let too_long = "prompt is too long: 201234 tokens > 200000 maximum";
        let error = status_error(400, Some(too_long.to_owned()));
        assert_eq!(error.code, ErrorCode::ContextLengthExceeded);
        assert_eq!(error.message, too_long);
        let error = status_error(401, Some("invalid x-api-key".to_owned()));
        assert_eq!(
            error.message,
            "the model provider rejected the gateway's credentials"
        );
        assert!(status_error(529, None).message.contains("overloaded"));
    }

    #[test]
    fn usage_sums_cache_parts() {
        let mut usage = UsageView {
            input_tokens: Some(10),
            output_tokens: Some(1),
            cache_read_input_tokens: Some(100),
            cache_creation_input_tokens: Some(5),
        };
        usage.update(UsageView {
            output_tokens: Some(7),
            ..UsageView::default()
        });
        let usage = usage.to_openai();
        assert_eq!(usage.prompt_tokens, 115);
        assert_eq!(usage.completion_tokens, 7);
        assert_eq!(usage.total_tokens, 122);
        assert_eq!(usage.cached_tokens(), 100);
    }
}
