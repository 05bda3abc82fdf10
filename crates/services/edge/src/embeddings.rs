//! `POST /v1/embeddings` (OpenAI's format): the chat pipeline
//! (`chat::serve`) with OpenAI's embeddings rules. `input` is a string, a
//! list of strings, a token array or a list of token arrays;
//! `encoding_format` `float` or `base64` and `dimensions` pass through to
//! the upstream. Quota reserves the input only (nothing is generated), and
//! the ledger bills input tokens only.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use llmgw_proto::ErrorCode;
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::catalog::Models;
use crate::chat::{self, ClientApi};
use crate::error::ApiError;
use crate::validate::Validated;

/// OpenAI's limit on inputs per request.
pub const MAX_INPUTS: usize = 2048;

/// Characters a token of a token-array input is taken for, when sizing it
/// against `max_prompt_chars` and the quota estimate (which assumes four).
const CHARS_PER_TOKEN: u64 = 4;

pub async fn embeddings(State(state): State<Arc<AppState>>, request: Request) -> Response {
    chat::serve(&state, request, ClientApi::Embeddings).await
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    encoding_format: Option<Value>,
    #[serde(default)]
    dimensions: Option<Value>,
}

/// Validates an embeddings request against the catalog.
pub fn validate(body: &[u8], models: &Models) -> Result<Validated, ApiError> {
    let request: EmbeddingsRequest = serde_json::from_slice(body).map_err(|error| {
        let message = if error.is_data() {
            format!("Invalid request body: {error}")
        } else {
            format!("We could not parse the JSON body of your request: {error}")
        };
        ApiError::new(ErrorCode::InvalidRequest, message)
    })?;
    let alias = match request.model.as_deref() {
        None | Some("") => {
            return Err(ApiError::invalid(
                "model",
                "you must provide a model parameter",
            ));
        }
        Some(alias) => alias,
    };
    let prompt_chars = input_chars(request.input.as_ref())?;
    match &request.encoding_format {
        None | Some(Value::Null) => {}
        Some(Value::String(format)) if format == "float" || format == "base64" => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!(
                    "Invalid value for 'encoding_format': {other}. Supported values are: 'float' and 'base64'."
                ),
            ));
        }
    }
    match &request.dimensions {
        None | Some(Value::Null) => {}
        Some(value) if value.as_u64().is_some_and(|d| d >= 1) => {}
        Some(other) => {
            return Err(ApiError::invalid(
                "dimensions",
                format!("Invalid 'dimensions': {other}. Expected an integer of at least 1."),
            ));
        }
    }
    let model = models.get(alias).ok_or_else(|| {
        let shown: String = alias.chars().take(64).collect();
        ApiError::new(
            ErrorCode::ModelNotFound,
            format!("The model `{shown}` does not exist or you do not have access to it."),
        )
        .with_param("model")
    })?;
    if model.max_prompt_chars > 0 && prompt_chars > model.max_prompt_chars {
        return Err(ApiError::new(
            ErrorCode::ContextLengthExceeded,
            format!(
                "This model's maximum input length is {} characters. However, your input resulted in {prompt_chars} characters. Please reduce the length of the input.",
                model.max_prompt_chars
            ),
        )
        .with_param("input"));
    }
    Ok(Validated {
        model: model.clone(),
        stream: false,
        include_usage: false,
        prompt_chars,
        // Nothing is generated: the reservation is the input alone.
        max_tokens: Some(0),
    })
}

