//! Content policies end to end, on Postgres and on SQLite: what
//! `Policies.GetPolicies` serves (the config file's policies under the
//! database's), its etag, and the admin routes that change it: policies,
//! word lists and tenants' policies, with their validation and conflicts.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use std::collections::BTreeMap;

use llmgw_proto::billing_v1::GetPoliciesResponse;
use serde_json::{Value, json};
use support::{Backend, Service, TestDb, config, start_with, unique};

on_both_backends!(
    get_policies_serves_file_and_database,
    word_list_edits_change_the_etag_and_content,
    large_word_lists_round_trip,
    policy_validation_names_the_rule,
    deleting_what_is_in_use_conflicts,
    tenant_policy_round_trip,
);

/// The config file's `policy:` section every test starts from.
fn file_policies() -> llmgw_policy::PolicySource {
    serde_json::from_value(json!({
        "default": "baseline",
        "policies": {
            "baseline": {"rules": [
                {"id": "no-secrets", "kind": "secret", "action": "block"},
                {"id": "banned", "kind": "words", "action": "redact", "word_lists": ["banned"]}
            ]},
            "lenient": {"rules": [{"id": "emails", "kind": "email", "action": "flag"}]}
        },
        "word_lists": {"banned": ["alpha", "beta"], "file-only": ["x"]}
    }))
    .unwrap()
}

async fn start(backend: Backend) -> Service {
    let db = TestDb::new(backend).await;
    let mut config = config(&db);
    config.policy = file_policies();
    start_with(db, config).await
}

fn word_lists(answer: &GetPoliciesResponse) -> BTreeMap<String, Vec<String>> {
    answer
        .word_lists
        .iter()
        .map(|list| (list.name.clone(), list.terms.clone()))
        .collect()
}

fn policies(answer: &GetPoliciesResponse) -> BTreeMap<String, Value> {
    answer
        .policies
        .iter()
        .map(|p| (p.name.clone(), serde_json::from_str(&p.spec_json).unwrap()))
        .collect()
}

async fn get_policies_serves_file_and_database(backend: Backend) {
    let service = start(backend).await;
    let first = service.get_policies("").await;
    assert!(!first.unchanged);
    assert!(!first.etag.is_empty());
    assert_eq!(first.default_policy, "baseline");
    let served = policies(&first);
    assert_eq!(served.keys().collect::<Vec<_>>(), ["baseline", "lenient"]);
    assert_eq!(served["lenient"]["rules"][0]["kind"], "email", "{served:?}");
    assert_eq!(word_lists(&first)["banned"], ["alpha", "beta"]);
    assert!(first.tenant_policies.is_empty());
    assert_eq!(first.match_hash_key.len(), 32);
    assert!(first.match_hash_key.iter().any(|byte| *byte != 0));

    // Current: nothing but the etag.
    let again = service.get_policies(&first.etag).await;
    assert!(again.unchanged);
    assert_eq!(again.etag, first.etag);
    assert!(again.policies.is_empty() && again.word_lists.is_empty());
    assert!(again.match_hash_key.is_empty());

    // A database policy of a file policy's name replaces it.
    let put = service
        .put(
            "/admin/v1/policies/lenient",
            json!({"rules": [{"id": "cards", "kind": "bank_card", "action": "redact"}]}),
        )
        .await;
    assert_eq!(put.status, 201, "{put:?}");
    assert_eq!(put.json["source"], "database");
    assert_eq!(put.json["overrides_config"], true);
    let changed = service.get_policies(&first.etag).await;
    assert!(!changed.unchanged);
    assert_ne!(changed.etag, first.etag);
    assert_eq!(
        policies(&changed)["lenient"]["rules"][0]["id"],
        "cards",
        "{changed:?}"
    );
    assert_eq!(changed.match_hash_key, first.match_hash_key);

    // Another replica on the same database serves the same set and key.
    let replica_db = TestDb {
        url: service.db.url.clone(),
        backend,
        postgres: None,
        dir: std::env::temp_dir().join(format!("llmgw-replica-{}", unique("r"))),
    };
    std::fs::create_dir_all(&replica_db.dir).unwrap();
    let mut replica_config = config(&replica_db);
    replica_config.policy = file_policies();
    replica_config.migrate_on_start = false;
    let replica = start_with(replica_db, replica_config).await;
    let from_replica = replica.get_policies(&changed.etag).await;
    assert!(from_replica.unchanged, "{from_replica:?}");
    let full = replica.get_policies("").await;
    assert_eq!(full, changed);
    replica.stop().await.unwrap();

    let metrics = service.metrics().await;
    assert!(
        metrics.contains("llmgw_billing_policy_fetches_total{result=\"unchanged\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmgw_billing_policy_fetches_total{result=\"full\"} 2"),
        "{metrics}"
    );
    service.stop().await.unwrap();
}

