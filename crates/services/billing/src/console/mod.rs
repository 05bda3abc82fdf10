//! The console: a web page for finance and administrators, served by the
//! admin listener under `/ui/` (never on the gRPC port). Its files are
//! embedded in the binary (`assets`), so `cargo build` alone produces it
//! and it needs no network at run time. The page reads the same admin API
//! the CLI uses, with a session cookie instead of a bearer token (see
//! `admin::session`); there is no second query path.
//!
//! ```yaml
//! billing:
//!   console:
//!     enabled: true
//!     session_ttl_secs: 28800    # a session ends 8 h after sign-in
//!     session_idle_secs: 1800    # or after 30 min without a request
//!     secure_cookies: false      # true when the admin listener is reached over TLS
//! ```

mod assets;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Redirect, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;

use crate::admin::AdminState;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console (and accept its session cookie on the admin API).
    pub enabled: bool,
    /// A session ends this long after sign-in, however active.
    pub session_ttl_secs: u64,
    /// ... or this long after its last request.
    pub session_idle_secs: u64,
    /// Mark the cookie `Secure` (and name it `__Host-...`): set when the
    /// admin listener is reached through TLS (a proxy terminating it).
    /// Browsers then never send it over plain HTTP.
    pub secure_cookies: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            session_ttl_secs: 8 * 3600,
            session_idle_secs: 30 * 60,
            secure_cookies: false,
        }
    }
}

impl ConsoleConfig {
    /// Problems, each naming its setting relative to `billing:`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // A year: beyond that a "session" is a second credential.
        const MAX_SECS: u64 = 366 * 24 * 3600;
        for (name, value) in [
            ("session_ttl_secs", self.session_ttl_secs),
            ("session_idle_secs", self.session_idle_secs),
        ] {
            if value == 0 || value > MAX_SECS {
                problems.push(format!(
                    "console.{name}: {value} is out of range (1 to {MAX_SECS})"
                ));
            }
        }
        problems
    }
}

/// The console's routes: the page, its files, and the session routes.
pub(crate) fn router() -> Router<Arc<AdminState>> {
    use crate::admin::session;
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/assets/{*file}", get(asset))
        .route(
            "/ui/session",
            get(session::current)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
}

async fn index() -> Response {
    assets::response(assets::INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match assets::find(&file) {
        Some(asset) => assets::response(asset),
        None => (StatusCode::NOT_FOUND, "no such console file").into_response(),
    }
}

/// The Content-Security-Policy of every answer of the admin listener: only
/// this origin's scripts, styles and API, no inline script or style, no
/// framing, no plugins, no form posts elsewhere.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Security headers on every answer of the admin listener (the API's JSON
/// and CSV too: a browser might be pointed at them directly).
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    for (name, value) in [
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
