//! The quota service against a real Redis (127.0.0.1:6379): limits from the
//! config, exactness across replicas, metrics, config errors.

#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use std::time::Duration;

use llmgw_proto::limits_v1::Limits;
use llmgw_proto::quota_v1::{AcquireRequest, LimitKind, SettleRequest};
use llmgw_quota::LimitsConfig;
use support::*;
use tokio::task::JoinSet;

#[tokio::test]
async fn rpm_limit_from_config_then_settle_frees_a_concurrency_slot() {
    let mut config = config(REDIS);
    let prefix = config.key_prefix.clone();
    config.limits.keys.insert("k-rpm".into(), rpm(5));
    config.limits.keys.insert(
        "k-conc".into(),
        LimitsConfig {
            concurrent: Some(1),
            ..LimitsConfig::default()
        },
    );
    let service = start(config).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;

    for i in 0..5u64 {
        let answer = acquire(&mut client, request("t", "k-rpm")).await;
        assert!(answer.allowed, "request {i}: {answer:?}");
        assert!(!answer.degraded);
        let window = answer.requests.expect("requests window");
        assert_eq!(window.limit, 5);
        assert_eq!(window.remaining, 4 - i);
        assert!(answer.tokens.is_none(), "no tokens limit configured");
    }
    let denied = acquire(&mut client, request("t", "k-rpm")).await;
    assert!(!denied.allowed);
    assert!(!denied.degraded && !denied.unavailable);
    assert_eq!(denied.denied_by(), LimitKind::RequestsPerMinute);
    assert_eq!(denied.denied_scope, "key");
    assert!(denied.retry_after_ms > 0 && denied.retry_after_ms <= 60_000);
    let window = denied.requests.expect("requests window");
    assert_eq!((window.limit, window.remaining), (5, 0));
    assert!(window.reset_ms > 0);

    // Another key is not affected; a subject without limits is allowed
    // without a store.
    assert!(acquire(&mut client, request("t", "k-other")).await.allowed);

    let first = request("t", "k-conc");
    assert!(acquire(&mut client, first.clone()).await.allowed);
    let second = acquire(&mut client, request("t", "k-conc")).await;
    assert!(!second.allowed);
    assert_eq!(second.denied_by(), LimitKind::Concurrent);
    settle(&mut client, &first, false).await;
    let third = acquire(&mut client, request("t", "k-conc")).await;
    assert!(third.allowed, "{third:?}");
    assert_decided_on_redis(&service, &prefix).await;
}

#[tokio::test]
async fn model_and_tenant_buckets() {
    let mut config = config(REDIS);
    let prefix = config.key_prefix.clone();
    config.limits.models.insert("gpt".into(), rpm(2));
    config.limits.tenants.insert("small".into(), rpm(3));
    let service = start(config).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;

    let on_model = |key: &str| {
        let mut request = request("big", key);
        request.subject.as_mut().unwrap().model = "gpt".into();
        request
    };
    assert!(acquire(&mut client, on_model("a")).await.allowed);
    assert!(acquire(&mut client, on_model("a")).await.allowed);
    let denied = acquire(&mut client, on_model("a")).await;
    assert_eq!(denied.denied_by(), LimitKind::RequestsPerMinute);
    assert_eq!(denied.denied_scope, "key_model");
    // Per key: another key has its own model bucket.
    assert!(acquire(&mut client, on_model("b")).await.allowed);

    for key in ["x", "y", "z"] {
        assert!(acquire(&mut client, request("small", key)).await.allowed);
    }
    let denied = acquire(&mut client, request("small", "w")).await;
    assert_eq!(denied.denied_scope, "tenant");
    assert_decided_on_redis(&service, &prefix).await;
}