async fn word_list_edits_change_the_etag_and_content(backend: Backend) {
    let service = start(backend).await;
    let mut etag = service.get_policies("").await.etag;
    let mut expect_change = async |service: &Service, terms: &[&str]| {
        let answer = service.get_policies(&etag).await;
        assert!(!answer.unchanged, "the etag did not change");
        assert_eq!(word_lists(&answer)["banned"], terms);
        etag = answer.etag;
    };

    // Adding to a list only the file has starts from the file's terms.
    let added = service
        .post(
            "/admin/v1/word-lists/banned/terms",
            json!({"terms": ["gamma", " alpha "]}),
        )
        .await;
    assert_eq!(added.status, 200, "{added:?}");
    assert_eq!(added.json["term_count"], 3);
    assert_eq!(added.json["overrides_config"], true);
    expect_change(&service, &["alpha", "beta", "gamma"]).await;

    let removed = service
        .post(
            "/admin/v1/word-lists/banned/terms:remove",
            json!({"terms": ["beta", "not-there"]}),
        )
        .await;
    assert_eq!(removed.status, 200, "{removed:?}");
    assert_eq!(removed.json["term_count"], 2);
    expect_change(&service, &["alpha", "gamma"]).await;

    // PUT replaces every term; repeats and surrounding spaces fold.
    let put = service
        .put(
            "/admin/v1/word-lists/banned",
            json!({"terms": ["敏感词", " delta ", "delta", "ＡＢＣ"]}),
        )
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.json["term_count"], 3);
    expect_change(&service, &["delta", "敏感词", "ＡＢＣ"]).await;
    let read = service.get("/admin/v1/word-lists/banned").await;
    assert_eq!(read.json["terms"], json!(["delta", "敏感词", "ＡＢＣ"]));
    assert_eq!(read.json["source"], "database");

    // A new list; the listing shows both sources.
    let created = service
        .put("/admin/v1/word-lists/pii-terms", json!({"terms": ["ssn"]}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    expect_change(&service, &["delta", "敏感词", "ＡＢＣ"]).await;
    let listing = service.get("/admin/v1/word-lists").await;
    let rows: Vec<(String, String, u64)> = listing.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["name"].as_str().unwrap().to_owned(),
                row["source"].as_str().unwrap().to_owned(),
                row["term_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("banned".to_owned(), "database".to_owned(), 3),
            ("file-only".to_owned(), "config".to_owned(), 1),
            ("pii-terms".to_owned(), "database".to_owned(), 1),
        ]
    );

    // Bad terms name their index and change nothing.
    for (body, param) in [
        (json!({"terms": ["ok", "  "]}), "terms[1]"),
        (json!({"terms": ["a\nb"]}), "terms[0]"),
        (json!({"terms": ["x".repeat(257)]}), "terms[0]"),
        (json!({"terms": "alpha"}), "terms"),
        (json!({"words": ["alpha"]}), "words"),
    ] {
        let refused = service.put("/admin/v1/word-lists/banned", body).await;
        refused.assert_error(400, Some(param));
    }
    let missing = service
        .post("/admin/v1/word-lists/nope/terms", json!({"terms": ["a"]}))
        .await;
    missing.assert_error(404, None);
    assert!(service.get_policies(&etag).await.unchanged);
    service.stop().await.unwrap();
}

async fn large_word_lists_round_trip(backend: Backend) {
    let service = start(backend).await;
    let terms: Vec<String> = (0..100_000).map(|i| format!("term-{i:06}")).collect();
    let put = service
        .put("/admin/v1/word-lists/big", json!({ "terms": terms }))
        .await;
    assert_eq!(put.status, 201, "{}", &put.text[..put.text.len().min(300)]);
    assert_eq!(put.json["term_count"], 100_000);
    let read = service.get("/admin/v1/word-lists/big").await;
    assert_eq!(read.json["terms"].as_array().unwrap().len(), 100_000);
    assert_eq!(read.json["terms"][99_999], "term-099999");
    let served = service.get_policies("").await;
    assert_eq!(word_lists(&served)["big"].len(), 100_000);
    // Removing many at once, in batches.
    let gone: Vec<&String> = terms.iter().step_by(2).collect();
    let removed = service
        .post(
            "/admin/v1/word-lists/big/terms:remove",
            json!({ "terms": gone }),
        )
        .await;
    assert_eq!(removed.json["term_count"], 50_000, "{removed:?}");
    service.stop().await.unwrap();
}

