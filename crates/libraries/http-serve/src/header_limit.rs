//! The header size limit with a body: hyper refuses header sections over
//! its buffer with a bare 431; those between `max_header_bytes` and that
//! buffer reach us and get the OpenAI error body, so a client's SDK can say
//! what went wrong.

use axum::body::Body;
use axum::response::Response;
use llmgw_openai::{ErrorBody, ErrorDetail};
use llmgw_proto::ErrorCode;

/// The size of `request`'s header section as a client sent it over
/// HTTP/1: the request line, and each header as `name: value\r\n`. (HTTP/2
/// sends them compressed; the same count keeps one limit for both.)
pub fn header_section_bytes<B>(request: &http::Request<B>) -> usize {
    let request_line = request.method().as_str().len()
        + 1
        + request
            .uri()
            .path_and_query()
            .map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    request_line + headers + 2
}

/// The 431 for a header section over `max_header_bytes`, else `None`.
pub(crate) fn refusal<B>(request: &http::Request<B>, max_header_bytes: usize) -> Option<Response> {
    let size = header_section_bytes(request);
    if size <= max_header_bytes {
        return None;
    }
    tracing::debug!(size, max_header_bytes, "request headers too large");
    let code = ErrorCode::HeadersTooLarge;
    let body = ErrorBody {
        error: ErrorDetail {
            message: format!(
                "Request header fields too large: {size} bytes; the limit is {max_header_bytes} bytes."
            ),
            kind: code.openai_type().to_owned(),
            param: None,
            code: code.openai_code().map(str::to_owned),
        },
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = code.http_status();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    // The client is sending more than it should: do not keep the HTTP/1
    // connection for its next request (HTTP/2 forbids the header).
    if request.version() < http::Version::HTTP_2 {
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    Some(response)
}
