//! The usage ledger end to end: real edge, router (with its durable spool),
//! billing on a fresh Postgres database, and the mock upstream. What a finance
//! team would check: every attempt recorded once, tokens equal to what the
//! provider reported, costs equal to the price table, nothing lost while
//! billing or Postgres is down or the router restarts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use llmgw::GatewayConfig;
use llmgw_testdb::TestDatabase;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accounts::{ADMIN_TOKEN, scratch_dir};
use crate::harness::{Gateway, model};

/// The test models' prices (harness::model): USD per million tokens.
const INPUT_NANO_PER_MTOK: u64 = 150_000_000;
const OUTPUT_NANO_PER_MTOK: u64 = 600_000_000;

/// Routes for these tests: `mock`, and `flaky` (always 429) falling back to
/// `mock`; retries are quick and breakers never open, so every flaky request
/// makes the same attempts.
pub(crate) fn ledger_models(config: &mut GatewayConfig) {
    let base = config.router.models[0]
        .base_url
        .clone()
        .expect("harness mock model");
    let mut flaky = model("flaky", base, "mock-fault-429");
    flaky.fallbacks = vec!["mock".to_owned()];
    config.router.models.push(flaky);
    config.router.retries.max_retries = 1;
    config.router.retries.initial_backoff_ms = 1;
    config.router.retries.max_retry_after_ms = 0;
    config.router.breaker.consecutive_failures = 0;
    config.router.breaker.min_requests = u32::MAX;
    config.router.usage.flush_interval_ms = 5;
}