async fn policy_validation_names_the_rule(backend: Backend) {
    let service = start(backend).await;
    let etag = service.get_policies("").await.etag;
    let cases = [
        (json!({"rules": "x"}), Some("rules")),
        (json!({}), Some("rules")),
        (json!({"rules": [], "extra": 1}), Some("extra")),
        (
            json!({"audit_excerpts": "yes", "rules": []}),
            Some("audit_excerpts"),
        ),
        (
            json!({"rules": [
                {"id": "ok", "kind": "email", "action": "flag"},
                {"id": "b", "kind": "nope", "action": "block"}
            ]}),
            Some("rules[1]"),
        ),
        (
            json!({"rules": [{"id": "a", "kind": "email", "action": "allow"}]}),
            Some("rules[0]"),
        ),
        (
            json!({"rules": [
                {"id": "a", "kind": "email", "action": "flag"},
                {"id": "a", "kind": "ipv4", "action": "flag"}
            ]}),
            Some("rules[1].id"),
        ),
        (
            json!({"rules": [{"id": "bad id", "kind": "email", "action": "flag"}]}),
            Some("rules[0].id"),
        ),
        (
            json!({"rules": [
                {"id": "fine", "kind": "email", "action": "flag"},
                {"id": "w", "kind": "words", "action": "block", "word_lists": ["missing"]}
            ]}),
            Some("rules[1]"),
        ),
    ];
    for (body, param) in cases {
        let answer = service.put("/admin/v1/policies/strict", body.clone()).await;
        answer.assert_error(400, param);
        assert!(
            !answer.json["error"]["message"].as_str().unwrap().is_empty(),
            "{body}"
        );
    }
    let malformed = service
        .raw(reqwest::Method::PUT, "/admin/v1/policies/strict", Some("{"))
        .await;
    malformed.assert_error(400, None);
    let bad_name = service
        .put("/admin/v1/policies/has%20space", json!({"rules": []}))
        .await;
    bad_name.assert_error(400, Some("name"));
    // Nothing was stored, nothing changed for the replicas.
    service
        .get("/admin/v1/policies/strict")
        .await
        .assert_error(404, None);
    assert!(service.get_policies(&etag).await.unchanged);

    // A valid one, with a word list of the file and one of the database.
    let created = service
        .put("/admin/v1/word-lists/extra", json!({"terms": ["zeta"]}))
        .await;
    assert_eq!(created.status, 201);
    let spec = json!({"audit_excerpts": true, "rules": [
        {"id": "w", "kind": "words", "direction": "output", "action": "block", "word_lists": ["banned", "extra"]},
        {"id": "ids", "kind": "resident_id", "action": "redact", "mask": "[ID]"}
    ]});
    let put = service.put("/admin/v1/policies/strict", spec.clone()).await;
    assert_eq!(put.status, 201, "{put:?}");
    assert_eq!(
        put.json["spec"]["rules"][0]["word_lists"],
        json!(["banned", "extra"])
    );
    let replaced = service.put("/admin/v1/policies/strict", spec).await;
    assert_eq!(replaced.status, 200, "{replaced:?}");
    let listing = service.get("/admin/v1/policies").await;
    assert_eq!(listing.json["default"], "baseline");
    let names: Vec<&str> = listing.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["baseline", "lenient", "strict"]);
    service.stop().await.unwrap();
}

