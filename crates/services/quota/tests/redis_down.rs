//! Redis down at start, or hanging mid-way: decisions still come back,
//! follow the failure policy, and Redis is used again once it answers,
//! without a restart. A slow but answering Redis, or a busy process, is not
//! an outage: no decision is taken without it.

#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use llmgw_proto::quota_v1::LimitKind;
use llmgw_quota::{FailMode, FailurePolicy, LimitsConfig};
use support::*;

/// `redis_timeout_ms` for the tests where Redis hangs: short, so they end
/// soon; nothing is asserted about how long a decision took.
const HANG_TIMEOUT_MS: u64 = 200;

/// A Redis URL nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("redis://{address}")
}

#[tokio::test]
async fn redis_unreachable_degrades_per_policy() {
    let mut config = config(&closed_port());
    config.limits.keys.insert("k-rpm".into(), rpm(5));
    config.limits.keys.insert(
        "k-conc".into(),
        LimitsConfig {
            concurrent: Some(1),
            ..LimitsConfig::default()
        },
    );
    config.limits.tenants.insert(
        "t-budget".into(),
        LimitsConfig {
            monthly_budget_usd: Some("10".into()),
            ..LimitsConfig::default()
        },
    );
    let service = start(config).await;
    let mut client = service.client.clone();

    // rates = local: this replica still enforces the limit.
    for i in 0..6 {
        let answer = acquire(&mut client, request("t", "k-rpm")).await;
        assert!(answer.degraded);
        assert!(!answer.unavailable);
        if i < 5 {
            assert!(answer.allowed, "request {i}: {answer:?}");
        } else {
            assert!(!answer.allowed);
            assert_eq!(answer.denied_by(), LimitKind::RequestsPerMinute);
            assert!(answer.retry_after_ms > 0);
        }
    }

    // budgets = closed: a budget nobody can check denies with 503 semantics.
    let answer = acquire(&mut client, request("t-budget", "k-any")).await;
    assert!(answer.degraded && answer.unavailable && !answer.allowed);
    assert_eq!(answer.denied_by(), LimitKind::MonthlyBudget);
    assert_eq!(answer.denied_scope, "tenant");

    // A degraded Acquire is settled where it was made: locally.
    let first = request("t", "k-conc");
    assert!(acquire(&mut client, first.clone()).await.allowed);
    assert!(!acquire(&mut client, request("t", "k-conc")).await.allowed);
    settle(&mut client, &first, true).await;
    assert!(acquire(&mut client, request("t", "k-conc")).await.allowed);

    let metrics = http_get(service.address, "/metrics").await;
    assert!(
        metrics.contains(r#"llmgw_quota_decisions_total{outcome="unavailable",degraded="true"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"llmgw_quota_redis_errors_total{op="acquire"}"#));
}

#[tokio::test]
async fn open_policy_allows_everything_without_redis() {
    let mut config = config(&closed_port());
    config.on_redis_failure = FailurePolicy {
        rates: FailMode::Open,
        budgets: FailMode::Open,
    };
    config.limits.keys.insert("k".into(), rpm(1));
    config.limits.default_tenant.monthly_budget_usd = Some("0".into());
    let service = start(config).await;
    let mut client = service.client.clone();
    for _ in 0..3 {
        let answer = acquire(&mut client, request("t", "k")).await;
        assert!(answer.allowed && answer.degraded && !answer.unavailable);
    }
}

#[tokio::test]
async fn closed_rates_deny_as_unavailable() {
    let mut config = config(&closed_port());
    config.on_redis_failure.rates = FailMode::Closed;
    config.limits.keys.insert("k".into(), rpm(100));
    let service = start(config).await;
    let mut client = service.client.clone();
    let answer = acquire(&mut client, request("t", "k")).await;
    assert!(!answer.allowed && answer.degraded && answer.unavailable);
    assert_eq!(answer.denied_by(), LimitKind::RequestsPerMinute);
    // Subjects without limits never need Redis.
    let answer = acquire(&mut client, request("t", "unlimited")).await;
    assert!(answer.allowed && !answer.degraded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_redis_is_declared_down_and_recovers_without_restart() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let mut config = config(&format!("redis://{}", proxy.address));
    config.redis_timeout_ms = HANG_TIMEOUT_MS;
    let service = start(config).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;
    assert_eq!(redis_up(&service).await, 1);

    proxy.set_mode(Mode::Hang);
    // The first request waits out `redis_timeout_ms`; from then on Redis is
    // down and nobody waits on it.
    for _ in 0..10 {
        let answer = acquire(&mut client, request("t", PROBE_KEY)).await;
        assert!(answer.degraded && answer.allowed);
    }
    assert_eq!(redis_up(&service).await, 0);

    proxy.set_mode(Mode::Forward);
    wait_for_redis(&mut client, Duration::from_secs(10)).await;
    assert_eq!(redis_up(&service).await, 1);
}

#[tokio::test]
async fn redis_coming_up_after_start_is_used() {
    // Redis "down" at start: the proxy holds every byte from the start.
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    proxy.set_mode(Mode::Hang);
    let mut config = config(&format!("redis://{}", proxy.address));
    config.redis_timeout_ms = HANG_TIMEOUT_MS;
    let service = start(config).await;
    let mut client = service.client.clone();
    let answer = acquire(&mut client, request("t", PROBE_KEY)).await;
    assert!(answer.degraded);

    proxy.set_mode(Mode::Forward);
    wait_for_redis(&mut client, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_is_noticed_and_recovers_without_restart() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let service = start(config(&format!("redis://{}", proxy.address))).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;

    // Connections cut and refused, as when Redis restarts: the connection
    // says so at once, without any timeout.
    proxy.set_mode(Mode::Down);
    for _ in 0..20 {
        let answer = acquire(&mut client, request("t", PROBE_KEY)).await;
        assert!(answer.degraded && answer.allowed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(redis_up(&service).await, 0);

    proxy.set_mode(Mode::Forward);
    wait_for_redis(&mut client, Duration::from_secs(10)).await;
}

/// Redis answering slower than a round trip ever takes on loopback (but
/// well within `redis_timeout_ms`) is slow, not down: every decision is
/// still taken with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_is_not_an_outage() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let service = start(config(&format!("redis://{}", proxy.address))).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;

    proxy.set_mode(Mode::Slow);
    let mut calls = JoinSet::new();
    for _ in 0..32 {
        let mut client = client.clone();
        calls.spawn(async move { acquire(&mut client, request("t", PROBE_KEY)).await });
    }
    while let Some(answer) = calls.join_next().await {
        let answer = answer.unwrap();
        assert!(answer.allowed && !answer.degraded, "{answer:?}");
    }
    assert_eq!(redis_up(&service).await, 1);
}

/// A process so busy that replies wait in its own run queue (here: a task
/// that blocks a worker thread again and again, while 200 requests are in
/// flight) still takes every decision with Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_process_never_decides_without_a_healthy_redis() {
    let service = start(config(REDIS)).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;

    let hog = tokio::spawn(async {
        loop {
            // Blocks this worker: everything queued on it waits.
            std::thread::sleep(Duration::from_millis(40));
            tokio::task::yield_now().await;
        }
    });
    let mut calls = JoinSet::new();
    for _ in 0..200 {
        let mut client = client.clone();
        calls.spawn(async move { acquire(&mut client, request("t", PROBE_KEY)).await });
    }
    let mut degraded = 0;
    while let Some(answer) = calls.join_next().await {
        degraded += usize::from(answer.unwrap().degraded);
    }
    hog.abort();
    assert_eq!(degraded, 0, "decisions taken without a healthy Redis");
    assert_eq!(redis_up(&service).await, 1);
}

async fn redis_up(service: &Service) -> u64 {
    let metrics = http_get(service.address, "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("llmgw_quota_redis_up "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no llmgw_quota_redis_up in {metrics}"))
}

/// An Acquire Redis runs after the service stopped waiting for it (sent
/// just before Redis stalled) was answered "unavailable", so nobody will
/// settle what it reserved: the service hands it back once Redis answers,
/// and the tenant's budget and concurrency slot are whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_acquire_gives_its_reservation_back() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let mut config = config(&format!("redis://{}", proxy.address));
    config.redis_timeout_ms = HANG_TIMEOUT_MS;
    // Room for exactly one request (`request` reserves 1 000 nano-USD).
    config.limits.tenants.insert(
        "t-budget".into(),
        LimitsConfig {
            monthly_budget_usd: Some("0.000001".into()),
            concurrent: Some(1),
            ..LimitsConfig::default()
        },
    );
    let service = start(config).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;

    proxy.set_mode(Mode::Hang);
    let answer = acquire(&mut client, request("t-budget", "k")).await;
    assert!(answer.degraded && answer.unavailable && !answer.allowed);
    // Redis now runs the held Acquire (well within the connection's own
    // 1 s response timeout), then whatever comes next; a health probe finds
    // it up again.
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.set_mode(Mode::Forward);

    let start = Instant::now();
    loop {
        let answer = acquire(&mut client, request("t-budget", "k")).await;
        if answer.allowed {
            assert!(!answer.degraded);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the late reservation was never handed back: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // At least the one above (a poll can also outlive its wait while the
    // held bytes drain; it is handed back the same way).
    let metrics = http_get(service.address, "/metrics").await;
    let released: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("llmgw_quota_late_acquires_released_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0);
    assert!(released >= 1, "{metrics}");
}
