//! `POST /v1/chat/completions`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::AppState;
use crate::completion::Answer;
use crate::config::{Fault, Settings};
use crate::faults::{self, BROKEN_JSON};
use crate::production::Production;
use crate::stream::{self, Script, Shape};

pub(crate) async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Counted before anything can fail, so that rejected requests show up too.
    let active = state.stats.chat_request(&headers, &body);
    if let Some(denied) = state.check_auth(&headers) {
        return denied;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request @ Value::Object(_)) => request,
        Ok(_) => {
            return faults::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                None,
                "The request body must be a JSON object.",
            );
        }
        Err(err) => {
            return faults::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                None,
                format!("We could not parse the JSON body of your request: {err}."),
            );
        }
    };
    let settings = match Settings::resolve(&state.config, &headers, &request) {
        Ok(settings) => settings,
        Err(bad) => return faults::bad_request(bad),
    };
    let id = format!(
        "chatcmpl-mock-{}",
        state.ids.fetch_add(1, Ordering::Relaxed)
    );
    let answer = match Answer::new(id, &request, &settings) {
        Ok(answer) => answer,
        Err(bad) => return faults::bad_request(bad),
    };
    let streaming = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let recorder = state.stats.production_table().start(
        settings.tag.as_deref(),
        Production {
            stream: streaming,
            fault: settings.fault.map(|fault| fault.name().to_owned()),
            ..Production::default()
        },
    );
    let record_status = |status: StatusCode| {
        if let Some(recorder) = &recorder {
            recorder.update(|production| production.status = status.as_u16());
        }
    };
    let include_usage = request
        .pointer("/stream_options/include_usage")
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
        record_status(StatusCode::SERVICE_UNAVAILABLE);
        return faults::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some("service_unavailable"),
            None,
            "The mock upstream stopped stalling because it is shutting down.",
        );
    }

    if !settings.first_byte_latency.is_zero() {
        tokio::time::sleep(settings.first_byte_latency).await;
    }
    if let Some(response) = settings
        .fault
        .and_then(|fault| faults::status_fault(fault, settings.retry_after_secs))
    {
        record_status(response.status());
        return response;
    }

    // The answer begins: its prompt is consumed.
    let prompt_tokens = answer.usage.prompt_tokens;
    if let Some(recorder) = &recorder {
        recorder.update(|production| {
            production.status = 200;
            production.prompt_tokens = prompt_tokens;
        });
    }
    if streaming {
        let shape = match settings.fault {
            Some(Fault::StallMidStream) => Shape::StallMidStream,
            Some(Fault::Truncate) => Shape::Truncate,
            Some(Fault::InvalidJson) => Shape::InvalidJson,
            _ => Shape::Complete,
        };
        let script = Script {
            answer,
            include_usage,
            shape,
            chunk_delay: settings.chunk_delay,
        };
        let body = stream::body(
            script,
            state.shutdown.clone(),
            active,
            settings.write_bytes,
            recorder,
        );
        return stream::sse_response(body);
    }

    // Non-streaming bodies are complete in memory, so the response stops
    // being active (the `active` guard drops) as the handler returns.
    let completion = answer.completion();
    if let Some(recorder) = &recorder {
        let whole = !matches!(settings.fault, Some(Fault::Truncate | Fault::InvalidJson));
        recorder.update(|production| {
            production.completion_tokens = answer.usage.completion_tokens;
            production.finished = whole;
        });
    }
    match settings.fault {
        Some(Fault::Truncate) => match serde_json::to_vec(&completion) {
            Ok(mut json) => {
                json.truncate(json.len() / 2);
                faults::json_200(json)
            }
            Err(err) => faults::internal(format!("could not encode the completion: {err}")),
        },
        Some(Fault::InvalidJson) => faults::json_200(BROKEN_JSON),
        _ => Json(completion).into_response(),
    }
}
