//! The admin API refusing things, on Postgres and on SQLite: bad input on
//! every route (400 with the field in `param`, nothing written), conflicts
//! (409, nothing half-written), unknown ids (404) and the admin token (401).
#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use reqwest::Method;
use serde_json::json;
use support::{Backend, TOKEN, now_ms, start, unique};

on_both_backends!(
    tenant_input_is_validated,
    tenant_updates_are_validated,
    key_input_is_validated,
    bodyless_routes_refuse_bodies,
    unknown_things_are_404,
    admin_token_is_required,
);

/// Bodies that must all be refused with 400 and the given `param`.
async fn refused(
    service: &support::Service,
    method: Method,
    path: &str,
    cases: &[(&str, Option<&str>)],
) {
    for (body, param) in cases {
        let answer = service.raw(method.clone(), path, Some(body)).await;
        assert_eq!(answer.status, 400, "{method} {path} {body}: {answer:?}");
        assert_eq!(answer.param(), *param, "{method} {path} {body}: {answer:?}");
        assert_eq!(answer.json["error"]["type"], "invalid_request_error");
    }
}

async fn tenant_input_is_validated(backend: Backend) {
    let service = start(backend).await;
    let existing = unique("existing");
    service.tenant(&existing).await;
    let before = service.get("/admin/v1/tenants").await.json;

    let name = unique("fresh");
    let with_name = |rest: &str| format!(r#"{{"name":"{name}",{rest}}}"#);
    let cases: Vec<(String, Option<&str>)> = vec![
        (r#"{"name":"#.to_owned(), None),
        ("not json".to_owned(), None),
        ("".to_owned(), None),
        ("[]".to_owned(), None),
        (r#""acme""#.to_owned(), None),
        ("{}".to_owned(), Some("name")),
        (r#"{"name":null}"#.to_owned(), Some("name")),
        (r#"{"name":42}"#.to_owned(), Some("name")),
        (r#"{"name":"has space"}"#.to_owned(), Some("name")),
        (r#"{"name":""}"#.to_owned(), Some("name")),
        (format!(r#"{{"name":"{}"}}"#, "a".repeat(65)), Some("name")),
        (with_name(r#""colour":"red""#), Some("colour")),
        (
            with_name(r#""monthly_budget_usd":"-1""#),
            Some("monthly_budget_usd"),
        ),
        (
            with_name(r#""monthly_budget_usd":"abc""#),
            Some("monthly_budget_usd"),
        ),
        (
            with_name(r#""monthly_budget_usd":"1.0000000001""#),
            Some("monthly_budget_usd"),
        ),
        (
            with_name(r#""monthly_budget_usd":"1e3""#),
            Some("monthly_budget_usd"),
        ),
        (
            with_name(r#""monthly_budget_usd":"99999999999""#),
            Some("monthly_budget_usd"),
        ),
        (
            with_name(r#""monthly_budget_usd":12.5"#),
            Some("monthly_budget_usd"),
        ),
        (
            with_name(r#""monthly_budget_usd":-1"#),
            Some("monthly_budget_usd"),
        ),
        (
            with_name(r#""limits":{"requests_per_minute":-1}"#),
            Some("limits.requests_per_minute"),
        ),
        (
            with_name(r#""limits":{"concurrent":1.5}"#),
            Some("limits.concurrent"),
        ),
        (
            with_name(r#""limits":{"tokens_per_day":"100"}"#),
            Some("limits.tokens_per_day"),
        ),
        (
            with_name(r#""limits":{"tokens_per_minute":18446744073709551615}"#),
            Some("limits.tokens_per_minute"),
        ),
        (with_name(r#""limits":{"rpm":1}"#), Some("limits.rpm")),
        (with_name(r#""limits":[1]"#), Some("limits")),
    ];
    let cases: Vec<(&str, Option<&str>)> = cases
        .iter()
        .map(|(body, param)| (body.as_str(), *param))
        .collect();
    refused(&service, Method::POST, "/admin/v1/tenants", &cases).await;

    let duplicate = service
        .post(
            "/admin/v1/tenants",
            json!({"name": existing, "monthly_budget_usd": "5"}),
        )
        .await;
    duplicate.assert_error(409, Some("name"));
    // Nothing was written by any of it.
    assert_eq!(service.get("/admin/v1/tenants").await.json, before);
    service.stop().await.unwrap();
}

async fn tenant_updates_are_validated(backend: Backend) {
    let service = start(backend).await;
    let (name, other) = (unique("patched"), unique("other"));
    service.tenant(&other).await;
    let created = service
        .post(
            "/admin/v1/tenants",
            json!({"name": name, "monthly_budget_usd": "7.25", "limits": {"concurrent": 2}}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let path = format!("/admin/v1/tenants/{name}");
    refused(
        &service,
        Method::PATCH,
        &path,
        &[
            (r#"{"name":"#, None),
            ("[1]", None),
            (r#"{"status":"disabled"}"#, Some("status")),
            (r#"{"name":"no spaces allowed"}"#, Some("name")),
            (r#"{"name":null}"#, Some("name")),
            (
                r#"{"monthly_budget_usd":"-0.5"}"#,
                Some("monthly_budget_usd"),
            ),
            (
                r#"{"monthly_budget_usd":"lots"}"#,
                Some("monthly_budget_usd"),
            ),
            (r#"{"monthly_budget_usd":3}"#, Some("monthly_budget_usd")),
            (r#"{"limits":{"concurrent":-2}}"#, Some("limits.concurrent")),
            (
                r#"{"limits":{"concurrency":2}}"#,
                Some("limits.concurrency"),
            ),
            // One bad field spoils the whole update.
            (
                r#"{"name":"fine","limits":{"concurrent":-2}}"#,
                Some("limits.concurrent"),
            ),
        ],
    )
    .await;
    let conflict = service.patch(&path, json!({"name": other})).await;
    conflict.assert_error(409, Some("name"));
    // Unchanged by all of it.
    assert_eq!(service.get(&path).await.json, created.json);
    service.stop().await.unwrap();
}

async fn key_input_is_validated(backend: Backend) {
    let service = start(backend).await;
    let tenant = unique("keyed");
    service.tenant(&tenant).await;
    let existing = service.key(&tenant, "taken").await;
    let path = format!("/admin/v1/tenants/{tenant}/keys");
    let before = service.get(&path).await.json;
    let past = now_ms() - 1_000;
    let seconds_not_ms = now_ms() / 1000 + 3600;
    let bodies = [
        (r#"{"name":"#.to_owned(), None),
        ("null".to_owned(), None),
        ("{}".to_owned(), Some("name")),
        (r#"{"name":"bad name!"}"#.to_owned(), Some("name")),
        (
            r#"{"name":"k","scopes":["all"]}"#.to_owned(),
            Some("scopes"),
        ),
        (
            r#"{"name":"k","allowed_models":"demo"}"#.to_owned(),
            Some("allowed_models"),
        ),
        (
            r#"{"name":"k","allowed_models":[1]}"#.to_owned(),
            Some("allowed_models"),
        ),
        (
            r#"{"name":"k","allowed_models":[""]}"#.to_owned(),
            Some("allowed_models"),
        ),
        (
            r#"{"name":"k","limits":{"requests_per_minute":-5}}"#.to_owned(),
            Some("limits.requests_per_minute"),
        ),
        (
            r#"{"name":"k","expires_at":"tomorrow"}"#.to_owned(),
            Some("expires_at"),
        ),
        (
            format!(r#"{{"name":"k","expires_at":{past}}}"#),
            Some("expires_at"),
        ),
        (
            format!(r#"{{"name":"k","expires_at":{seconds_not_ms}}}"#),
            Some("expires_at"),
        ),
        (
            r#"{"name":"k","expires_at":-1}"#.to_owned(),
            Some("expires_at"),
        ),
    ];
    let cases: Vec<(&str, Option<&str>)> = bodies
        .iter()
        .map(|(body, param)| (body.as_str(), *param))
        .collect();
    refused(&service, Method::POST, &path, &cases).await;
    let duplicate = service.post(&path, json!({"name": "taken"})).await;
    duplicate.assert_error(409, Some("name"));

    let after = service.get(&path).await;
    assert_eq!(after.json, before);
    assert!(!after.text.contains(existing["secret"].as_str().unwrap()));
    service.stop().await.unwrap();
}

async fn bodyless_routes_refuse_bodies(backend: Backend) {
    let service = start(backend).await;
    let tenant = unique("quiet");
    service.tenant(&tenant).await;
    let key = service.key(&tenant, "k").await;
    let key_id = key["key"]["id"].as_str().unwrap();
    for path in [
        format!("/admin/v1/tenants/{tenant}/disable"),
        format!("/admin/v1/tenants/{tenant}/enable"),
        format!("/admin/v1/keys/{key_id}/revoke"),
        format!("/admin/v1/keys/{key_id}/rotate"),
    ] {
        refused(
            &service,
            Method::POST,
            &path,
            &[("{", None), (r#"{"reason":"leaked"}"#, Some("reason"))],
        )
        .await;
    }
    // None of that took effect.
    assert_eq!(
        service.get(&format!("/admin/v1/keys/{key_id}")).await.json["status"],
        "active"
    );
    assert!(
        service
            .lookup(key["secret"].as_str().unwrap())
            .await
            .unwrap()
            .is_some()
    );
    service.stop().await.unwrap();
}

async fn unknown_things_are_404(backend: Backend) {
    let service = start(backend).await;
    let missing = unique("missing");
    for (method, path, body) in [
        (Method::GET, format!("/admin/v1/tenants/{missing}"), None),
        (
            Method::PATCH,
            format!("/admin/v1/tenants/{missing}"),
            Some(r#"{"monthly_budget_usd":"1"}"#),
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{missing}/disable"),
            None,
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{missing}/enable"),
            None,
        ),
        (
            Method::GET,
            format!("/admin/v1/tenants/{missing}/keys"),
            None,
        ),
        (
            Method::POST,
            format!("/admin/v1/tenants/{missing}/keys"),
            Some(r#"{"name":"k"}"#),
        ),
        (Method::GET, format!("/admin/v1/keys/{missing}"), None),
        (
            Method::POST,
            format!("/admin/v1/keys/{missing}/revoke"),
            None,
        ),
        (
            Method::POST,
            format!("/admin/v1/keys/{missing}/rotate"),
            None,
        ),
        (Method::GET, "/admin/v1/nothing-here".to_owned(), None),
        (Method::GET, "/".to_owned(), None),
    ] {
        let answer = service.raw(method.clone(), &path, body).await;
        answer.assert_error(404, None);
    }
    let wrong_method = service.raw(Method::DELETE, "/admin/v1/tenants", None).await;
    wrong_method.assert_error(405, None);
    assert!(
        service.get("/admin/v1/tenants").await.json["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    service.stop().await.unwrap();
}

async fn admin_token_is_required(backend: Backend) {
    let service = start(backend).await;
    let url = service.url("/admin/v1/tenants");
    let attempts = [
        service.http.get(&url),
        service.http.get(&url).bearer_auth("wrong-token-0123456789"),
        service.http.get(&url).bearer_auth(format!("{TOKEN}x")),
        service
            .http
            .get(&url)
            .bearer_auth(&TOKEN[..TOKEN.len() - 1]),
        service.http.get(&url).bearer_auth(""),
        service.http.get(&url).basic_auth("admin", Some(TOKEN)),
        service.http.get(&url).header("authorization", TOKEN),
        // Unknown routes and bad bodies are not revealed without the token.
        service.http.get(service.url("/admin/v1/secret-route")),
        service
            .http
            .post(&url)
            .body(format!(r#"{{"name":"{}"}}"#, unique("sneaky"))),
    ];
    for attempt in attempts {
        let answer = support::answer(attempt.send().await.unwrap()).await;
        answer.assert_error(401, None);
        assert_eq!(answer.headers["www-authenticate"], "Bearer");
    }
    // The scheme is case-insensitive, the token is not.
    let answer = support::answer(
        service
            .http
            .get(&url)
            .header("authorization", format!("bearer {TOKEN}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json, json!({"data": []}));
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("llmgw_billing_admin_requests_total{status=\"401\"} 9"),
        "{metrics}"
    );
    service.stop().await.unwrap();
}
