//! Admin API errors: a shared [`ErrorCode`] and a message, rendered in the
//! OpenAI error shape the rest of the gateway speaks,
//! `{"error": {"message", "type", "param", "code"}}`, with the HTTP status,
//! `type` and `code` the enum assigns (so the edge and the admin API cannot
//! disagree on what a 409 or a 503 looks like).

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use llmgw_openai::{ErrorBody, ErrorDetail};
use llmgw_proto::ErrorCode;

use crate::store::StoreError;

/// Every code the admin API answers with, for its OpenAPI document.
pub(crate) const ADMIN_CODES: [ErrorCode; 8] = [
    ErrorCode::InvalidRequest,
    ErrorCode::InvalidAdminToken,
    ErrorCode::AdminForbidden,
    ErrorCode::NotFound,
    ErrorCode::MethodNotAllowed,
    ErrorCode::Conflict,
    ErrorCode::Internal,
    ErrorCode::Unavailable,
];

#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    /// The request field at fault ("limits.concurrent"), for 400s and 409s.
    param: Option<String>,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            param: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::invalid(message).with_param(param)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::NotFound, message)
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            ErrorCode::MethodNotAllowed,
            "method not allowed on this route",
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Conflict, message)
    }

    pub fn internal() -> Self {
        ApiError::new(
            ErrorCode::Internal,
            "internal error; see the billing service's logs",
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidAdminToken, message)
    }

    /// 403: the caller is known, but its role (or a missing CSRF token)
    /// does not allow this request.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::AdminForbidden, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::Unavailable, message)
    }

    pub fn is_unauthorized(&self) -> bool {
        self.code == ErrorCode::InvalidAdminToken
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
            StoreError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            StoreError::Invalid(message) => ApiError::invalid(message),
            // The store knows the field: it wins over the caller's guess.
            StoreError::InvalidField { field, message } => {
                return ApiError::invalid_param(field, message);
            }
            StoreError::InUse(message) => ApiError::new(ErrorCode::Conflict, message),
            StoreError::Database(error) => {
                tracing::warn!(error = %error, "admin request: database failure");
                return ApiError::unavailable(
                    "the billing database is unavailable; try again later",
                );
            }
            StoreError::Migrate(error) => {
                tracing::error!(error = %error, "admin request: store failure");
                return ApiError::new(
                    ErrorCode::Internal,
                    "internal error; see the billing service's logs",
                );
            }
        };
        match param {
            Some(param) => error.with_param(param),
            None => error,
        }
    }

    /// The status and JSON body the client receives.
    pub fn into_reply(self) -> (StatusCode, Vec<u8>) {
        let status = self.code.http_status();
        // Plain strings always serialise; the empty object keeps it total.
        let body = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        (status, body)
    }

    fn body(self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message,
                kind: self.code.openai_type().to_owned(),
                param: self.param,
                code: self.code.openai_code().map(str::to_owned),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.http_status();
        let mut response = (status, Json(self.body())).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
