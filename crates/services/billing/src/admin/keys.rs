//! API keys: created and listed under a tenant, read, revoked and rotated
//! by id. The secret is in the answer to create and rotate only; the store
//! keeps its digest, which no route returns.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use serde::Deserialize;

use super::body::{self, Field, double_option, typed};
use super::error::ApiError;
use super::views::{CreatedKey, KeyView, List};
use super::{AdminState, check_model, check_name, find_tenant};
use crate::store::{Actor, ApiKey, KeyUpdate, Limits, NewKey};

type Shared = State<Arc<AdminState>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    #[serde(default)]
    allowed_models: Vec<String>,
    limits: Option<Limits>,
    /// Milliseconds since the Unix epoch.
    expires_at: Option<i64>,
}

const CREATE_FIELDS: &[Field] = &[
    Field {
        name: "name",
        check: typed::<String>,
        required: true,
    },
    Field {
        name: "allowed_models",
        check: typed::<Vec<String>>,
        required: false,
    },
    Field {
        name: "limits",
        check: body::limits,
        required: false,
    },
    Field {
        name: "expires_at",
        check: typed::<Option<i64>>,
        required: false,
    },
];

/// Absent fields are left alone; `null` clears the limits or the expiry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateKey {
    allowed_models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    limits: Option<Option<Limits>>,
    #[serde(default, deserialize_with = "double_option")]
    expires_at: Option<Option<i64>>,
}

const UPDATE_FIELDS: &[Field] = &[
    Field {
        name: "allowed_models",
        check: typed::<Vec<String>>,
        required: false,
    },
    Field {
        name: "limits",
        check: body::limits,
        required: false,
    },
    Field {
        name: "expires_at",
        check: typed::<Option<i64>>,
        required: false,
    },
];

/// More aliases than any catalog has: a bound on what one key row holds.
const MAX_ALLOWED_MODELS: usize = 256;

/// A create body checked: the new key, or the 400 naming the field.
pub(super) fn new_key(body: &[u8]) -> Result<NewKey, ApiError> {
    let request: CreateKey = body::parse(body, CREATE_FIELDS)?;
    check_name("key", &request.name)?;
    check_models(&request.allowed_models)?;
    let limits = request.limits.unwrap_or_default();
    body::check_limits(&limits)?;
    if let Some(expires_at) = request.expires_at {
        check_expiry(expires_at)?;
    }
    Ok(NewKey {
        name: request.name,
        allowed_models: request.allowed_models,
        limits,
        expires_at: request.expires_at,
    })
}

pub async fn create(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let new = new_key(&body)?;
    let tenant = find_tenant(&state, &tenant).await?;
    let (key, secret) = state
        .store
        .create_key(&tenant.id, new, &by)
        .await
        .map_err(|error| ApiError::store(error, Some("name")))?;
    tracing::info!(key_id = %key.id, tenant_id = %tenant.id, tenant = %tenant.name, "key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.into(),
            secret,
        }),
    ))
}

fn check_models(models: &[String]) -> Result<(), ApiError> {
    if models.len() > MAX_ALLOWED_MODELS {
        return Err(ApiError::invalid_param(
            "allowed_models",
            format!("allowed_models: at most {MAX_ALLOWED_MODELS} models"),
        ));
    }
    models.iter().try_for_each(|model| check_model(model))
}

/// An update body checked: the changes, or the 400 naming the field.
pub(super) fn key_update(body: &[u8]) -> Result<KeyUpdate, ApiError> {
    let request: UpdateKey = body::parse(body, UPDATE_FIELDS)?;
    if let Some(models) = &request.allowed_models {
        check_models(models)?;
    }
    let limits = request.limits.map(Option::unwrap_or_default);
    if let Some(limits) = &limits {
        body::check_limits(limits)?;
    }
    if let Some(Some(expires_at)) = request.expires_at {
        check_expiry(expires_at)?;
    }
    Ok(KeyUpdate {
        allowed_models: request.allowed_models,
        limits,
        expires_at: request.expires_at,
    })
}

/// `PATCH /admin/v1/keys/{key}`: models, limits or expiry of an active key
/// (a revoked key is refused: create a new one).
pub async fn update(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<KeyView>, ApiError> {
    let update = key_update(&body)?;
    let updated = state
        .store
        .update_key(&key, update, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?
        .ok_or_else(|| no_key(&key))?;
    tracing::info!(key_id = %updated.id, tenant_id = %updated.tenant_id, "key updated");
    Ok(Json(updated.into()))
}

/// A time already past is refused: most likely seconds were sent where
/// milliseconds are expected, and the key would be dead on arrival.
fn check_expiry(expires_at: i64) -> Result<(), ApiError> {
    let now = crate::store::now_ms();
    if expires_at > now {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "expires_at",
            format!(
                "expires_at {expires_at} is in the past: it is in milliseconds since the Unix \
                 epoch (now is {now})"
            ),
        ))
    }
}

pub async fn list(
    State(state): Shared,
    Path(tenant): Path<String>,
) -> Result<Json<List<KeyView>>, ApiError> {
    let tenant = find_tenant(&state, &tenant).await?;
    let keys = state
        .store
        .list_keys(&tenant.id)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    Ok(Json(List::of(keys)))
}

pub async fn get(State(state): Shared, Path(key): Path<String>) -> Result<Json<KeyView>, ApiError> {
    let found = state
        .store
        .get_key(&key)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    Ok(Json(found.ok_or_else(|| no_key(&key))?.into()))
}

pub async fn revoke(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Json<KeyView>, ApiError> {
    body::parse_empty(&body)?;
    let revoked: ApiKey = state
        .store
        .revoke_key(&key, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?
        .ok_or_else(|| no_key(&key))?;
    tracing::info!(key_id = %revoked.id, tenant_id = %revoked.tenant_id, "key revoked");
    Ok(Json(revoked.into()))
}

/// Revokes the key and issues a new one with the same settings.
pub async fn rotate(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    body::parse_empty(&body)?;
    let (new_key, secret) = state
        .store
        .rotate_key(&key, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?
        .ok_or_else(|| no_key(&key))?;
    tracing::info!(
        old_key_id = %key,
        key_id = %new_key.id,
        tenant_id = %new_key.tenant_id,
        "key rotated"
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: new_key.into(),
            secret,
        }),
    ))
}

fn no_key(key: &str) -> ApiError {
    ApiError::not_found(format!("no key {key:?}"))
}
