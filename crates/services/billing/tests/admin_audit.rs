//! The admin-action trail, on Postgres and on SQLite: every mutating admin
//! route leaves exactly one row (who, from where, what, before and after)
//! written with the change, failed and no-op requests leave none, secrets
//! and digests never appear, and the trail can be filtered, paged and
//! exported but not rewritten.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, Service, TOKEN, start, unique};

on_both_backends!(
    every_change_is_recorded_once,
    trail_filters_pages_and_exports
);

/// `admin:` and the first 12 hex digits of the token's SHA-256.
fn actor() -> String {
    let digest = llmgw_apikey::digest(TOKEN);
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("admin:{hex}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn trail(service: &Service) -> Vec<Value> {
    let page = service.get("/admin/v1/audit/admin?limit=1000").await;
    assert_eq!(page.status, 200, "{page:?}");
    let mut rows = page.json["data"].as_array().unwrap().clone();
    rows.reverse(); // oldest first, the order the test made the changes in
    rows
}

async fn every_change_is_recorded_once(backend: Backend) {
    let service = start(backend).await;
    let mut secrets: Vec<String> = Vec::new();
    let ok = |answer: &support::Answer| {
        assert!((200..300).contains(&answer.status), "{answer:?}");
        answer.json.clone()
    };

    let policy = ok(&service
        .put(
            "/admin/v1/policies/strict",
            json!({"rules": [{"id": "cards", "kind": "bank_card", "action": "redact"}]}),
        )
        .await);
    assert_eq!(policy["name"], "strict");
    ok(&service
        .put(
            "/admin/v1/policies/strict",
            json!({"rules": [{"id": "cards", "kind": "bank_card", "action": "block"}]}),
        )
        .await);
    let name = unique("audited");
    let tenant = ok(&service
        .post(
            "/admin/v1/tenants",
            json!({"name": name, "policy": "strict"}),
        )
        .await);
    let tenant_id = tenant["id"].as_str().unwrap().to_owned();
    ok(&service
        .patch(
            &format!("/admin/v1/tenants/{name}"),
            json!({"monthly_budget_usd": "12.5", "limits": {"requests_per_minute": 60}, "policy": null}),
        )
        .await);
    for action in ["disable", "enable"] {
        ok(&service
            .raw(
                Method::POST,
                &format!("/admin/v1/tenants/{name}/{action}"),
                None,
            )
            .await);
    }
    let key = ok(&service
        .post(
            &format!("/admin/v1/tenants/{name}/keys"),
            json!({"name": "ci"}),
        )
        .await);
    secrets.push(key["secret"].as_str().unwrap().to_owned());
    let key_id = key["key"]["id"].as_str().unwrap().to_owned();
    ok(&service
        .patch(
            &format!("/admin/v1/keys/{key_id}"),
            json!({"allowed_models": ["gpt-4o"], "limits": {"concurrent": 2}}),
        )
        .await);
    let rotated = ok(&service
        .raw(
            Method::POST,
            &format!("/admin/v1/keys/{key_id}/rotate"),
            None,
        )
        .await);
    secrets.push(rotated["secret"].as_str().unwrap().to_owned());
    let new_id = rotated["key"]["id"].as_str().unwrap().to_owned();
    ok(&service
        .raw(
            Method::POST,
            &format!("/admin/v1/keys/{new_id}/revoke"),
            None,
        )
        .await);
    ok(&service
        .put("/admin/v1/word-lists/banned", json!({"terms": ["a", "b"]}))
        .await);
    ok(&service
        .post("/admin/v1/word-lists/banned/terms", json!({"terms": ["c"]}))
        .await);
    ok(&service
        .post(
            "/admin/v1/word-lists/banned/terms:remove",
            json!({"terms": ["a"]}),
        )
        .await);
    ok(&service.delete("/admin/v1/word-lists/banned").await);
    ok(&service.delete("/admin/v1/policies/strict").await);

    // Refused and no-op requests write nothing.
    let before = trail(&service).await.len();
    service
        .post("/admin/v1/tenants", json!({"name": name}))
        .await
        .assert_error(409, Some("name"));
    service
        .patch(
            &format!("/admin/v1/tenants/{name}"),
            json!({"policy": "gone"}),
        )
        .await
        .assert_error(400, Some("policy"));
    service
        .raw(
            Method::POST,
            &format!("/admin/v1/keys/{new_id}/revoke"),
            None,
        )
        .await;
    service
        .raw(
            Method::POST,
            &format!("/admin/v1/tenants/{name}/enable"),
            None,
        )
        .await;
    service
        .delete("/admin/v1/policies/strict")
        .await
        .assert_error(404, None);
    let rows = trail(&service).await;
    assert_eq!(rows.len(), before);

    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "policy.create",
            "policy.update",
            "tenant.create",
            "tenant.update",
            "tenant.disable",
            "tenant.enable",
            "key.create",
            "key.update",
            "key.rotate",
            "key.revoke",
            "word_list.put",
            "word_list.add_terms",
            "word_list.remove_terms",
            "word_list.delete",
            "policy.delete",
        ]
    );
    let tenant_target = format!("tenant:{tenant_id}");
    let targets: Vec<&str> = rows.iter().map(|r| r["target"].as_str().unwrap()).collect();
    assert_eq!(targets[0], "policy:strict");
    assert_eq!(&targets[2..6], [tenant_target.as_str(); 4]);
    assert_eq!(targets[6], format!("key:{key_id}"));
    assert_eq!(targets[9], format!("key:{new_id}"));
    assert_eq!(targets[10], "word_list:banned");
    for row in &rows {
        assert_eq!(row["actor"], actor(), "{row}");
        let address = row["client_address"].as_str().unwrap();
        assert!(address.starts_with("127.0.0.1:"), "{row}");
        assert!(row["at"].as_i64().unwrap() > 0);
    }

    // Before and after, as the objects were.
    let by_action = |action: &str| rows.iter().find(|r| r["action"] == action).unwrap();
    let created = by_action("policy.create");
    assert_eq!(created["before"], Value::Null);
    assert_eq!(created["after"]["rules"][0]["action"], "redact");
    let updated = by_action("policy.update");
    assert_eq!(updated["before"]["rules"][0]["action"], "redact");
    assert_eq!(updated["after"]["rules"][0]["action"], "block");
    let tenant_update = by_action("tenant.update");
    assert_eq!(tenant_update["before"]["policy"], "strict");
    assert_eq!(tenant_update["after"]["policy"], Value::Null);
    assert_eq!(
        tenant_update["before"]["monthly_budget_nano_usd"],
        Value::Null
    );
    assert_eq!(
        tenant_update["after"]["monthly_budget_nano_usd"],
        12_500_000_000_u64
    );
    assert_eq!(tenant_update["after"]["limits"]["requests_per_minute"], 60);
    assert_eq!(by_action("tenant.disable")["after"]["status"], "disabled");
    assert_eq!(by_action("tenant.enable")["before"]["status"], "disabled");
    let key_update = by_action("key.update");
    assert_eq!(key_update["before"]["allowed_models"], json!([]));
    assert_eq!(key_update["after"]["allowed_models"], json!(["gpt-4o"]));
    assert_eq!(key_update["after"]["limits"]["concurrent"], 2);
    let rotation = by_action("key.rotate");
    assert_eq!(rotation["before"]["status"], "active");
    assert_eq!(rotation["after"]["revoked"]["status"], "revoked");
    assert_eq!(rotation["after"]["issued"]["id"], new_id.as_str());
    let revoke = by_action("key.revoke");
    assert_eq!(revoke["before"]["status"], "active");
    assert_eq!(revoke["after"]["status"], "revoked");
    assert_eq!(by_action("word_list.put")["after"]["term_count"], 2);
    let added = by_action("word_list.add_terms");
    assert_eq!(added["after"]["terms"], json!(["c"]));
    assert_eq!(added["after"]["term_count"], 3);
    assert_eq!(
        by_action("word_list.remove_terms")["after"]["term_count"],
        2
    );
    assert_eq!(by_action("word_list.delete")["after"], Value::Null);
    assert_eq!(by_action("policy.delete")["after"], Value::Null);

    // No secret, no digest, anywhere in the trail (JSON or CSV).
    let json_text = service.get("/admin/v1/audit/admin?limit=1000").await.text;
    let csv_text = service.get("/admin/v1/audit/admin?format=csv").await.text;
    for text in [&json_text, &csv_text] {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a secret in the trail");
            assert!(!text.contains(&hex(&llmgw_apikey::digest(secret))));
            assert!(!text.contains(&hex(&llmgw_apikey::digest(secret))[..16]));
        }
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.contains("digest"), "{text}");
        assert!(!text.contains(TOKEN));
    }
    service.stop().await.unwrap();
}

