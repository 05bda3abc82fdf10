//! Redis down at start, or hanging mid-way: decisions still come back
//! (cut by the service's own `redis_timeout_ms`, as its timeout counter
//! shows, never by a slower connection-level timeout), follow the failure
//! policy, and Redis is used again once it answers, without a restart.
//!
//! No test measures how long a decision took: a busy machine stretches any
//! wall-clock figure. What is asserted is which bound ended each wait, and
//! that the answers come while Redis is still hanging.

#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use std::time::Duration;

use llmgw_proto::quota_v1::LimitKind;
use llmgw_quota::{FailMode, FailurePolicy, LimitsConfig};
use support::*;

/// The value of the counter `line` (its labels included) in `/metrics`.
async fn counter(service: &Service, line: &str) -> u64 {
    http_get(service.address, "/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

const ACQUIRE_TIMEOUTS: &str = r#"llmgw_quota_redis_timeouts_total{op="acquire"}"#;
const ACQUIRE_ERRORS: &str = r#"llmgw_quota_redis_errors_total{op="acquire"}"#;

/// The production bound (25 ms): the fallback is what these tests check.
fn config(redis_url: &str) -> llmgw_quota::Config {
    let mut config = support::config(redis_url);
    config.redis_timeout_ms = llmgw_quota::Config::default().redis_timeout_ms;
    config
}

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
async fn hanging_redis_is_bounded_and_recovers_without_restart() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let service = start(config(&format!("redis://{}", proxy.address))).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(30)).await;

    proxy.set_mode(Mode::Hang);
    let (timeouts, errors) = (
        counter(&service, ACQUIRE_TIMEOUTS).await,
        counter(&service, ACQUIRE_ERRORS).await,
    );
    for _ in 0..10 {
        let answer = acquire(&mut client, request("t", PROBE_KEY)).await;
        assert!(answer.degraded && answer.allowed);
    }
    // All ten answered while Redis still hangs, each giving up on it; the
    // first (on a connection that looked healthy) cut by the service's own
    // bound. Later ones may fail faster, once the client library has
    // written the connection off.
    assert_eq!(counter(&service, ACQUIRE_ERRORS).await, errors + 10);
    assert!(counter(&service, ACQUIRE_TIMEOUTS).await > timeouts);
    // Long enough for any connection-level timeout to fire while hanging
    // (a lower bound: a busy machine only waits longer).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let errors = counter(&service, ACQUIRE_ERRORS).await;
    assert!(acquire(&mut client, request("t", PROBE_KEY)).await.degraded);
    assert_eq!(counter(&service, ACQUIRE_ERRORS).await, errors + 1);

    proxy.set_mode(Mode::Forward);
    wait_for_redis(&mut client, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn redis_coming_up_after_start_is_used() {
    // Redis "down" at start: the proxy holds every byte from the start.
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    proxy.set_mode(Mode::Hang);
    let service = start(config(&format!("redis://{}", proxy.address))).await;
    let mut client = service.client.clone();
    let answer = acquire(&mut client, request("t", PROBE_KEY)).await;
    assert!(answer.degraded);
    // Not a wait for the first connection attempt (which hangs with
    // Redis): the service's own bound ended it.
    assert_eq!(counter(&service, ACQUIRE_TIMEOUTS).await, 1);

    proxy.set_mode(Mode::Forward);
    wait_for_redis(&mut client, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_is_bounded_and_recovers_without_restart() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let service = start(config(&format!("redis://{}", proxy.address))).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(30)).await;

    // Connections cut and refused, as when Redis restarts.
    proxy.set_mode(Mode::Down);
    let errors = counter(&service, ACQUIRE_ERRORS).await;
    for _ in 0..20 {
        let answer = acquire(&mut client, request("t", PROBE_KEY)).await;
        assert!(answer.degraded && answer.allowed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Each decision gave up on Redis (refused, cut or timed out by our
    // bound), none waited for it to come back.
    assert_eq!(counter(&service, ACQUIRE_ERRORS).await, errors + 20);

    proxy.set_mode(Mode::Forward);
    wait_for_redis(&mut client, Duration::from_secs(30)).await;
}

/// An Acquire Redis runs after the service stopped waiting for it (sent
/// just before Redis stalled) was answered "unavailable", so nobody will
/// settle what it reserved: the service hands it back once Redis answers,
/// and the tenant's budget and concurrency slot are whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_acquire_gives_its_reservation_back() {
    let proxy = Proxy::start("127.0.0.1:6379".parse().unwrap()).await;
    let mut config = config(&format!("redis://{}", proxy.address));
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
    wait_for_redis(&mut client, Duration::from_secs(30)).await;

    proxy.set_mode(Mode::Hang);
    let answer = acquire(&mut client, request("t-budget", "k")).await;
    assert!(answer.degraded && answer.unavailable && !answer.allowed);
    // Redis now runs the held Acquire (well within the connection's own
    // 1 s response timeout), then whatever comes next.
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.set_mode(Mode::Forward);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = acquire(&mut client, request("t-budget", "k")).await;
        if answer.allowed {
            assert!(!answer.degraded);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
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
