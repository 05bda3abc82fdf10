//! The errors any provider's call can end with, whatever its protocol: no
//! answer in time, no connection, an answer that is not JSON. Messages are
//! safe to show clients; details go to the logs.

use llmgw_proto::ErrorCode;

use super::ProviderError;
use crate::catalog::Deployment;

/// No answer (headers, body or the next chunk) within its timeout.
pub fn timeout() -> ProviderError {
    ProviderError::new(
        ErrorCode::UpstreamTimeout,
        "the model provider did not answer in time",
    )
}

/// The request never got an answer: refused, reset, TLS, DNS (logged).
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

/// An answer or chunk that does not parse as the protocol says.
pub fn invalid_json() -> ProviderError {
    ProviderError::new(
        ErrorCode::UpstreamError,
        "the model provider returned invalid JSON",
    )
}
