//! Property tests of client chat requests at the edge and admin API bodies.

use llmgw_billing::AdminBody;
use llmgw_edge::check_chat_request;
use llmgw_properties::chat_request::{self, MAX_OUTPUT_TOKENS, MAX_PROMPT_CHARS, models};
use llmgw_properties::{admin_body, error_body::assert_openai_error};
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "\\PC{0,16}".prop_map(Value::String),
        prop::sample::select(vec![
            "user",
            "system",
            "gpt-4o-mini",
            "mock",
            "12.50",
            "a-b_c",
            "words"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "model",
                        "messages",
                        "role",
                        "content",
                        "stream",
                        "stream_options",
                        "include_usage",
                        "temperature",
                        "top_p",
                        "max_tokens",
                        "max_completion_tokens",
                        "n",
                        "text",
                        "type",
                        "name",
                        "monthly_budget_usd",
                        "limits",
                        "policy",
                        "allowed_models",
                        "expires_at",
                        "terms",
                        "rules",
                        "audit_excerpts",
                        "id",
                        "action",
                        "words",
                        "word_lists",
                        "patterns",
                        "requests_per_minute",
                        "concurrent",
                        "tokens_per_day",
                        "x",
                    ]),
                    inner,
                ),
                0..6,
            )
            .prop_map(|fields| Value::Object(
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn chat_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        chat_request::check(&data);
    }

    #[test]
    fn chat_json_is_accepted_or_refused_with_an_openai_error(value in json_value()) {
        chat_request::check(value.to_string().as_bytes());
    }

    /// A well-formed request is accepted exactly when it is within the
    /// model's limits, and its prompt is counted in characters.
    #[test]
    fn limits_decide_well_formed_requests(
        contents in prop::collection::vec("\\PC{0,600}", 1..6),
        roles in prop::collection::vec(prop::sample::select(vec!["system", "user", "assistant", "tool", "developer"]), 6),
        max_tokens in prop::option::of(0..1_000u64),
        stream in any::<bool>(),
    ) {
        let messages: Vec<Value> = contents
            .iter()
            .zip(&roles)
            .map(|(content, role)| json!({"role": role, "content": content}))
            .collect();
        let mut body = json!({"model": "gpt-4o-mini", "messages": messages, "stream": stream});
        if let Some(max_tokens) = max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        let chars: u64 = contents.iter().map(|c| c.chars().count() as u64).sum();
        let result = check_chat_request(body.to_string().as_bytes(), &models());
        let fits = chars <= MAX_PROMPT_CHARS
            && max_tokens.is_none_or(|max| (1..=MAX_OUTPUT_TOKENS).contains(&max));
        match result {
            Ok(valid) => {
                prop_assert!(fits);
                prop_assert_eq!(valid.prompt_chars, chars);
                prop_assert_eq!(valid.stream, stream);
            }
            Err((status, reply)) => {
                prop_assert!(!fits);
                prop_assert_eq!(status.as_u16(), 400);
                let param = assert_openai_error(&reply);
                prop_assert!(matches!(param.as_deref(), Some("messages" | "max_tokens")));
            }
        }
    }

    #[test]
    fn admin_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        admin_body::check(&data);
    }

    #[test]
    fn admin_json_is_accepted_or_refused_naming_a_field(value in json_value(), kind in 0..AdminBody::ALL.len()) {
        admin_body::check_body(AdminBody::ALL[kind], value.to_string().as_bytes());
    }
}
