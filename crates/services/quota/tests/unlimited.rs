//! Subjects nothing limits: answered without a store, and flagged so the
//! edge can skip the Settle (and, when the config limits nobody, the
//! Acquire too).

#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use llmgw_proto::limits_v1::Limits;
use llmgw_quota::Config;
use support::*;

#[tokio::test]
async fn an_empty_config_limits_nobody_but_a_carried_limit_applies() {
    // No Redis either: an unlimited subject never needs a store.
    let service = start(Config {
        redis_url: None,
        ..Config::default()
    })
    .await;
    let mut client = service.client.clone();
    let free = acquire(&mut client, request("t", "k")).await;
    assert!(
        free.allowed && free.unlimited && free.config_limits_nobody,
        "{free:?}"
    );
    assert!(free.requests.is_none() && free.tokens.is_none());

    let mut limited = request("t", "k");
    limited.key_limits = Some(Limits {
        requests_per_minute: Some(1),
        ..Limits::default()
    });
    let first = acquire(&mut client, limited.clone()).await;
    assert!(
        first.allowed && !first.unlimited && first.config_limits_nobody,
        "{first:?}"
    );
    limited.request_id = "another".to_owned();
    assert!(!acquire(&mut client, limited).await.allowed);
}

#[tokio::test]
async fn a_config_limit_elsewhere_is_reported() {
    let mut config = config(REDIS);
    config.limits.keys.insert("k-limited".into(), rpm(5));
    let service = start(config).await;
    let mut client = service.client.clone();
    let other = acquire(&mut client, request("t", "k-other")).await;
    // This key is unlimited, but the config limits someone: the edge must
    // keep asking.
    assert!(
        other.allowed && other.unlimited && !other.config_limits_nobody,
        "{other:?}"
    );
    let limited = acquire(&mut client, request("t", "k-limited")).await;
    assert!(limited.allowed && !limited.unlimited, "{limited:?}");
}