async fn deleting_what_is_in_use_conflicts(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = config(&db);
    config.policy = file_policies();
    // The default names a policy only the database will have.
    config.policy.default = "house".into();
    let service = start_with(db, config).await;
    let rules = json!({"rules": [{"id": "w", "kind": "words", "action": "block", "word_lists": ["db-list"]}]});
    let list = service
        .put("/admin/v1/word-lists/db-list", json!({"terms": ["a"]}))
        .await;
    assert_eq!(list.status, 201);
    for name in ["house", "team"] {
        let put = service
            .put(&format!("/admin/v1/policies/{name}"), rules.clone())
            .await;
        assert_eq!(put.status, 201, "{put:?}");
    }
    let tenant = unique("assigned");
    let created = service
        .post(
            "/admin/v1/tenants",
            json!({"name": tenant, "policy": "team"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");

    service
        .delete("/admin/v1/policies/house")
        .await
        .assert_error(409, None);
    let used = service.delete("/admin/v1/policies/team").await;
    used.assert_error(409, None);
    assert!(used.text.contains(&tenant), "{used:?}");
    // The word list both use cannot go either.
    service
        .delete("/admin/v1/word-lists/db-list")
        .await
        .assert_error(409, None);
    // Nor a list a file policy in force uses, nor what only the file has.
    let banned = service
        .put("/admin/v1/word-lists/banned", json!({"terms": ["b"]}))
        .await;
    assert_eq!(banned.status, 201);
    let fell_back = service.delete("/admin/v1/word-lists/banned").await;
    assert_eq!(fell_back.status, 200, "{fell_back:?}");
    assert_eq!(fell_back.json["falls_back_to_config"], true);
    service
        .delete("/admin/v1/word-lists/file-only")
        .await
        .assert_error(409, None);
    service
        .delete("/admin/v1/policies/baseline")
        .await
        .assert_error(409, None);
    service
        .delete("/admin/v1/policies/nothing")
        .await
        .assert_error(404, None);

    // Unassigned, the policy can go; then nothing refers to the list.
    let unassigned = service
        .patch(
            &format!("/admin/v1/tenants/{tenant}"),
            json!({"policy": null}),
        )
        .await;
    assert_eq!(unassigned.status, 200, "{unassigned:?}");
    let deleted = service.delete("/admin/v1/policies/team").await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_eq!(deleted.json["deleted"], true);
    service
        .get("/admin/v1/policies/team")
        .await
        .assert_error(404, None);
    service
        .delete("/admin/v1/word-lists/db-list")
        .await
        .assert_error(409, None);
    let house = service
        .put("/admin/v1/policies/house", json!({"rules": []}))
        .await;
    assert_eq!(house.status, 200);
    assert_eq!(
        service.delete("/admin/v1/word-lists/db-list").await.status,
        200
    );

    // A database policy overriding a file one can go while in use: the
    // tenant falls back to the file's.
    let override_put = service
        .put("/admin/v1/policies/lenient", json!({"rules": []}))
        .await;
    assert_eq!(override_put.status, 201);
    let patched = service
        .patch(
            &format!("/admin/v1/tenants/{tenant}"),
            json!({"policy": "lenient"}),
        )
        .await;
    assert_eq!(patched.status, 200);
    let dropped = service.delete("/admin/v1/policies/lenient").await;
    assert_eq!(dropped.status, 200, "{dropped:?}");
    assert_eq!(dropped.json["falls_back_to_config"], true);
    let served = service.get_policies("").await;
    assert_eq!(
        policies(&served)["lenient"]["rules"][0]["id"],
        "emails",
        "{served:?}"
    );
    assert_eq!(served.tenant_policies[&tenant], "lenient");
    service.stop().await.unwrap();
}

async fn tenant_policy_round_trip(backend: Backend) {
    let service = start(backend).await;
    let put = service
        .put(
            "/admin/v1/policies/strict",
            json!({"rules": [{"id": "ids", "kind": "resident_id", "action": "block"}]}),
        )
        .await;
    assert_eq!(put.status, 201);
    let name = unique("tenant");
    let refused = service
        .post("/admin/v1/tenants", json!({"name": name, "policy": "nope"}))
        .await;
    refused.assert_error(400, Some("policy"));
    service
        .get(&format!("/admin/v1/tenants/{name}"))
        .await
        .assert_error(404, None);

    let created = service
        .post(
            "/admin/v1/tenants",
            json!({"name": name, "policy": "baseline"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.json["policy"], "baseline");
    let plain = service.tenant(&unique("plain")).await;
    assert_eq!(plain["policy"], Value::Null);
    let served = service.get_policies("").await;
    assert_eq!(served.tenant_policies.len(), 1);
    assert_eq!(served.tenant_policies[&name], "baseline");

    let patched = service
        .patch(
            &format!("/admin/v1/tenants/{name}"),
            json!({"policy": "strict"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.json["policy"], "strict");
    let read = service.get(&format!("/admin/v1/tenants/{name}")).await;
    assert_eq!(read.json["policy"], "strict");
    let after = service.get_policies(&served.etag).await;
    assert_eq!(after.tenant_policies[&name], "strict");
    let policy = service.get("/admin/v1/policies/strict").await;
    assert_eq!(policy.json["tenants"], json!([name]));

    // Unknown: refused, nothing changes. Other fields leave it alone.
    let unknown = service
        .patch(
            &format!("/admin/v1/tenants/{name}"),
            json!({"policy": "nope"}),
        )
        .await;
    unknown.assert_error(400, Some("policy"));
    let budget = service
        .patch(
            &format!("/admin/v1/tenants/{name}"),
            json!({"monthly_budget_usd": "5"}),
        )
        .await;
    assert_eq!(budget.json["policy"], "strict");
    assert!(service.get_policies(&after.etag).await.unchanged);

    // A rename moves the assignment; null returns the tenant to the default.
    let renamed = unique("renamed");
    let patched = service
        .patch(
            &format!("/admin/v1/tenants/{name}"),
            json!({"name": renamed}),
        )
        .await;
    assert_eq!(patched.status, 200);
    let moved = service.get_policies(&after.etag).await;
    assert!(!moved.unchanged);
    assert_eq!(moved.tenant_policies.keys().collect::<Vec<_>>(), [&renamed]);
    let cleared = service
        .patch(
            &format!("/admin/v1/tenants/{renamed}"),
            json!({"policy": null}),
        )
        .await;
    assert_eq!(cleared.json["policy"], Value::Null);
    assert!(service.get_policies("").await.tenant_policies.is_empty());
    service.stop().await.unwrap();
}
