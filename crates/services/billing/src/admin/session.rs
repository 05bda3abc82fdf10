//! Console sessions: sign in with a credential (`POST /ui/session`), read
//! the session back after a reload (`GET`), sign out (`DELETE`).
//!
//! The cookie holds 256 random bits; the database keeps their SHA-256. It
//! is `HttpOnly` (page scripts never see it), `SameSite=Strict` (no other
//! site's page can make the browser send it), and `Secure` with the
//! `__Host-` name prefix when `console.secure_cookies` says the listener is
//! reached over TLS. Every change made with the cookie must also carry the
//! session's CSRF token in `X-CSRF-Token` (a synchronizer token: the page
//! gets it in the JSON of these routes, which other origins cannot read),
//! and, when the browser sends `Origin`, come from this host.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{AppendHeaders, IntoResponse as _, Response};
use http::{HeaderMap, StatusCode, header};
use rand::TryRngCore as _;
use serde::{Deserialize, Serialize};

use super::AdminState;
use super::access::{self, Principal, Refusal};
use super::body::{self, Field, typed};
use super::error::ApiError;
use crate::console::ConsoleConfig;
use crate::store::{Actor, NewSession, Role, Session};

const COOKIE: &str = "llmgw_console";
/// With `Secure`: the browser then also refuses the cookie from a page
/// that is not HTTPS, or one that sets a Domain or a narrower Path.
const SECURE_COOKIE: &str = "__Host-llmgw_console";
const CSRF_HEADER: &str = "x-csrf-token";
/// Hex digits of a session token (256 bits).
const TOKEN_HEX: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    credential: String,
}

const SIGN_IN_FIELDS: &[Field] = &[Field {
    name: "credential",
    check: typed::<String>,
    required: true,
}];

/// What the page learns about its session. Never the cookie's token.
#[derive(Serialize)]
struct SessionView {
    actor: String,
    role: Role,
    csrf_token: String,
    expires_at: i64,
    idle_timeout_secs: u64,
}

impl SessionView {
    fn of(session: &Session, console: &ConsoleConfig) -> SessionView {
        SessionView {
            actor: session.actor.clone(),
            role: session.role,
            csrf_token: session.csrf_token.clone(),
            expires_at: session.expires_at,
            idle_timeout_secs: console.session_idle_secs,
        }
    }
}

