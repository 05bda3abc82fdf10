//! Upstream provider protocols. Each provider turns an OpenAI chat request
//! into its own wire format and its answers back into OpenAI chunks;
//! Anthropic Messages requests go natively to Anthropic and translated to
//! the others; embeddings go to OpenAI-compatible deployments as they are.

pub mod anthropic;
pub mod chat_chunk;
mod chat_request;
pub mod model_field;
pub mod openai;
pub mod sse;
pub mod upstream_error;
pub mod upstream_stream;

use std::time::Duration;

use bytes::Bytes;
use llmgw_proto::ErrorCode;
use llmgw_proto::error_v1;

use crate::catalog::Deployment;
use crate::config::{ClientApi, FallbackOn, Provider};

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
            ErrorCode::UpstreamError | ErrorCode::Unavailable | ErrorCode::Overloaded => {
                Some(FallbackOn::Unavailable)
            }
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
            | ErrorCode::AdminForbidden
            | ErrorCode::HeadersTooLarge
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

/// What a Messages client said about Anthropic's API (its
/// `anthropic-version` and `anthropic-beta` headers), passed on to
/// Anthropic deployments.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientHeaders<'a> {
    pub anthropic_version: Option<&'a str>,
    pub anthropic_beta: Option<&'a str>,
}

/// The request body for `deployment`'s protocol, for a call of `api`.
pub fn build_request(
    api: ClientApi,
    client_body: &[u8],
    deployment: &Deployment,
    stream: bool,
) -> Result<UpstreamRequest, ProviderError> {
    match (api, deployment.provider) {
        (ClientApi::Chat, Provider::Openai) => {
            openai::build_request(client_body, deployment, stream)
        }
        (ClientApi::Chat, Provider::Anthropic) => {
            anthropic::build_request(client_body, deployment, stream)
        }
        (ClientApi::Messages, Provider::Anthropic) => {
            anthropic::native::build_request(client_body, &deployment.upstream_model)
        }
        (ClientApi::Messages, Provider::Openai) => {
            anthropic::inbound::to_chat_request(client_body, &deployment.upstream_model, stream)
                .map(|body| UpstreamRequest { body })
        }
        (ClientApi::Embeddings, Provider::Openai) => {
            openai::build_embeddings_request(client_body, deployment)
        }
        // The catalog refuses such aliases; kept as an error, not a panic.
        (ClientApi::Embeddings, Provider::Anthropic) => Err(no_embeddings()),
    }
}

/// Sends a call of `api` and waits for the response headers.
pub async fn send(
    client: &reqwest::Client,
    deployment: &Deployment,
    api: ClientApi,
    body: Vec<u8>,
    first_byte_timeout: Duration,
    headers: &ClientHeaders<'_>,
) -> Result<reqwest::Response, ProviderError> {
    let url = match api {
        ClientApi::Chat | ClientApi::Messages => &deployment.chat_url,
        ClientApi::Embeddings => deployment
            .embeddings_url
            .as_ref()
            .ok_or_else(no_embeddings)?,
    };
    match deployment.provider {
        Provider::Openai => openai::send(client, deployment, url, body, first_byte_timeout).await,
        Provider::Anthropic => {
            // Only Messages clients speak Anthropic's versions.
            let headers = match api {
                ClientApi::Messages => *headers,
                ClientApi::Chat | ClientApi::Embeddings => ClientHeaders::default(),
            };
            anthropic::send(client, deployment, url, body, first_byte_timeout, &headers).await
        }
    }
}

fn no_embeddings() -> ProviderError {
    ProviderError::new(
        ErrorCode::InvalidRequest,
        "this model's provider has no embeddings API",
    )
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
