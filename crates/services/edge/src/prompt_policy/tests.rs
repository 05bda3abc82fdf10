#![allow(clippy::unwrap_used)] // panicking is how tests fail

use std::sync::Arc;

use llmgw_audit::{AuditContext, AuditMetrics, AuditTrail, EDGE_ATTEMPT};
use llmgw_policy::{Action, PolicySet, PolicySource, PolicySpec, RuleKind, RuleSpec};
use serde_json::{Value, json};

use super::{Shape, Verdict, check_as, enforce};

fn rule(id: &str, term: &str, action: Action) -> RuleSpec {
    RuleSpec {
        id: id.to_owned(),
        kind: RuleKind::Words,
        direction: llmgw_policy::Direction::Input,
        action,
        mask: None,
        terms: vec![term.to_owned()],
        word_lists: Vec::new(),
        pattern: None,
        skip_separators: false,
        fold_chinese_variants: false,
    }
}

fn policy(rules: Vec<RuleSpec>) -> Arc<llmgw_policy::Policy> {
    let source = PolicySource {
        default: "p".to_owned(),
        policies: [(
            "p".to_owned(),
            PolicySpec {
                audit_excerpts: false,
                rules,
            },
        )]
        .into(),
        ..PolicySource::default()
    };
    let set = PolicySet::compile(&source, b"key").unwrap();
    Arc::clone(set.for_tenant("t").unwrap())
}

fn context() -> AuditContext {
    AuditContext {
        request_id: "req_1".to_owned(),
        attempt: EDGE_ATTEMPT,
        tenant: "t".to_owned(),
        key_id: "key_1".to_owned(),
        model: "mock".to_owned(),
        policy: "p".to_owned(),
    }
}

/// Every kind of place a prompt carries text.
fn everywhere(term: &str) -> Value {
    json!({
        "model": "mock",
        "temperature": 0.7,
        "vendor_extension": {"keep": [1, 2.5, null]},
        "messages": [
            {"role": "system", "content": format!("system {term}")},
            {"role": "developer", "content": [{"type": "text", "text": format!("developer {term}")}]},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                {"type": "text", "text": format!("user {term}")}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": format!("{{\"q\":\"{term}\"}}")}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": format!("tool {term}")},
            {"role": "assistant", "content": format!("assistant {term}"), "function_call": {"name": "f", "arguments": term}}
        ]
    })
}

#[test]
fn every_text_of_every_message_and_tool_call_arguments_are_checked() {
    let policy = policy(vec![rule("canary", "canary-7731", Action::Flag)]);
    let body = everywhere("canary-7731").to_string();
    let (verdict, mut events) = check_as(Shape::Chat, &policy, body.as_bytes(), context());
    assert!(matches!(verdict, Verdict::Clean), "{verdict:?}");
    let events = events.take();
    let locations: Vec<&str> = events.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(
        locations,
        [
            "messages[0].content",
            "messages[1].content[0].text",
            "messages[2].content[1].text",
            "messages[3].tool_calls[0].function.arguments",
            "messages[4].content",
            "messages[5].content",
            "messages[5].function_call.arguments",
        ]
    );
    let sequences: Vec<u32> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [0, 1, 2, 3, 4, 5, 6]);
    assert!(
        events
            .iter()
            .all(|e| e.action == "flag" && e.direction == "input")
    );
    // "system " is 7 bytes: the offset is within that text.
    assert_eq!((events[0].offset, events[0].length), (7, 11));
}

#[test]
fn redaction_rewrites_only_the_affected_strings() {
    let policy = policy(vec![rule("secret-project", "Falcon", Action::Redact)]);
    let original = everywhere("Falcon");
    let (verdict, _) = check_as(
        Shape::Chat,
        &policy,
        original.to_string().as_bytes(),
        context(),
    );
    let Verdict::Redacted(rewritten) = verdict else {
        panic!("expected a redaction, got {verdict:?}");
    };
    let rewritten: Value = serde_json::from_slice(&rewritten).unwrap();
    assert_eq!(
        rewritten,
        serde_json::from_str::<Value>(&original.to_string().replace("Falcon", "***")).unwrap()
    );
    assert_eq!(rewritten["vendor_extension"], original["vendor_extension"]);
}

