//! Error responses in OpenAI's format, and the waiting done by stalls.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use llmgw_openai::{ErrorBody, ErrorDetail};
use tokio::sync::watch;

use crate::config::{BadSetting, Fault};

/// The body of `invalid-json` answers: starts like JSON, never parses.
pub const BROKEN_JSON: &str = r#"{"id": broken"#;

/// How long a stall lasts at most. Long enough that any client timeout
/// fires first, short enough that a leaked one eventually goes away.
const STALL: Duration = Duration::from_secs(3600);

/// Fires when the server starts shutting down. `true` means shutting down.
pub type Shutdown = watch::Receiver<bool>;

/// Waits until shutdown begins or the stall limit passes, whichever is
/// first. Stalled responses must end on shutdown, or the graceful shutdown
/// would wait for them forever.
pub async fn stall(mut shutdown: Shutdown) {
    let _ = tokio::time::timeout(STALL, async move {
        if shutdown.wait_for(|down| *down).await.is_err() {
            // No one can signal shutdown (router built without `run`).
            std::future::pending::<()>().await;
        }
    })
    .await;
}

pub fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: impl Into<String>,
) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            message: message.into(),
            kind: kind.to_owned(),
            param: param.map(str::to_owned),
            code: code.map(str::to_owned),
        },
    };
    (status, Json(body)).into_response()
}

pub fn bad_request(bad: BadSetting) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        None,
        Some(&bad.param),
        bad.message,
    )
}

pub fn internal(message: impl Into<String>) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        None,
        None,
        message,
    )
}

/// The faults answered with an HTTP error status, as OpenAI words them.
pub fn status_fault(fault: Fault, retry_after_secs: u64) -> Option<Response> {
    Some(match fault {
        Fault::RateLimited => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                Some("rate_limit_exceeded"),
                None,
                "Rate limit reached for requests (mock fault 429). Please try again in 1s.",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Fault::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            None,
            "The server had an error while processing your request (mock fault 500).",
        ),
        Fault::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("service_unavailable"),
            None,
            "The server is overloaded or not ready yet (mock fault 503).",
        ),
        _ => return None,
    })
}

/// A 200 whose declared JSON body is not JSON.
pub fn json_200(body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
