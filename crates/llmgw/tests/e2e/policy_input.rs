//! The input content policy end to end: real edge, router, quota and billing
//! (Postgres and Redis, or SQLite), the mock upstream. What a security team
//! would check: a blocked prompt is refused with OpenAI's error shape and
//! never leaves (the upstream saw nothing, nothing reserved or billed), a
//! redacted prompt reaches the provider masked, a flagged one unchanged, and
//! each tenant gets its own policy.

use std::time::Duration;

use llmgw::GatewayConfig;
use llmgw_policy::PolicySource;
use llmgw_testdb::TestDatabase;
use serde_json::{Value, json};

use crate::accounts::scratch_dir;
use crate::harness::{Gateway, OTHER_TENANT_KEY, error_of};
use crate::ledger::Ledger;
use crate::policy_audit::PolicyBilling;

const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// `standard` for everyone (block, redact, flag), `lenient` (no rules) for
/// tenant `team-b` (the harness's second key).
pub(crate) fn input_policy() -> PolicySource {
    serde_json::from_value(json!({
        "default": "standard",
        "word_lists": {"confidential": ["Project Falcon"]},
        "policies": {
            "standard": {"rules": [
                {"id": "banned-words", "kind": "words", "terms": ["forbidden-term"], "direction": "input", "action": "block"},
                {"id": "confidential-projects", "kind": "words", "word_lists": ["confidential"], "action": "redact"},
                {"id": "canary", "kind": "words", "terms": ["canary-"], "action": "flag"}
            ]},
            "lenient": {"rules": []}
        },
        "tenants": {"team-b": "lenient"}
    }))
    .expect("a valid policy source")
}

pub(crate) fn with_input_policy(config: &mut GatewayConfig) {
    config.policy = input_policy();
}

fn user(content: &str) -> Value {
    json!({"model": "mock", "messages": [{"role": "user", "content": content}]})
}

/// The error a blocked prompt gets: 400, OpenAI's shape, the rule named and
/// the matched text nowhere.
async fn assert_blocked(response: reqwest::Response, rule: &str, term: &str) {
    let (status, error) = error_of(response).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], "content_policy_violation", "{error}");
    assert_eq!(error["type"], "invalid_request_error", "{error}");
    let message = error["message"].as_str().expect("message");
    assert!(message.contains(&format!("`{rule}`")), "{message}");
    assert!(
        !error.to_string().contains(term),
        "the term was echoed: {error}"
    );
}

/// Redis keys under `prefix`: the quota service writes one per counter it
/// reserves against.
async fn quota_keys(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(REDIS_URL).expect("redis URL");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .expect("redis KEYS")
}

/// Requests in today's usage report.
async fn ledger_requests(ledger: &Ledger) -> u64 {
    let today = llmgw_calendar::Day::today();
    let (status, report) = ledger
        .get(&format!(
            "/admin/v1/usage?from={today}&to={}&group_by=model",
            today.succ()
        ))
        .await;
    assert_eq!(status, 200, "{report}");
    report["total"]["requests"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn a_blocked_prompt_is_refused_before_anything_leaves_or_is_charged() {
    let database = TestDatabase::create("e2e_policy_block")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("policy-block");
    // Billing serves the same policy (it is the source of truth once it
    // answers the edge's policy feed).
    let billing = PolicyBilling::start(database.url(), &dir, None, None, input_policy()).await;
    let prefix = format!(
        "llmgw-test-policy-{}-{}",
        std::process::id(),
        unique_suffix()
    );
    let gateway = Gateway::start_with({
        let (billing_grpc, dir, prefix) = (billing.grpc, dir.clone(), prefix.clone());
        move |config| {
            with_input_policy(config);
            config.edge.billing_url = Some(format!("http://{billing_grpc}"));
            config.router.usage.spool_dir = Some(dir.join("spool"));
            config.router.usage.flush_interval_ms = 5;
            config.edge.audit.spool_dir = Some(dir.join("audit-spool"));
            config.quota.redis_url = Some(REDIS_URL.to_owned());
            config.quota.key_prefix = prefix;
            config.quota.limits.default_key.tokens_per_day = Some(10_000_000);
            config.quota.limits.default_key.requests_per_minute = Some(1_000);
        }
    })
    .await;
    let ledger = Ledger::at(billing.admin);

    // In a user message, a system message, a content part, tool-call
    // arguments; as JSON and as a stream request.
    let blocked = [
        user("please repeat forbidden-term"),
        json!({"model": "mock", "messages": [
            {"role": "system", "content": "You may say Forbidden-Term."},
            {"role": "user", "content": "hi"}
        ]}),
        json!({"model": "mock", "stream": true, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "stream the forbidden-term"}]}
        ]}),
        json!({"model": "mock", "messages": [
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"q\":\"forbidden-term\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "nothing found"}
        ]}),
    ];
    for body in blocked {
        assert_blocked(gateway.chat(body).await, "banned-words", "forbidden-term").await;
    }
    assert_eq!(
        gateway.mock_stats().await["requests_total"],
        0,
        "the upstream saw a request"
    );
    assert!(
        quota_keys(&prefix).await.is_empty(),
        "quota reserved for a blocked prompt"
    );

    // The same gateway serves and charges a clean prompt...
    let response = gateway.chat(user("a harmless question")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(gateway.mock_stats().await["requests_total"], 1);
    assert!(
        !quota_keys(&prefix).await.is_empty(),
        "the clean prompt reserved quota"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ledger_requests(&ledger).await < 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and it is the only one in the ledger: the blocked ones cost nothing.
    assert_eq!(ledger_requests(&ledger).await, 1);

    let metrics = gateway.metrics().await;
    let line = r#"llmgw_edge_policy_hits_total{policy="standard",rule="banned-words",action="block",direction="input"} 4"#;
    assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    drop(gateway);
    billing.stop().await;
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_nanos())
}

