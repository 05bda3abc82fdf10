//! Startup configuration, and the per-request settings resolved from it.

use std::str::FromStr;
use std::time::Duration;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

/// How the mock behaves when a request does not say otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Delay before the response headers (and so the first byte) are sent.
    pub first_byte_latency_ms: u64,
    /// Content chunks (= completion tokens) per answer.
    pub chunks: u32,
    /// Delay between consecutive streamed chunks.
    pub chunk_delay_ms: u64,
    /// When set, requests must carry `Authorization: Bearer <api_key>`.
    pub api_key: Option<String>,
    /// Every answer's text, one content chunk per piece, instead of the
    /// generated words (for routes whose requests cannot carry `mock`, such
    /// as Anthropic's behind the gateway).
    pub content: Option<Vec<String>>,
    /// Streams are written this many bytes at a time; 0 = one write per event.
    pub write_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            first_byte_latency_ms: 0,
            chunks: 8,
            chunk_delay_ms: 0,
            api_key: None,
            content: None,
            write_bytes: 0,
        }
    }
}

/// A misbehaviour a request can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    RateLimited,
    ServerError,
    Unavailable,
    StallFirstByte,
    StallMidStream,
    Truncate,
    InvalidJson,
}

impl Fault {
    pub const NAMES: &'static str =
        "429, 500, 503, stall-first-byte, stall-mid-stream, truncate, invalid-json";

    /// The name `parse` reads.
    pub fn name(self) -> &'static str {
        match self {
            Self::RateLimited => "429",
            Self::ServerError => "500",
            Self::Unavailable => "503",
            Self::StallFirstByte => "stall-first-byte",
            Self::StallMidStream => "stall-mid-stream",
            Self::Truncate => "truncate",
            Self::InvalidJson => "invalid-json",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "429" => Self::RateLimited,
            "500" => Self::ServerError,
            "503" => Self::Unavailable,
            "stall-first-byte" => Self::StallFirstByte,
            "stall-mid-stream" => Self::StallMidStream,
            "truncate" => Self::Truncate,
            "invalid-json" => Self::InvalidJson,
            _ => return None,
        })
    }
}

/// The body's `mock` field. Unknown keys are rejected so that a typo in a
/// test shows up as a 400 instead of silently using the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MockOptions {
    chunks: Option<u32>,
    chunk_delay_ms: Option<u64>,
    first_byte_latency_ms: Option<u64>,
    fault: Option<String>,
    echo: Option<bool>,
    retry_after_secs: Option<u64>,
    content: Option<Vec<String>>,
    write_bytes: Option<usize>,
    cache_read_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
    tag: Option<String>,
}

/// What one request gets, after applying every override.
#[derive(Debug, Clone)]
pub struct Settings {
    pub chunks: u32,
    pub chunk_delay: Duration,
    pub first_byte_latency: Duration,
    pub fault: Option<Fault>,
    pub echo: bool,
    /// The `Retry-After` of a 429 fault.
    pub retry_after_secs: u64,
    /// The answer's text, one streamed content chunk per piece, instead of
    /// the generated words.
    pub content: Option<Vec<String>>,
    /// Streams are written this many bytes at a time (1: a multi-byte
    /// character spans several writes); 0 = one write per event.
    pub write_bytes: usize,
    /// Prompt tokens the answer reports as read from the prompt cache (on
    /// top of the prompt's own count).
    pub cache_read_tokens: u64,
    /// Prompt tokens the answer reports as written to the prompt cache
    /// (Anthropic route only: OpenAI reports no cache writes).
    pub cache_write_tokens: u64,
    /// The request's name in the production records (`GET /stats/requests`).
    pub tag: Option<String>,
}

/// A setting the client got wrong, answered with a 400 naming `param`.
#[derive(Debug)]
pub struct BadSetting {
    pub param: String,
    pub message: String,
}

