//! Streams drained on SIGTERM are billed: `llmgw all` on a fresh Postgres
//! ledger, the mock upstream recording what it produced per request
//! (`mock.tag`, `GET /stats/requests/<tag>`). A stream that finishes within
//! the drain is in the ledger once with the tokens the mock reported; one
//! still open at the drain deadline is cut, and the router's cancel bill
//! (the edge asks it to stop; it tokenizes what was generated and spools
//! one `cancelled` event) reaches the ledger before the process exits,
//! once, with the tokens the mock produced up to the cut.
//!
//! No wall-clock bounds: the waits are generous deadlines, and what is
//! asserted is order (the client saw every produced chunk before the
//! signal) and outcome (rows after exit).

use std::net::SocketAddr;
use std::time::Duration;

use llmgw_testdb::TestDatabase;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::child::{CALL, Proc, TempDir, client, free_ports, open_stream, wait_ready};
use super::gateway::{LLMGW, LOGS};
use crate::harness::{self, KEY};

/// Generous: shutdown must happen, however loaded the machine is.
const EXIT: Duration = Duration::from_secs(90);

/// Content pieces that are one token each in every BPE the router uses (a
/// leading space and a common word), so the router's estimate of a cut
/// stream counts exactly the pieces the mock produced.
const PIECES: [&str; 20] = [
    " one", " two", " three", " four", " five", " six", " seven", " eight", " nine", " ten",
    " red", " green", " blue", " black", " white", " north", " south", " east", " west", " time",
];

/// `llmgw all` with billing on `database_url`; the router waits long for
/// upstream bytes, so only the drain ends a stalled stream.
async fn start(
    mock: SocketAddr,
    drain_secs: u64,
    database_url: &str,
) -> (Proc, SocketAddr, TempDir) {
    let [edge_port, router_port] = free_ports();
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    let dir = TempDir::new("drain-billing");
    let yaml = format!(
        "telemetry: {{{LOGS}}}\n\
         edge:\n  \
           listen: \"{edge}\"\n  \
           drain_timeout_secs: {drain_secs}\n  \
           api_keys:\n    \
             - {{key: \"{KEY}\", tenant: \"team-a\", name: \"drain-test\"}}\n\
         router:\n  \
           listen: \"127.0.0.1:{router_port}\"\n  \
           models:\n    \
             - {{alias: mock, provider: openai, base_url: \"http://{mock}/v1\", upstream_model: mock}}\n  \
           timeouts: {{first_byte_ms: 600000, idle_ms: 600000}}\n  \
           retries: {{max_retries: 0}}\n  \
           usage: {{flush_interval_ms: 5}}\n"
    );
    let config = dir.write("llmgw.yaml", &yaml);
    let config = config.to_str().expect("UTF-8 path");
    let mut proc = Proc::spawn(
        "llmgw all (Postgres ledger)",
        LLMGW,
        &["all", "--config", config],
        &[("DATABASE_URL", database_url.to_owned())],
    );
    wait_ready(edge, &mut [&mut proc]).await;
    (proc, edge, dir)
}

/// The mock's record of the request tagged `tag`.
async fn production(mock: SocketAddr, tag: &str) -> Value {
    let response = timeout(
        CALL,
        client()
            .get(format!("http://{mock}/stats/requests/{tag}"))
            .send(),
    )
    .await
    .expect("mock stats timed out")
    .expect("mock reachable");
    assert_eq!(response.status(), 200, "no production recorded for {tag}");
    response.json().await.expect("production JSON")
}

