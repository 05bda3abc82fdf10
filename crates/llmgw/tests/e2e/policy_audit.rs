//! The audit trail of prompts end to end: the edge's hits reach billing
//! (Postgres and SQLite) through the edge's durable spool, as an auditor
//! reads them from the admin API; and policy changes made through the admin
//! API are in force on a running gateway without a restart. Billing outages:
//! `policy_outage`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use llmgw_policy::PolicySource;
use llmgw_testdb::TestDatabase;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::accounts::{ADMIN_TOKEN, Admin, scratch_dir};
use crate::harness::Gateway;
use crate::policy_input::{input_policy, with_input_policy};

/// Waits are bounded by this; nothing asserts on how long they took.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// The billing service alone on Postgres, serving `policy` (the config
/// file's section) to the edge: started, stopped and started again on the
/// same port as a test needs.
pub(crate) struct PolicyBilling {
    pub(crate) grpc: SocketAddr,
    pub(crate) admin: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl PolicyBilling {
    pub(crate) async fn start(
        database_url: &str,
        dir: &Path,
        grpc: Option<SocketAddr>,
        admin: Option<SocketAddr>,
        policy: PolicySource,
    ) -> PolicyBilling {
        let config = llmgw_billing::Config {
            database_url: Some(database_url.to_owned()),
            data_dir: dir.to_path_buf(),
            admin_token_file: Some(dir.join("admin-token")),
            policy,
            ..llmgw_billing::Config::default()
        };
        let any = || "127.0.0.1:0".parse().expect("addr");
        let grpc = TcpListener::bind(grpc.unwrap_or_else(any))
            .await
            .expect("bind billing");
        let admin = TcpListener::bind(admin.unwrap_or_else(any))
            .await
            .expect("bind admin");
        let (grpc_address, admin_address) = (
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
        PolicyBilling {
            grpc: grpc_address,
            admin: admin_address,
            stop,
            task,
        }
    }

    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

pub(crate) fn admin_at(admin: SocketAddr) -> Admin {
    Admin {
        url: format!("http://{admin}"),
        client: reqwest::Client::new(),
    }
}

/// The audit rows of `request_id` (newest first, as the API pages them).
pub(crate) async fn audit_rows(admin: &Admin, request_id: &str) -> Vec<Value> {
    let response = admin
        .client
        .get(format!(
            "{}/admin/v1/audit?request_id={request_id}&limit=1000",
            admin.url
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin API reachable");
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.expect("JSON page");
    page["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until every request id has `count` audit rows; returns them.
pub(crate) async fn wait_audited(
    admin: &Admin,
    expected: &[(String, usize)],
) -> HashMap<String, Vec<Value>> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut found = HashMap::new();
        for (request_id, _) in expected {
            found.insert(request_id.clone(), audit_rows(admin, request_id).await);
        }
        let complete = expected
            .iter()
            .all(|(request_id, count)| found[request_id].len() >= *count);
        if complete || tokio::time::Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends `content` as team-a's user message; returns (status, request id).
pub(crate) async fn send(gateway: &Gateway, content: &str) -> (u16, String) {
    let response = gateway
        .chat(json!({"model": "mock", "messages": [{"role": "user", "content": content}]}))
        .await;
    let status = response.status().as_u16();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii id")
        .to_owned();
    let _ = response.bytes().await;
    (status, request_id)
}

/// One blocked, one redacted, one flagged prompt: their events, as an
/// auditor reads them from the admin API.
async fn assert_prompts_audited(gateway: &Gateway, admin: &Admin) {
    let (status, blocked) = send(gateway, "say forbidden-term now").await;
    assert_eq!(status, 400);
    let (status, redacted) = send(gateway, "about Project Falcon and canary-1").await;
    assert_eq!(status, 200);
    let (status, flagged) = send(gateway, "the build id is canary-00417").await;
    assert_eq!(status, 200);
    let (status, clean) = send(gateway, "nothing to see here").await;
    assert_eq!(status, 200);

    let rows = wait_audited(
        admin,
        &[
            (blocked.clone(), 1),
            (redacted.clone(), 2),
            (flagged.clone(), 1),
        ],
    )
    .await;
    let one = |request_id: &str, rule: &str| -> Value {
        let matching: Vec<&Value> = rows[request_id]
            .iter()
            .filter(|row| row["rule_id"] == rule)
            .collect();
        assert_eq!(matching.len(), 1, "{rule} in {:?}", rows[request_id]);
        matching[0].clone()
    };
    let block = one(&blocked, "banned-words");
    for (field, value) in [
        ("tenant", json!("team-a")),
        ("key_id", json!("test-key")),
        ("model", json!("mock")),
        ("policy", json!("standard")),
        ("rule_kind", json!("words")),
        ("direction", json!("input")),
        ("action", json!("block")),
        ("location", json!("messages[0].content")),
        ("attempt", json!(0)),
        ("sequence", json!(0)),
        ("offset", json!(4)),
        ("length", json!(14)),
        ("excerpt", json!("")),
    ] {
        assert_eq!(block[field], value, "{field} of {block}");
    }
    let hash = block["match_hash"].as_str().expect("match_hash");
    assert!(
        hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    assert!(block["occurred_at_ms"].as_i64().expect("time") > 1_700_000_000_000);

    assert_eq!(one(&redacted, "confidential-projects")["action"], "redact");
    assert_eq!(one(&redacted, "canary")["action"], "flag");
    let mut sequences: Vec<i64> = rows[&redacted]
        .iter()
        .map(|row| row["sequence"].as_i64().expect("sequence"))
        .collect();
    sequences.sort_unstable();
    assert_eq!(sequences, [0, 1]);
    let flag = one(&flagged, "canary");
    assert_eq!(
        (flag["offset"].clone(), flag["length"].clone()),
        (json!(16), json!(7))
    );
    assert!(audit_rows(admin, &clean).await.is_empty());
    // Never the text: not in any field of any row.
    let all = serde_json::to_string(&rows).expect("JSON");
    for text in ["forbidden-term", "Project Falcon", "canary-00417"] {
        assert!(!all.contains(text), "{text} is in the audit trail: {all}");
    }
}

#[tokio::test]
async fn prompt_hits_are_audited_in_billing_on_postgres() {
    let database = TestDatabase::create("e2e_policy_audit")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("policy-audit-pg");
    let billing = PolicyBilling::start(database.url(), &dir, None, None, input_policy()).await;
    let gateway = Gateway::start_with({
        let (billing_grpc, dir) = (billing.grpc, dir.clone());
        move |config| {
            with_input_policy(config);
            config.edge.billing_url = Some(format!("http://{billing_grpc}"));
            config.router.usage.spool_dir = Some(dir.join("spool"));
            config.edge.audit.spool_dir = Some(dir.join("audit-spool"));
            config.edge.audit.flush_interval_ms = 5;
        }
    })
    .await;
    assert_prompts_audited(&gateway, &admin_at(billing.admin)).await;
    drop(gateway);
    billing.stop().await;
}

#[tokio::test]
async fn prompt_hits_are_audited_in_billing_on_sqlite() {
    let dir = scratch_dir("policy-audit-sqlite");
    let gateway = Gateway::start_with({
        let dir = dir.clone();
        move |config| {
            with_input_policy(config);
            config.billing.data_dir = dir.clone();
            config.billing.admin_token_file = Some(dir.join("admin-token"));
            config.edge.audit.flush_interval_ms = 5;
        }
    })
    .await;
    let admin = admin_at(gateway.admin.expect("billing started"));
    assert_prompts_audited(&gateway, &admin).await;
    // `llmgw all` keeps the edge's audit spool beside billing's database.
    assert!(dir.join("audit-spool").join("edge").is_dir());
}

#[tokio::test]
async fn admin_changes_to_word_lists_and_tenant_policies_apply_without_a_restart() {
    let dir = scratch_dir("policy-admin");
    let gateway = Gateway::start_with({
        let dir = dir.clone();
        move |config| {
            config.policy = serde_json::from_value(json!({
                "default": "standard",
                "word_lists": {"banned": ["forbidden-term"]},
                "policies": {
                    "standard": {"rules": [
                        {"id": "banned-words", "kind": "words", "word_lists": ["banned"], "action": "block"}
                    ]},
                    "lenient": {"rules": []}
                }
            }))
            .expect("policy");
            config.billing.data_dir = dir.clone();
            config.billing.admin_token_file = Some(dir.join("admin-token"));
            config.edge.policy_refresh_secs = 1;
        }
    })
    .await;
    let admin = admin_at(gateway.admin.expect("billing started"));
    assert_eq!(send(&gateway, "newly-banned").await.0, 200);

    // A word list replaced through the admin API (stored in the database).
    let (status, body) = put(
        &admin,
        "/admin/v1/word-lists/banned",
        json!({"terms": ["newly-banned"]}),
    )
    .await;
    assert!(status == 200 || status == 201, "{status}: {body}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while send(&gateway, "newly-banned").await.0 != 400 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new word list never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        send(&gateway, "forbidden-term").await.0,
        200,
        "replaced, not added"
    );

    // A tenant assigned its own policy through the admin API.
    let (_, secret) = admin.tenant_with_key("acme", json!({"name": "ci"})).await;
    let acme = |content: &str| {
        let body = json!({"model": "mock", "messages": [{"role": "user", "content": content}]});
        gateway.chat_raw(Some(&secret), body.to_string())
    };
    assert_eq!(acme("newly-banned").await.status(), 400);
    let (status, body) = admin
        .patch("/admin/v1/tenants/acme", json!({"policy": "lenient"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while acme("newly-banned").await.status() != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tenant's policy never took effect"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Everyone else still has the default.
    assert_eq!(send(&gateway, "newly-banned").await.0, 400);
}

async fn put(admin: &Admin, path: &str, body: Value) -> (u16, Value) {
    let response = admin
        .client
        .put(format!("{}{path}", admin.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("admin API reachable");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
