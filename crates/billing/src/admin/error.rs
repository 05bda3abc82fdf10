//! Admin API errors, in the OpenAI error shape the rest of the gateway
//! speaks: `{"error": {"message", "type", "param", "code"}}`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    /// The request field at fault ("limits.concurrent"), for 400s and 409s.
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>, code: Option<&'static str>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message, None)
    }

    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::invalid(message).with_param(param)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message, Some("not_found"))
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this route",
            None,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            message,
            Some("invalid_admin_token"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            message,
            Some("service_unavailable"),
        )
    }

    #[cfg(test)]
    pub fn param(&self) -> Option<&str> {
        self.param.as_deref()
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Maps a store failure. `param` names the field a conflict is about
    /// (a duplicate `name`); database failures are logged here and reach
    /// the client only as a generic 503, since driver messages can carry
    /// host names and SQL.
    pub fn store(error: StoreError, param: Option<&str>) -> Self {
        let error = match error {
            StoreError::Conflict(message) => {
                ApiError::new(StatusCode::CONFLICT, message, Some("conflict"))
            }
            StoreError::Invalid(message) => ApiError::invalid(message),
            StoreError::Database(error) => {
                tracing::warn!(error = %error, "admin request: database failure");
                return ApiError::unavailable(
                    "the billing database is unavailable; try again later",
                );
            }
            other => {
                tracing::error!(error = %other, "admin request: store failure");
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the billing service's logs",
                    Some("internal_error"),
                );
            }
        };
        match param {
            Some(param) => error.with_param(param),
            None => error,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let body = json!({
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