/// The billing service alone (its own gRPC and admin ports), as the tests
/// that stop it need.
pub(crate) struct Billing {
    pub(crate) grpc: SocketAddr,
    pub(crate) admin: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Billing {
    pub(crate) async fn start(database_url: &str, dir: &Path, grpc: Option<SocketAddr>) -> Billing {
        let config = llmgw_billing::Config {
            database_url: Some(database_url.to_owned()),
            data_dir: dir.to_path_buf(),
            admin_token_file: Some(dir.join("admin-token")),
            ..llmgw_billing::Config::default()
        };
        let grpc = TcpListener::bind(grpc.unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr")))
            .await
            .expect("bind billing");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let addresses = (
            grpc.local_addr().expect("addr"),
            admin.local_addr().expect("addr"),
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(llmgw_billing::run(
            config,
            grpc,
            admin,
            stop.clone().cancelled_owned(),
        ));
        Billing {
            grpc: addresses.0,
            admin: addresses.1,
            stop,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A gateway whose router delivers usage to `billing_grpc`; its spool lives
/// in `dir` (so a restarted gateway finds it again).
async fn gateway_billing_to(billing_grpc: SocketAddr, dir: &Path) -> Gateway {
    let dir = dir.to_path_buf();
    Gateway::start_with(move |config| {
        ledger_models(config);
        config.edge.billing_url = Some(format!("http://{billing_grpc}"));
        config.router.usage.spool_dir = Some(dir.join("spool"));
    })
    .await
}

/// What the client was told about one request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) request_id: String,
    /// Usage the client saw (JSON answers, and streams with include_usage).
    pub(crate) usage: Option<(u64, u64)>,
    pub(crate) cancelled: bool,
}

pub(crate) async fn json_call(gateway: &Gateway, model: &str, words: usize) -> Seen {
    let response = gateway
        .chat(json!({
            "model": model,
            "messages": [{"role": "user", "content": "word ".repeat(words)}],
        }))
        .await;
    let status = response.status();
    if status != 200 {
        panic!("{status}: {}", response.text().await.unwrap_or_default());
    }
    let request_id = request_id_of(&response);
    let body: Value = response.json().await.expect("JSON answer");
    Seen {
        request_id,
        usage: Some(usage_of(&body["usage"])),
        cancelled: false,
    }
}

pub(crate) async fn stream_call(gateway: &Gateway, words: usize) -> Seen {
    let response = gateway
        .chat(json!({
            "model": "mock", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "word ".repeat(words)}],
        }))
        .await;
    assert_eq!(response.status(), 200);
    let request_id = request_id_of(&response);
    let text = response.text().await.expect("stream body");
    let usage = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<Value>(data).expect("chunk JSON"))
        .find(|chunk| chunk["usage"].is_object())
        .map(|chunk| usage_of(&chunk["usage"]));
    assert!(usage.is_some(), "no usage chunk in {text}");
    Seen {
        request_id,
        usage,
        cancelled: false,
    }
}

/// `n` JSON calls and `n` streams, one after the other, each succeeding.
async fn json_and_streams(gateway: &Gateway, n: usize) -> Vec<Seen> {
    let mut seen = Vec::new();
    for i in 0..n {
        seen.push(json_call(gateway, "mock", 4 + i).await);
        seen.push(stream_call(gateway, 4 + i).await);
    }
    seen
}

/// A slow stream the client abandons after its first chunks.
pub(crate) async fn cancelled_stream(gateway: &Gateway) -> Seen {
    let response = gateway
        .chat(json!({
            "model": "mock", "stream": true, "max_tokens": 200,
            "mock": {"chunks": 40, "chunk_delay_ms": 40},
            "messages": [{"role": "user", "content": "tell me a long story"}],
        }))
        .await;
    assert_eq!(response.status(), 200);
    let request_id = request_id_of(&response);
    let mut body = response.bytes_stream();
    let mut received = String::new();
    while received.matches("data: ").count() < 3 {
        let bytes = body.next().await.expect("chunks").expect("bytes");
        received.push_str(&String::from_utf8_lossy(&bytes));
    }
    drop(body);
    Seen {
        request_id,
        usage: None,
        cancelled: true,
    }
}

fn request_id_of(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .expect("ascii id")
        .to_owned()
}

fn usage_of(usage: &Value) -> (u64, u64) {
    (
        usage["prompt_tokens"].as_u64().expect("prompt_tokens"),
        usage["completion_tokens"]
            .as_u64()
            .expect("completion_tokens"),
    )
}

/// The admin API of a billing service.
pub(crate) struct Ledger {
    url: String,
    client: reqwest::Client,
}

impl Ledger {
    pub(crate) fn at(admin: SocketAddr) -> Ledger {
        Ledger {
            url: format!("http://{admin}"),
            client: reqwest::Client::new(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin API reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// One request's attempts, ordered by attempt number.
    pub(crate) async fn attempts(&self, request_id: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/admin/v1/usage/requests/{request_id}"))
            .await;
        if status == 404 {
            return Vec::new();
        }
        assert_eq!(status, 200, "{body}");
        body["attempts"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until every request has a finished attempt in the ledger.
    pub(crate) async fn wait_for(
        &self,
        seen: &[Seen],
        within: Duration,
    ) -> HashMap<String, Vec<Value>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut found = HashMap::new();
        loop {
            for request in seen {
                if found.contains_key(&request.request_id) {
                    continue;
                }
                let attempts = self.attempts(&request.request_id).await;
                let complete = attempts
                    .last()
                    .is_some_and(|last| last["status"] == "ok" || last["status"] == "cancelled");
                if complete {
                    found.insert(request.request_id.clone(), attempts);
                }
            }
            if found.len() == seen.len() || tokio::time::Instant::now() >= deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Every request in the ledger exactly as the client saw it.
fn assert_exact(seen: &[Seen], ledger: &HashMap<String, Vec<Value>>) {
    assert_eq!(ledger.len(), seen.len(), "requests missing from the ledger");
    for request in seen {
        let attempts = &ledger[&request.request_id];
        for (index, attempt) in attempts.iter().enumerate() {
            assert_eq!(
                attempt["attempt"],
                index + 1,
                "attempts numbered 1..n once each"
            );
            let prompt = attempt["prompt_tokens"].as_u64().expect("prompt");
            let completion = attempt["completion_tokens"].as_u64().expect("completion");
            let cost = llmgw_usd::cost_nano_usd(prompt, INPUT_NANO_PER_MTOK)
                + llmgw_usd::cost_nano_usd(completion, OUTPUT_NANO_PER_MTOK);
            assert_eq!(
                attempt["cost_nano_usd"], cost,
                "cost = price table: {attempt}"
            );
            if index + 1 < attempts.len() {
                // Refused attempts (the 429s before the fallback) cost nothing.
                assert_eq!(attempt["status"], "upstream_rate_limited", "{attempt}");
                assert_eq!((prompt, completion), (0, 0), "{attempt}");
            }
        }
        let last = attempts.last().expect("an attempt");
        match request.usage {
            Some(usage) => {
                assert_eq!(last["status"], "ok", "{last}");
                assert_eq!(last["estimated"], false, "{last}");
                let recorded = (
                    last["prompt_tokens"].as_u64().expect("prompt"),
                    last["completion_tokens"].as_u64().expect("completion"),
                );
                assert_eq!(recorded, usage, "ledger = what the provider reported");
            }
            None => {
                assert!(request.cancelled);
                assert_eq!(last["status"], "cancelled", "{last}");
                assert_eq!(last["client_cancelled"], true, "{last}");
                assert_eq!(last["estimated"], true, "{last}");
                let prompt = last["prompt_tokens"].as_u64().expect("prompt");
                let completion = last["completion_tokens"].as_u64().expect("completion");
                assert!(prompt > 0, "the prompt is billed: {last}");
                // 40 chunks were coming; about 3 were produced when the
                // client left (a few more may have been in flight).
                assert!(completion > 0 && completion < 200, "{last}");
            }
        }
    }
}

#[tokio::test]
async fn every_attempt_is_billed_once_and_exactly() {
    let database = TestDatabase::create("e2e_ledger")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("ledger-exact");
    let billing = Billing::start(database.url(), &dir, None).await;
    let gateway = Arc::new(gateway_billing_to(billing.grpc, &dir).await);

    let mut calls = Vec::new();
    for i in 0..6 {
        calls.push(tokio::spawn({
            let gateway = gateway.clone();
            async move { json_call(&gateway, "mock", 3 + i).await }
        }));
        calls.push(tokio::spawn({
            let gateway = gateway.clone();
            async move { stream_call(&gateway, 5 + i).await }
        }));
    }
    for _ in 0..3 {
        calls.push(tokio::spawn({
            let gateway = gateway.clone();
            async move { json_call(&gateway, "flaky", 4).await }
        }));
        calls.push(tokio::spawn({
            let gateway = gateway.clone();
            async move { cancelled_stream(&gateway).await }
        }));
    }
    let mut seen = Vec::new();
    for call in calls {
        seen.push(call.await.expect("call task"));
    }

    let ledger = Ledger::at(billing.admin);
    let rows = ledger.wait_for(&seen, Duration::from_secs(15)).await;
    assert_exact(&seen, &rows);
    let flaky_attempts: Vec<usize> = rows.values().map(Vec::len).filter(|n| *n > 1).collect();
    assert_eq!(
        flaky_attempts,
        vec![3, 3, 3],
        "2 refused flaky attempts + the fallback"
    );

    // The finance report adds up to the rows, to the nano-dollar.
    let today = today_utc();
    let (status, report) = ledger
        .get(&format!(
            "/admin/v1/usage?from={today}&to={}&group_by=model",
            tomorrow_utc()
        ))
        .await;
    assert_eq!(status, 200, "{report}");
    let all: Vec<&Value> = rows.values().flatten().collect();
    let sum = |field: &str| {
        all.iter()
            .map(|row| row[field].as_u64().expect(field))
            .sum::<u64>()
    };
    assert_eq!(report["total"]["prompt_tokens"], sum("prompt_tokens"));
    assert_eq!(
        report["total"]["completion_tokens"],
        sum("completion_tokens")
    );
    assert_eq!(report["total"]["cost_nano_usd"], sum("cost_nano_usd"));
    assert_eq!(report["total"]["requests"], all.len() as u64);

    drop(gateway);
    billing.stop().await;
}

#[tokio::test]
async fn billing_down_for_a_while_loses_nothing() {
    let database = TestDatabase::create("e2e_ledger")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("ledger-billing-down");
    let billing = Billing::start(database.url(), &dir, None).await;
    let address = billing.grpc;
    let gateway = gateway_billing_to(address, &dir).await;

    let mut seen = vec![json_call(&gateway, "mock", 3).await];
    billing.stop().await;
    // Billing is gone: the hot path does not notice.
    seen.extend(json_and_streams(&gateway, 5).await);
    let billing = Billing::start(database.url(), &dir, Some(address)).await;
    let rows = Ledger::at(billing.admin)
        .wait_for(&seen, Duration::from_secs(30))
        .await;
    assert_exact(&seen, &rows);
    drop(gateway);
    billing.stop().await;
}

#[tokio::test]
async fn postgres_unreachable_for_a_while_loses_nothing() {
    let database = TestDatabase::create("e2e_ledger")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("ledger-postgres-down");
    let billing = Billing::start(database.url(), &dir, None).await;
    let gateway = gateway_billing_to(billing.grpc, &dir).await;

    let mut seen = vec![json_call(&gateway, "mock", 3).await];
    let ledger = Ledger::at(billing.admin);
    assert_eq!(
        ledger.wait_for(&seen, Duration::from_secs(10)).await.len(),
        1
    );
    // Postgres is gone for billing, though the server runs on.
    database
        .allow_connections(false)
        .await
        .expect("cut postgres");
    seen.extend(json_and_streams(&gateway, 5).await);
    // Deliveries fail meanwhile; give the sender time to try and back off.
    tokio::time::sleep(Duration::from_millis(500)).await;
    database
        .allow_connections(true)
        .await
        .expect("restore postgres");
    let rows = ledger.wait_for(&seen, Duration::from_secs(30)).await;
    assert_exact(&seen, &rows);
    drop(gateway);
    billing.stop().await;
}

#[tokio::test]
async fn a_restarted_router_delivers_its_spool() {
    let database = TestDatabase::create("e2e_ledger")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("ledger-restart");
    // Billing is not there yet: events pile up in the spool.
    let unused = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = unused.local_addr().expect("addr");
    drop(unused);
    let mut gateway = gateway_billing_to(address, &dir).await;
    let mut seen = Vec::new();
    for i in 0..4 {
        seen.push(json_call(&gateway, "mock", 3 + i).await);
    }
    gateway.shutdown();
    gateway.stopped().await.expect("clean shutdown");

    let billing = Billing::start(database.url(), &dir, Some(address)).await;
    let gateway = gateway_billing_to(address, &dir).await;
    let rows = Ledger::at(billing.admin)
        .wait_for(&seen, Duration::from_secs(30))
        .await;
    assert_exact(&seen, &rows);
    drop(gateway);
    billing.stop().await;
}

fn today_utc() -> String {
    llmgw_calendar::Day::today().to_string()
}

fn tomorrow_utc() -> String {
    llmgw_calendar::Day::today().succ().to_string()
}
