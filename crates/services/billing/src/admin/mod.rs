//! The admin HTTP API: tenants, API keys, usage reports, the audit trails,
//! content policies, word lists and admin credentials, JSON in and out (CSV
//! for usage and audit on request), every route (unknown paths included, so
//! they cannot be probed) behind an admin credential: the configured admin
//! token, an admin credential with a role (`roles`), or the console's
//! session cookie (`session`). Served only on `admin_listen`, with the
//! console (`crate::console`) beside it.
//!
//! Every change is recorded in the admin trail (`admin_audit`) by the store,
//! in the change's own transaction, with the [`Actor`] the authentication
//! layer attaches to the request.

mod access;
mod admins;
mod audit;
mod audit_csv;
mod bodies;
mod body;
mod csv;
mod error;
mod keys;
mod openapi;
mod openapi_admins;
mod openapi_audit;
mod policies;
pub(crate) mod roles;
pub(crate) mod session;
mod tenants;
mod usage;
mod usage_csv;
mod views;
mod word_lists;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};

use crate::config::AdminToken;
use crate::console::ConsoleConfig;
use crate::metrics::Metrics;
use crate::store::{Store, Tenant};

pub use self::bodies::{AdminBody, check_admin_body};
use self::error::ApiError;

pub(crate) struct AdminState {
    pub store: Store,
    /// None: no token configured, the API answers 503.
    pub token: Option<AdminToken>,
    /// Named in the 503, so the operator knows what to set.
    pub token_env: String,
    pub metrics: Arc<Metrics>,
    pub console: ConsoleConfig,
}

type Shared = State<Arc<AdminState>>;

/// Word lists of 100k terms are a few MB of JSON; axum's 2 MB default body
/// limit stays on every other route.
const WORD_LIST_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Every route: its path and handlers. One table, so the OpenAPI test can
/// check the document against exactly what is served.
fn routes() -> Vec<(&'static str, MethodRouter<Arc<AdminState>>)> {
    let big = || DefaultBodyLimit::max(WORD_LIST_BODY_LIMIT);
    vec![
        (
            "/admin/v1/tenants",
            post(tenants::create).get(tenants::list),
        ),
        (
            "/admin/v1/tenants/{tenant}",
            get(tenants::get).patch(tenants::update),
        ),
        ("/admin/v1/tenants/{tenant}/disable", post(tenants::disable)),
        ("/admin/v1/tenants/{tenant}/enable", post(tenants::enable)),
        (
            "/admin/v1/tenants/{tenant}/keys",
            post(keys::create).get(keys::list),
        ),
        ("/admin/v1/keys/{key}", get(keys::get).patch(keys::update)),
        ("/admin/v1/keys/{key}/revoke", post(keys::revoke)),
        ("/admin/v1/keys/{key}/rotate", post(keys::rotate)),
        ("/admin/v1/usage", get(usage::report)),
        (
            "/admin/v1/usage/requests/{request_id}",
            get(usage::attempts),
        ),
        ("/admin/v1/usage/export", get(usage::export)),
        ("/admin/v1/audit", get(audit::events)),
        ("/admin/v1/audit/admin", get(audit::admin_actions)),
        ("/admin/v1/policies", get(policies::list)),
        (
            "/admin/v1/policies/{name}",
            get(policies::get)
                .put(policies::put)
                .delete(policies::delete),
        ),
        ("/admin/v1/word-lists", get(word_lists::list)),
        (
            "/admin/v1/word-lists/{name}",
            get(word_lists::get)
                .put(word_lists::put)
                .delete(word_lists::delete)
                .layer(big()),
        ),
        (
            "/admin/v1/word-lists/{name}/terms",
            post(word_lists::add).layer(big()),
        ),
        (
            "/admin/v1/word-lists/{name}/terms:remove",
            post(word_lists::remove).layer(big()),
        ),
        ("/admin/v1/admins", post(admins::create).get(admins::list)),
        ("/admin/v1/admins/{credential}/revoke", post(admins::revoke)),
        ("/admin/v1/openapi.json", get(openapi::document)),
    ]
}

