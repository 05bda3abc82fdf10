//! Who is calling the admin API, and whether they may: the bearer
//! credential (the configured admin token, or an admin credential from the
//! database) or the console's session cookie; then the CSRF check for
//! cookie-authenticated changes, and the role check of `roles`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{AppendHeaders, IntoResponse as _, Response};
use http::{HeaderMap, Method, header};

use super::error::ApiError;
use super::{AdminState, roles, session};
use crate::store::{Actor, Role, Session};

/// An authenticated caller.
pub(crate) struct Principal {
    pub actor: Actor,
    pub role: Role,
    /// Set when the caller came with the console's cookie: changes then
    /// need the session's CSRF token.
    pub session: Option<Session>,
}

/// Why a request is not authenticated. A presented session cookie that no
/// longer works is cleared in the answer, so the browser stops sending it.
pub(crate) struct Refusal {
    error: ApiError,
    clear_cookie: Option<String>,
}

impl Refusal {
    fn new(error: ApiError) -> Refusal {
        Refusal {
            error,
            clear_cookie: None,
        }
    }

    pub fn into_response(self) -> Response {
        match self.clear_cookie {
            Some(cookie) => {
                (AppendHeaders([(header::SET_COOKIE, cookie)]), self.error).into_response()
            }
            None => self.error.into_response(),
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal::new(error)
    }
}

/// The layer in front of every admin route (and the unknown ones, so they
/// cannot be probed): authenticate, check CSRF for the console's changes,
/// check the role, then hand the [`Actor`] to the handler.
pub(super) async fn authenticate(
    State(state): State<Arc<AdminState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let address = peer(&request);
    let principal = match resolve(&state, request.headers(), address).await {
        Ok(principal) => principal,
        Err(refusal) => {
            if refusal.error.is_unauthorized() {
                tracing::warn!(path = %request.uri().path(), "admin request not authenticated");
            }
            return refusal.into_response();
        }
    };
    let method = request.method().clone();
    if let Some(session) = &principal.session
        && !is_safe(&method)
        && let Err(error) = session::check_csrf(session, request.headers())
    {
        tracing::warn!(actor = %principal.actor.id, path = %request.uri().path(), "console change without a valid CSRF token");
        return error.into_response();
    }
    // Unknown paths have no matched route: they answer 404 to anyone
    // authenticated.
    if let Some(route) = request.extensions().get::<MatchedPath>()
        && !roles::allows(principal.role, &method, route.as_str())
    {
        tracing::info!(
            actor = %principal.actor.id,
            role = principal.role.as_str(),
            %method,
            route = route.as_str(),
            "admin request refused for its role"
        );
        return ApiError::forbidden(format!(
            "the {} role may not {method} {}",
            principal.role.as_str(),
            route.as_str()
        ))
        .into_response();
    }
    request.extensions_mut().insert(principal.actor);
    next.run(request).await
}

/// The TCP peer. Behind a proxy this is the proxy's address: a
/// forwarded-for header would be the caller's word, not a fact.
pub(crate) fn peer(request: &Request) -> String {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |info| info.0.to_string())
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The caller: a bearer credential if the request has an Authorization
/// header, else the console's session cookie.
pub(crate) async fn resolve(
    state: &AdminState,
    headers: &HeaderMap,
    address: String,
) -> Result<Principal, Refusal> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Some(presented) = super::bearer(value.as_bytes()) else {
            return Err(unauthorized(state, "invalid admin token").into());
        };
        return bearer_principal(state, presented, address).await;
    }
    if state.console.enabled
        && let Some(token) = session::cookie_token(headers, &state.console)
    {
        return session::principal(state, &token, address).await;
    }
    Err(unauthorized(
        state,
        "missing admin token: send `Authorization: Bearer <admin token>`",
    )
    .into())
}

/// A bearer credential: the configured admin token, else an active admin
/// credential of the database.
async fn bearer_principal(
    state: &AdminState,
    presented: &[u8],
    address: String,
) -> Result<Principal, Refusal> {
    match verify(state, presented).await? {
        Some((actor, role, _)) => Ok(Principal {
            actor: Actor { id: actor, address },
            role,
            session: None,
        }),
        None => Err(unauthorized(state, "invalid admin token").into()),
    }
}

/// Checks a credential's text: `(actor id, role, credential id)` if it is
/// the configured token (no credential id) or an active credential.
pub(crate) async fn verify(
    state: &AdminState,
    presented: &[u8],
) -> Result<Option<(String, Role, Option<String>)>, ApiError> {
    if let Some(token) = &state.token
        && token.matches(presented)
    {
        return Ok(Some((token.id(), Role::Admin, None)));
    }
    let Ok(text) = std::str::from_utf8(presented) else {
        return Ok(None);
    };
    if !llmgw_apikey::is_well_formed_admin(text) {
        return Ok(None);
    }
    let credential = state
        .store
        .authenticate_credential(&llmgw_apikey::digest(text))
        .await
        .map_err(|error| ApiError::store(error, None))?;
    Ok(credential.map(|credential| (credential.actor_id(), credential.role, Some(credential.id))))
}

/// 401, or 503 when no admin token is configured: then only credentials
/// created earlier work, and an operator who set nothing learns what to set.
pub(crate) fn unauthorized(state: &AdminState, message: &str) -> ApiError {
    if state.token.is_none() {
        ApiError::unavailable(format!(
            "admin API disabled: set {} (or present an admin credential)",
            state.token_env
        ))
    } else {
        ApiError::unauthorized(message)
    }
}

/// A refusal that also clears the console's cookie.
pub(crate) fn refuse_session(state: &AdminState, error: ApiError) -> Refusal {
    Refusal {
        error,
        clear_cookie: Some(session::clear_cookie(&state.console)),
    }
}
