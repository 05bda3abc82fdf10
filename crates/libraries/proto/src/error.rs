//! One error-code enum for every hop. Each code maps, exhaustively, to a gRPC
//! code and to the HTTP status and OpenAI `type`/`code` pair that OpenAI's own
//! API uses for the same failure, so clients' SDKs raise the exception they
//! would raise against OpenAI.

use http::StatusCode;

pub use crate::error_v1::ErrorCode;

impl ErrorCode {
    /// The gRPC status code for this failure.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::ContentPolicyViolation
            | ErrorCode::HeadersTooLarge => tonic::Code::InvalidArgument,
            ErrorCode::InvalidApiKey | ErrorCode::InvalidAdminToken => tonic::Code::Unauthenticated,
            ErrorCode::PermissionDenied | ErrorCode::AdminForbidden => {
                tonic::Code::PermissionDenied
            }
            ErrorCode::Conflict => tonic::Code::AlreadyExists,
            ErrorCode::MethodNotAllowed => tonic::Code::Unimplemented,
            ErrorCode::ModelNotFound | ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::RequestTooLarge => tonic::Code::OutOfRange,
            ErrorCode::RateLimited
            | ErrorCode::InsufficientQuota
            | ErrorCode::UpstreamRateLimited => tonic::Code::ResourceExhausted,
            ErrorCode::UpstreamError => tonic::Code::Unknown,
            ErrorCode::UpstreamTimeout => tonic::Code::DeadlineExceeded,
            ErrorCode::Unavailable | ErrorCode::Overloaded => tonic::Code::Unavailable,
            ErrorCode::Cancelled => tonic::Code::Cancelled,
            ErrorCode::Internal | ErrorCode::Unspecified => tonic::Code::Internal,
        }
    }

    /// The `Status` a gRPC handler answers with for this failure. `message`
    /// reaches the caller, so it must be safe to show (no driver errors,
    /// host names or SQL).
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), message)
    }

    /// The code for a gRPC failure that carried no typed error (transport
    /// errors, a peer that answered with a bare status).
    pub fn from_grpc(code: tonic::Code) -> ErrorCode {
        match code {
            tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                ErrorCode::InvalidRequest
            }
            tonic::Code::Unauthenticated => ErrorCode::InvalidApiKey,
            tonic::Code::PermissionDenied => ErrorCode::PermissionDenied,
            tonic::Code::NotFound => ErrorCode::NotFound,
            tonic::Code::OutOfRange => ErrorCode::RequestTooLarge,
            tonic::Code::ResourceExhausted => ErrorCode::RateLimited,
            tonic::Code::DeadlineExceeded => ErrorCode::UpstreamTimeout,
            tonic::Code::Unavailable | tonic::Code::Aborted => ErrorCode::Unavailable,
            tonic::Code::Cancelled => ErrorCode::Cancelled,
            tonic::Code::Unknown => ErrorCode::UpstreamError,
            tonic::Code::AlreadyExists => ErrorCode::Conflict,
            // A peer that does not implement a method we call is our
            // deployment's bug (mismatched versions), not the client's
            // wrong HTTP method: a 500, not a 405.
            tonic::Code::Ok
            | tonic::Code::Unimplemented
            | tonic::Code::Internal
            | tonic::Code::DataLoss => ErrorCode::Internal,
        }
    }

    /// The HTTP status OpenAI answers with for this failure.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::ContentPolicyViolation => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidApiKey | ErrorCode::InvalidAdminToken => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied | ErrorCode::AdminForbidden => StatusCode::FORBIDDEN,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::ModelNotFound | ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::RateLimited
            | ErrorCode::InsufficientQuota
            | ErrorCode::UpstreamRateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UpstreamError => StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Unavailable | ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            // nginx's "client closed request": nobody reads it, but logs and
            // metrics should not count a hang-up as a server error.
            ErrorCode::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorCode::Internal | ErrorCode::Unspecified => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type` for this failure.
    pub fn openai_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::InvalidApiKey
            | ErrorCode::PermissionDenied
            | ErrorCode::ModelNotFound
            | ErrorCode::NotFound
            | ErrorCode::RequestTooLarge
            | ErrorCode::Cancelled
            | ErrorCode::Conflict
            | ErrorCode::InvalidAdminToken
            | ErrorCode::MethodNotAllowed
            | ErrorCode::AdminForbidden
            | ErrorCode::HeadersTooLarge
            | ErrorCode::ContentPolicyViolation => "invalid_request_error",
            ErrorCode::RateLimited | ErrorCode::UpstreamRateLimited => "requests",
            ErrorCode::InsufficientQuota => "insufficient_quota",
            ErrorCode::UpstreamError
            | ErrorCode::UpstreamTimeout
            | ErrorCode::Unavailable
            | ErrorCode::Overloaded
            | ErrorCode::Internal
            | ErrorCode::Unspecified => "server_error",
        }
    }

    /// OpenAI's `error.code` for this failure; `None` where OpenAI sends null.
    pub fn openai_code(self) -> Option<&'static str> {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::NotFound | ErrorCode::MethodNotAllowed => None,
            ErrorCode::Conflict => Some("conflict"),
            ErrorCode::InvalidAdminToken => Some("invalid_admin_token"),
            ErrorCode::AdminForbidden => Some("forbidden"),
            ErrorCode::ContextLengthExceeded => Some("context_length_exceeded"),
            ErrorCode::ContentPolicyViolation => Some("content_policy_violation"),
            ErrorCode::InvalidApiKey => Some("invalid_api_key"),
            ErrorCode::PermissionDenied => Some("model_not_allowed"),
            ErrorCode::ModelNotFound => Some("model_not_found"),
            ErrorCode::RequestTooLarge => Some("request_too_large"),
            ErrorCode::HeadersTooLarge => Some("headers_too_large"),
            ErrorCode::RateLimited => Some("rate_limit_exceeded"),
            ErrorCode::InsufficientQuota => Some("insufficient_quota"),
            ErrorCode::UpstreamRateLimited => Some("upstream_rate_limited"),
            ErrorCode::UpstreamError => Some("upstream_error"),
            ErrorCode::UpstreamTimeout => Some("upstream_timeout"),
            ErrorCode::Unavailable => Some("service_unavailable"),
            ErrorCode::Overloaded => Some("overloaded"),
            ErrorCode::Cancelled => Some("client_closed_request"),
            ErrorCode::Internal | ErrorCode::Unspecified => Some("internal_error"),
        }
    }

    /// The HTTP status Anthropic's Messages API answers with for this
    /// failure, so the Anthropic SDKs raise the exception they would raise
    /// against Anthropic. Anthropic has no 502 or 503: a failed upstream is
    /// its `api_error` (500), and our "cannot serve right now" is its
    /// `overloaded_error` (529), which its SDKs retry.
    pub fn anthropic_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::ContentPolicyViolation => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidApiKey | ErrorCode::InvalidAdminToken => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied | ErrorCode::AdminForbidden => StatusCode::FORBIDDEN,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::ModelNotFound | ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::RateLimited
            | ErrorCode::InsufficientQuota
            | ErrorCode::UpstreamRateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UpstreamError | ErrorCode::Internal | ErrorCode::Unspecified => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Unavailable | ErrorCode::Overloaded => {
                StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
            }
            ErrorCode::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// Anthropic's `error.type` for this failure.
    pub fn anthropic_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::ContextLengthExceeded
            | ErrorCode::ContentPolicyViolation
            | ErrorCode::Conflict
            | ErrorCode::MethodNotAllowed
            | ErrorCode::HeadersTooLarge
            | ErrorCode::Cancelled => "invalid_request_error",
            ErrorCode::InvalidApiKey | ErrorCode::InvalidAdminToken => "authentication_error",
            ErrorCode::PermissionDenied | ErrorCode::AdminForbidden => "permission_error",
            ErrorCode::ModelNotFound | ErrorCode::NotFound => "not_found_error",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::RateLimited
            | ErrorCode::InsufficientQuota
            | ErrorCode::UpstreamRateLimited => "rate_limit_error",
            ErrorCode::UpstreamError | ErrorCode::Internal | ErrorCode::Unspecified => "api_error",
            ErrorCode::UpstreamTimeout => "timeout_error",
            ErrorCode::Unavailable | ErrorCode::Overloaded => "overloaded_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value the proto declares: `try_from` fails past the last one.
    fn every_code() -> Vec<ErrorCode> {
        (0..)
            .map_while(|raw| ErrorCode::try_from(raw).ok())
            .collect()
    }

    #[test]
    fn every_code_round_trips_through_grpc_to_the_same_http_status() {
        let codes = every_code();
        assert!(codes.contains(&ErrorCode::MethodNotAllowed), "{codes:?}");
        for code in codes {
            let back = ErrorCode::from_grpc(code.grpc_code());
            // The one code only an HTTP surface produces: over gRPC, the
            // same code means a peer lacks a method, which is our fault.
            let expected = match code {
                ErrorCode::MethodNotAllowed => StatusCode::INTERNAL_SERVER_ERROR,
                // Only an HTTP listener produces it (hyper's header limit);
                // over gRPC it is one more invalid argument.
                ErrorCode::HeadersTooLarge => StatusCode::BAD_REQUEST,
                _ => code.http_status(),
            };
            assert_eq!(
                back.http_status(),
                expected,
                "{code:?} -> {:?} -> {back:?}",
                code.grpc_code()
            );
        }
    }

    #[test]
    fn admin_codes_render_as_the_admin_api_always_has() {
        let cases = [
            (ErrorCode::Conflict, 409, Some("conflict")),
            (
                ErrorCode::InvalidAdminToken,
                401,
                Some("invalid_admin_token"),
            ),
            (ErrorCode::MethodNotAllowed, 405, None),
            (ErrorCode::AdminForbidden, 403, Some("forbidden")),
        ];
        for (code, status, openai_code) in cases {
            assert_eq!(code.http_status().as_u16(), status, "{code:?}");
            assert_eq!(code.openai_type(), "invalid_request_error", "{code:?}");
            assert_eq!(code.openai_code(), openai_code, "{code:?}");
        }
    }

    #[test]
    fn anthropic_statuses_pair_with_anthropic_types() {
        // Anthropic's documented pairs of status and `error.type`.
        let documented = [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ];
        for code in every_code() {
            let status = code.anthropic_status().as_u16();
            let kind = code.anthropic_type();
            match documented.iter().find(|(s, _)| *s == status) {
                Some((_, expected)) => assert_eq!(kind, *expected, "{code:?}"),
                // Statuses Anthropic does not document come from our own
                // surfaces (admin API, a client hang-up).
                None => assert!(
                    [405, 409, 431, 499].contains(&status) && kind == "invalid_request_error",
                    "{code:?} -> {status} {kind}"
                ),
            }
        }
        assert_eq!(ErrorCode::Unavailable.anthropic_status().as_u16(), 529);
        assert_eq!(ErrorCode::UpstreamError.anthropic_status().as_u16(), 500);
    }

    #[test]
    fn headers_too_large_is_431_in_both_protocols() {
        let code = ErrorCode::HeadersTooLarge;
        assert_eq!(code as i32, 22);
        assert_eq!(code.http_status().as_u16(), 431);
        assert_eq!(code.anthropic_status().as_u16(), 431);
        assert_eq!(code.openai_type(), "invalid_request_error");
        assert_eq!(code.openai_code(), Some("headers_too_large"));
        assert_eq!(code.anthropic_type(), "invalid_request_error");
        assert_eq!(code.grpc_code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn status_carries_the_grpc_code_and_message() {
        let status = ErrorCode::Unavailable.status("retry later");
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "retry later");
    }
}