async fn trail_filters_pages_and_exports(backend: Backend) {
    let service = start(backend).await;
    let started = support::now_ms();
    let mut tenants = Vec::new();
    for _ in 0..5 {
        let tenant = service.tenant(&unique("t")).await;
        tenants.push(tenant["id"].as_str().unwrap().to_owned());
    }
    let key = service.key(&tenants[0], "k").await;
    let key_id = key["key"]["id"].as_str().unwrap();
    service
        .raw(
            Method::POST,
            &format!("/admin/v1/keys/{key_id}/revoke"),
            None,
        )
        .await;

    let only = |query: &str| {
        let service = &service;
        let query = query.to_owned();
        async move {
            let page = service.get(&format!("/admin/v1/audit/admin?{query}")).await;
            assert_eq!(page.status, 200, "{page:?}");
            page.json["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["action"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(only("action=key.revoke").await, ["key.revoke"]);
    assert_eq!(
        only(&format!("target=tenant:{}", tenants[3])).await,
        ["tenant.create"]
    );
    assert_eq!(only(&format!("actor={}", actor())).await.len(), 7);
    assert!(only("actor=admin:000000000000").await.is_empty());
    assert_eq!(only(&format!("from={started}")).await.len(), 7);
    assert!(only(&format!("to={started}")).await.is_empty());

    // Pages of 3, newest first, each row once.
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = service
            .get(&format!("/admin/v1/audit/admin?limit=3{cursor}"))
            .await;
        ids.extend(
            page.json["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        match page.json["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(ids.len(), 7);
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "{ids:?}");

    let csv = service
        .get("/admin/v1/audit/admin?format=csv&action=tenant.create")
        .await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "at,at_ms,id,actor,client_address,action,target,before,after"
    );
    assert_eq!(lines.len(), 6);
    assert!(
        lines[1..]
            .iter()
            .all(|line| line.contains(",tenant.create,tenant:"))
    );

    // Append-only under the API too.
    use sqlx::Connection as _;
    let statements = [
        "UPDATE admin_audit SET actor = 'x'",
        "DELETE FROM admin_audit",
    ];
    for sql in statements {
        let error = if backend == Backend::Postgres {
            let mut conn = sqlx::PgConnection::connect(&service.db.url).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap_err()
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&service.db.url)
                .await
                .unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap_err()
        };
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    service.stop().await.unwrap();
}
