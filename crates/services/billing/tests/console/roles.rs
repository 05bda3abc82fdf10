//! Every admin route against every role: the configured admin token and an
//! `admin` credential may do everything; `finance` reads usage, tenants
//! (budgets) and exports; `auditor` reads usage and the audit trails. A
//! refused request is a 403 in the OpenAI error shape, decided before the
//! request is handled (so it changes nothing).

use crate::on_both_backends;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Backend, TOKEN, start, unique};
use crate::{as_bearer, credential};

on_both_backends!(
    every_route_answers_each_role_as_the_table_says,
    a_refused_change_changes_nothing
);

const ALL: &[&str] = &["admin", "finance", "auditor"];
const ADMIN: &[&str] = &["admin"];
const BUDGETS: &[&str] = &["admin", "finance"];
const AUDIT: &[&str] = &["admin", "auditor"];

/// Written out here, independently of the server's own table.
const EXPECTED: &[(&str, &str, &[&str])] = &[
    ("GET", "/admin/v1/tenants", BUDGETS),
    ("POST", "/admin/v1/tenants", ADMIN),
    ("GET", "/admin/v1/tenants/{tenant}", BUDGETS),
    ("PATCH", "/admin/v1/tenants/{tenant}", ADMIN),
    ("POST", "/admin/v1/tenants/{tenant}/disable", ADMIN),
    ("POST", "/admin/v1/tenants/{tenant}/enable", ADMIN),
    ("GET", "/admin/v1/tenants/{tenant}/keys", ADMIN),
    ("POST", "/admin/v1/tenants/{tenant}/keys", ADMIN),
    ("GET", "/admin/v1/keys/{key}", ADMIN),
    ("PATCH", "/admin/v1/keys/{key}", ADMIN),
    ("POST", "/admin/v1/keys/{key}/revoke", ADMIN),
    ("POST", "/admin/v1/keys/{key}/rotate", ADMIN),
    ("GET", "/admin/v1/usage", ALL),
    ("GET", "/admin/v1/usage/requests/{request_id}", ALL),
    ("GET", "/admin/v1/usage/export", ALL),
    ("GET", "/admin/v1/audit", AUDIT),
    ("GET", "/admin/v1/audit/admin", AUDIT),
    ("GET", "/admin/v1/policies", ADMIN),
    ("GET", "/admin/v1/policies/{name}", ADMIN),
    ("PUT", "/admin/v1/policies/{name}", ADMIN),
    ("DELETE", "/admin/v1/policies/{name}", ADMIN),
    ("GET", "/admin/v1/word-lists", ADMIN),
    ("GET", "/admin/v1/word-lists/{name}", ADMIN),
    ("PUT", "/admin/v1/word-lists/{name}", ADMIN),
    ("DELETE", "/admin/v1/word-lists/{name}", ADMIN),
    ("POST", "/admin/v1/word-lists/{name}/terms", ADMIN),
    ("POST", "/admin/v1/word-lists/{name}/terms:remove", ADMIN),
    ("GET", "/admin/v1/admins", ADMIN),
    ("POST", "/admin/v1/admins", ADMIN),
    ("POST", "/admin/v1/admins/{credential}/revoke", ADMIN),
    ("GET", "/admin/v1/openapi.json", ALL),
];

