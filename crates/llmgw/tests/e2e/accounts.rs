//! API keys from the accounts database (billing service) at the edge:
//! lifecycle, model restrictions, caching, billing outages.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{Gateway, error_of, request};

pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

/// A fresh directory for one test's SQLite file and admin token.
pub fn scratch_dir(label: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("llmgw-e2e-{label}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).expect("token file");
    dir
}

/// Admin API calls, as an operator would make them.
pub struct Admin {
    pub url: String,
    pub client: reqwest::Client,
}

impl Admin {
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, body).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("admin API reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A new tenant and a key for it; returns (key id, secret).
    pub async fn tenant_with_key(&self, tenant: &str, key: Value) -> (String, String) {
        let (status, body) = self
            .post("/admin/v1/tenants", json!({"name": tenant}))
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .post(&format!("/admin/v1/tenants/{tenant}/keys"), key)
            .await;
        assert_eq!(status, 201, "{body}");
        let id = body["key"]["id"].as_str().expect("key id").to_owned();
        let secret = body["secret"].as_str().expect("secret").to_owned();
        (id, secret)
    }
}

async fn gateway_with_accounts(label: &str, cache_ttl_secs: u64) -> (Gateway, Admin) {
    let dir = scratch_dir(label);
    let gateway = Gateway::start_with(|config| {
        config.billing.data_dir = dir.clone();
        config.billing.admin_token_file = Some(dir.join("admin-token"));
        config.edge.auth_cache_ttl_secs = cache_ttl_secs;
        config.edge.auth_negative_ttl_secs = cache_ttl_secs;
    })
    .await;
    let admin = Admin {
        url: format!("http://{}", gateway.admin.expect("billing started")),
        client: reqwest::Client::new(),
    };
    (gateway, admin)
}

async fn chat_with(gateway: &Gateway, key: &str, model: &str) -> reqwest::Response {
    gateway
        .chat_raw(Some(key), request(model).to_string())
        .await
}

#[tokio::test]
async fn key_lifecycle_at_the_edge() {
    let (gateway, admin) = gateway_with_accounts("lifecycle", 1).await;
    let (id, secret) = admin.tenant_with_key("acme", json!({"name": "ci"})).await;
    // The admin routes do not exist on the public listener, whatever the token.
    for token in [ADMIN_TOKEN, secret.as_str()] {
        let response = gateway
            .client
            .get(gateway.url("/admin/v1/tenants"))
            .bearer_auth(token)
            .send()
            .await
            .expect("reachable");
        assert_eq!(response.status(), 404);
    }
    assert!(llmgw_apikey::is_well_formed(&secret));
    assert_eq!(chat_with(&gateway, &secret, "mock").await.status(), 200);

    // Revoked: refused once the cache entry (1 s here) expires.
    let (status, _) = admin
        .post(&format!("/admin/v1/keys/{id}/revoke"), json!({}))
        .await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (status, error) = error_of(chat_with(&gateway, &secret, "mock").await).await;
    assert_eq!(status, 401);
    assert_eq!(error["code"], "invalid_api_key");

    // Rotated: the new secret works, the old one does not.
    let (id, old) = {
        let (status, body) = admin
            .post("/admin/v1/tenants/acme/keys", json!({"name": "ci-2"}))
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["key"]["id"].as_str().expect("id").to_owned(),
            body["secret"].as_str().expect("secret").to_owned(),
        )
    };
    assert_eq!(chat_with(&gateway, &old, "mock").await.status(), 200);
    let (status, body) = admin
        .post(&format!("/admin/v1/keys/{id}/rotate"), json!({}))
        .await;
    assert_eq!(status, 201, "{body}");
    let new = body["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    assert_eq!(chat_with(&gateway, &new, "mock").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(chat_with(&gateway, &old, "mock").await.status(), 401);

    // A key stops working when it expires, even while it is cached. Its
    // life is long enough for the first call on a busy machine; then the
    // test waits for the refusal (a generous deadline, not a bound).
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
        + 4_000;
    let (status, body) = admin
        .post(
            "/admin/v1/tenants/acme/keys",
            json!({"name": "short-lived", "expires_at": soon}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let short_lived = body["secret"].as_str().expect("secret");
    assert_eq!(chat_with(&gateway, short_lived, "mock").await.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = chat_with(&gateway, short_lived, "mock").await.status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200, "a live key works until it expires");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert!(now_ms >= soon, "refused before its expiry");

    // A mistyped key fails its checksum without a lookup: still 401.
    let mut typo = new.clone();
    typo.pop();
    typo.push(if new.ends_with('a') { 'b' } else { 'a' });
    assert_eq!(chat_with(&gateway, &typo, "mock").await.status(), 401);
}

#[tokio::test]
async fn allowed_models_are_enforced_and_listed() {
    let (gateway, admin) = gateway_with_accounts("models", 30).await;
    let (_, secret) = admin
        .tenant_with_key(
            "acme",
            json!({"name": "narrow", "allowed_models": ["mock"]}),
        )
        .await;
    assert_eq!(chat_with(&gateway, &secret, "mock").await.status(), 200);
    let (status, error) = error_of(chat_with(&gateway, &secret, "reasoner").await).await;
    assert_eq!(status, 403);
    assert_eq!(error["param"], "model");
    let models: Value = gateway
        .client
        .get(gateway.url("/v1/models"))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("JSON");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["mock"]);
}

#[tokio::test]
async fn billing_down_serves_cached_keys_and_503s_unknown_ones() {
    let dir = scratch_dir("outage");
    let mut config = crate::harness::config("127.0.0.1:9".parse().expect("addr")).await;
    config.billing.data_dir = dir.clone();
    config.billing.admin_token_file = Some(dir.join("admin-token"));
    let billing_stop = CancellationToken::new();
    let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let grpc = tokio::net::TcpListener::bind(any).await.expect("bind");
    let billing_address = grpc.local_addr().expect("addr");
    let admin_listener = tokio::net::TcpListener::bind(any).await.expect("bind");
    let admin = Admin {
        url: format!("http://{}", admin_listener.local_addr().expect("addr")),
        client: reqwest::Client::new(),
    };
    let billing = tokio::spawn(llmgw_billing::run(
        config.billing.clone(),
        grpc,
        admin_listener,
        billing_stop.clone().cancelled_owned(),
    ));
    // The edge is pointed at this billing service, so the gateway starts none.
    let gateway = Gateway::start_with(|gateway| {
        gateway.edge.billing_url = Some(format!("http://{billing_address}"));
        gateway.edge.auth_cache_ttl_secs = 1;
    })
    .await;
    for _ in 0..600 {
        if admin
            .client
            .get(format!("{}/admin/v1/tenants", admin.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, known) = admin
        .tenant_with_key("acme", json!({"name": "known"}))
        .await;
    let (_, unknown) = admin
        .tenant_with_key("other", json!({"name": "never-used"}))
        .await;
    assert_eq!(chat_with(&gateway, &known, "mock").await.status(), 200);

    billing_stop.cancel();
    let _ = billing.await;
    tokio::time::sleep(Duration::from_millis(1_200)).await; // the cache entry is stale now
    assert_eq!(
        chat_with(&gateway, &known, "mock").await.status(),
        200,
        "a cached key keeps working"
    );
    let (status, error) = error_of(chat_with(&gateway, &unknown, "mock").await).await;
    assert_eq!(
        status, 503,
        "an unknown key is not declared invalid while billing is down"
    );
    assert_eq!(error["code"], "service_unavailable");
    let ready = gateway
        .client
        .get(gateway.url("/readyz"))
        .send()
        .await
        .expect("reachable");
    assert_eq!(ready.status(), 200, "readiness does not depend on billing");

    // Billing back on the same port: normal again.
    let grpc = tokio::net::TcpListener::bind(billing_address)
        .await
        .expect("rebind");
    let admin_listener = tokio::net::TcpListener::bind(any).await.expect("bind");
    let back = CancellationToken::new();
    tokio::spawn(llmgw_billing::run(
        config.billing.clone(),
        grpc,
        admin_listener,
        back.clone().cancelled_owned(),
    ));
    let mut recovered = false;
    for _ in 0..300 {
        if chat_with(&gateway, &unknown, "mock").await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    back.cancel();
    assert!(recovered, "the key works again once billing is back");
}

/// A new key under `tenant`; returns its secret.
async fn new_key(admin: &Admin, tenant: &str, key: Value) -> String {
    let (status, body) = admin
        .post(&format!("/admin/v1/tenants/{tenant}/keys"), key)
        .await;
    assert_eq!(status, 201, "{body}");
    body["secret"].as_str().expect("secret").to_owned()
}

/// Statuses of `n` requests in a row with `key`.
async fn statuses(gateway: &Gateway, key: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(chat_with(gateway, key, "mock").await.status().as_u16());
    }
    statuses
}

/// The 429 of `response`: its OpenAI error code, after checking Retry-After.
async fn too_many(response: reqwest::Response) -> Value {
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|secs| secs >= 1),
        "429 without a usable Retry-After: {:?}",
        response.headers()
    );
    let (status, error) = error_of(response).await;
    assert_eq!(status, 429, "{error}");
    error["code"].clone()
}

#[tokio::test]
async fn limits_stored_with_tenants_and_keys_are_enforced() {
    // No limit in the quota config: every limit here comes from the
    // accounts database, through the key lookup.
    let (gateway, admin) = gateway_with_accounts("limits", 30).await;
    let (status, body) = admin
        .post(
            "/admin/v1/tenants",
            json!({"name": "capped", "limits": {"requests_per_minute": 2}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // A key without limits of its own: its tenant's default for its keys.
    let plain = new_key(&admin, "capped", json!({"name": "plain"})).await;
    assert_eq!(statuses(&gateway, &plain, 2).await, [200, 200]);
    let code = too_many(chat_with(&gateway, &plain, "mock").await).await;
    assert_eq!(code, "rate_limit_exceeded");

    // A key whose own limit replaces the tenant's default, counted on its
    // own: the first key's exhaustion does not touch it.
    let roomy = new_key(
        &admin,
        "capped",
        json!({"name": "roomy", "limits": {"requests_per_minute": 3}}),
    )
    .await;
    assert_eq!(statuses(&gateway, &roomy, 3).await, [200, 200, 200]);
    let code = too_many(chat_with(&gateway, &roomy, "mock").await).await;
    assert_eq!(code, "rate_limit_exceeded");

    // A config-file key carries no limits: still unlimited.
    let bootstrap = statuses(&gateway, crate::harness::KEY, 5).await;
    assert_eq!(bootstrap, [200; 5]);
}

#[tokio::test]
async fn a_tenant_budget_stops_requests_once_spent() {
    let (gateway, admin) = gateway_with_accounts("budget", 1).await;
    // 3 000 nano-USD. Each request below costs 1 050 (3 prompt tokens at
    // 0.15 USD and 1 completion token at 0.60 USD per million), estimate
    // and actual alike: two fit, the third does not.
    let (status, body) = admin
        .post(
            "/admin/v1/tenants",
            json!({"name": "thrifty", "monthly_budget_usd": "0.000003"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let key = new_key(&admin, "thrifty", json!({"name": "k"})).await;
    let body = json!({"model": "mock", "max_tokens": 1,
                      "messages": [{"role": "user", "content": "Hello there"}]})
    .to_string();
    let call = |key| gateway.chat_raw(Some(key), body.clone());
    for _ in 0..2 {
        assert_eq!(call(&key).await.status(), 200);
        // Settling is off the response path: let it land.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let code = too_many(call(&key).await).await;
    assert_eq!(code, "insufficient_quota");
    // Another key of the same tenant shares the budget.
    let other = new_key(&admin, "thrifty", json!({"name": "other"})).await;
    let code = too_many(call(&other).await).await;
    assert_eq!(code, "insufficient_quota");

    // A larger budget takes effect once the key's cache entry (1 s here)
    // expires.
    let (status, body) = admin
        .patch(
            "/admin/v1/tenants/thrifty",
            json!({"monthly_budget_usd": "1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(call(&key).await.status(), 200);
}
