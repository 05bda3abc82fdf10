//! The OpenAI-compatible chat completions protocol (OpenAI, DeepSeek, Qwen
//! compatible mode, vLLM, Ollama, the mock upstream).

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use llmgw_openai::{ErrorBody, Usage};
use llmgw_proto::ErrorCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::ProviderError;
use crate::catalog::Deployment;

/// The request body to send upstream.
pub struct UpstreamRequest {
    pub body: Vec<u8>,
}

/// Rewrites the client's request for `deployment`: the upstream model name
/// replaces the alias, and streaming calls always ask for usage so that every
/// token is accounted for. Every other field passes through untouched.
pub fn build_request(
    client_body: &[u8],
    deployment: &Deployment,
    stream: bool,
) -> Result<UpstreamRequest, ProviderError> {
    let mut body: Map<String, Value> = serde_json::from_slice(client_body).map_err(|_| {
        ProviderError::new(
            ErrorCode::InvalidRequest,
            "request body is not a JSON object",
        )
    })?;
    body.insert(
        "model".to_owned(),
        Value::String(deployment.upstream_model.clone()),
    );
    if stream {
        let options = body
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if !options.is_object() {
            *options = Value::Object(Map::new());
        }
        if let Value::Object(options) = options {
            options.insert("include_usage".to_owned(), Value::Bool(true));
        }
    }
    let body = serde_json::to_vec(&body)
        .map_err(|_| ProviderError::new(ErrorCode::Internal, "could not encode the request"))?;
    Ok(UpstreamRequest { body })
}

/// Sends the request and waits for the response headers.
pub async fn send(
    client: &reqwest::Client,
    deployment: &Deployment,
    body: Vec<u8>,
    first_byte_timeout: Duration,
) -> Result<reqwest::Response, ProviderError> {
    let mut headers = http::HeaderMap::new();
    llmgw_telemetry::inject_context(&mut headers);
    let mut request = client
        .post(deployment.chat_url.clone())
        .headers(headers)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(key) = deployment.api_key() {
        request = request.bearer_auth(key);
    }
    match super::exchange(deployment, request, first_byte_timeout).await? {
        Ok(response) => Ok(response),
        Err(failure) => {
            let mut error = status_error(deployment, failure.status, &failure.body);
            error.retry_after = failure.retry_after;
            Err(error)
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs; ignored).
pub fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(Duration::from_secs_f64)
}

pub fn timeout() -> ProviderError {
    ProviderError::new(
        ErrorCode::UpstreamTimeout,
        "the model provider did not answer in time",
    )
}

pub fn transport_error(deployment: &Deployment, error: &reqwest::Error) -> ProviderError {
    tracing::warn!(deployment = %deployment.name, error = %error, "upstream transport error");
    if error.is_timeout() {
        return timeout();
    }
    ProviderError::new(
        ErrorCode::UpstreamError,
        "could not reach the model provider",
    )
}

/// Maps an upstream HTTP error. Only a 400's own message reaches the client
/// (it is about the client's request); other upstream details stay in logs.
fn status_error(deployment: &Deployment, status: http::StatusCode, body: &[u8]) -> ProviderError {
    let upstream: Option<ErrorBody> = serde_json::from_slice(body).ok();
    tracing::warn!(
        deployment = %deployment.name,
        status = status.as_u16(),
        upstream_error = upstream.as_ref().map(|body| body.error.message.as_str()).unwrap_or(""),
        "upstream returned an error"
    );
    match status.as_u16() {
        400 | 422 => {
            let (message, param) = upstream.map_or_else(
                || ("the model provider rejected the request".to_owned(), None),
                |body| (body.error.message, body.error.param),
            );
            let code = if message.contains("context length") || message.contains("context_length") {
                ErrorCode::ContextLengthExceeded
            } else {
                ErrorCode::InvalidRequest
            };
            ProviderError {
                code,
                message,
                param,
                retry_after: None,
            }
        }
        413 => ProviderError::new(
            ErrorCode::RequestTooLarge,
            "the request is too large for the model provider",
        ),
        408 | 504 => timeout(),
        429 => ProviderError::new(
            ErrorCode::UpstreamRateLimited,
            "the model provider is rate limiting requests; retry later",
        ),
        401 | 403 => ProviderError::new(
            ErrorCode::UpstreamError,
            "the model provider rejected the gateway's credentials",
        ),
        _ => ProviderError::new(
            ErrorCode::UpstreamError,
            format!("the model provider failed (status {})", status.as_u16()),
        ),
    }
}

pub fn invalid_json() -> ProviderError {
    ProviderError::new(
        ErrorCode::UpstreamError,
        "the model provider returned invalid JSON",
    )
}

/// What the router reads of a streamed chunk; the chunk itself is forwarded
/// as the upstream wrote it.
#[derive(Debug, Deserialize)]
pub struct ChunkView<'a> {
    #[serde(default, borrow)]
    pub id: Cow<'a, str>,
    #[serde(default)]
    pub created: u64,
    #[serde(default, borrow)]
    pub model: Cow<'a, str>,
    #[serde(default, borrow)]
    pub choices: Vec<ChoiceView<'a>>,
    #[serde(default)]
    pub usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
pub struct ChoiceView<'a> {
    #[serde(default, borrow)]
    pub delta: Option<DeltaView<'a>>,
    #[serde(default, borrow)]
    pub message: Option<DeltaView<'a>>,
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct DeltaView<'a> {
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub reasoning_content: Option<Cow<'a, str>>,
    /// `Option`: some providers send `"tool_calls": null`.
    #[serde(default, borrow)]
    pub tool_calls: Option<Vec<ToolCallView<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ToolCallView<'a> {
    #[serde(default, borrow)]
    pub function: Option<FunctionView<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct FunctionView<'a> {
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub arguments: Option<Cow<'a, str>>,
}

impl DeltaView<'_> {
    /// The generated text (answer, reasoning, tool names and arguments), for
    /// token estimates when the provider reports no usage.
    pub fn generated_text(&self, into: &mut String) {
        let texts = [&self.content, &self.reasoning_content]
            .into_iter()
            .flatten()
            .chain(
                self.tool_calls
                    .iter()
                    .flatten()
                    .filter_map(|call| call.function.as_ref())
                    .flat_map(|function| {
                        [&function.name, &function.arguments].into_iter().flatten()
                    }),
            );
        for text in texts {
            into.push_str(text);
        }
    }
}

/// A final chunk carrying `finish_reason`, for upstreams whose stream ended
/// cleanly without one (clients such as LiteLLM reject such streams).
pub fn finish_chunk(id: &str, created: u64, model: &str, finish_reason: &str) -> Bytes {
    let chunk = serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}],
    });
    Bytes::from(chunk.to_string())
}