pub(crate) fn router(state: AdminState) -> Router {
    let state = Arc::new(state);
    let mut api = Router::new();
    for (path, handlers) in routes() {
        api = api.route(path, handlers);
    }
    // Authentication runs after routing (so the role check knows the
    // route) and before any handler or the fallback.
    let api = api
        .fallback(|| async { ApiError::not_found("no such admin route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            access::authenticate,
        ));
    let app = if state.console.enabled {
        crate::console::router().merge(api)
    } else {
        api
    };
    // Layers run outside in: count every answer (401s included), with the
    // security headers on every one.
    app.layer(middleware::from_fn(crate::console::security_headers))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

async fn count(State(state): Shared, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics.admin_request(response.status().as_u16());
    response
}

/// The credentials of `Bearer <token>` (the scheme is case-insensitive).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| rest.trim_ascii())
}

/// The tenant named by a path segment, by id or by name.
async fn find_tenant(state: &AdminState, id_or_name: &str) -> Result<Tenant, ApiError> {
    state
        .store
        .get_tenant(id_or_name)
        .await
        .map_err(|error| ApiError::store(error, None))?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {id_or_name:?}")))
}

/// Tenant and key names end up in Redis keys (inside `{...}` hash tags),
/// metric labels and log lines: a conservative alphabet keeps them safe
/// there. The store enforces the same rule; checking here names the field.
fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "name",
            format!(
                "invalid {what} name {name:?}: 1 to 64 characters among letters, digits, \
                 '.', '_' and '-'"
            ),
        ))
    }
}

/// A name held in field `param` (a tenant's `policy`, a path's `name`):
/// policy and word-list names use the tenant alphabet too (they appear in
/// paths, audit events and metric labels).
fn check_name_in(what: &str, param: &str, name: &str) -> Result<(), ApiError> {
    check_name(what, name).map_err(|error| error.with_param(param))
}

/// Model aliases are the catalog's business; here only the shape is
/// checked: not empty, not huge, no control characters (they would forge
/// log lines).
fn check_model(model: &str) -> Result<(), ApiError> {
    let valid =
        !model.trim().is_empty() && model.len() <= 256 && !model.chars().any(char::is_control);
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "allowed_models",
            format!(
                "invalid model {model:?} in allowed_models: 1 to 256 bytes, no control characters"
            ),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use std::collections::BTreeSet;
    use std::net::SocketAddr;

    use super::*;

    /// Every (path, method) the router serves is in the OpenAPI document,
    /// and everything the document lists is served. Which methods a path
    /// serves is found by asking it: the router answers 405 to the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn openapi_document_lists_every_route() {
        let dir = std::env::temp_dir().join(format!("llmgw-openapi-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.join("db").display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let token = "openapi-test-token-0123456789";
        let app = router(AdminState {
            store,
            token: Some(AdminToken::new(token)),
            token_env: "UNSET".to_owned(),
            metrics: Arc::new(Metrics::new()),
            console: ConsoleConfig::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        let http = reqwest::Client::new();
        let methods = ["get", "post", "put", "patch", "delete"];
        let mut served = BTreeSet::new();
        for (path, _) in routes() {
            let concrete = path
                .split('/')
                .map(|segment| match segment.split_once('}') {
                    Some((_, rest)) if segment.starts_with('{') => format!("probe{rest}"),
                    _ => segment.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("/");
            for method in methods {
                let answer = http
                    .request(
                        method.to_uppercase().parse().unwrap(),
                        format!("http://{address}{concrete}"),
                    )
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap();
                if answer.status() != http::StatusCode::METHOD_NOT_ALLOWED {
                    served.insert((path.to_owned(), method.to_owned()));
                }
            }
        }
        let document = openapi::document().await.0;
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in methods {
                if item.get(method).is_some() {
                    documented.insert((path.clone(), method.to_owned()));
                }
            }
        }
        assert_eq!(
            served.difference(&documented).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "served but not documented"
        );
        assert_eq!(
            documented.difference(&served).collect::<Vec<_>>(),
            Vec::<&(String, String)>::new(),
            "documented but not served"
        );
        // Every reference in the document resolves.
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"#/components/").skip(1) {
            let path: Vec<&str> = reference.split('"').next().unwrap().split('/').collect();
            let mut node = &document["components"];
            for segment in path {
                node = &node[segment];
            }
            assert!(!node.is_null(), "dangling $ref {reference:.60}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parses_bearer_credentials() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b""), None);
    }

    #[test]
    fn names() {
        assert!(check_name("tenant", "acme-1.prod_eu").is_ok());
        assert!(check_name("tenant", &"a".repeat(64)).is_ok());
        for bad in ["", "a b", "{acme}", "é", "a\nb", &"a".repeat(65)] {
            assert!(check_name("tenant", bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn models() {
        assert!(check_model("deepseek/chat v2").is_ok());
        for bad in ["", "  ", "a\nb", &"a".repeat(257)] {
            assert!(check_model(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
