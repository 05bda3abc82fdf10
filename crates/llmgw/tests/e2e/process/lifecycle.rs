//! Demo mode with no configuration, graceful shutdown on SIGTERM, and edge
//! and router as separate processes.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::ConnectOptions as _;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::child::{
    CALL, Proc, TempDir, client, free_ports, open_stream, stops_taking_requests, wait_http_ok,
    wait_ready,
};
use super::gateway::{AllInOne, LLMGW, LOGS, gateway_yaml};
use crate::harness::{self, KEY};

/// Guards waits that end on shutdown: generous, since only the order and
/// the outcome are asserted.
const SHUTDOWN: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_serves_the_mock_model_with_the_dev_key() {
    let [edge_port, router_port] = free_ports();
    let mut gateway = Proc::spawn(
        "llmgw all (demo)",
        LLMGW,
        &["all"],
        &[
            ("LLMGW_EDGE__LISTEN", format!("127.0.0.1:{edge_port}")),
            ("LLMGW_ROUTER__LISTEN", format!("127.0.0.1:{router_port}")),
        ],
    );
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    wait_ready(edge, &mut [&mut gateway]).await;

    let hint = format!("curl http://{edge}/v1/chat/completions");
    let bearer = format!("Authorization: Bearer {}", llmgw::demo::DEV_KEY);
    assert_eq!(llmgw::demo::DEV_KEY, "sk-llmgw-dev-0000000000000000");
    gateway
        .stdout_until(Duration::from_secs(30), |out| {
            out.contains(&hint) && out.contains(&bearer)
        })
        .await
        .unwrap_or_else(|out| {
            panic!("stdout lacks the curl hint `{hint}` with `{bearer}`:\n{out}")
        });

    let client = client();
    let response = timeout(
        CALL,
        client
            .post(format!("http://{edge}/v1/chat/completions"))
            .bearer_auth(llmgw::demo::DEV_KEY)
            .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]}))
            .send(),
    )
    .await
    .expect("demo chat call timed out")
    .expect("edge reachable");
    assert_eq!(response.status(), 200, "demo chat call");
    let completion: Value = response.json().await.expect("completion JSON");
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    let content = completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!content.trim().is_empty(), "no content: {completion}");
    assert!(
        completion["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0,
        "no usage: {completion}"
    );

    let models: Value = timeout(
        CALL,
        client
            .get(format!("http://{edge}/v1/models"))
            .bearer_auth(llmgw::demo::DEV_KEY)
            .send(),
    )
    .await
    .expect("model list timed out")
    .expect("edge reachable")
    .json()
    .await
    .expect("model list JSON");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert!(ids.contains(&"demo"), "models: {models}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_streams_then_exits() {
    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    let drain_secs = 5;
    let mut gateway = AllInOne::start(mock, drain_secs, LOGS).await;

    let mut sse = gateway
        .open_stream(json!({
            "model": "mock",
            "stream": true,
            "messages": [{"role": "user", "content": "Count slowly"}],
            "mock": {"chunks": 10, "chunk_delay_ms": 200},
        }))
        .await;
    let first = timeout(CALL, sse.next_data())
        .await
        .expect("first event timed out")
        .expect("a first event");
    gateway.proc.sigterm();
    let reader = tokio::spawn(async move {
        let mut events = vec![first];
        while let Some(event) = sse.next_data().await {
            events.push(event);
        }
        events
    });

    let refused = stops_taking_requests(gateway.edge, Duration::from_secs(drain_secs)).await;
    assert!(
        refused.is_ok(),
        "the edge still took new requests after SIGTERM: {refused:?}\n{}",
        gateway.proc.output()
    );

    let events = timeout(Duration::from_secs(drain_secs + 5), reader)
        .await
        .expect("the open stream did not finish")
        .expect("stream reader");
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "the stream did not complete: {events:#?}\n{}",
        gateway.proc.output()
    );
    let chunks = harness::chunks(&events);
    for chunk in &chunks {
        assert!(chunk.get("error").is_none(), "error event: {chunk}");
    }
    let contents: Vec<&str> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .filter(|content| !content.is_empty())
        .collect();
    assert_eq!(contents.len(), 10, "content chunks: {contents:?}");

    let status = gateway.proc.wait_exit_by(Instant::now() + SHUTDOWN).await;
    assert!(
        status.success(),
        "llmgw exited with {status}:\n{}",
        gateway.proc.output()
    );
    // Billing stops only after the router has drained its spool into it, so
    // the drained stream is in the ledger when the process is gone.
    let ledger = gateway.proc.ledger_path();
    let mut db = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&ledger)
        .read_only(true)
        .connect()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "the ledger {}: {error}\n{}",
                ledger.display(),
                gateway.proc.output()
            )
        });
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT completion_tokens, status FROM usage_events")
            .fetch_all(&mut db)
            .await
            .expect("usage_events");
    assert_eq!(
        rows.len(),
        1,
        "the drained stream's usage: {rows:?}\n{}",
        gateway.proc.output()
    );
    assert_eq!(rows[0].1, "ok", "{rows:?}");
    assert!(rows[0].0 >= 10, "ten chunks billed: {rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_still_open_at_the_drain_deadline() {
    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    let drain_secs = 1;
    let mut gateway = AllInOne::start(mock, drain_secs, LOGS).await;

    let mut sse = gateway
        .open_stream(json!({
            "model": "mock",
            "stream": true,
            "messages": [{"role": "user", "content": "Count very slowly"}],
            "mock": {"chunks": 50, "chunk_delay_ms": 200},
        }))
        .await;
    let first = timeout(CALL, sse.next_data())
        .await
        .expect("first event timed out")
        .expect("a first event");
    gateway.proc.sigterm();

    // Unhindered, the stream would run for 10 s more; the deadline is only
    // a guard (the assertions below say the stream was cut, not completed).
    let mut events = vec![first];
    timeout(SHUTDOWN, async {
        while let Some(event) = sse.next_data().await {
            events.push(event);
        }
    })
    .await
    .expect("the stream was not ended");

    assert!(
        !events.iter().any(|event| event == "[DONE]"),
        "a stream still open at the drain deadline completed: {events:#?}"
    );
    let last: Value = serde_json::from_str(events.last().expect("events")).expect("last event");
    assert_eq!(
        last["error"]["code"], "service_unavailable",
        "the last event is not the shutdown error: {events:#?}"
    );
    assert!(
        last["error"]["message"].is_string(),
        "error without message: {last}"
    );
    assert!(
        events.len() < 50,
        "the whole answer came through: {} events",
        events.len()
    );

    // After the drain the router bills the cut stream (a tokenizer
    // estimate) before the process exits; on a loaded machine in a debug
    // build that took longer than a tight bound allowed (the BPE load: the
    // router now loads it at start). A generous deadline: exiting matters,
    // not how fast.
    let status = gateway.proc.wait_exit_by(Instant::now() + SHUTDOWN).await;
    assert!(
        status.success(),
        "llmgw exited with {status}:\n{}",
        gateway.proc.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_processes_edge_and_router() {
    let [edge_port, router_port, mock_port] = free_ports();
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    let router = SocketAddr::from(([127, 0, 0, 1], router_port));
    let mock = SocketAddr::from(([127, 0, 0, 1], mock_port));

    let mut mock_proc = Proc::spawn(
        "llmgw mock-upstream",
        LLMGW,
        &["mock-upstream", "--listen", &mock.to_string()],
        &[],
    );
    let mock_stats = format!("http://{mock}/stats");
    wait_http_ok(&mock_stats, &mut [&mut mock_proc]).await;

    let dir = TempDir::new("split");
    let config = dir.write("llmgw.yaml", &gateway_yaml(edge, router, mock, 5, LOGS));
    let config = config.to_str().expect("UTF-8 path");
    let mut router_proc = Proc::spawn("llmgw router", LLMGW, &["router", "--config", config], &[]);
    let mut edge_proc = Proc::spawn("llmgw edge", LLMGW, &["edge", "--config", config], &[]);
    wait_ready(
        edge,
        &mut [&mut edge_proc, &mut router_proc, &mut mock_proc],
    )
    .await;

    let client = client();
    let prompt = json!([{"role": "user", "content": "Which process am I talking to?"}]);
    let response = timeout(
        CALL,
        client
            .post(format!("http://{edge}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&json!({"model": "mock", "messages": prompt}))
            .send(),
    )
    .await
    .expect("JSON call timed out")
    .expect("edge reachable");
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.expect("completion JSON");
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    let content = completion["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned();
    assert!(!content.is_empty(), "{completion}");
    assert!(completion["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0);

    let mut sse = open_stream(
        &client,
        edge,
        json!({"model": "mock", "stream": true, "messages": prompt}),
    )
    .await;
    let mut events = Vec::new();
    timeout(CALL, async {
        while let Some(event) = sse.next_data().await {
            events.push(event);
        }
    })
    .await
    .expect("stream timed out");
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:#?}"
    );
    assert_eq!(
        harness::content_of(&harness::chunks(&events)),
        content,
        "streamed and JSON answers differ"
    );

    let stats: Value = timeout(CALL, client.get(&mock_stats).send())
        .await
        .expect("stats timed out")
        .expect("mock reachable")
        .json()
        .await
        .expect("stats JSON");
    assert_eq!(stats["requests_total"], 2, "{stats}");

    // Each process stops cleanly on SIGTERM, front to back.
    for proc in [&mut edge_proc, &mut router_proc, &mut mock_proc] {
        proc.sigterm();
        let status = proc.wait_exit_by(Instant::now() + CALL).await;
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            proc.name,
            proc.output()
        );
    }
}
