//! Request validation at the edge, with OpenAI's statuses and messages.

use std::collections::HashMap;

use bytes::Bytes;
use llmgw_openai::ChatRequest;
use llmgw_openai::request::ROLES;
use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::Model;

use crate::error::ApiError;

/// What the rest of the edge needs from a valid request.
#[derive(Debug)]
pub struct Validated {
    pub model: Model,
    pub stream: bool,
    pub include_usage: bool,
    pub prompt_chars: u64,
    pub max_tokens: Option<u64>,
}

/// Caps on a request's shape (`max_json_depth`, `max_messages`,
/// `max_content_parts` in the edge config): each bounds work the edge (and
/// the router) would do per request, whatever the body size allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestCaps {
    pub max_json_depth: usize,
    pub max_messages: usize,
    pub max_content_parts: usize,
}

impl Default for RequestCaps {
    fn default() -> Self {
        RequestCaps::of(&crate::Config::default())
    }
}

impl RequestCaps {
    pub fn of(config: &crate::Config) -> RequestCaps {
        RequestCaps {
            max_json_depth: config.max_json_depth,
            max_messages: config.max_messages,
            max_content_parts: config.max_content_parts,
        }
    }

    /// What is checked of a body before it is parsed: that it is UTF-8 and
    /// nested no deeper than `max_json_depth` (scans, no recursion).
    ///
    /// UTF-8 because JSON text must be (RFC 8259) and the parser does not
    /// check the strings it skips: a field the edge does not read would
    /// otherwise reach the upstream, which forwards the client's bytes, as
    /// invalid JSON (found by the `chat_request` fuzz target).
    pub fn check_before_parsing(&self, body: &[u8]) -> Result<(), ApiError> {
        if let Err(error) = std::str::from_utf8(body) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "We could not parse the JSON body of your request: it is not valid UTF-8 (at byte {}).",
                    error.valid_up_to()
                ),
            ));
        }
        match llmgw_openai::exceeds_depth(body, self.max_json_depth) {
            None => Ok(()),
            Some(offset) => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "The JSON body is nested too deeply: more than {} levels of arrays and objects (at byte {offset}).",
                    self.max_json_depth
                ),
            )),
        }
    }

    /// Refuses more than `max_messages` messages (`param` `messages`).
    pub fn check_messages(&self, count: usize) -> Result<(), ApiError> {
        if count <= self.max_messages {
            return Ok(());
        }
        Err(ApiError::invalid(
            "messages",
            format!(
                "Invalid 'messages': array too long. Expected an array with maximum length {}, but got an array with length {count} instead.",
                self.max_messages
            ),
        ))
    }

    /// Refuses a message with more than `max_content_parts` parts (`param`
    /// `messages[i].content`).
    pub fn check_parts(&self, index: usize, parts: usize) -> Result<(), ApiError> {
        if parts <= self.max_content_parts {
            return Ok(());
        }
        let param = format!("messages[{index}].content");
        let mut error = ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "Invalid '{param}': array too long. Expected an array with maximum length {}, but got an array with length {parts} instead.",
                self.max_content_parts
            ),
        );
        error.param = Some(param.into());
        Err(error)
    }
}

/// A chat request body parsed and validated against `models` as the chat
/// handler does it, or what a refused client receives: the status and the
/// OpenAI error body. For the fuzz targets and property tests.
pub fn check_chat_request(
    body: &[u8],
    models: &HashMap<String, Model>,
) -> Result<Validated, (http::StatusCode, Bytes)> {
    let caps = RequestCaps::default();
    caps.check_before_parsing(body)
        .and_then(|()| parse(body))
        .and_then(|request| validate(&request, models, &caps))
        .map_err(|error| (error.code.http_status(), error.to_json()))
}

pub fn parse(body: &[u8]) -> Result<ChatRequest<'_>, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        let message = if error.is_data() {
            format!("Invalid request body: {error}")
        } else {
            format!("We could not parse the JSON body of your request: {error}")
        };
        ApiError::new(ErrorCode::InvalidRequest, message)
    })
}