/// Every ledger row: (status, prompt, completion, client_cancelled, estimated).
async fn ledger(database: &TestDatabase) -> Vec<(String, i64, i64, bool, bool)> {
    let pool = database.pool().await.expect("connect to the test database");
    let rows = sqlx::query_as(
        "SELECT status, prompt_tokens, completion_tokens, client_cancelled, estimated \
         FROM usage_events ORDER BY request_id, attempt",
    )
    .fetch_all(&pool)
    .await
    .expect("usage_events");
    pool.close().await;
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_finished_within_the_drain_is_billed_once_exactly() {
    let database = TestDatabase::create("e2e_drain_done")
        .await
        .expect("postgres reachable");
    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    // A drain far longer than the stream, so it finishes on its own.
    let (mut gateway, edge, _dir) = start(mock, 60, database.url()).await;

    let mut sse = open_stream(
        &client(),
        edge,
        json!({
            "model": "mock", "stream": true,
            "messages": [{"role": "user", "content": "Count slowly"}],
            "mock": {"chunks": 10, "chunk_delay_ms": 200, "tag": "drained"},
        }),
    )
    .await;
    let first = timeout(CALL, sse.next_data())
        .await
        .expect("first event timed out")
        .expect("a first event");
    gateway.sigterm();
    let mut events = vec![first];
    timeout(EXIT, async {
        while let Some(event) = sse.next_data().await {
            events.push(event);
        }
    })
    .await
    .expect("the drained stream never ended");
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "the stream did not complete: {events:#?}\n{}",
        gateway.output()
    );
    let status = gateway.wait_exit_by(Instant::now() + EXIT).await;
    assert!(
        status.success(),
        "llmgw exited with {status}:\n{}",
        gateway.output()
    );

    let produced = production(mock, "drained").await;
    assert_eq!(produced["finished"], true, "{produced}");
    assert_eq!(produced["completion_tokens"], 10, "{produced}");
    let rows = ledger(&database).await;
    assert_eq!(
        rows.len(),
        1,
        "one row for the one request: {rows:?}\n{}",
        gateway.output()
    );
    let (status, prompt, completion, cancelled, estimated) = &rows[0];
    assert_eq!(status, "ok", "{rows:?}");
    assert!(!cancelled && !estimated, "reported usage: {rows:?}");
    assert_eq!(
        (*prompt, *completion),
        (
            produced["prompt_tokens"].as_i64().expect("prompt"),
            produced["completion_tokens"].as_i64().expect("completion"),
        ),
        "the ledger holds what the mock reported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_at_the_drain_deadline_is_billed_once_for_what_was_produced() {
    let database = TestDatabase::create("e2e_drain_cut")
        .await
        .expect("postgres reachable");
    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    let (mut gateway, edge, _dir) = start(mock, 2, database.url()).await;

    // Half the pieces, then the mock goes silent with the stream open: the
    // slowest pacing there is, and the cut point is known.
    let mut sse = open_stream(
        &client(),
        edge,
        json!({
            "model": "mock", "stream": true,
            "messages": [{"role": "user", "content": "Count very slowly"}],
            "mock": {"content": PIECES, "fault": "stall-mid-stream", "tag": "cut"},
        }),
    )
    .await;
    let mut events = Vec::new();
    let produced_before_cut = PIECES.len() / 2;
    timeout(EXIT, async {
        while content_chunks(&events) < produced_before_cut {
            match sse.next_data().await {
                Some(event) => events.push(event),
                None => break,
            }
        }
    })
    .await
    .expect("the first half of the answer never came");
    assert_eq!(content_chunks(&events), produced_before_cut, "{events:#?}");
    // Every produced piece reached the client (so the router read it)
    // before the signal.
    gateway.sigterm();
    timeout(EXIT, async {
        while let Some(event) = sse.next_data().await {
            events.push(event);
        }
    })
    .await
    .expect("the stream was not ended at the drain deadline");
    assert!(
        !events.iter().any(|event| event == "[DONE]"),
        "a stalled stream completed: {events:#?}"
    );
    let last: Value = serde_json::from_str(events.last().expect("events")).expect("last event");
    assert_eq!(
        last["error"]["code"], "service_unavailable",
        "the last event is not the shutdown error: {events:#?}"
    );
    let status = gateway.wait_exit_by(Instant::now() + EXIT).await;
    assert!(
        status.success(),
        "llmgw exited with {status}:\n{}",
        gateway.output()
    );

    let produced = production(mock, "cut").await;
    assert_eq!(produced["finished"], false, "{produced}");
    assert_eq!(
        produced["completion_tokens"], produced_before_cut,
        "{produced}"
    );
    let rows = ledger(&database).await;
    assert_eq!(
        rows.len(),
        1,
        "one row for the one request: {rows:?}\n{}",
        gateway.output()
    );
    let (status, prompt, completion, cancelled, estimated) = &rows[0];
    // The edge cancelled the call at the deadline: the router bills it as
    // a client cancellation, by its tokenizer (the provider sent no usage).
    assert_eq!(status, "cancelled", "{rows:?}");
    assert!(*cancelled && *estimated, "{rows:?}");
    assert!(*prompt > 0, "the prompt is billed: {rows:?}");
    assert_eq!(
        *completion,
        produced["completion_tokens"].as_i64().expect("completion"),
        "the ledger holds the tokens produced up to the cut: {rows:?}"
    );
}

/// Events with non-empty content.
fn content_chunks(events: &[String]) -> usize {
    harness::chunks(events)
        .iter()
        .filter(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|content| !content.is_empty())
        })
        .count()
}
