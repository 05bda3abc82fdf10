//! A client's chat request body at the edge: parsed and validated as the
//! chat handler does ([`llmgw_edge::check_chat_request`]).
//!
//! Properties: nothing panics; a refusal is a 4xx with the OpenAI error
//! shape; an accepted request respects the model's limits.

use std::collections::HashMap;

use llmgw_edge::check_chat_request;
use llmgw_proto::router_v1::Model;

use crate::error_body::assert_openai_error;

pub const MAX_PROMPT_CHARS: u64 = 2_000;
pub const MAX_OUTPUT_TOKENS: u64 = 500;

/// The catalog the requests are checked against: one limited model, one not.
pub fn models() -> HashMap<String, Model> {
    let limited = Model {
        alias: "gpt-4o-mini".to_owned(),
        owned_by: "llmgw".to_owned(),
        max_prompt_chars: MAX_PROMPT_CHARS,
        max_output_tokens: MAX_OUTPUT_TOKENS,
        input_price_per_mtok: "0.15".to_owned(),
        output_price_per_mtok: "0.60".to_owned(),
        ..Model::default()
    };
    let open = Model {
        alias: "mock".to_owned(),
        max_prompt_chars: 0,
        max_output_tokens: 0,
        ..limited.clone()
    };
    [limited, open]
        .into_iter()
        .map(|model| (model.alias.clone(), model))
        .collect()
}

/// Input: the request body.
pub fn check(data: &[u8]) {
    let models = models();
    match check_chat_request(data, &models) {
        Ok(valid) => {
            let model = &models[&valid.model.alias];
            assert_eq!(&valid.model, model);
            if model.max_prompt_chars > 0 {
                assert!(valid.prompt_chars <= model.max_prompt_chars);
            }
            if let Some(max_tokens) = valid.max_tokens {
                assert!(max_tokens >= 1);
                assert!(model.max_output_tokens == 0 || max_tokens <= model.max_output_tokens);
            }
            assert!(!valid.include_usage || valid.stream);
            // The body goes upstream as sent: it must be JSON text, UTF-8
            // included (the parser does not check strings it skips).
            assert!(std::str::from_utf8(data).is_ok(), "accepted non-UTF-8");
            serde_json::from_slice::<serde::de::IgnoredAny>(data).expect("accepted = JSON");
            match serde_json::from_slice::<serde_json::Value>(data) {
                Ok(body) => {
                    assert!(body.is_object(), "accepted a body that is not an object");
                    assert!(body["messages"].as_array().is_some_and(|m| !m.is_empty()));
                }
                // JSON's grammar allows numbers no f64 holds and escapes of
                // lone surrogates (RFC 8259 leaves both to implementations);
                // a field the edge does not read may carry them, and goes
                // upstream as sent (found by fuzzing).
                Err(error) => {
                    let error = error.to_string();
                    assert!(
                        // A lead surrogate not followed by `\u` reads
                        // as "unexpected end of hex escape" (the grammar
                        // itself was checked above).
                        ["number out of range", "surrogate", "hex escape"]
                            .iter()
                            .any(|allowed| error.contains(allowed)),
                        "{error}"
                    );
                }
            }
        }
        Err((status, body)) => {
            assert!(status.is_client_error(), "refused with {status}");
            assert_openai_error(&body);
        }
    }
}
