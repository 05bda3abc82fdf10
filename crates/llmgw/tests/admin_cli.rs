//! The admin CLI end to end: the `llmgw` binary, as an operator runs it,
//! against a real billing service (port 0, a fresh SQLite file): word
//! lists, policies, a tenant's policy, and both audit trails, in tables,
//! JSON and CSV.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

use std::path::Path;
use std::time::{Duration, Instant};

use llmgw_proto::billing_v1::audit_client::AuditClient;
use llmgw_proto::billing_v1::{AuditEvent, RecordAuditRequest};
use tokio::net::TcpListener;

const TOKEN: &str = "cli-test-admin-token-0123456789";

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `llmgw ARGS` against the admin API at `admin`, from `dir`.
async fn llmgw(admin: &str, dir: &Path, args: &[&str]) -> Output {
    llmgw_as(TOKEN, admin, dir, args).await
}

/// As [`llmgw`], with `credential` as LLMGW_ADMIN_TOKEN.
async fn llmgw_as(credential: &str, admin: &str, dir: &Path, args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmgw"))
        .args(args)
        .current_dir(dir)
        .env("LLMGW_ADMIN_URL", admin)
        .env("LLMGW_ADMIN_TOKEN", credential)
        .env_remove("LLMGW_CONFIG")
        .env("RUST_BACKTRACE", "0")
        .output()
        .await
        .unwrap();
    Output {
        ok: output.status.success(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

async fn succeeds(admin: &str, dir: &Path, args: &[&str]) -> String {
    let output = llmgw(admin, dir, args).await;
    assert!(output.ok, "llmgw {args:?}: {}", output.stderr);
    output.stdout
}

/// A billing service on a fresh SQLite file in `dir`: its admin URL, and
/// what stops it.
async fn billing(
    dir: &Path,
) -> (
    String,
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("token"), TOKEN).unwrap();
    let config = llmgw_billing::Config {
        database_url: Some(format!("sqlite://{}", dir.join("billing.db").display())),
        data_dir: dir.to_path_buf(),
        admin_token_env: "LLMGW_CLI_TEST_UNSET_TOKEN".to_owned(),
        admin_token_file: Some(dir.join("token")),
        ..llmgw_billing::Config::default()
    };
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_address = grpc.local_addr().unwrap();
    let admin_url = format!("http://{}", admin.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let billing = tokio::spawn(llmgw_billing::run(config, grpc, admin, async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::Client::new()
        .get(format!("{admin_url}/admin/v1/tenants"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .is_ok_and(|answer| answer.status().is_success())
    {
        assert!(Instant::now() < deadline, "billing did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (admin_url, grpc_address, stop, billing)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_word_lists_tenants_and_audit_through_the_cli() {
    let dir = std::env::temp_dir().join(format!("llmgw-cli-{}", std::process::id()));
    let (admin_url, grpc_address, stop, billing) = billing(&dir).await;
    let (url, dir) = (admin_url.as_str(), dir.as_path());

    // Word lists: from a file, then term by term.
    std::fs::write(dir.join("terms.txt"), "alpha\n  beta \n\n敏感词\n").unwrap();
    let put = succeeds(
        url,
        dir,
        &["word-lists", "put", "banned", "--file", "terms.txt"],
    )
    .await;
    assert_eq!(put, "Word list banned: 3 terms\n");
    let added = succeeds(url, dir, &["word-lists", "add", "banned", "gamma", "beta"]).await;
    assert_eq!(added, "Word list banned: 4 terms\n");
    let removed = succeeds(url, dir, &["word-lists", "remove", "banned", "alpha"]).await;
    assert_eq!(removed, "Word list banned: 3 terms\n");
    let shown = succeeds(url, dir, &["word-lists", "show", "banned"]).await;
    assert_eq!(shown, "beta\ngamma\n敏感词\n");
    let listed = succeeds(url, dir, &["word-lists", "list"]).await;
    assert!(
        listed.starts_with("NAME    SOURCE    TERMS  UPDATED\nbanned  database  3"),
        "{listed}"
    );

    // Policies: a valid one, and a refused one naming its rule.
    std::fs::write(
        dir.join("strict.json"),
        r#"{"rules": [
            {"id": "no-secrets", "kind": "secret", "action": "block"},
            {"id": "banned", "kind": "words", "direction": "output", "action": "redact", "word_lists": ["banned"]}
        ]}"#,
    )
    .unwrap();
    let policy = succeeds(
        url,
        dir,
        &["policies", "put", "strict", "--file", "strict.json"],
    )
    .await;
    assert!(policy.starts_with("Policy strict: database"), "{policy}");
    assert!(
        policy.contains("banned      words   output     redact  lists banned"),
        "{policy}"
    );
    std::fs::write(
        dir.join("bad.json"),
        r#"{"rules": [{"id": "x", "kind": "nope", "action": "block"}]}"#,
    )
    .unwrap();
    let bad = llmgw(url, dir, &["policies", "put", "bad", "--file", "bad.json"]).await;
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("admin API: 400 rules[0]"),
        "{}",
        bad.stderr
    );
    std::fs::write(dir.join("broken.json"), "{").unwrap();
    let broken = llmgw(
        url,
        dir,
        &["policies", "put", "bad", "--file", "broken.json"],
    )
    .await;
    assert!(
        broken.stderr.contains("broken.json is not valid JSON"),
        "{}",
        broken.stderr
    );
    let listed = succeeds(url, dir, &["policies", "list"]).await;
    assert!(
        listed.starts_with("Default policy: none\nNAME    SOURCE    RULES"),
        "{listed}"
    );

    // A tenant's policy: set, cleared, set again; the policy is then in use.
    let created = succeeds(
        url,
        dir,
        &["tenants", "create", "acme", "--policy", "strict"],
    )
    .await;
    assert!(created.contains(" strict "), "{created}");
    let cleared = succeeds(url, dir, &["tenants", "update", "acme", "--no-policy"]).await;
    assert!(cleared.contains(" default "), "{cleared}");
    let unknown = llmgw(url, dir, &["tenants", "update", "acme", "--policy", "nope"]).await;
    assert!(
        unknown
            .stderr
            .contains("admin API: 400 policy: no policy named"),
        "{}",
        unknown.stderr
    );
    succeeds(
        url,
        dir,
        &["tenants", "update", "acme", "--policy", "strict"],
    )
    .await;
    let in_use = llmgw(url, dir, &["policies", "delete", "strict"]).await;
    assert!(
        in_use.stderr.contains("admin API: 409"),
        "{}",
        in_use.stderr
    );
    let shown = succeeds(url, dir, &["policies", "show", "strict"]).await;
    assert!(shown.contains("Tenants: acme\n"), "{shown}");

    // The admin trail saw all of it, from this machine.
    let trail = succeeds(url, dir, &["audit", "admin", "--action", "tenant.update"]).await;
    let lines: Vec<&str> = trail.lines().collect();
    assert_eq!(lines.len(), 3, "{trail}");
    assert!(lines[0].starts_with("TIME "));
    assert!(
        lines[1].contains(" 127.0.0.1:") && lines[1].ends_with("policy"),
        "{trail}"
    );
    let csv = succeeds(url, dir, &["audit", "admin", "--csv"]).await;
    assert!(csv.starts_with("at,at_ms,id,actor,client_address,action,target,before,after\r\n"));
    assert_eq!(csv.matches(",word_list.").count(), 3, "{csv}");
    let paged = succeeds(url, dir, &["audit", "admin", "--limit", "2"]).await;
    let cursor = paged
        .lines()
        .last()
        .unwrap()
        .strip_prefix("more: add --cursor ")
        .unwrap();
    let next = succeeds(
        url,
        dir,
        &["audit", "admin", "--limit", "2", "--cursor", cursor],
    )
    .await;
    assert_eq!(next.lines().count(), 4, "{next}");

    // Content-policy hits as the edge delivers them, then through the CLI.
    let mut client = AuditClient::connect(format!("http://{grpc_address}"))
        .await
        .unwrap();
    let hit = AuditEvent {
        request_id: "req-1".into(),
        attempt: 0,
        sequence: 0,
        tenant: "acme".into(),
        key_id: "key-1".into(),
        model: "gpt-4o".into(),
        policy: "strict".into(),
        rule_id: "no-secrets".into(),
        rule_kind: "secret".into(),
        direction: "input".into(),
        action: "block".into(),
        location: "messages[0].content".into(),
        offset: 4,
        length: 40,
        match_hash: "ab12".into(),
        excerpt: String::new(),
        occurred_at_ms: 1_793_491_200_000,
    };
    client
        .record_audit(RecordAuditRequest { events: vec![hit] })
        .await
        .unwrap();
    let table = succeeds(
        url,
        dir,
        &["audit", "--tenant", "acme", "--direction", "input"],
    )
    .await;
    assert!(
        table.contains("2026-11-01 00:00 UTC  acme    key-1  input      strict  no-secrets  block   messages[0].content  req-1/0/0"),
        "{table}"
    );
    let none = succeeds(url, dir, &["audit", "--rule", "other"]).await;
    assert_eq!(none.lines().count(), 1, "{none}");
    let json = succeeds(url, dir, &["audit", "--json", "--from", "2026-11-01"]).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["data"][0]["match_hash"], "ab12");
    let csv = succeeds(url, dir, &["audit", "--csv", "--key", "key-1"]).await;
    assert_eq!(csv.lines().count(), 2, "{csv}");
    let mixed = llmgw(url, dir, &["audit", "--tenant", "acme", "admin"]).await;
    assert!(!mixed.ok && mixed.stderr.contains("takes its options after `admin`"));

    let _ = stop.send(());
    billing.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_credentials_through_the_cli() {
    let dir = std::env::temp_dir().join(format!("llmgw-cli-admins-{}", std::process::id()));
    let (admin_url, _, stop, billing) = billing(&dir).await;
    let (url, dir) = (admin_url.as_str(), dir.as_path());

    let created = succeeds(
        url,
        dir,
        &["admins", "create", "fiona", "--role", "finance"],
    )
    .await;
    let credential = created
        .lines()
        .find_map(|line| line.strip_prefix("Credential: "))
        .unwrap_or_else(|| panic!("{created}"))
        .to_owned();
    assert!(credential.starts_with("sk-llmgw-admin-"), "{created}");
    assert!(created.contains(&format!("{url}/ui/")), "{created}");
    let listed = succeeds(url, dir, &["admins", "list"]).await;
    assert!(listed.starts_with("NAME   ID"), "{listed}");
    assert!(listed.contains("finance"), "{listed}");
    assert!(!listed.contains(&credential), "never shown again: {listed}");

    // The credential works as LLMGW_ADMIN_TOKEN, within its role.
    let usage = llmgw_as(&credential, url, dir, &["usage", "--csv"]).await;
    assert!(usage.ok, "{}", usage.stderr);
    let refused = llmgw_as(&credential, url, dir, &["tenants", "create", "acme"]).await;
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains("admin API: 403 the finance role may not POST /admin/v1/tenants"),
        "{}",
        refused.stderr
    );
    let bad_role = llmgw(url, dir, &["admins", "create", "x", "--role", "root"]).await;
    assert!(
        !bad_role.ok
            && bad_role
                .stderr
                .contains("possible values: admin, finance, auditor"),
        "{}",
        bad_role.stderr
    );

    let revoked = succeeds(url, dir, &["admins", "revoke", "fiona"]).await;
    assert!(revoked.contains("revoked"), "{revoked}");
    let after = llmgw_as(&credential, url, dir, &["usage"]).await;
    assert!(
        !after.ok && after.stderr.contains("401"),
        "{}",
        after.stderr
    );

    let _ = stop.send(());
    billing.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