/// The size of `input` in characters (token arrays at four characters a
/// token), after checking its shape as OpenAI does.
fn input_chars(input: Option<&Value>) -> Result<u64, ApiError> {
    let bad = |message: String| ApiError::invalid("input", message);
    let token = |value: &Value| value.as_u64().is_some();
    match input {
        None | Some(Value::Null) => Err(bad("Missing required parameter: 'input'.".to_owned())),
        Some(Value::String(text)) if text.is_empty() => Err(bad(
            "'$.input' is invalid: an empty string cannot be embedded.".to_owned(),
        )),
        Some(Value::String(text)) => Ok(text.chars().count() as u64),
        Some(Value::Array(items)) if items.is_empty() => Err(bad(
            "'$.input' is invalid: expected at least one input.".to_owned(),
        )),
        Some(Value::Array(items)) if items.len() > MAX_INPUTS => Err(bad(format!(
            "'$.input' is invalid: at most {MAX_INPUTS} inputs per request, got {}.",
            items.len()
        ))),
        Some(Value::Array(items)) if items.iter().all(token) => {
            Ok(items.len() as u64 * CHARS_PER_TOKEN)
        }
        Some(Value::Array(items)) => {
            let mut chars = 0u64;
            for (i, item) in items.iter().enumerate() {
                chars += match item {
                    Value::String(text) if !text.is_empty() => text.chars().count() as u64,
                    Value::Array(tokens) if !tokens.is_empty() && tokens.iter().all(token) => {
                        tokens.len() as u64 * CHARS_PER_TOKEN
                    }
                    _ => {
                        return Err(bad(format!(
                            "'$.input[{i}]' is invalid: each input must be a non-empty string or a non-empty array of token ids."
                        )));
                    }
                };
            }
            Ok(chars)
        }
        Some(_) => Err(bad(
            "'$.input' is invalid: expected a string, an array of strings, or token arrays."
                .to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use llmgw_proto::router_v1::Model;
    use serde_json::json;

    use super::*;

    fn models() -> Models {
        let model = Model {
            alias: "embed".to_owned(),
            max_prompt_chars: 100,
            ..Model::default()
        };
        Arc::new(HashMap::from([("embed".to_owned(), model)]))
    }

    fn check(body: Value) -> Result<Validated, ApiError> {
        validate(body.to_string().as_bytes(), &models())
    }

    #[test]
    fn every_input_shape_is_sized() {
        for (input, chars) in [
            (json!("héllo"), 5),
            (json!(["ab", "cde"]), 5),
            (json!([1, 2, 3]), 12),
            (json!([[1, 2], [3]]), 12),
        ] {
            let valid = check(
                json!({"model": "embed", "input": input, "encoding_format": "base64",
                "dimensions": 8}),
            )
            .expect("valid");
            assert_eq!(valid.prompt_chars, chars, "{input}");
            assert_eq!(valid.max_tokens, Some(0));
            assert!(!valid.stream);
        }
    }

    #[test]
    fn bad_inputs_and_options_are_refused() {
        for (body, param) in [
            (json!({"model": "embed"}), "input"),
            (json!({"model": "embed", "input": ""}), "input"),
            (json!({"model": "embed", "input": []}), "input"),
            (json!({"model": "embed", "input": ["a", 5, ""]}), "input"),
            (json!({"model": "embed", "input": {"a": 1}}), "input"),
            (
                json!({"model": "embed", "input": "a", "encoding_format": "hex"}),
                "encoding_format",
            ),
            (
                json!({"model": "embed", "input": "a", "dimensions": 0}),
                "dimensions",
            ),
            (json!({"input": "a"}), "model"),
        ] {
            let error = check(body.clone()).expect_err("refused");
            assert_eq!(error.code, ErrorCode::InvalidRequest, "{body}");
            assert_eq!(error.param.as_deref(), Some(param), "{body}");
        }
        let too_many = json!({"model": "embed", "input": vec!["a"; MAX_INPUTS + 1]});
        assert!(check(too_many).is_err());
        let long = json!({"model": "embed", "input": "x".repeat(101)});
        assert_eq!(
            check(long).expect_err("too long").code,
            ErrorCode::ContextLengthExceeded
        );
        let unknown = json!({"model": "nope", "input": "a"});
        assert_eq!(
            check(unknown).expect_err("unknown").code,
            ErrorCode::ModelNotFound
        );
    }
}
