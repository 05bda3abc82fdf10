//! `/admin/v1/tenants`: create, list, read, update, disable and enable.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use http::StatusCode;
use serde::Deserialize;

use super::body::{self, Field, double_option, typed};
use super::error::ApiError;
use super::views::{List, TenantView};
use super::{AdminState, check_name, check_name_in, find_tenant};
use crate::store::{Actor, Limits, NewTenant, TenantStatus, TenantUpdate};

type Shared = State<Arc<AdminState>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    monthly_budget_usd: Option<String>,
    limits: Option<Limits>,
    /// The tenant's content policy; absent or null: the default policy.
    policy: Option<String>,
}

const CREATE_FIELDS: &[Field] = &[
    Field {
        name: "name",
        check: typed::<String>,
        required: true,
    },
    Field {
        name: "monthly_budget_usd",
        check: budget,
        required: false,
    },
    Field {
        name: "limits",
        check: body::limits,
        required: false,
    },
    Field {
        name: "policy",
        check: typed::<Option<String>>,
        required: false,
    },
];

/// Absent fields are left alone; `null` clears a budget, all limits or the
/// policy (the tenant then follows the default policy).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateTenant {
    /// Doubly optional only to tell `null` (refused: a tenant needs a name)
    /// from absent.
    #[serde(default, deserialize_with = "double_option")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    monthly_budget_usd: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    limits: Option<Option<Limits>>,
    #[serde(default, deserialize_with = "double_option")]
    policy: Option<Option<String>>,
}

const UPDATE_FIELDS: &[Field] = &[
    Field {
        name: "name",
        check: typed::<String>,
        required: false,
    },
    Field {
        name: "monthly_budget_usd",
        check: budget,
        required: false,
    },
    Field {
        name: "limits",
        check: body::limits,
        required: false,
    },
    Field {
        name: "policy",
        check: typed::<Option<String>>,
        required: false,
    },
];

/// The budget is a string on purpose (exact decimal): a JSON number is
/// refused with a hint rather than converted through a float.
fn budget(value: &serde_json::Value) -> Result<(), body::FieldError> {
    if value.is_number() {
        return Err(body::FieldError::message(
            "expected a decimal string such as \"12.50\" (a string keeps the amount exact) \
             or null",
        ));
    }
    typed::<Option<String>>(value)
}

fn parse_budget(text: Option<&str>) -> Result<Option<u64>, ApiError> {
    text.map(|text| {
        llmgw_usd::parse_budget(text)
            .map_err(|message| ApiError::invalid_param("monthly_budget_usd", message))
    })
    .transpose()
}

/// A create body checked: the new tenant, or the 400 naming the field.
pub(super) fn new_tenant(body: &[u8]) -> Result<NewTenant, ApiError> {
    let request: CreateTenant = body::parse(body, CREATE_FIELDS)?;
    check_name("tenant", &request.name)?;
    let monthly_budget_nano_usd = parse_budget(request.monthly_budget_usd.as_deref())?;
    let limits = request.limits.unwrap_or_default();
    body::check_limits(&limits)?;
    if let Some(policy) = &request.policy {
        check_name_in("policy", "policy", policy)?;
    }
    Ok(NewTenant {
        name: request.name,
        monthly_budget_nano_usd,
        limits,
        policy: request.policy,
    })
}

pub async fn create(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    body: Bytes,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let tenant = state
        .store
        .create_tenant(new_tenant(&body)?, &by)
        .await
        .map_err(|error| ApiError::store(error, Some("name")))?;
    tracing::info!(tenant_id = %tenant.id, tenant = %tenant.name, "tenant created");
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

pub async fn list(State(state): Shared) -> Result<Json<List<TenantView>>, ApiError> {
    let tenants = state
        .store
        .list_tenants()
        .await
        .map_err(|error| ApiError::store(error, None))?;
    Ok(Json(List::of(tenants)))
}

pub async fn get(
    State(state): Shared,
    Path(tenant): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    Ok(Json(find_tenant(&state, &tenant).await?.into()))
}

/// An update body checked: the changes, or the 400 naming the field.
pub(super) fn tenant_update(body: &[u8]) -> Result<TenantUpdate, ApiError> {
    let request: UpdateTenant = body::parse(body, UPDATE_FIELDS)?;
    let name = match request.name {
        Some(None) => {
            return Err(ApiError::invalid_param(
                "name",
                "name: a tenant cannot lose its name; omit the field to keep it",
            ));
        }
        Some(Some(name)) => {
            check_name("tenant", &name)?;
            Some(name)
        }
        None => None,
    };
    let monthly_budget_nano_usd = request
        .monthly_budget_usd
        .map(|budget| parse_budget(budget.as_deref()))
        .transpose()?;
    let limits = request.limits.map(Option::unwrap_or_default);
    if let Some(limits) = &limits {
        body::check_limits(limits)?;
    }
    if let Some(Some(policy)) = &request.policy {
        check_name_in("policy", "policy", policy)?;
    }
    Ok(TenantUpdate {
        name,
        monthly_budget_nano_usd,
        limits,
        policy: request.policy,
    })
}

pub async fn update(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Json<TenantView>, ApiError> {
    // Validate before touching the database, so a bad request changes
    // nothing and says so even for a tenant that does not exist.
    let update = tenant_update(&body)?;
    let id = find_tenant(&state, &tenant).await?.id;
    let updated = state
        .store
        .update_tenant(&id, update, &by)
        .await
        .map_err(|error| ApiError::store(error, Some("name")))?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {tenant:?}")))?;
    tracing::info!(tenant_id = %updated.id, tenant = %updated.name, "tenant updated");
    Ok(Json(updated.into()))
}

pub async fn disable(
    state: Shared,
    by: Extension<Actor>,
    tenant: Path<String>,
    body: Bytes,
) -> Result<Json<TenantView>, ApiError> {
    set_status(state, by, tenant, body, TenantStatus::Disabled).await
}

pub async fn enable(
    state: Shared,
    by: Extension<Actor>,
    tenant: Path<String>,
    body: Bytes,
) -> Result<Json<TenantView>, ApiError> {
    set_status(state, by, tenant, body, TenantStatus::Active).await
}

async fn set_status(
    State(state): Shared,
    Extension(by): Extension<Actor>,
    Path(tenant): Path<String>,
    body: Bytes,
    status: TenantStatus,
) -> Result<Json<TenantView>, ApiError> {
    body::parse_empty(&body)?;
    let disabled = matches!(status, TenantStatus::Disabled);
    let id = find_tenant(&state, &tenant).await?.id;
    let updated = state
        .store
        .set_tenant_status(&id, status, &by)
        .await
        .map_err(|error| ApiError::store(error, None))?
        .ok_or_else(|| ApiError::not_found(format!("no tenant {tenant:?}")))?;
    tracing::info!(
        tenant_id = %updated.id,
        tenant = %updated.name,
        disabled,
        "tenant status changed"
    );
    Ok(Json(updated.into()))
}
