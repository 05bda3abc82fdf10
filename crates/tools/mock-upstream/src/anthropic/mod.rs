//! `POST /v1/messages`: Anthropic's Messages API, as far as the gateway
//! uses it.
//!
//! The answer is the OpenAI route's (same words for the same prompt, same
//! token counts, same settings and faults) in Anthropic's wire format. Like
//! the real API, requests need the `anthropic-version` header, `max_tokens`,
//! and no fields Anthropic does not know, so a gateway that forwards an
//! OpenAI-only field is caught. Fault `529` (Anthropic's "overloaded")
//! exists only here.

mod reply;
mod stream;

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use crate::AppState;
use crate::config::{BadSetting, Config, Fault, Settings};
use crate::faults::{self, BROKEN_JSON};
use crate::stream::Shape;
use reply::Reply;

/// The top-level fields the real API accepts, plus the mock's own `mock`.
/// Anything else is rejected the way Anthropic does.
const KNOWN_FIELDS: [&str; 18] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "mock",
];

/// The fault name only this route knows.
const OVERLOADED: &str = "529";

pub(crate) async fn messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Counted before anything can fail, so that rejected requests show up too.
    let active = state.stats.chat_request(&headers, &body);
    if let Some(denied) = check_auth(&state.config, &headers) {
        return denied;
    }
    if !headers.contains_key("anthropic-version") {
        return invalid_request("anthropic-version: header is required");
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request @ Value::Object(_)) => request,
        Ok(_) => return invalid_request("The request body must be a JSON object."),
        Err(err) => return invalid_request(format!("The request body is not valid JSON: {err}")),
    };
    if let Err(message) = validate(&request) {
        return invalid_request(message);
    }
    let (settings, overloaded) = match resolve(&state.config, &headers, &request) {
        Ok(resolved) => resolved,
        Err(bad) => return invalid_request(format!("{}: {}", bad.param, bad.message)),
    };
    let id = format!("msg_mock_{}", state.ids.fetch_add(1, Ordering::Relaxed));
    let reply = match Reply::new(id, &request, &settings) {
        Ok(reply) => reply,
        Err(bad) => return invalid_request(format!("{}: {}", bad.param, bad.message)),
    };
    let streaming = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    // A stall with nothing to send before it never sends the headers.
    let stall_now = match settings.fault {
        Some(Fault::StallFirstByte) => true,
        Some(Fault::StallMidStream) => !streaming,
        _ => false,
    };
    if stall_now {
        faults::stall(state.shutdown.clone()).await;
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "The mock upstream stopped stalling because it is shutting down.",
        );
    }
    if !settings.first_byte_latency.is_zero() {
        tokio::time::sleep(settings.first_byte_latency).await;
    }
    if overloaded {
        // 529 is Anthropic's own status; `from_u16` cannot fail for it.
        let status = StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return error(status, "overloaded_error", "Overloaded (mock fault 529).");
    }
    if let Some(response) = settings
        .fault
        .and_then(|fault| status_fault(fault, settings.retry_after_secs))
    {
        return response;
    }

    if streaming {
        let shape = match settings.fault {
            Some(Fault::StallMidStream) => Shape::StallMidStream,
            Some(Fault::Truncate) => Shape::Truncate,
            Some(Fault::InvalidJson) => Shape::InvalidJson,
            _ => Shape::Complete,
        };
        let body = stream::body(
            reply,
            shape,
            settings.chunk_delay,
            state.shutdown.clone(),
            active,
            settings.write_bytes,
        );
        return crate::stream::sse_response(body);
    }

    // Non-streaming bodies are complete in memory, so the response stops
    // being active (the `active` guard drops) as the handler returns.
    let message = reply.message();
    match settings.fault {
        Some(Fault::Truncate) => match serde_json::to_vec(&message) {
            Ok(mut json) => {
                json.truncate(json.len() / 2);
                faults::json_200(json)
            }
            Err(err) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                format!("could not encode the message: {err}"),
            ),
        },
        Some(Fault::InvalidJson) => faults::json_200(BROKEN_JSON),
        _ => Json(message).into_response(),
    }
}

