//! The admin API end to end, on Postgres and on SQLite: tenants and keys made
//! over HTTP, checked through LookupKey as the edge would.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use llmgw_proto::limits_v1::Limits;
use serde_json::{Value, json};
use support::{Backend, Service, now_ms, start, unique};

on_both_backends!(
    key_lifecycle,
    rotation_replaces_the_secret,
    tenants_are_isolated,
    tenants_are_updated_disabled_and_enabled,
    openapi_document_is_served,
    lookup_gives_effective_limits_and_budget,
);

/// LookupKey carries a key's own limits over its tenant's defaults, and
/// nothing at all when the database sets none.
async fn lookup_gives_effective_limits_and_budget(backend: Backend) {
    let service = start(backend).await;
    let tenant = unique("metered");
    let created = service
        .post(
            "/admin/v1/tenants",
            json!({"name": tenant, "monthly_budget_usd": "0.000002", "limits": {"requests_per_minute": 2}}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let created = service
        .post(
            &format!("/admin/v1/tenants/{tenant}/keys"),
            json!({"name": "own", "limits": {"requests_per_minute": 3, "tokens_per_day": 0}}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let found = service
        .lookup(created.json["secret"].as_str().unwrap())
        .await
        .unwrap()
        .expect("key found");
    assert_eq!(
        found.key_limits,
        Some(Limits {
            requests_per_minute: Some(3),
            tokens_per_day: Some(0),
            ..Limits::default()
        })
    );
    assert_eq!(
        found.tenant_limits,
        Some(Limits {
            monthly_budget_nano_usd: Some(2_000),
            ..Limits::default()
        })
    );

    let bare = unique("bare");
    service.tenant(&bare).await;
    let key = service.key(&bare, "k").await;
    let found = service
        .lookup(key["secret"].as_str().unwrap())
        .await
        .unwrap()
        .expect("key found");
    assert_eq!(found.key_limits, None);
    assert_eq!(found.tenant_limits, None);
}

/// Key ids in a `{"data": [...]}` listing.
fn ids(listing: &Value) -> Vec<String> {
    listing["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Neither the secret nor its digest may appear in a listing.
fn assert_no_secrets(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "a listing contains a secret: {text}"
        );
        let digest: String = llmgw_apikey::digest(secret)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert!(
            !text.contains(&digest),
            "a listing contains a digest: {text}"
        );
    }
    assert!(!text.contains("\"secret\""), "{text}");
    assert!(!text.contains("digest"), "{text}");
}

async fn key_lifecycle(backend: Backend) {
    let service = start(backend).await;
    let tenant_name = unique("acme");
    let created = service
        .post(
            "/admin/v1/tenants",
            json!({
                "name": tenant_name,
                "monthly_budget_usd": "12.50",
                "limits": {"requests_per_minute": 60, "concurrent": 5},
            }),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let tenant = created.json;
    assert_eq!(tenant["name"], tenant_name);
    assert_eq!(tenant["status"], "active");
    assert_eq!(tenant["monthly_budget_usd"], "12.5");
    assert_eq!(tenant["limits"]["requests_per_minute"], 60);
    assert_eq!(tenant["limits"]["concurrent"], 5);
    assert!(tenant["created_at"].as_i64().unwrap() > 0);

    let expires_at = now_ms() + 3_600_000;
    let created = service
        .post(
            &format!("/admin/v1/tenants/{tenant_name}/keys"),
            json!({"name": "ci", "allowed_models": ["demo", "gpt-4o"], "expires_at": expires_at}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let key = &created.json["key"];
    let secret = created.json["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-llmgw-"), "{secret}");
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));
    assert!(secret.len() > key["prefix"].as_str().unwrap().len() + 8);
    assert_eq!(key["tenant_id"], tenant["id"]);
    assert_eq!(key["status"], "active");
    assert_eq!(key["expires_at"], expires_at);
    assert_eq!(key["revoked_at"], Value::Null);
    let key_id = key["id"].as_str().unwrap().to_owned();

    let found = service.lookup(&secret).await.unwrap().expect("key found");
    assert_eq!(found.key_id, key_id);
    assert_eq!(found.name, "ci");
    assert_eq!(found.tenant, tenant_name);
    assert_eq!(found.allowed_models, ["demo", "gpt-4o"]);
    assert_eq!(found.expires_at_unix_ms, u64::try_from(expires_at).unwrap());
    // No limits of its own: its tenant's defaults for its keys.
    assert_eq!(
        found.key_limits,
        Some(Limits {
            requests_per_minute: Some(60),
            concurrent: Some(5),
            ..Limits::default()
        })
    );
    assert_eq!(
        found.tenant_limits,
        Some(Limits {
            monthly_budget_nano_usd: Some(12_500_000_000),
            ..Limits::default()
        })
    );

    // Listed by name and by id, never with the secret.
    for tenant_ref in [tenant_name.as_str(), tenant["id"].as_str().unwrap()] {
        let listing = service
            .get(&format!("/admin/v1/tenants/{tenant_ref}/keys"))
            .await;
        assert_eq!(listing.status, 200, "{listing:?}");
        assert_eq!(ids(&listing.json), std::slice::from_ref(&key_id));
        assert_no_secrets(&listing.text, &[&secret]);
    }
    let read = service.get(&format!("/admin/v1/keys/{key_id}")).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_no_secrets(&read.text, &[&secret]);

    let revoked = service
        .raw(
            reqwest::Method::POST,
            &format!("/admin/v1/keys/{key_id}/revoke"),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.json["status"], "revoked");
    assert!(revoked.json["revoked_at"].as_i64().unwrap() > 0);
    assert_eq!(service.lookup(&secret).await.unwrap(), None);

    // An unknown key is simply not found.
    assert_eq!(
        service.lookup("sk-llmgw-not-a-real-key").await.unwrap(),
        None
    );
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("llmgw_billing_lookups_total{result=\"found\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmgw_billing_lookups_total{result=\"not_found\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmgw_billing_admin_requests_total{status=\"201\"} 2"),
        "{metrics}"
    );
    service.stop().await.unwrap();
}

async fn rotation_replaces_the_secret(backend: Backend) {
    let service = start(backend).await;
    let tenant = unique("rotating");
    service.tenant(&tenant).await;
    let old = service.key(&tenant, "web").await;
    let old_id = old["key"]["id"].as_str().unwrap();
    let old_secret = old["secret"].as_str().unwrap();
    assert!(service.lookup(old_secret).await.unwrap().is_some());

    let rotated = service
        .raw(
            reqwest::Method::POST,
            &format!("/admin/v1/keys/{old_id}/rotate"),
            Some("{}"),
        )
        .await;
    assert_eq!(rotated.status, 201, "{rotated:?}");
    let new_id = rotated.json["key"]["id"].as_str().unwrap();
    let new_secret = rotated.json["secret"].as_str().unwrap();
    assert_ne!(new_id, old_id);
    assert_ne!(new_secret, old_secret);
    assert_eq!(rotated.json["key"]["name"], "web");
    assert_eq!(rotated.json["key"]["status"], "active");

    assert_eq!(service.lookup(old_secret).await.unwrap(), None);
    let found = service.lookup(new_secret).await.unwrap().expect("new key");
    assert_eq!(found.key_id, new_id);
    assert_eq!(found.tenant, tenant);
    let old_now = service.get(&format!("/admin/v1/keys/{old_id}")).await;
    assert_eq!(old_now.json["status"], "revoked", "{old_now:?}");

    let listing = service
        .get(&format!("/admin/v1/tenants/{tenant}/keys"))
        .await;
    let mut listed = ids(&listing.json);
    listed.sort();
    let mut expected = vec![old_id.to_owned(), new_id.to_owned()];
    expected.sort();
    assert_eq!(listed, expected);
    assert_no_secrets(&listing.text, &[old_secret, new_secret]);

    // A revoked key cannot be rotated again; the new one stays the only one.
    let again = service
        .raw(
            reqwest::Method::POST,
            &format!("/admin/v1/keys/{old_id}/rotate"),
            None,
        )
        .await;
    assert!((400..500).contains(&again.status), "{again:?}");
    let listing = service
        .get(&format!("/admin/v1/tenants/{tenant}/keys"))
        .await;
    assert_eq!(ids(&listing.json).len(), 2);
    service.stop().await.unwrap();
}

async fn tenants_are_isolated(backend: Backend) {
    let service = start(backend).await;
    let (a, b) = (unique("tenant-a"), unique("tenant-b"));
    service.tenant(&a).await;
    let b_json = service.tenant(&b).await;
    let a1 = service.key(&a, "one").await;
    let a2 = service.key(&a, "two").await;
    // The same key name under another tenant is fine.
    let b1 = service.key(&b, "one").await;

    let listing_b = service
        .get(&format!(
            "/admin/v1/tenants/{}/keys",
            b_json["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        ids(&listing_b.json),
        [b1["key"]["id"].as_str().unwrap().to_owned()]
    );
    assert_no_secrets(
        &listing_b.text,
        &[
            a1["secret"].as_str().unwrap(),
            a2["secret"].as_str().unwrap(),
            b1["secret"].as_str().unwrap(),
        ],
    );
    let mut listed_a = ids(&service
        .get(&format!("/admin/v1/tenants/{a}/keys"))
        .await
        .json);
    listed_a.sort();
    let mut expected = vec![
        a1["key"]["id"].as_str().unwrap().to_owned(),
        a2["key"]["id"].as_str().unwrap().to_owned(),
    ];
    expected.sort();
    assert_eq!(listed_a, expected);

    let found = service
        .lookup(b1["secret"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.tenant, b);
    let found = service
        .lookup(a1["secret"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.tenant, a);
    service.stop().await.unwrap();
}

async fn tenants_are_updated_disabled_and_enabled(backend: Backend) {
    let service = start(backend).await;
    let name = unique("growing");
    let tenant = service.tenant(&name).await;
    let id = tenant["id"].as_str().unwrap();
    assert_eq!(tenant["monthly_budget_usd"], Value::Null);
    let key = service.key(&name, "k").await;
    let secret = key["secret"].as_str().unwrap();

    let by_id = service.get(&format!("/admin/v1/tenants/{id}")).await;
    let by_name = service.get(&format!("/admin/v1/tenants/{name}")).await;
    assert_eq!(by_id.status, 200, "{by_id:?}");
    assert_eq!(by_id.json, by_name.json);

    let patched = service
        .patch(
            &format!("/admin/v1/tenants/{name}"),
            json!({"monthly_budget_usd": "3", "limits": {"tokens_per_day": 1000000}}),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.json["monthly_budget_usd"], "3");
    assert_eq!(patched.json["limits"]["tokens_per_day"], 1_000_000);
    assert_eq!(patched.json["name"], name);

    // Absent fields stay; null clears.
    let renamed = unique("grown");
    let patched = service
        .patch(
            &format!("/admin/v1/tenants/{id}"),
            json!({"name": renamed, "monthly_budget_usd": null}),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.json["monthly_budget_usd"], Value::Null);
    assert_eq!(patched.json["limits"]["tokens_per_day"], 1_000_000);
    let patched = service
        .patch(&format!("/admin/v1/tenants/{id}"), json!({"limits": null}))
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.json["limits"]["tokens_per_day"], Value::Null);
    assert_eq!(
        service
            .get(&format!("/admin/v1/tenants/{name}"))
            .await
            .status,
        404
    );
    assert_eq!(
        service
            .get(&format!("/admin/v1/tenants/{renamed}"))
            .await
            .json["id"],
        id
    );
    assert_eq!(
        service.lookup(secret).await.unwrap().unwrap().tenant,
        renamed
    );

    let disabled = service
        .raw(
            reqwest::Method::POST,
            &format!("/admin/v1/tenants/{renamed}/disable"),
            None,
        )
        .await;
    assert_eq!(disabled.status, 200, "{disabled:?}");
    assert_eq!(disabled.json["status"], "disabled");
    assert_eq!(service.lookup(secret).await.unwrap(), None);
    let refused = service
        .post(
            &format!("/admin/v1/tenants/{renamed}/keys"),
            json!({"name": "more"}),
        )
        .await;
    assert!((400..500).contains(&refused.status), "{refused:?}");

    let enabled = service
        .raw(
            reqwest::Method::POST,
            &format!("/admin/v1/tenants/{id}/enable"),
            Some("{}"),
        )
        .await;
    assert_eq!(enabled.status, 200, "{enabled:?}");
    assert_eq!(enabled.json["status"], "active");
    assert!(service.lookup(secret).await.unwrap().is_some());

    let listing = service.get("/admin/v1/tenants").await;
    assert_eq!(ids(&listing.json), [id.to_owned()]);
    service.stop().await.unwrap();
}

async fn openapi_document_is_served(backend: Backend) {
    let service: Service = start(backend).await;
    let document = service.get("/admin/v1/openapi.json").await;
    assert_eq!(document.status, 200, "{document:?}");
    assert!(document.json["openapi"].as_str().unwrap().starts_with("3."));
    assert!(document.json["paths"]["/admin/v1/keys/{key}/rotate"].is_object());
    // The error shape, with the codes the answers carry.
    let tenants = &document.json["paths"]["/admin/v1/tenants"]["post"]["responses"];
    assert_eq!(tenants["409"]["$ref"], "#/components/responses/Error");
    let error = &document.json["components"]["schemas"]["Error"]["properties"]["error"];
    assert_eq!(
        error["required"],
        serde_json::json!(["message", "type", "param", "code"])
    );
    let codes = error["properties"]["code"]["enum"].as_array().unwrap();
    for code in ["conflict", "invalid_admin_token", "service_unavailable"] {
        assert!(codes.iter().any(|c| c == code), "{code} in {codes:?}");
    }
    assert!(codes.contains(&serde_json::Value::Null), "{codes:?}");
    service.stop().await.unwrap();
}
