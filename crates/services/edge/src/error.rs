//! The error a client sees: OpenAI's JSON shape and status for an
//! [`ErrorCode`].

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use llmgw_openai::{ErrorBody, ErrorDetail};
use llmgw_proto::ErrorCode;
use llmgw_proto::error_v1;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<Cow<'static, str>>,
    /// Sent as `Retry-After` (whole seconds, rounded up).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, after: std::time::Duration) -> ApiError {
        self.retry_after = Some(after);
        self
    }

    pub fn invalid(param: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code: ErrorCode::InvalidRequest,
            message: message.into(),
            param: Some(Cow::Borrowed(param)),
            retry_after: None,
        }
    }

    pub fn with_param(mut self, param: &'static str) -> ApiError {
        self.param = Some(Cow::Borrowed(param));
        self
    }

    /// The router could not be reached or broke the call: the client learns
    /// that much, never the transport details.
    pub fn from_status(status: &tonic::Status) -> ApiError {
        let code = ErrorCode::from_grpc(status.code());
        tracing::warn!(grpc_code = ?status.code(), error = %status.message(), "router call failed");
        ApiError::new(
            code,
            "the gateway could not complete the request; try again",
        )
    }

    pub fn from_proto(error: error_v1::Error) -> ApiError {
        ApiError {
            code: error.code(),
            message: error.message,
            param: (!error.param.is_empty()).then_some(Cow::Owned(error.param)),
            // A provider's Retry-After, passed on.
            retry_after: (error.retry_after_ms > 0)
                .then(|| std::time::Duration::from_millis(error.retry_after_ms)),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: self.code.openai_type().to_owned(),
                param: self.param.as_deref().map(str::to_owned),
                code: self.code.openai_code().map(str::to_owned),
            },
        }
    }

    /// The body as JSON bytes (also used for the SSE error event).
    pub fn to_json(&self) -> Bytes {
        // Serialising plain strings cannot fail; an empty object is the
        // fallback that keeps the type simple.
        serde_json::to_vec(&self.body()).map_or_else(|_| Bytes::from_static(b"{}"), Bytes::from)
    }
}

impl ApiError {
    /// Anthropic's error body: `{"type":"error","error":{"type","message"}}`
    /// (also used for the SSE `error` event of a Messages stream).
    pub fn to_anthropic_json(&self) -> Bytes {
        let body = serde_json::json!({
            "type": "error",
            "error": {"type": self.code.anthropic_type(), "message": self.message},
        });
        serde_json::to_vec(&body).map_or_else(|_| Bytes::from_static(b"{}"), Bytes::from)
    }

    /// The response in Anthropic's shape and with Anthropic's status, for
    /// Messages clients (whose SDKs map statuses to exception classes).
    pub fn into_anthropic_response(self) -> Response {
        let status = self.code.anthropic_status();
        let body = self.to_anthropic_json();
        self.respond(status, body)
    }

    fn respond(self, status: http::StatusCode, body: Bytes) -> Response {
        let mut response = (
            status,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        let retry_after = match (self.retry_after, self.code) {
            (Some(after), _) => Some(after.as_millis().div_ceil(1000).max(1) as u64),
            (None, ErrorCode::RateLimited | ErrorCode::UpstreamRateLimited) => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.http_status();
        let body = self.to_json();
        self.respond(status, body)
    }
}
