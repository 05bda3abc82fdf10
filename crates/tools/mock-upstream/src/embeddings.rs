//! `POST /v1/embeddings`: OpenAI's embeddings format, deterministically.
//!
//! Each input's vector is derived from the input alone (a hash of its text,
//! or of its token ids, expanded into `dimensions` numbers and normalised to
//! length 1), so a test can compute the exact vector it must get back, and
//! the same input always gets the same vector. Usage: a string counts
//! ceil(characters / 4) tokens (at least 1), a token array its length.
//! Faults (`429`, `500`, `503`, `stall-first-byte`, `invalid-json`) and
//! latency come from the same settings as the chat route.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::AppState;
use crate::config::{Fault, Settings};
use crate::faults::{self, BROKEN_JSON};

/// Dimensions when the request does not ask for a number.
pub const DEFAULT_DIMENSIONS: usize = 16;
/// The most dimensions the mock hands out.
const MAX_DIMENSIONS: usize = 4096;

pub(crate) async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _active = state.stats.chat_request(&headers, &body);
    if let Some(denied) = state.check_auth(&headers) {
        return denied;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(request @ Value::Object(_)) => request,
        _ => return bad("The request body must be a JSON object.", None),
    };
    let settings = match Settings::resolve(&state.config, &headers, &request) {
        Ok(settings) => settings,
        Err(bad) => return faults::bad_request(bad),
    };
    if settings.fault == Some(Fault::StallFirstByte) {
        faults::stall(state.shutdown.clone()).await;
        return bad("The mock upstream stopped stalling.", None);
    }
    if !settings.first_byte_latency.is_zero() {
        tokio::time::sleep(settings.first_byte_latency).await;
    }
    if let Some(response) = settings
        .fault
        .and_then(|fault| faults::status_fault(fault, settings.retry_after_secs))
    {
        return response;
    }
    if settings.fault == Some(Fault::InvalidJson) {
        return faults::json_200(BROKEN_JSON);
    }
    match answer(&request) {
        Ok(answer) => Json(answer).into_response(),
        Err((message, param)) => bad(&message, Some(param)),
    }
}

fn bad(message: &str, param: Option<&str>) -> Response {
    faults::error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        None,
        param,
        message,
    )
}

/// The embeddings answer to a valid request; a message and the parameter
/// at fault otherwise.
pub fn answer(request: &Value) -> Result<Value, (String, &'static str)> {
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .ok_or(("you must provide a model parameter".to_owned(), "model"))?;
    let dimensions = match request.get("dimensions") {
        None | Some(Value::Null) => DEFAULT_DIMENSIONS,
        Some(value) => value
            .as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
            .ok_or((
                format!("dimensions must be between 1 and {MAX_DIMENSIONS}"),
                "dimensions",
            ))?,
    };
    let base64 = match request.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err((
                format!("unknown encoding_format {other:?}"),
                "encoding_format",
            ));
        }
    };
    let inputs = inputs(request.get("input")).ok_or((
        "input must be a string, strings or token arrays".to_owned(),
        "input",
    ))?;
    let mut tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            tokens += input.tokens();
            let vector = vector(input.seed(), dimensions);
            let embedding = if base64 {
                Value::String(encode_base64(&vector))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

/// One input to embed.
#[derive(Debug)]
pub enum Input<'a> {
    Text(&'a str),
    Tokens(Vec<u64>),
}

impl Input<'_> {
    pub fn tokens(&self) -> u64 {
        match self {
            Input::Text(text) => (text.chars().count() as u64).div_ceil(4).max(1),
            Input::Tokens(tokens) => tokens.len() as u64,
        }
    }

    /// FNV-1a over the text's bytes, or over the token ids.
    fn seed(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |byte: u8| {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        };
        match self {
            Input::Text(text) => text.bytes().for_each(&mut eat),
            Input::Tokens(tokens) => {
                for token in tokens {
                    token.to_le_bytes().into_iter().for_each(&mut eat);
                }
            }
        }
        hash
    }
}

/// The inputs of `input`: a string, a list of strings, a token array or a
/// list of token arrays.
pub fn inputs(input: Option<&Value>) -> Option<Vec<Input<'_>>> {
    let tokens = |value: &Value| -> Option<Vec<u64>> {
        value.as_array()?.iter().map(Value::as_u64).collect()
    };
    match input? {
        Value::String(text) => Some(vec![Input::Text(text)]),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            Some(vec![Input::Tokens(tokens(input?)?)])
        }
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Some(Input::Text(text)),
                Value::Array(_) => tokens(item).map(Input::Tokens),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The vector the mock answers for the text `input` (for tests that check
/// a gateway passes vectors through unchanged).
pub fn text_vector(input: &str, dimensions: usize) -> Vec<f32> {
    vector(Input::Text(input).seed(), dimensions)
}

/// `dimensions` numbers from `seed` (splitmix64), scaled to length 1.
pub fn vector(seed: u64, dimensions: usize) -> Vec<f32> {
    let mut state = seed;
    let mut values: Vec<f64> = (0..dimensions)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            // The top 53 bits as a number in [-1, 1).
            (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect();
    let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|v| *v /= norm);
    }
    values.into_iter().map(|v| v as f32).collect()
}

/// OpenAI's `base64` encoding: the little-endian float32 bytes, in
/// standard base64 with padding.
pub fn encode_base64(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_unit_length_and_follow_the_input() {
        let a =
            answer(&json!({"model": "e", "input": ["hello", "hello", "other"]})).expect("valid");
        let data = a["data"].as_array().expect("data");
        assert_eq!(data.len(), 3);
        assert_eq!(data[0]["embedding"], data[1]["embedding"]);
        assert_ne!(data[0]["embedding"], data[2]["embedding"]);
        let first: Vec<f64> = data[0]["embedding"]
            .as_array()
            .expect("floats")
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(first.len(), DEFAULT_DIMENSIONS);
        let norm: f64 = first.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(a["usage"], json!({"prompt_tokens": 6, "total_tokens": 6}));
    }

    #[test]
    fn base64_is_the_float_bytes() {
        assert_eq!(encode_base64(&[1.0]), "AACAPw==");
        assert_eq!(encode_base64(&[1.0, -2.0]), "AACAPwAAAMA=");
        let answer = answer(
            &json!({"model": "e", "input": [[1, 2, 3]], "encoding_format": "base64",
            "dimensions": 4}),
        )
        .expect("valid");
        let encoded = answer["data"][0]["embedding"].as_str().expect("base64");
        assert_eq!(
            encoded,
            encode_base64(&vector(Input::Tokens(vec![1, 2, 3]).seed(), 4))
        );
        assert_eq!(answer["usage"]["prompt_tokens"], 3);
    }

    #[test]
    fn bad_requests() {
        for (request, param) in [
            (json!({"input": "a"}), "model"),
            (json!({"model": "e"}), "input"),
            (json!({"model": "e", "input": [1, "a"]}), "input"),
            (
                json!({"model": "e", "input": "a", "dimensions": 0}),
                "dimensions",
            ),
            (
                json!({"model": "e", "input": "a", "encoding_format": "hex"}),
                "encoding_format",
            ),
        ] {
            assert_eq!(answer(&request).expect_err("refused").1, param, "{request}");
        }
    }
}
