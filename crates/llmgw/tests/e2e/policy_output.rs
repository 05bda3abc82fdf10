//! The output content policy end to end: real edge (SSE framing), router,
//! billing (SQLite) and the mock upstream. What a client and a finance team
//! would check: an answer with a blocked term ends with `finish_reason:
//! content_filter` before the term, the stream still ends properly (usage
//! chunk, `[DONE]`), the provider call is cancelled, the ledger bills what
//! the provider produced and the audit trail has the hit; the official
//! OpenAI SDK sees the same.

use std::time::Duration;

use futures_util::StreamExt as _;
use llmgw::GatewayConfig;
use llmgw_policy::PolicySource;
use serde_json::{Value, json};

use crate::harness::{Gateway, chunks, content_of, request};
use crate::ledger::Ledger;
use crate::policy_audit::{admin_at, wait_audited};
use crate::process::sdk::{run_sdk_script, sdk_python};

/// Blocks one term in every tenant's answers.
fn output_policy() -> PolicySource {
    serde_json::from_value(json!({
        "default": "answers",
        "policies": {"answers": {"rules": [
            {"id": "no-leaks", "kind": "words", "terms": ["敏感词"], "direction": "output", "action": "block"}
        ]}}
    }))
    .expect("a valid policy source")
}

fn with_output_policy(config: &mut GatewayConfig) {
    config.policy = output_policy();
    config.router.usage.flush_interval_ms = 5;
    config.billing.admin_token_file = Some(config.billing.data_dir.join("admin-token"));
}

/// The `data:` payloads of a streamed response, in order.
async fn sse_events(response: reqwest::Response) -> Vec<String> {
    let mut events = Vec::new();
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    while let Some(Ok(bytes)) = stream.next().await {
        buffer.extend_from_slice(&bytes);
        while let Some(end) = buffer.windows(2).position(|pair| pair == b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..end + 2).collect();
            let frame = String::from_utf8(frame).expect("UTF-8 frames");
            events.extend(
                frame
                    .lines()
                    .filter_map(|line| line.strip_prefix("data: "))
                    .map(str::to_owned),
            );
        }
    }
    events
}

/// The request's ledger rows, once there.
async fn ledger_rows(gateway: &Gateway, request_id: &str) -> Vec<Value> {
    let ledger = Ledger::at(gateway.admin.expect("billing started"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = ledger.attempts(request_id).await;
        if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_streamed_answer_is_cut_with_content_filter_billed_and_audited() {
    let gateway = Gateway::start_with(with_output_policy).await;
    let mut body = request("mock");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    // Half the pieces, then the mock stalls: only a cancel closes it.
    body["mock"] = json!({"fault": "stall-mid-stream", "content":
        ["Hello ", "前文", "敏感", "词", "after", " more", " a", " b", " c", " d", " e", " f"]});
    let response = gateway.chat(body).await;
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let events = sse_events(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&events);
    assert_eq!(content_of(&chunks), "Hello 前文");
    let reasons: Vec<&str> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(reasons, ["content_filter"]);
    let usage = &chunks.last().expect("usage chunk")["usage"];
    let completion_tokens = usage["completion_tokens"].as_u64().expect("usage");
    assert!(completion_tokens > 0);

    let stats = gateway
        .mock_stats_until(Duration::from_secs(10), |stats| {
            stats["active_responses"] == 0 && stats["open_connections"] == 0
        })
        .await;
    assert_eq!(
        stats["active_responses"], 0,
        "upstream still answering: {stats}"
    );
    assert_eq!(
        stats["open_connections"], 0,
        "upstream connection open: {stats}"
    );

    let rows = ledger_rows(&gateway, &request_id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["finish_reason"], "content_filter", "{row}");
    assert_eq!(row["status"], "ok", "{row}");
    assert_eq!(row["estimated"], true, "{row}");
    assert_eq!(row["completion_tokens"], completion_tokens, "{row}");

    // The hit, as an auditor reads it from billing's audit trail.
    let admin = admin_at(gateway.admin.expect("billing started"));
    let rows = wait_audited(&admin, &[(request_id.clone(), 1)]).await;
    let audited = &rows[&request_id];
    assert_eq!(audited.len(), 1, "{audited:?}");
    for (field, value) in [
        ("tenant", json!("team-a")),
        ("model", json!("mock")),
        ("policy", json!("answers")),
        ("rule_id", json!("no-leaks")),
        ("direction", json!("output")),
        ("action", json!("block")),
        ("location", json!("choices[0]")),
        ("attempt", json!(1)),
        ("sequence", json!(0)),
        // "Hello 前文" is 12 bytes, "敏感词" 9.
        ("offset", json!(12)),
        ("length", json!(9)),
        ("excerpt", json!("")),
    ] {
        assert_eq!(audited[0][field], value, "{field} of {}", audited[0]);
    }
}

#[tokio::test]
async fn a_json_answer_is_cut_with_content_filter() {
    let gateway = Gateway::start_with(with_output_policy).await;
    let mut body = request("mock");
    body["mock"] = json!({"content": ["Hello ", "前文", "敏感词", " after"]});
    let answer: Value = gateway.chat(body).await.json().await.expect("JSON");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello 前文");
    assert_eq!(answer["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(answer["usage"]["completion_tokens"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_sees_content_filter() {
    let python = sdk_python().await;
    let gateway = Gateway::start_with(with_output_policy).await;
    let (status, output) = run_sdk_script(
        &python,
        "openai_sdk_content_filter.py",
        &gateway.url("/v1"),
        &[("BLOCKED_TERM", "敏感词")],
    )
    .await;
    println!("openai_sdk_content_filter.py ({status}):\n{output}");
    assert!(
        status.success(),
        "the SDK script failed ({status}):\n{output}"
    );
}