impl Settings {
    /// Precedence, highest first: the body's `mock` field, `x-mock-*`
    /// headers, a `mock-fault-<fault>` model name, then `config`.
    pub fn resolve(config: &Config, headers: &HeaderMap, body: &Value) -> Result<Self, BadSetting> {
        let mock = match body.get("mock") {
            None | Some(Value::Null) => MockOptions::default(),
            Some(value) => MockOptions::deserialize(value).map_err(|err| BadSetting {
                param: "mock".to_owned(),
                message: format!("Invalid mock options: {err}."),
            })?,
        };
        let model_fault = body
            .get("model")
            .and_then(Value::as_str)
            .and_then(|model| model.strip_prefix("mock-fault-"))
            .map(|fault| ("model", fault.to_owned()));
        let fault = match mock.fault.map(|fault| ("mock.fault", fault)) {
            Some(found) => Some(found),
            None => header::<String>(headers, "x-mock-fault")?
                .map(|fault| ("x-mock-fault", fault))
                .or(model_fault),
        };
        let fault = match fault {
            None => None,
            Some((param, name)) => Some(Fault::parse(&name).ok_or_else(|| BadSetting {
                param: param.to_owned(),
                message: format!(
                    "Unknown mock fault {name:?}; expected one of {}.",
                    Fault::NAMES
                ),
            })?),
        };
        let chunks = pick(
            mock.chunks,
            header(headers, "x-mock-chunks")?,
            config.chunks,
        );
        let chunk_delay_ms = pick(
            mock.chunk_delay_ms,
            header(headers, "x-mock-chunk-delay-ms")?,
            config.chunk_delay_ms,
        );
        let first_byte_latency_ms = pick(
            mock.first_byte_latency_ms,
            header(headers, "x-mock-first-byte-latency-ms")?,
            config.first_byte_latency_ms,
        );
        Ok(Self {
            chunks,
            chunk_delay: Duration::from_millis(chunk_delay_ms),
            first_byte_latency: Duration::from_millis(first_byte_latency_ms),
            fault,
            echo: mock.echo.unwrap_or(false),
            retry_after_secs: pick(
                mock.retry_after_secs,
                header(headers, "x-mock-retry-after")?,
                1,
            ),
            content: mock.content.or_else(|| config.content.clone()),
            write_bytes: mock.write_bytes.unwrap_or(config.write_bytes),
            cache_read_tokens: mock.cache_read_tokens.unwrap_or(0),
            cache_write_tokens: mock.cache_write_tokens.unwrap_or(0),
            tag: mock.tag,
        })
    }
}

fn pick<T>(body: Option<T>, header: Option<T>, config: T) -> T {
    body.or(header).unwrap_or(config)
}

fn header<T: FromStr>(headers: &HeaderMap, name: &str) -> Result<Option<T>, BadSetting> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| BadSetting {
            param: name.to_owned(),
            message: format!("Invalid value for header {name}: {value:?}."),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn body_beats_header_beats_model_beats_config() {
        let config = Config::default();
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-chunks", http::HeaderValue::from_static("3"));
        headers.insert("x-mock-fault", http::HeaderValue::from_static("503"));
        let body = json!({"model": "mock-fault-500", "mock": {"chunks": 5}});
        let settings = Settings::resolve(&config, &headers, &body).expect("valid");
        assert_eq!(settings.chunks, 5);
        assert_eq!(settings.fault, Some(Fault::Unavailable));

        let body = json!({"model": "mock-fault-500"});
        let settings = Settings::resolve(&config, &HeaderMap::new(), &body).expect("valid");
        assert_eq!(settings.chunks, 8);
        assert_eq!(settings.fault, Some(Fault::ServerError));
    }

    #[test]
    fn rejects_bad_values() {
        let config = Config::default();
        let body = json!({"mock": {"fault": "nope"}});
        let err = Settings::resolve(&config, &HeaderMap::new(), &body).expect_err("unknown");
        assert_eq!(err.param, "mock.fault");
        let body = json!({"mock": {"chunkz": 1}});
        assert!(Settings::resolve(&config, &HeaderMap::new(), &body).is_err());
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-chunk-delay-ms", http::HeaderValue::from_static("x"));
        let err = Settings::resolve(&config, &headers, &json!({})).expect_err("bad header");
        assert_eq!(err.param, "x-mock-chunk-delay-ms");
    }
}