async fn every_route_answers_each_role_as_the_table_says(backend: Backend) {
    let service = start(backend).await;
    let tenant = unique("roles");
    service.tenant(&tenant).await;
    let key = service.key(&tenant, "k").await["key"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let callers = [
        ("the admin token", TOKEN.to_owned(), "admin"),
        (
            "an admin credential",
            credential(&service, &unique("ops"), "admin").await,
            "admin",
        ),
        (
            "a finance credential",
            credential(&service, &unique("fin"), "finance").await,
            "finance",
        ),
        (
            "an auditor credential",
            credential(&service, &unique("aud"), "auditor").await,
            "auditor",
        ),
    ];
    let document = service.get("/admin/v1/openapi.json").await.json;
    check_table_is_the_documented_one(&document);

    for (method, route, allowed) in EXPECTED {
        let path = route
            .replace("{tenant}", &tenant)
            .replace("{key}", &key)
            .replace("{request_id}", "no-such-request")
            .replace("{name}", "no-such-name")
            .replace("{credential}", "no-such-credential");
        let method: Method = method.parse().unwrap();
        // Bodies an admin is refused with a 400 (or a 404 for what does
        // not exist): nothing here may change anything, whoever calls.
        let body = (method != Method::GET && method != Method::DELETE).then(|| json!({"bogus": 1}));
        for (who, secret, role) in &callers {
            let answer = as_bearer(&service, secret, method.clone(), &path, body.as_ref()).await;
            if allowed.contains(role) {
                assert!(
                    answer.status != 403 && answer.status != 401,
                    "{who} ({role}) must be let through {method} {route}: {answer:?}"
                );
            } else {
                answer.assert_error(403, None);
                let message = answer.json["error"]["message"].as_str().unwrap();
                assert!(message.contains(role), "{message}");
            }
        }
    }
    // Nothing was changed by any of it.
    let after = service.get(&format!("/admin/v1/tenants/{tenant}")).await;
    assert_eq!(after.json["status"], "active", "{after:?}");
    let keys = service
        .get(&format!("/admin/v1/tenants/{tenant}/keys"))
        .await;
    assert_eq!(keys.json["data"].as_array().unwrap().len(), 1, "{keys:?}");
    assert_eq!(keys.json["data"][0]["status"], "active");
    service.stop().await.unwrap();
}

/// The API description lists exactly these operations, each with the
/// roles it admits (`x-llmgw-roles`) and a 403 where some are refused.
fn check_table_is_the_documented_one(document: &Value) {
    let mut documented = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if let Some(operation) = item.get(method) {
                let roles: Vec<&str> = operation["x-llmgw-roles"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{method} {path} has no x-llmgw-roles"))
                    .iter()
                    .map(|role| role.as_str().unwrap())
                    .collect();
                documented.push((method.to_uppercase(), path.clone(), roles.clone()));
                assert_eq!(
                    operation["responses"].get("403").is_some(),
                    roles.len() < 3,
                    "{method} {path}"
                );
            }
        }
    }
    let mut expected: Vec<(String, String, Vec<&str>)> = EXPECTED
        .iter()
        .map(|(method, path, roles)| ((*method).to_owned(), (*path).to_owned(), roles.to_vec()))
        .collect();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);
}

async fn a_refused_change_changes_nothing(backend: Backend) {
    let service = start(backend).await;
    let finance = credential(&service, &unique("fin"), "finance").await;
    let name = unique("sneaky");
    let refused = as_bearer(
        &service,
        &finance,
        Method::POST,
        "/admin/v1/tenants",
        Some(&json!({"name": name})),
    )
    .await;
    refused.assert_error(403, None);
    assert_eq!(
        service
            .get(&format!("/admin/v1/tenants/{name}"))
            .await
            .status,
        404
    );
    // Finance reads what it may: tenants (budgets) and usage.
    let tenants = as_bearer(&service, &finance, Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(tenants.status, 200, "{tenants:?}");
    let usage = as_bearer(
        &service,
        &finance,
        Method::GET,
        "/admin/v1/usage?group_by=tenant&format=csv",
        None,
    )
    .await;
    assert_eq!(usage.status, 200, "{usage:?}");
    assert!(usage.text.starts_with("tenant,requests,"), "{}", usage.text);
    // An unknown route is a 404 to any role (after authentication).
    let unknown = as_bearer(
        &service,
        &finance,
        Method::GET,
        "/admin/v1/nothing-here",
        None,
    )
    .await;
    unknown.assert_error(404, None);
    service.stop().await.unwrap();
}
