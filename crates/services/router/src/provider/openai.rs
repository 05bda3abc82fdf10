//! The OpenAI-compatible chat completions protocol (OpenAI, DeepSeek, Qwen
//! compatible mode, vLLM, Ollama, the mock upstream): the request rewrite
//! and the mapping of its HTTP errors. What every provider shares lives in
//! `upstream_error` and `chat_chunk`.

use std::time::Duration;

use llmgw_openai::ErrorBody;
use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::{Usage, UsageSource};
use serde::Deserialize;

use super::{ProviderError, UpstreamRequest, upstream_error};
use crate::catalog::Deployment;

/// Rewrites the client's request for `deployment`: the upstream model name
/// replaces the alias, and streaming calls always ask for usage so that every
/// token is accounted for. Every other field passes through untouched, as
/// the client wrote it ([`super::model_field::rewrite`]: no parsed value).
pub fn build_request(
    client_body: &[u8],
    deployment: &Deployment,
    stream: bool,
) -> Result<UpstreamRequest, ProviderError> {
    super::model_field::rewrite(client_body, &deployment.upstream_model, stream)
        .map(|body| UpstreamRequest { body })
}

/// The client's embeddings request for `deployment`: the upstream model
/// name replaces the alias; every other field passes through untouched.
pub fn build_embeddings_request(
    client_body: &[u8],
    deployment: &Deployment,
) -> Result<UpstreamRequest, ProviderError> {
    super::model_field::replace(client_body, &deployment.upstream_model)
        .map(|body| UpstreamRequest { body })
}

#[derive(Debug, Deserialize)]
struct EmbeddingsView {
    #[serde(default)]
    usage: Option<EmbeddingsUsage>,
}

/// An embeddings answer's usage: input tokens only.
#[derive(Debug, Deserialize)]
struct EmbeddingsUsage {
    #[serde(default)]
    prompt_tokens: u64,
}

/// The usage an embeddings answer reports (`None`: it reported none). The
/// vectors themselves are skipped, not parsed into numbers.
pub fn embeddings_usage(body: &[u8]) -> Result<Option<Usage>, ProviderError> {
    let view: EmbeddingsView =
        serde_json::from_slice(body).map_err(|_| upstream_error::invalid_json())?;
    Ok(view.usage.map(|usage| Usage {
        prompt_tokens: usage.prompt_tokens,
        total_tokens: usage.prompt_tokens,
        source: UsageSource::Reported.into(),
        ..Usage::default()
    }))
}

/// Sends the request to `url` and waits for the response headers.
pub async fn send(
    client: &reqwest::Client,
    deployment: &Deployment,
    url: &reqwest::Url,
    body: Vec<u8>,
    first_byte_timeout: Duration,
) -> Result<reqwest::Response, ProviderError> {
    let mut headers = http::HeaderMap::new();
    llmgw_telemetry::inject_context(&mut headers);
    let mut request = client
        .post(url.clone())
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
        408 | 504 => upstream_error::timeout(),
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