#[test]
fn a_clean_prompt_is_forwarded_as_sent() {
    let policy = policy(vec![rule("secret-project", "Falcon", Action::Redact)]);
    let body = everywhere("nothing to see").to_string();
    let (verdict, events) = check_as(Shape::Chat, &policy, body.as_bytes(), context());
    assert!(matches!(verdict, Verdict::Clean));
    assert_eq!(events.next_sequence(), 0);
}

#[tokio::test]
async fn a_block_names_the_rule_never_the_text_and_every_hit_is_audited() {
    let policy = policy(vec![
        rule("emails-flag", "flagme", Action::Flag),
        rule("banned-words", "forbidden-term", Action::Block),
    ]);
    let metrics = AuditMetrics::default();
    let trail = AuditTrail::without_billing(metrics.clone());
    let body = json!({"model": "mock", "messages": [
        {"role": "user", "content": "flagme then forbidden-term"}
    ]});
    let error = enforce(
        Shape::Chat,
        &policy,
        &trail,
        body.to_string().into(),
        context(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, llmgw_proto::ErrorCode::ContentPolicyViolation);
    assert!(
        error.message.contains("`banned-words`"),
        "{}",
        error.message
    );
    assert!(!error.message.contains("forbidden-term"));
    let json: Value = serde_json::from_slice(&error.to_json()).unwrap();
    assert_eq!(json["error"]["code"], "content_policy_violation");
    assert_eq!(json["error"]["type"], "invalid_request_error");
    let hits: u64 = ["emails-flag", "banned-words"]
        .iter()
        .map(|rule| {
            metrics
                .hits
                .get_or_create(&llmgw_audit::HitLabels {
                    policy: "p".to_owned(),
                    rule: (*rule).to_owned(),
                    action: if *rule == "banned-words" {
                        "block"
                    } else {
                        "flag"
                    }
                    .to_owned(),
                    direction: "input".to_owned(),
                })
                .get()
        })
        .sum();
    assert_eq!(hits, 2);
}

/// Every kind of place an Anthropic Messages request carries text.
fn messages_everywhere(term: &str) -> Value {
    json!({
        "model": "mock",
        "max_tokens": 64,
        "system": [{"type": "text", "text": format!("system {term}"), "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": format!("user {term}")},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "private", "signature": "c2ln"},
                {"type": "text", "text": format!("assistant {term}")},
                {"type": "tool_use", "id": "t1", "name": "lookup",
                 "input": {"q": format!("{term}"), "path/x": [format!("deep {term}")]}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": format!("tool {term}")}]},
                {"type": "tool_result", "tool_use_id": "t2", "content": format!("tool2 {term}")}
            ]}
        ]
    })
}

#[test]
fn messages_texts_are_checked_and_redacted_in_place() {
    let policy = policy(vec![rule("secret-project", "Falcon", Action::Redact)]);
    let original = messages_everywhere("Falcon");
    let (verdict, mut events) = check_as(
        Shape::Messages,
        &policy,
        original.to_string().as_bytes(),
        context(),
    );
    let locations: Vec<String> = events.take().into_iter().map(|e| e.location).collect();
    assert_eq!(
        locations,
        [
            "system[0].text",
            "messages[0].content",
            "messages[1].content[1].text",
            "messages[1].content[2].input.{0}[0]",
            "messages[1].content[2].input.{1}",
            "messages[2].content[0].content[0].text",
            "messages[2].content[1].content",
        ]
    );
    let Verdict::Redacted(rewritten) = verdict else {
        panic!("expected a redaction, got {verdict:?}");
    };
    let rewritten: Value = serde_json::from_slice(&rewritten).unwrap();
    assert_eq!(
        rewritten,
        serde_json::from_str::<Value>(&original.to_string().replace("Falcon", "***")).unwrap()
    );
}

#[test]
fn embeddings_inputs_are_checked() {
    let policy = policy(vec![rule("banned", "forbidden-term", Action::Block)]);
    let body = json!({"model": "e", "input": ["fine", "a forbidden-term here"]});
    let (verdict, mut events) = check_as(
        Shape::Embeddings,
        &policy,
        body.to_string().as_bytes(),
        context(),
    );
    assert!(matches!(verdict, Verdict::Blocked { .. }), "{verdict:?}");
    let locations: Vec<String> = events.take().into_iter().map(|e| e.location).collect();
    assert_eq!(locations, ["input[1]"]);
}