#[tokio::test]
async fn invalid_requests_are_rejected() {
    let service = start(config(REDIS)).await;
    let mut client = service.client.clone();
    let breakages: [fn(&mut AcquireRequest); 4] = [
        |r| r.request_id.clear(),
        |r| r.subject = None,
        |r| r.subject.as_mut().unwrap().tenant.clear(),
        |r| r.subject.as_mut().unwrap().key_id.clear(),
    ];
    for broken in breakages {
        let mut request = request("t", "k");
        broken(&mut request);
        let status = client.acquire(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_sharing_redis_are_exact() {
    let mut config = config(REDIS);
    config.limits.keys.insert("shared".into(), rpm(10));
    // Exactness is the point here, not latency: a debug build under a burst
    // must not time out into per-replica decisions.
    config.redis_timeout_ms = 5_000;
    let one = start(config.clone()).await;
    let two = start(config).await;
    for service in [&one, &two] {
        wait_for_redis(&mut service.client.clone(), Duration::from_secs(10)).await;
    }

    let mut calls = JoinSet::new();
    for i in 0..100 {
        let mut client = if i % 2 == 0 { &one } else { &two }.client.clone();
        calls.spawn(async move { acquire(&mut client, request("t", "shared")).await });
    }
    let answers = calls.join_all().await;
    assert!(answers.iter().all(|answer| !answer.degraded));
    let allowed = answers.iter().filter(|answer| answer.allowed).count();
    assert_eq!(allowed, 10);
}

#[tokio::test]
async fn metrics_list_decisions() {
    let service = start(config(REDIS)).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;
    let response = http_get(service.address, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#"llmgw_quota_decisions_total{outcome="allowed",degraded="false"}"#),
        "{response}"
    );
    assert!(
        response.contains("llmgw_quota_redis_seconds_bucket"),
        "{response}"
    );
    assert!(
        response.contains("# TYPE llmgw_quota_redis_errors counter"),
        "{response}"
    );
}

#[tokio::test]
async fn a_bad_budget_fails_run_with_a_clear_error() {
    let mut config = config(REDIS);
    config.limits.tenants.insert(
        "acme".into(),
        LimitsConfig {
            monthly_budget_usd: Some("12,50".into()),
            ..LimitsConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = llmgw_quota::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(
        message.contains(r#"tenants."acme".monthly_budget_usd"#),
        "{message}"
    );
    assert!(message.contains(r#""12,50""#), "{message}");
    assert!(message.contains("decimal"), "{message}");
}

#[tokio::test]
async fn without_redis_the_memory_store_is_the_truth() {
    let mut config = config(REDIS);
    config.redis_url = None;
    config.limits.keys.insert("k".into(), rpm(2));
    let service = start(config).await;
    let mut client = service.client.clone();
    for allowed in [true, true, false] {
        let answer = acquire(&mut client, request("t", "k")).await;
        assert_eq!(answer.allowed, allowed);
        assert!(!answer.degraded && !answer.unavailable);
    }
}

/// Limits carried by the request (from the accounts database) replace the
/// config's of the same kind for their scope; the config applies where the
/// request says nothing; Settle with the same limits refunds the same
/// counters. Memory store and Redis alike.
async fn request_limits_override_the_config(redis: bool) {
    let mut config = config(REDIS);
    let prefix = config.key_prefix.clone();
    if !redis {
        config.redis_url = None;
    }
    config.limits.default_key = LimitsConfig {
        requests_per_minute: Some(5),
        concurrent: Some(1),
        ..LimitsConfig::default()
    };
    let service = start(config).await;
    let mut client = service.client.clone();
    if redis {
        wait_for_redis(&mut client, Duration::from_secs(10)).await;
    }
    let with = |key_id: &str, key: Option<Limits>, tenant: Option<Limits>| {
        let mut request = request("t-override", key_id);
        request.key_limits = key;
        request.tenant_limits = tenant;
        request
    };
    let rpm2 = Limits {
        requests_per_minute: Some(2),
        ..Limits::default()
    };

    // The override's 2 requests per minute beat the config's 5; the config's
    // concurrency of 1, which the override leaves unset, still applies.
    let first = with("k-db", Some(rpm2), None);
    let answer = acquire(&mut client, first.clone()).await;
    assert!(answer.allowed, "{answer:?}");
    assert_eq!(answer.requests.expect("requests window").limit, 2);
    let busy = acquire(&mut client, with("k-db", Some(rpm2), None)).await;
    assert!(!busy.allowed);
    assert_eq!(busy.denied_by(), LimitKind::Concurrent);
    settle(&mut client, &first, false).await;
    assert!(
        acquire(&mut client, with("k-db", Some(rpm2), None))
            .await
            .allowed
    );
    let denied = acquire(&mut client, with("k-db", Some(rpm2), None)).await;
    assert!(!denied.allowed && !denied.degraded && !denied.unavailable);
    assert_eq!(denied.denied_by(), LimitKind::RequestsPerMinute);
    assert_eq!(denied.denied_scope, "key");
    // A key without an override gets the config's 5.
    let answer = acquire(&mut client, with("k-config", None, None)).await;
    assert_eq!(answer.requests.expect("requests window").limit, 5);

    // A tenant budget: 2 500 nano-USD, each request reserving 1 000.
    let budget = Limits {
        monthly_budget_nano_usd: Some(2_500),
        ..Limits::default()
    };
    let free = Limits {
        concurrent: Some(100),
        ..Limits::default()
    };
    let mut spent = Vec::new();
    for i in 0..2 {
        let request = with(&format!("k-budget-{i}"), Some(free), Some(budget));
        let answer = acquire(&mut client, request.clone()).await;
        assert!(answer.allowed, "{answer:?}");
        spent.push(request);
    }
    let broke = acquire(&mut client, with("k-budget-2", Some(free), Some(budget))).await;
    assert!(!broke.allowed);
    assert_eq!(broke.denied_by(), LimitKind::MonthlyBudget);
    assert_eq!(broke.denied_scope, "tenant");
    // Settling one for free (with the Acquire's limits) refunds its 1 000:
    // the tenant's budget counter is the one adjusted.
    let refunded = &spent[0];
    client
        .settle(SettleRequest {
            request_id: refunded.request_id.clone(),
            subject: refunded.subject.clone(),
            reserved_tokens: refunded.tokens,
            actual_tokens: 0,
            reserved_cost_nano_usd: refunded.cost_nano_usd,
            actual_cost_nano_usd: 0,
            degraded: false,
            key_limits: refunded.key_limits,
            tenant_limits: refunded.tenant_limits,
        })
        .await
        .unwrap();
    let answer = acquire(&mut client, with("k-budget-3", Some(free), Some(budget))).await;
    assert!(answer.allowed, "{answer:?}");
    if redis {
        assert_decided_on_redis(&service, &prefix).await;
    }
}

#[tokio::test]
async fn request_limits_override_the_config_in_redis() {
    request_limits_override_the_config(true).await;
}

#[tokio::test]
async fn request_limits_override_the_config_in_memory() {
    request_limits_override_the_config(false).await;
}