pub fn validate(
    request: &ChatRequest<'_>,
    models: &HashMap<String, Model>,
    caps: &RequestCaps,
) -> Result<Validated, ApiError> {
    let alias = match request.model.as_deref() {
        None | Some("") => {
            return Err(ApiError::invalid(
                "model",
                "you must provide a model parameter",
            ));
        }
        Some(alias) => alias,
    };
    let messages = match &request.messages {
        None => {
            return Err(ApiError::invalid(
                "messages",
                "Missing required parameter: 'messages'.",
            ));
        }
        Some(messages) if messages.is_empty() => {
            return Err(ApiError::invalid(
                "messages",
                "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            ));
        }
        Some(messages) => messages,
    };
    caps.check_messages(messages.len())?;
    for (index, message) in messages.iter().enumerate() {
        if let Some(content) = &message.content {
            caps.check_parts(index, content.part_count())?;
        }
        match message.role.as_deref() {
            Some(role) if ROLES.contains(&role) => {}
            Some(role) => {
                return Err(ApiError::invalid(
                    "messages",
                    format!(
                        "Invalid value: '{}' in messages[{index}].role. Supported values are: {}.",
                        truncate(role),
                        ROLES.map(|r| format!("'{r}'")).join(", ")
                    ),
                ));
            }
            None => {
                return Err(ApiError::invalid(
                    "messages",
                    format!("Missing required parameter: 'messages[{index}].role'."),
                ));
            }
        }
    }
    in_range("temperature", request.temperature, 2.0)?;
    in_range("top_p", request.top_p, 1.0)?;

    let model = models.get(alias).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ModelNotFound,
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                truncate(alias)
            ),
        )
        .with_param("model")
    })?;
    let prompt_chars = request.prompt_chars() as u64;
    if model.max_prompt_chars > 0 && prompt_chars > model.max_prompt_chars {
        return Err(ApiError::new(
            ErrorCode::ContextLengthExceeded,
            format!(
                "This model's maximum context length is {} characters. However, your messages resulted in {prompt_chars} characters. Please reduce the length of the messages.",
                model.max_prompt_chars
            ),
        )
        .with_param("messages"));
    }
    if let Some(max_tokens) = request.requested_max_tokens() {
        let param = if request.max_completion_tokens.is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        if max_tokens == 0 {
            return Err(ApiError::invalid(
                param,
                format!("Invalid '{param}': must be at least 1."),
            ));
        }
        if model.max_output_tokens > 0 && max_tokens > model.max_output_tokens {
            return Err(ApiError::invalid(
                param,
                format!(
                    "{param} is too large: {max_tokens}. This model supports at most {} completion tokens.",
                    model.max_output_tokens
                ),
            ));
        }
    }
    let stream = request.stream.unwrap_or(false);
    Ok(Validated {
        model: model.clone(),
        stream,
        prompt_chars,
        max_tokens: request.requested_max_tokens(),
        include_usage: stream
            && request
                .stream_options
                .as_ref()
                .is_some_and(|options| options.include_usage),
    })
}

fn in_range(param: &'static str, value: Option<f64>, max: f64) -> Result<(), ApiError> {
    match value {
        Some(value) if !(0.0..=max).contains(&value) => Err(ApiError::invalid(
            param,
            format!("Invalid '{param}': {value} is not between 0 and {max}."),
        )),
        _ => Ok(()),
    }
}

/// Client-supplied text echoed in an error message is kept short.
fn truncate(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> HashMap<String, Model> {
        let model = Model {
            alias: "m".to_owned(),
            ..Model::default()
        };
        HashMap::from([("m".to_owned(), model)])
    }

    fn check(body: serde_json::Value, caps: &RequestCaps) -> Result<Validated, ApiError> {
        let text = body.to_string();
        caps.check_before_parsing(text.as_bytes())?;
        validate(&parse(text.as_bytes())?, &models(), caps)
    }

    #[test]
    fn messages_and_parts_over_their_caps_are_refused_naming_the_field() {
        let caps = RequestCaps {
            max_json_depth: 64,
            max_messages: 2,
            max_content_parts: 1,
        };
        let message = serde_json::json!({"role": "user", "content": "hi"});
        let ok = serde_json::json!({"model": "m", "messages": vec![message.clone(); 2]});
        assert!(check(ok, &caps).is_ok());
        let error = check(
            serde_json::json!({"model": "m", "messages": vec![message.clone(); 3]}),
            &caps,
        )
        .expect_err("three messages");
        assert_eq!(error.param.as_deref(), Some("messages"));
        assert_eq!(error.code.http_status(), 400);
        let parts =
            serde_json::json!([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]);
        let error = check(
            serde_json::json!({"model": "m", "messages": [message, {"role": "user", "content": parts}]}),
            &caps,
        )
        .expect_err("two parts");
        assert_eq!(error.param.as_deref(), Some("messages[1].content"));
    }

    #[test]
    fn invalid_utf8_in_a_field_the_edge_does_not_read_is_refused() {
        // Found by the chat_request fuzz target: serde skips unknown fields
        // without checking their strings, and the body goes upstream as is.
        let mut body =
            br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}], "x": {"k": "v"}}"#
                .to_vec();
        let at = body.iter().position(|&b| b == b'k').expect("k");
        body[at] = 0xF6;
        let (status, reply) = check_chat_request(&body, &models()).expect_err("400");
        assert_eq!(status, 400);
        let reply: serde_json::Value = serde_json::from_slice(&reply).expect("JSON");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("UTF-8")),
            "{reply}"
        );
    }

    #[test]
    fn a_deep_body_is_refused_before_parsing() {
        let caps = RequestCaps::default();
        let body = "[".repeat(100_000);
        let error = caps
            .check_before_parsing(body.as_bytes())
            .expect_err("too deep");
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert!(error.message.contains("64"), "{}", error.message);
        // The fuzz/property entry point refuses it the same way.
        let (status, _) = check_chat_request(body.as_bytes(), &models()).expect_err("400");
        assert_eq!(status, 400);
    }
}
