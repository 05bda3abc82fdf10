//! Quotas through the real services: edges and quota replicas sharing one
//! Redis (127.0.0.1:6379), each test under its own key prefix.

use std::net::SocketAddr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Yaml};
use futures_util::StreamExt as _;
use llmgw::{GatewayConfig, Role};
use llmgw_proto::quota_v1::quota_client::QuotaClient;
use llmgw_proto::quota_v1::{AcquireRequest, Subject};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{KEY, error_of, request, start_mock};

/// Router, `quotas` quota replicas and `edges` edges (edge i talks to quota
/// i mod `quotas`), all sharing Redis under a fresh prefix.
struct Cluster {
    edges: Vec<SocketAddr>,
    quotas: Vec<SocketAddr>,
    /// Where the counters live in Redis.
    prefix: String,
    client: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn prefix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_nanos());
    format!("llmgw-test-{}-{nanos}-{n}", std::process::id())
}

async fn cluster(quota_yaml: &str, quotas: usize, edges: usize) -> Cluster {
    let stop = CancellationToken::new();
    let prefix = prefix();
    let mock = start_mock(Default::default(), &stop).await;
    let yaml = format!(
        r#"
router:
  models:
    - {{alias: mock, provider: openai, base_url: "http://{mock}/v1", upstream_model: mock, max_output_tokens: 256, input_price_per_mtok: "1", output_price_per_mtok: "2"}}
quota:
  redis_url: "redis://127.0.0.1:6379"
  key_prefix: "{prefix}"
  # Likewise Redis: a loaded CI machine must not push decisions onto the
  # local fallback limiter (its own tests cover that path).
  redis_timeout_ms: 2000
{quota_yaml}
edge:
  # Exactness is under test here, not speed: a debug build under a burst
  # must not hit the fail-open path.
  quota_timeout_ms: 5000
  api_keys:
    - {{key: "{KEY}", tenant: team-a, name: test-key}}
"#
    );
    let config: GatewayConfig = Figment::from(Yaml::string(&yaml))
        .extract()
        .expect("test config");
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let start = |role, config: GatewayConfig| {
        let stop = stop.clone();
        async move {
            let (address, services) = llmgw::start_one(role, config, any, stop)
                .await
                .expect("service starts");
            tokio::spawn(services.wait(Duration::from_secs(5)));
            address
        }
    };
    let router = start(Role::Router, config.clone()).await;
    let mut quota_addresses = Vec::new();
    for _ in 0..quotas {
        quota_addresses.push(start(Role::Quota, config.clone()).await);
    }
    let mut edge_addresses = Vec::new();
    for index in 0..edges {
        let mut config = config.clone();
        config.edge.router_url = format!("http://{router}");
        config.edge.quota_url = Some(format!("http://{}", quota_addresses[index % quotas]));
        edge_addresses.push(start(Role::Edge, config).await);
    }
    let cluster = Cluster {
        edges: edge_addresses,
        quotas: quota_addresses,
        prefix,
        client: reqwest::Client::new(),
        stop,
    };
    for edge in &cluster.edges {
        for _ in 0..1_200 {
            let ready = cluster
                .client
                .get(format!("http://{edge}/readyz"))
                .send()
                .await;
            if ready.is_ok_and(|response| response.status() == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster
}

impl Cluster {
    async fn chat(&self, edge: usize, body: &Value) -> reqwest::Response {
        self.client
            .post(format!(
                "http://{}/v1/chat/completions",
                self.edges[edge % self.edges.len()]
            ))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .expect("edge reachable")
    }
}

impl Cluster {
    /// With one quota replica, its local fallback limiter gives the same
    /// answers as Redis: the answers alone do not show Redis was used. So:
    /// every decision was made on Redis (none degraded) and the counters
    /// are in Redis under this test's prefix.
    async fn assert_decided_on_redis(&self) {
        for quota in &self.quotas {
            let metrics = crate::harness::metrics_of(quota).await;
            let decisions = |degraded: &str| -> u64 {
                metrics
                    .lines()
                    .filter(|line| line.starts_with("llmgw_quota_decisions_total{"))
                    .filter(|line| line.contains(&format!("degraded=\"{degraded}\"")))
                    .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                    .sum()
            };
            assert!(decisions("false") > 0, "no decision on Redis:\n{metrics}");
            assert_eq!(decisions("true"), 0, "decided without Redis:\n{metrics}");
        }
        let mut redis = redis::Client::open("redis://127.0.0.1:6379")
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("redis reachable");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query_async(&mut redis)
            .await
            .expect("redis KEYS");
        assert!(
            !keys.is_empty(),
            "no counter under {} in Redis",
            self.prefix
        );
    }
}

fn slow_stream(max_tokens: u64) -> Value {
    let mut body = request("mock");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(max_tokens);
    body["mock"] = json!({"chunks": 5, "chunk_delay_ms": 200});
    body
}

async fn read_to_end(response: reqwest::Response) -> String {
    let mut text = String::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(bytes)) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    text
}

#[tokio::test]
async fn exactly_n_requests_pass_across_replicas() {
    const N: usize = 20;
    for round in 0..3 {
        let cluster = cluster("  limits: {default_key: {requests_per_minute: 20}}", 2, 2).await;
        let body = request("mock");
        let calls = (0..10 * N).map(|i| {
            let cluster = &cluster;
            let body = &body;
            async move {
                let response = cluster.chat(i, body).await;
                let retry_after = response.headers().get("retry-after").cloned();
                (response.status().as_u16(), retry_after)
            }
        });
        let results = futures_util::future::join_all(calls).await;
        let admitted = results.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(admitted, N, "round {round}: {results:?}");
        for (status, retry_after) in &results {
            if *status != 200 {
                assert_eq!(*status, 429, "round {round}");
                assert!(retry_after.is_some(), "429 without Retry-After");
            }
        }
        // Every request's Acquire was answered, and its time observed.
        let mut timed = 0;
        for edge in &cluster.edges {
            let metrics = crate::harness::metrics_of(edge).await;
            timed += metrics
                .lines()
                .find_map(|line| line.strip_prefix("llmgw_edge_quota_decision_seconds_count "))
                .and_then(|count| count.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no decision histogram:\n{metrics}"));
        }
        assert_eq!(timed, 10 * N, "round {round}");
    }
}

#[tokio::test]
async fn a_token_budget_is_never_overspent_and_settles_to_actual_use() {
    // Each call reserves 3 (prompt estimate) + 100 (max_tokens) = 103 tokens
    // and uses 3 + 5 = 8. Budget 1000: 9 reservations fit, not 10.
    let cluster = cluster("  limits: {default_key: {tokens_per_day: 1000}}", 2, 2).await;
    let first = wave(&cluster).await;
    let admitted: Vec<_> = first.iter().filter(|(status, _)| *status == 200).collect();
    assert_eq!(
        admitted.len(),
        9,
        "{:?}",
        first.iter().map(|(s, _)| s).collect::<Vec<_>>()
    );
    assert!(
        admitted
            .iter()
            .all(|(_, text)| text.ends_with("data: [DONE]\n\n"))
    );

    // Settled to 9 x 8 = 72 used: 928 left, so 9 reservations fit again
    // (had nothing been refunded, none would).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = wave(&cluster).await;
    let admitted = second.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(admitted, 9);
}

/// 50 concurrent slow streams reserving 100 output tokens each.
async fn wave(cluster: &Cluster) -> Vec<(u16, String)> {
    let calls = (0..50).map(|i| async move {
        let response = cluster.chat(i, &slow_stream(100)).await;
        let status = response.status().as_u16();
        (status, read_to_end(response).await)
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test]
async fn concurrency_slots_are_exact_and_come_back() {
    let cluster = cluster(
        "  lease_timeout_secs: 30\n  limits: {default_key: {concurrent: 3}}",
        1,
        2,
    )
    .await;
    let mut body = slow_stream(50);
    body["mock"] = json!({"chunks": 10, "chunk_delay_ms": 300});
    let mut open = Vec::new();
    for i in 0..5 {
        let response = cluster.chat(i, &body).await;
        open.push(response);
    }
    let statuses: Vec<u16> = open
        .iter()
        .map(|response| response.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        3,
        "{statuses:?}"
    );

    // A client that leaves frees its slot (settled at once, not by the lease timeout).
    let admitted: Vec<reqwest::Response> = open
        .into_iter()
        .filter(|response| response.status() == 200)
        .collect();
    let mut admitted = admitted.into_iter();
    let first = admitted.next().expect("three admitted");
    let mut stream = first.bytes_stream();
    stream.next().await;
    drop(stream);
    let mut freed = false;
    // A generous deadline (30 s) for an eventual outcome.
    for _ in 0..600 {
        let response = cluster.chat(0, &body).await;
        if response.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the slot of a disconnected client did not come back");
    cluster.assert_decided_on_redis().await;
}

#[tokio::test]
async fn a_reservation_of_a_dead_edge_expires_with_its_lease() {
    let cluster = cluster(
        "  lease_timeout_secs: 2\n  limits: {default_key: {concurrent: 1}}",
        1,
        1,
    )
    .await;
    // What a killed edge leaves behind: an Acquire never settled.
    let mut quota = QuotaClient::connect(format!("http://{}", cluster.quotas[0]))
        .await
        .expect("quota");
    let reserved = quota
        .acquire(AcquireRequest {
            request_id: "edge-died-here".to_owned(),
            subject: Some(Subject {
                tenant: "team-a".to_owned(),
                key_id: "test-key".to_owned(),
                model: "mock".to_owned(),
            }),
            tokens: 10,
            cost_nano_usd: 0,
            ..AcquireRequest::default()
        })
        .await
        .expect("acquire")
        .into_inner();
    assert!(reserved.allowed);
    let (status, error) = error_of(cluster.chat(0, &request("mock")).await).await;
    assert_eq!(status, 429);
    assert_eq!(error["code"], "rate_limit_exceeded");
    // Past the lease (a lower bound: a slow machine only waits longer).
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert_eq!(cluster.chat(0, &request("mock")).await.status(), 200);
    cluster.assert_decided_on_redis().await;
}

#[tokio::test]
async fn rate_limit_headers_count_down_and_retry_after_is_honest() {
    // 10 a minute: one comes back every 6 s, so the 10 calls below see a
    // steady count-down.
    let cluster = cluster("  limits: {default_key: {requests_per_minute: 10}}", 1, 1).await;
    let mut last = u64::MAX;
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let response = cluster.chat(0, &request("mock")).await;
        assert_eq!(response.status(), 200);
        let header = |name: &str| {
            response.headers()[name]
                .to_str()
                .expect("ascii")
                .trim_end_matches("ms")
                .parse::<u64>()
                .expect("number")
        };
        assert_eq!(header("x-ratelimit-limit-requests"), 10);
        let remaining = header("x-ratelimit-remaining-requests");
        assert!(
            remaining < last,
            "remaining did not go down: {remaining} after {last}"
        );
        last = remaining;
        header("x-ratelimit-reset-requests");
    }
    let denied = cluster.chat(0, &request("mock")).await;
    assert_eq!(denied.status(), 429);
    assert_eq!(denied.headers()["x-ratelimit-remaining-requests"], "0");
    let retry_after: u64 = denied.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    // One request's worth of the minute comes back 6 s after the first
    // call: less however long the calls took (measured, not assumed), in
    // whole seconds rounded up.
    let took_ms = started.elapsed().as_millis() as u64;
    let earliest = 6_000u64.saturating_sub(took_ms).div_ceil(1000).max(1);
    assert!(
        (earliest..=6).contains(&retry_after),
        "{retry_after} s after {took_ms} ms"
    );
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(cluster.chat(0, &request("mock")).await.status(), 200);
    cluster.assert_decided_on_redis().await;
}

#[tokio::test]
async fn budgets_deny_with_insufficient_quota() {
    // 1 USD per million input, 2 per million output: each call reserves
    // 3 x 1 + 100 x 2 = 203 micro-USD. A budget of 0.001 USD fits 4.
    let cluster = cluster(
        "  limits: {default_tenant: {monthly_budget_usd: \"0.001\"}}",
        1,
        1,
    )
    .await;
    let mut body = request("mock");
    body["max_tokens"] = json!(100);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        // Sequential: each settles (to 3 + 2 x 8 = 19 micro-USD) before the next.
        statuses.push(cluster.chat(0, &body).await.status().as_u16());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let calls = (0..20).map(|_| cluster.chat(0, &body));
    let results = futures_util::future::join_all(calls).await;
    let denied = results
        .into_iter()
        .find(|response| response.status() == 429)
        .expect("some denied");
    let (_, error) = error_of(denied).await;
    assert_eq!(error["code"], "insufficient_quota");
    assert_eq!(error["type"], "insufficient_quota");
    cluster.assert_decided_on_redis().await;
}

/// Nothing limits anybody (the demo, or a gateway whose limits all come
/// from the accounts database): after one probe the edge stops calling the
/// quota service for requests that carry no limits of their own.
#[tokio::test]
async fn unlimited_traffic_does_not_call_the_quota_service() {
    let gateway = crate::harness::Gateway::start().await;
    let quota = gateway.quota.expect("llmgw all runs quota");
    for _ in 0..5 {
        assert_eq!(gateway.chat(request("mock")).await.status(), 200);
    }
    let metrics = crate::harness::metrics_of(&quota).await;
    let decisions: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("llmgw_quota_decisions_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(decisions, 1, "one probe, then no calls:\n{metrics}");
}
