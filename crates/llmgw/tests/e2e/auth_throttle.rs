//! Failed authentication throttled per client address: a key-guessing
//! client gets 429 after 20 failures and its guesses stop reaching billing,
//! while other clients behind the same load balancer are unaffected.

use std::net::SocketAddr;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::accounts::scratch_dir;
use crate::harness::{Gateway, request};

const ATTACKER: &str = "203.0.113.7";
const NEIGHBOUR: &str = "203.0.113.8";

/// A chat call with `key`, as forwarded by a load balancer for `client`.
async fn chat_from(gateway: &Gateway, client: Option<&str>, key: &str) -> reqwest::Response {
    let mut call = gateway
        .client
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&request("mock"));
    if let Some(client) = client {
        call = call.header("x-forwarded-for", client);
    }
    call.send().await.expect("edge reachable")
}

/// A counter's value in Prometheus text (0 when absent).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Billing's `LookupKey` calls that found nothing, from its metrics.
async fn billing_misses(client: &reqwest::Client, billing: SocketAddr) -> f64 {
    let text = client
        .get(format!("http://{billing}/metrics"))
        .send()
        .await
        .expect("billing metrics")
        .text()
        .await
        .expect("text");
    counter(&text, "llmgw_billing_lookups_total{result=\"not_found\"}")
}

#[tokio::test]
async fn a_key_guessing_address_gets_429_and_its_guesses_stop_reaching_billing() {
    // Billing on its own listener, so its lookup count can be read.
    let dir = scratch_dir("auth-throttle");
    let mut config = crate::harness::config("127.0.0.1:9".parse().expect("addr")).await;
    config.billing.data_dir = dir.clone();
    config.billing.admin_token_file = Some(dir.join("admin-token"));
    let billing_stop = CancellationToken::new();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let grpc = tokio::net::TcpListener::bind(any).await.expect("bind");
    let billing = grpc.local_addr().expect("addr");
    let admin = tokio::net::TcpListener::bind(any).await.expect("bind");
    tokio::spawn(llmgw_billing::run(
        config.billing.clone(),
        grpc,
        admin,
        billing_stop.clone().cancelled_owned(),
    ));
    let _stop_billing = billing_stop.drop_guard();
    let gateway = Gateway::start_with(|gateway| {
        gateway.edge.billing_url = Some(format!("http://{billing}"));
        // The test client reaches the edge from loopback, as a load
        // balancer would from its own address.
        gateway.edge.auth_throttle.trusted_proxies = vec!["127.0.0.1/32".to_owned()];
    })
    .await;

    // 20 guesses (well-formed keys, so each costs a lookup) are 401s...
    for _ in 0..20 {
        let guess = llmgw_apikey::generate();
        let response = chat_from(&gateway, Some(ATTACKER), &guess).await;
        assert_eq!(response.status(), 401);
    }
    let misses = billing_misses(&gateway.client, billing).await;
    assert!(misses >= 20.0, "each guess was looked up: {misses}");

    // ...then the address is throttled: 429, Retry-After, no lookup.
    for _ in 0..10 {
        let guess = llmgw_apikey::generate();
        let response = chat_from(&gateway, Some(ATTACKER), &guess).await;
        assert_eq!(response.status(), 429);
        let retry_after: u64 = response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&retry_after), "{retry_after}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    }
    // The Messages API answers the throttled address in its own shape.
    let messages = gateway
        .client
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", llmgw_apikey::generate())
        .header("x-forwarded-for", ATTACKER)
        .header("anthropic-version", "2023-06-01")
        .body("{}")
        .send()
        .await
        .expect("answer");
    assert_eq!(messages.status(), 429);
    let body: Value = messages.json().await.expect("JSON");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // Another client behind the same proxy is still told its key is wrong.
    let neighbour = chat_from(&gateway, Some(NEIGHBOUR), &llmgw_apikey::generate()).await;
    assert_eq!(neighbour.status(), 401);
    // The valid key from the throttled address is refused as well: the
    // throttle answers before any key is read.
    let valid = chat_from(&gateway, Some(ATTACKER), crate::harness::KEY).await;
    assert_eq!(valid.status(), 429);

    let after = billing_misses(&gateway.client, billing).await;
    assert_eq!(
        after,
        misses + 1.0,
        "only the neighbour's guess was looked up"
    );
    let edge = gateway.metrics().await;
    assert_eq!(
        counter(&edge, "llmgw_edge_auth_throttled_total"),
        12.0,
        "{edge}"
    );
}

#[tokio::test]
async fn without_trusted_proxies_a_forged_forwarded_for_does_not_escape_the_throttle() {
    let gateway = Gateway::start_with(|config| {
        config.edge.auth_throttle.max_failures = 3;
    })
    .await;
    for n in 0..3 {
        let forged = format!("198.51.100.{n}");
        let response = chat_from(&gateway, Some(&forged), "sk-wrong-key-for-this-test").await;
        assert_eq!(response.status(), 401);
    }
    let response = chat_from(
        &gateway,
        Some("198.51.100.99"),
        "sk-wrong-key-for-this-test",
    )
    .await;
    assert_eq!(response.status(), 429, "the TCP peer is the client");
    // Health and metrics are never throttled.
    let health = gateway.client.get(gateway.url("/healthz")).send().await;
    assert_eq!(health.expect("healthz").status(), 200);
}
