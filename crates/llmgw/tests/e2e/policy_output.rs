//! The output content policy end to end: real edge (SSE framing), router,
//! billing (SQLite) and the mock upstream. What a client and a finance team
//! would check: an answer with a blocked term ends with `finish_reason:
//! content_filter` before the term, the stream still ends properly (usage
//! chunk, `[DONE]`), the provider call is cancelled, and the ledger bills
//! what the provider produced; the official OpenAI SDK sees the same.

use std::time::Duration;

use futures_util::StreamExt as _;
use llmgw::GatewayConfig;
use llmgw_policy::PolicySource;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::harness::{Gateway, KEY, chunks, content_of, request};
use crate::ledger::Ledger;
use crate::process::child::run_bounded;
use crate::process::sdk::{sdk_dir, sdk_python};

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
async fn a_streamed_answer_is_cut_with_content_filter_and_billed_in_the_ledger() {
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
    let mut command = Command::new(&python);
    command
        .arg(sdk_dir().join("openai_sdk_content_filter.py"))
        .env("OPENAI_BASE_URL", gateway.url("/v1"))
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_MODEL", "mock")
        .env("BLOCKED_TERM", "敏感词")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost");
    for name in [
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_LOG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    let (status, output) = run_bounded(command, Duration::from_secs(120))
        .await
        .unwrap_or_else(|output| panic!("the SDK script did not finish in time:\n{output}"));
    println!("openai_sdk_content_filter.py ({status}):\n{output}");
    assert!(
        status.success(),
        "the SDK script failed ({status}):\n{output}"
    );
}
