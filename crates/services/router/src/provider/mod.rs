//! Upstream provider protocols. Each provider turns an OpenAI chat request
//! into its own wire format and its answers back into OpenAI chunks.

pub mod anthropic;
pub mod chat_chunk;
mod chat_request;
pub mod openai;
pub mod sse;
pub mod upstream_error;
pub mod upstream_stream;

use std::time::Duration;

use bytes::Bytes;
use llmgw_proto::ErrorCode;
use llmgw_proto::error_v1;

use crate::catalog::Deployment;
use crate::config::{FallbackOn, Provider};

/// A failed upstream call, as the client will see it. `message` is safe to
/// show: upstream bodies and internal details go to the logs only.
#[derive(Debug, Clone)]
pub struct ProviderError {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
    /// The provider's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ProviderError {
        ProviderError {
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// Worth another attempt (same or another deployment): the provider
    /// failed, not the request.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.code,
            ErrorCode::UpstreamError | ErrorCode::UpstreamTimeout | ErrorCode::UpstreamRateLimited
        )
    }

    /// Counts against the deployment's circuit breaker.
    pub fn is_deployment_fault(&self) -> bool {
        self.is_retryable()
    }

    /// The fallback trigger this error is, if any.
    pub fn fallback_reason(&self) -> Option<FallbackOn> {
        match self.code {
            ErrorCode::UpstreamRateLimited => Some(FallbackOn::RateLimited),
            ErrorCode::UpstreamError | ErrorCode::Unavailable => Some(FallbackOn::Unavailable),
            ErrorCode::UpstreamTimeout => Some(FallbackOn::Timeout),
            ErrorCode::ContextLengthExceeded => Some(FallbackOn::ContextLength),
            ErrorCode::Unspecified
            | ErrorCode::InvalidRequest
            | ErrorCode::InvalidApiKey
            | ErrorCode::PermissionDenied
            | ErrorCode::ModelNotFound
            | ErrorCode::NotFound
            | ErrorCode::RequestTooLarge
            | ErrorCode::RateLimited
            | ErrorCode::InsufficientQuota
            | ErrorCode::Cancelled
            | ErrorCode::Internal
            | ErrorCode::Conflict
            | ErrorCode::InvalidAdminToken
            | ErrorCode::MethodNotAllowed
            | ErrorCode::ContentPolicyViolation => None,
        }
    }

    pub fn into_proto(self) -> error_v1::Error {
        error_v1::Error {
            code: self.code.into(),
            message: self.message,
            param: self.param.unwrap_or_default(),
            retry_after_ms: self.retry_after.map_or(0, |after| after.as_millis() as u64),
        }
    }
}

/// The request body to send upstream, in the deployment's protocol.
pub struct UpstreamRequest {
    pub body: Vec<u8>,
}

/// The request body for `deployment`'s protocol.
pub fn build_request(
    client_body: &[u8],
    deployment: &Deployment,
    stream: bool,
) -> Result<UpstreamRequest, ProviderError> {
    match deployment.provider {
        Provider::Openai => openai::build_request(client_body, deployment, stream),
        Provider::Anthropic => anthropic::build_request(client_body, deployment, stream),
    }
}

/// Sends the request and waits for the response headers.
pub async fn send(
    client: &reqwest::Client,
    deployment: &Deployment,
    body: Vec<u8>,
    first_byte_timeout: Duration,
) -> Result<reqwest::Response, ProviderError> {
    match deployment.provider {
        Provider::Openai => openai::send(client, deployment, body, first_byte_timeout).await,
        Provider::Anthropic => anthropic::send(client, deployment, body, first_byte_timeout).await,
    }
}

/// A whole non-streaming answer, as an OpenAI `chat.completion` body.
pub fn completion(deployment: &Deployment, body: Bytes) -> Result<Bytes, ProviderError> {
    match deployment.provider {
        Provider::Openai => Ok(body),
        Provider::Anthropic => anthropic::completion_to_openai(&body, &deployment.upstream_model),
    }
}

/// A non-2xx upstream answer, for the protocol to map to an error.
pub struct Failure {
    pub status: http::StatusCode,
    pub retry_after: Option<Duration>,
    /// The (small) error body, read for the logs and a 400's message.
    pub body: Bytes,
}

/// Sends `request` and waits for the response headers within
/// `first_byte_timeout`. A non-2xx answer comes back as a [`Failure`].
pub async fn exchange(
    deployment: &Deployment,
    request: reqwest::RequestBuilder,
    first_byte_timeout: Duration,
) -> Result<Result<reqwest::Response, Failure>, ProviderError> {
    let response = tokio::time::timeout(first_byte_timeout, request.send())
        .await
        .map_err(|_| upstream_error::timeout())?
        .map_err(|error| upstream_error::transport_error(deployment, &error))?;
    let status = response.status();
    if status.is_success() {
        return Ok(Ok(response));
    }
    let retry_after = retry_after(response.headers());
    let body = tokio::time::timeout(first_byte_timeout, response.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok(Err(Failure {
        status,
        retry_after,
        body,
    }))
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs; ignored).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(Duration::from_secs_f64)
}
