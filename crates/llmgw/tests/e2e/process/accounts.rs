//! Accounts through the real binary: a raw API key never reaches the logs,
//! and `llmgw migrate` from two processes at once applies the schema once.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use llmgw_testdb::TestDatabase;
use serde_json::{Value, json};
use tokio::process::Command;

use super::child::{Proc, client, free_ports, run_bounded, wait_ready};
use super::gateway::LLMGW;
use crate::accounts::ADMIN_TOKEN;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_keys_never_reach_the_logs() {
    let [edge_port, router_port, admin_port] = free_ports();
    let mut gateway = Proc::spawn(
        "llmgw all (debug logs)",
        LLMGW,
        &["all"],
        &[
            ("LLMGW_EDGE__LISTEN", format!("127.0.0.1:{edge_port}")),
            ("LLMGW_ROUTER__LISTEN", format!("127.0.0.1:{router_port}")),
            (
                "LLMGW_BILLING__ADMIN_LISTEN",
                format!("127.0.0.1:{admin_port}"),
            ),
            ("LLMGW_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            // As chatty as it gets, dependencies included.
            ("RUST_LOG", "trace".to_owned()),
        ],
    );
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    wait_ready(edge, &mut [&mut gateway]).await;
    let client = client();
    let admin = format!("http://127.0.0.1:{admin_port}/admin/v1");
    let created: Value = client
        .post(format!("{admin}/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "canary-tenant"}))
        .send()
        .await
        .expect("admin API")
        .json()
        .await
        .expect("JSON");
    assert_eq!(created["name"], "canary-tenant");
    let key: Value = client
        .post(format!("{admin}/tenants/canary-tenant/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "canary"}))
        .send()
        .await
        .expect("admin API")
        .json()
        .await
        .expect("JSON");
    let canary = key["secret"].as_str().expect("secret").to_owned();
    // A well-formed key that does not exist, too.
    let stranger = llmgw_apikey::generate();
    for secret in [&canary, &stranger] {
        let response = client
            .post(format!("http://{edge}/v1/chat/completions"))
            .bearer_auth(secret)
            .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("edge");
        let expected = if secret == &canary { 200 } else { 401 };
        assert_eq!(response.status().as_u16(), expected);
    }
    let listing = client
        .get(format!("{admin}/tenants/canary-tenant/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin API")
        .text()
        .await
        .expect("text");
    assert!(!listing.contains(&canary), "a key listing shows the secret");
    gateway.sigterm();
    let _ = gateway
        .wait_exit_by(tokio::time::Instant::now() + Duration::from_secs(10))
        .await;
    let logs = gateway.output();
    assert!(
        logs.contains("request finished"),
        "the logs were captured: {logs:.2000}"
    );
    for secret in [&canary, &stranger] {
        // The random part alone, so no prefix or truncation hides it.
        let body = &secret[llmgw_apikey::PREFIX.len()..];
        assert!(!logs.contains(body), "a raw key appears in the logs");
    }
    assert!(
        !logs.contains(ADMIN_TOKEN),
        "the admin token appears in the logs"
    );
}

#[tokio::test]
async fn concurrent_migrate_applies_the_schema_once() {
    let database = TestDatabase::create("e2e_migrate")
        .await
        .expect("postgres reachable");
    let migrate = || {
        let mut command = Command::new(LLMGW);
        command
            .arg("migrate")
            .env("DATABASE_URL", database.url())
            .env_remove("LLMGW_CONFIG")
            .stdout(Stdio::piped());
        run_bounded(command, Duration::from_secs(60))
    };
    let (first, second) = tokio::join!(migrate(), migrate());
    let pool = database.pool().await.expect("connect to the test database");
    let rows: Result<i64, _> = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await;
    pool.close().await;
    for (status, output) in [
        first.expect("first migrate ran"),
        second.expect("second migrate ran"),
    ] {
        assert!(status.success(), "llmgw migrate failed:\n{output}");
    }
    let rows = rows.expect("the migrations table exists");
    let migrations = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/billing/postgres"
    ))
    .expect("migrations folder")
    .filter_map(Result::ok)
    .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
    .count();
    assert_eq!(
        rows,
        i64::try_from(migrations).expect("a few migrations"),
        "each migration applied exactly once"
    );
}
