//! Roles, admin credentials and the console's sessions through the real
//! service, each test on a fresh Postgres database and a fresh SQLite
//! file: every admin route against every role, credentials created, used
//! and revoked, and the session cookie's flags, CSRF protection, expiry
//! and sign-out. (The console in a real browser: crates/llmgw/tests/console.)
#![allow(clippy::unwrap_used)] // panicking is how tests fail

#[path = "../support/mod.rs"]
mod support;

mod credentials;
mod roles;
mod sessions;

use reqwest::Method;
use serde_json::Value;
use support::{Answer, Service};

/// Creates an admin credential with the admin token; gives its text.
pub async fn credential(service: &Service, name: &str, role: &str) -> String {
    let created = service
        .post(
            "/admin/v1/admins",
            serde_json::json!({"name": name, "role": role}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    created.json["secret"].as_str().unwrap().to_owned()
}

/// A request with `credential` as the bearer token.
pub async fn as_bearer(
    service: &Service,
    credential: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut request = service
        .http
        .request(method, service.url(path))
        .bearer_auth(credential);
    if let Some(body) = body {
        request = request.json(body);
    }
    support::answer(request.send().await.unwrap()).await
}