/// `POST /v1/messages/count_tokens`: the input tokens the same request
/// would report (`max_tokens` is not needed here).
pub(crate) async fn count_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _active = state.stats.chat_request(&headers, &body);
    if let Some(denied) = check_auth(&state.config, &headers) {
        return denied;
    }
    if !headers.contains_key("anthropic-version") {
        return invalid_request("anthropic-version: header is required");
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request @ Value::Object(_)) => request,
        _ => return invalid_request("The request body must be a JSON object."),
    };
    if !request.get("model").is_some_and(Value::is_string) {
        return invalid_request("model: Field required");
    }
    if !request.get("messages").is_some_and(Value::is_array) {
        return invalid_request("messages: Field required");
    }
    let settings = match Settings::resolve(&state.config, &headers, &request) {
        Ok(settings) => settings,
        Err(bad) => return invalid_request(format!("{}: {}", bad.param, bad.message)),
    };
    match Reply::new("count".to_owned(), &request, &settings) {
        Ok(reply) => Json(json!({"input_tokens": reply.input_tokens})).into_response(),
        Err(bad) => invalid_request(format!("{}: {}", bad.param, bad.message)),
    }
}

/// Anthropic's error body: `{"type":"error","error":{"type","message"}}`.
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message.into()}});
    (status, Json(body)).into_response()
}

fn invalid_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// `None` when the request may proceed. Anthropic takes the key in
/// `x-api-key`, not `Authorization`.
fn check_auth(config: &Config, headers: &HeaderMap) -> Option<Response> {
    let expected = config.api_key.as_deref()?;
    let message = match headers.get("x-api-key").map(HeaderValue::to_str) {
        Some(Ok(key)) if key == expected => return None,
        Some(_) => "invalid x-api-key",
        None => "x-api-key header is required",
    };
    Some(error(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        message,
    ))
}

/// The checks of the real API that catch a gateway's translation mistakes.
fn validate(request: &Value) -> Result<(), String> {
    let Some(fields) = request.as_object() else {
        return Err("The request body must be a JSON object.".to_owned());
    };
    if let Some(field) = fields
        .keys()
        .find(|key| !KNOWN_FIELDS.contains(&key.as_str()))
    {
        return Err(format!("{field}: Extra inputs are not permitted"));
    }
    if !request.get("model").is_some_and(Value::is_string) {
        return Err("model: Field required".to_owned());
    }
    match request.get("max_tokens") {
        None => return Err("max_tokens: Field required".to_owned()),
        Some(max) if max.as_u64().is_none_or(|max| max < 1) => {
            return Err("max_tokens: Input should be an integer of at least 1".to_owned());
        }
        Some(_) => {}
    }
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return Err("messages: Field required".to_owned());
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".to_owned());
    }
    for (i, message) in messages.iter().enumerate() {
        match message.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            Some("system") => {
                return Err(format!(
                    "messages.{i}.role: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role."
                ));
            }
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        }
        if message.get("content").is_none_or(Value::is_null) {
            return Err(format!("messages.{i}.content: Field required"));
        }
    }
    Ok(())
}

/// The request's settings, and whether it asked for fault `529`. The
/// shared settings do not know that fault, so when it is asked for, the
/// others are resolved from a copy without any fault.
fn resolve(
    config: &Config,
    headers: &HeaderMap,
    body: &Value,
) -> Result<(Settings, bool), BadSetting> {
    if !asks_overloaded(headers, body) {
        return Settings::resolve(config, headers, body).map(|settings| (settings, false));
    }
    let mut headers = headers.clone();
    headers.remove("x-mock-fault");
    let mut body = body.clone();
    if let Some(mock) = body.get_mut("mock").and_then(Value::as_object_mut) {
        mock.remove("fault");
    }
    if let Some(fields) = body.as_object_mut() {
        fields.remove("model");
    }
    Settings::resolve(config, &headers, &body).map(|settings| (settings, true))
}

/// Whether the fault that applies (same precedence as [`Settings::resolve`]:
/// body, header, model name) is `529`.
fn asks_overloaded(headers: &HeaderMap, body: &Value) -> bool {
    if let Some(fault) = body.pointer("/mock/fault").filter(|fault| !fault.is_null()) {
        return fault == OVERLOADED;
    }
    if let Some(fault) = headers.get("x-mock-fault") {
        return fault.to_str().is_ok_and(|fault| fault.trim() == OVERLOADED);
    }
    body.get("model")
        .and_then(Value::as_str)
        .and_then(|model| model.strip_prefix("mock-fault-"))
        == Some(OVERLOADED)
}

/// The faults answered with an HTTP error status, as Anthropic words them.
fn status_fault(fault: Fault, retry_after_secs: u64) -> Option<Response> {
    Some(match fault {
        Fault::RateLimited => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit (mock fault 429).",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Fault::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error (mock fault 500).",
        ),
        Fault::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "Service unavailable (mock fault 503).",
        ),
        _ => return None,
    })
}