/// `POST /ui/session {"credential": "..."}`: the configured admin token or
/// an admin credential; answers the session and sets the cookie.
pub async fn sign_in(State(state): State<Arc<AdminState>>, request: Request) -> Response {
    match sign_in_inner(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn sign_in_inner(state: &AdminState, request: Request) -> Result<Response, ApiError> {
    // JSON only: a cross-site HTML form cannot send it without a CORS
    // preflight, which this listener never grants.
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !json {
        return Err(ApiError::invalid(
            "sign in with a JSON body: Content-Type: application/json",
        ));
    }
    let address = access::peer(&request);
    let body = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|_| ApiError::invalid("the sign-in body is too large"))?;
    let SignIn { credential } = body::parse(&body, SIGN_IN_FIELDS)?;
    let Some((actor, role, credential_id)) =
        access::verify(state, credential.trim().as_bytes()).await?
    else {
        tracing::warn!(client = %address, "console sign-in with an unknown credential");
        return Err(access::unauthorized(state, "unknown or revoked credential"));
    };
    let token = random_hex();
    let new = NewSession {
        digest: llmgw_apikey::digest(&token),
        credential_id,
        actor,
        role,
        csrf_token: random_hex(),
        client_address: address,
        ttl_ms: i64::try_from(state.console.session_ttl_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX),
    };
    let session = state
        .store
        .create_session(&new)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    tracing::info!(actor = %session.actor, role = role.as_str(), client = %new.client_address, "console sign-in");
    let cookie = set_cookie(&state.console, &token);
    Ok((
        StatusCode::CREATED,
        AppendHeaders([(header::SET_COOKIE, cookie)]),
        Json(SessionView::of(&session, &state.console)),
    )
        .into_response())
}

/// `GET /ui/session`: the current session (the page's CSRF token after a
/// reload), or 401.
pub async fn current(State(state): State<Arc<AdminState>>, request: Request) -> Response {
    let address = access::peer(&request);
    match session_of(&state, request.headers(), address).await {
        Ok((session, _)) => Json(SessionView::of(&session, &state.console)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

/// `DELETE /ui/session` (with the CSRF token): signs out.
pub async fn sign_out(State(state): State<Arc<AdminState>>, request: Request) -> Response {
    let address = access::peer(&request);
    let (session, token) = match session_of(&state, request.headers(), address).await {
        Ok(found) => found,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(error) = check_csrf(&session, request.headers()) {
        return error.into_response();
    }
    if let Err(error) = state
        .store
        .delete_session(&llmgw_apikey::digest(&token))
        .await
    {
        return ApiError::store(error, None).into_response();
    }
    tracing::info!(actor = %session.actor, "console sign-out");
    (
        StatusCode::NO_CONTENT,
        AppendHeaders([(header::SET_COOKIE, clear_cookie(&state.console))]),
    )
        .into_response()
}

/// The live session of the request's cookie, and the cookie's token.
async fn session_of(
    state: &AdminState,
    headers: &HeaderMap,
    address: String,
) -> Result<(Session, String), Refusal> {
    let Some(token) = cookie_token(headers, &state.console) else {
        return Err(ApiError::unauthorized("not signed in").into());
    };
    let principal = principal(state, &token, address).await?;
    match principal.session {
        Some(session) => Ok((session, token)),
        None => Err(ApiError::unauthorized("not signed in").into()),
    }
}

/// The principal of a session cookie's token. A session that expired, was
/// signed out, or whose credential was revoked (or whose admin token was
/// replaced) is refused and its cookie cleared.
pub(crate) async fn principal(
    state: &AdminState,
    token: &str,
    address: String,
) -> Result<Principal, Refusal> {
    let idle_ms =
        i64::try_from(state.console.session_idle_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let session = state
        .store
        .session(&llmgw_apikey::digest(token), idle_ms)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let token_still_valid = |session: &Session| {
        session.credential_id.is_some()
            || state
                .token
                .as_ref()
                .is_some_and(|admin| admin.id() == session.actor)
    };
    match session {
        Some(session) if token_still_valid(&session) => Ok(Principal {
            actor: Actor {
                id: session.actor.clone(),
                address,
            },
            role: session.role,
            session: Some(session),
        }),
        _ => Err(access::refuse_session(
            state,
            ApiError::unauthorized("the console session expired or was signed out: sign in again"),
        )),
    }
}

/// The session token of the request's cookie, if it has one of the right
/// shape.
pub(crate) fn cookie_token(headers: &HeaderMap, console: &ConsoleConfig) -> Option<String> {
    let name = cookie_name(console);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| value.len() == TOKEN_HEX && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A change made with the cookie: the session's CSRF token in the header,
/// compared in constant time, and, if the browser says where the request
/// comes from, this host.
pub(crate) fn check_csrf(session: &Session, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(CSRF_HEADER)
        .map(http::HeaderValue::as_bytes)
        .unwrap_or_default();
    let expected = session.csrf_token.as_bytes();
    // Digests compared in constant time: the comparison reveals nothing
    // about how much of a guess was right.
    if !crate::config::constant_time_eq(
        &crate::config::sha256(presented),
        &crate::config::sha256(expected),
    ) {
        return Err(ApiError::forbidden(
            "missing or wrong CSRF token: the console sends X-CSRF-Token with every change",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).map(http::HeaderValue::as_bytes);
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|origin| origin.split_once("://"))
            .map(|(_, host)| host.as_bytes());
        if origin_host.is_none() || origin_host != host {
            return Err(ApiError::forbidden(
                "cross-origin change refused: the Origin is not this console",
            ));
        }
    }
    Ok(())
}

fn cookie_name(console: &ConsoleConfig) -> &'static str {
    if console.secure_cookies {
        SECURE_COOKIE
    } else {
        COOKIE
    }
}

fn set_cookie(console: &ConsoleConfig, token: &str) -> String {
    let secure = if console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        cookie_name(console),
        console.session_ttl_secs
    )
}

pub(crate) fn clear_cookie(console: &ConsoleConfig) -> String {
    let secure = if console.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
        cookie_name(console)
    )
}

/// 256 bits from the operating system, as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // As for API keys: no weaker source is acceptable, so failing loudly
    // (on a host that cannot give randomness) is the only safe answer.
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng.unwrap_err(), &mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    fn console(secure: bool) -> ConsoleConfig {
        ConsoleConfig {
            secure_cookies: secure,
            ..ConsoleConfig::default()
        }
    }

    #[test]
    fn cookies_carry_the_flags() {
        let plain = set_cookie(&console(false), "ab");
        assert_eq!(
            plain,
            "llmgw_console=ab; Path=/; HttpOnly; SameSite=Strict; Max-Age=28800"
        );
        let secure = set_cookie(&console(true), "ab");
        assert!(secure.starts_with("__Host-llmgw_console=ab; Path=/; HttpOnly; SameSite=Strict"));
        assert!(secure.ends_with("; Secure"));
        assert!(clear_cookie(&console(false)).contains("Max-Age=0"));
    }

    #[test]
    fn reads_only_a_well_formed_token_of_its_own_cookie() {
        let token = "a".repeat(64);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("other=1; llmgw_console={token}; x=y")
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie_token(&headers, &console(false)), Some(token.clone()));
        assert_eq!(cookie_token(&headers, &console(true)), None);
        headers.insert(header::COOKIE, "llmgw_console=not-hex".parse().unwrap());
        assert_eq!(cookie_token(&headers, &console(false)), None);
    }

    #[test]
    fn random_tokens_are_hex_and_differ() {
        let (a, b) = (random_hex(), random_hex());
        assert_eq!(a.len(), TOKEN_HEX);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