#[tokio::test]
async fn redacted_prompts_reach_the_upstream_masked_flagged_ones_unchanged() {
    let gateway = Gateway::start_with(with_input_policy).await;

    let response = gateway
        .chat(json!({"model": "mock", "temperature": 0.5, "user": "u-42", "messages": [
            {"role": "system", "content": "Never mention Project Falcon."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is the status of project falcon?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "search", "arguments": "{\"q\":\"Project Falcon budget\"}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "no results"}
        ]}))
        .await;
    assert_eq!(response.status(), 200);
    let seen = &gateway.mock_stats().await["last_request"]["body"];
    let messages = &seen["messages"];
    assert_eq!(messages[0]["content"], "Never mention ***.");
    assert_eq!(
        messages[1]["content"][0]["text"],
        "What is the status of ***?"
    );
    assert_eq!(
        messages[1]["content"][1]["image_url"]["url"],
        "https://example.com/a.png"
    );
    assert_eq!(
        messages[2]["tool_calls"][0]["function"]["arguments"],
        "{\"q\":\"*** budget\"}"
    );
    assert_eq!(messages[3]["content"], "no results");
    // Everything else is forwarded as sent.
    assert_eq!(seen["temperature"], 0.5);
    assert_eq!(seen["user"], "u-42");
    assert!(
        !seen.to_string().to_lowercase().contains("falcon"),
        "{seen}"
    );

    // Flag: served, forwarded unchanged, counted.
    let response = gateway.chat(user("the build id is canary-00417")).await;
    assert_eq!(response.status(), 200);
    let seen = &gateway.mock_stats().await["last_request"]["body"];
    assert_eq!(
        seen["messages"][0]["content"],
        "the build id is canary-00417"
    );

    // Another tenant's policy (`lenient`, from the file's `tenants:`).
    let response = gateway
        .chat_raw(
            Some(OTHER_TENANT_KEY),
            user("forbidden-term about Project Falcon").to_string(),
        )
        .await;
    assert_eq!(response.status(), 200);
    let seen = &gateway.mock_stats().await["last_request"]["body"];
    assert_eq!(
        seen["messages"][0]["content"],
        "forbidden-term about Project Falcon"
    );

    let metrics = gateway.metrics().await;
    for line in [
        r#"llmgw_edge_policy_hits_total{policy="standard",rule="confidential-projects",action="redact",direction="input"} 3"#,
        r#"llmgw_edge_policy_hits_total{policy="standard",rule="canary",action="flag",direction="input"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

/// Evasion: the engine's normalisation (NFKC, case folding, zero-width
/// characters removed, separators between CJK characters skipped) applies
/// at the edge. NEEDS THE REAL POLICY ENGINE (branch i12/policy): the
/// skeleton engine on this branch matches plain text only. Run with
/// `--ignored` once it is merged, then drop the `ignore`.
#[tokio::test]
#[ignore = "needs the real policy engine (i12/policy): the skeleton matches plain text only"]
async fn evasions_are_blocked_at_the_edge() {
    let gateway = Gateway::start_with(|config| {
        config.policy = serde_json::from_value(json!({
            "default": "strict",
            "policies": {"strict": {"rules": [
                {"id": "latin-term", "kind": "words", "terms": ["forbidden"], "action": "block"},
                {"id": "cjk-term", "kind": "words", "terms": ["敏感词"], "skip_separators": true, "action": "block"}
            ]}}
        }))
        .expect("a valid policy source");
    })
    .await;
    let evasions = [
        ("ＦＯＲＢＩＤＤＥＮ", "latin-term"),        // full-width
        ("FoRbIdDeN", "latin-term"),                 // mixed case
        ("for\u{200b}bid\u{200d}den", "latin-term"), // zero-width space and joiner
        ("敏 感 词", "cjk-term"),                    // spaced-out CJK
        ("敏*感*词", "cjk-term"),
    ];
    for (text, rule) in evasions {
        assert_blocked(gateway.chat(user(text)).await, rule, text).await;
    }
    assert_eq!(gateway.mock_stats().await["requests_total"], 0);
}

/// The plain cases of the same rules, which any engine must catch.
#[tokio::test]
async fn plain_terms_latin_and_cjk_are_blocked_at_the_edge() {
    let gateway = Gateway::start_with(|config| {
        config.policy = serde_json::from_value(json!({
            "default": "strict",
            "policies": {"strict": {"rules": [
                {"id": "latin-term", "kind": "words", "terms": ["forbidden"], "action": "block"},
                {"id": "cjk-term", "kind": "words", "terms": ["敏感词"], "skip_separators": true, "action": "block"}
            ]}}
        }))
        .expect("a valid policy source");
    })
    .await;
    for (text, rule) in [
        ("this is forbidden", "latin-term"),
        ("FORBIDDEN", "latin-term"),
        ("这是敏感词吗", "cjk-term"),
    ] {
        assert_blocked(gateway.chat(user(text)).await, rule, text).await;
    }
    let response = gateway.chat(user("敏感 is fine, and so is forbid")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(gateway.mock_stats().await["requests_total"], 1);
}
