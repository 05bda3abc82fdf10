//! `/admin/v1/admins`: admin credentials with roles, created (the text is
//! in that answer only), listed and revoked. `admin` role only.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::body::{self, Field, typed};
use super::error::ApiError;
use super::views::List;
use super::{AdminState, check_name};
use crate::store::{Actor, AdminCredential, KeyStatus, NewCredential, Role};

type Shared = State<Arc<AdminState>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCredential {
    name: String,
    role: Role,
}

const CREATE_FIELDS: &[Field] = &[
    Field {
        name: "name",
        check: typed::<String>,
        required: true,
    },
    Field {
        name: "role",
        check: typed::<Role>,
        required: true,
    },
];

#[derive(Serialize)]
pub struct CredentialView {
    id: String,
    name: String,
    role: Role,
    /// The first characters of the credential, to recognise it.
    prefix: String,
    status: KeyStatus,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<AdminCredential> for CredentialView {
    fn from(credential: AdminCredential) -> Self {
        CredentialView {
            id: credential.id,
            name: credential.name,
            role: credential.role,
            prefix: credential.display_prefix,
            status: credential.status,
            created_at: credential.created_at,
            last_used_at: credential.last_used_at,
            revoked_at: credential.revoked_at,
        }
    }
}

/// A new credential with its text: the only answer that carries one.
#[derive(Serialize)]
pub struct CreatedCredential {
    credential: CredentialView,
    secret: String,
}

pub async fn create(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreatedCredential>), ApiError> {
    let request: CreateCredential = body::parse(&body, CREATE_FIELDS)?;
    check_name("credential", &request.name)?;
    let (credential, secret) = state
        .store
        .create_credential(
            NewCredential {
                name: request.name,
                role: request.role,
            },
            &by,
        )
        .await
        .map_err(|error| ApiError::store(error, Some("name")))?;
    tracing::info!(
        credential_id = %credential.id,
        credential = %credential.name,
        role = credential.role.as_str(),
        "admin credential created"
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedCredential {
            credential: credential.into(),
            secret,
        }),
    ))
}

pub async fn list(State(state): Shared) -> Result<Json<List<CredentialView>>, ApiError> {
    let credentials = state
        .store
        .list_credentials()
        .await
        .map_err(|error| ApiError::store(error, None))?;
    Ok(Json(List::of(credentials)))
}

/// Revokes by id or name; its console sessions end with it.
pub async fn revoke(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(credential): Path<String>,
    body: Bytes,
) -> Result<Json<CredentialView>, ApiError> {
    body::parse_empty(&body)?;
    let revoked = state
        .store
        .revoke_credential(&credential, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?
        .ok_or_else(|| ApiError::not_found(format!("no admin credential {credential:?}")))?;
    tracing::info!(
        credential_id = %revoked.id,
        credential = %revoked.name,
        "admin credential revoked"
    );
    Ok(Json(revoked.into()))
}
