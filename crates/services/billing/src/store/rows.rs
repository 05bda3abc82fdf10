//! Rows as the database returns them, and their conversion to the API types.
//! Statuses and JSON columns are checked on the way out: a row another tool
//! wrote badly becomes a decode error, not a silently wrong key.

use super::{ApiKey, KeyStatus, Limits, Tenant, TenantStatus};

#[derive(sqlx::FromRow)]
pub(super) struct TenantRow {
    id: String,
    name: String,
    status: String,
    monthly_budget_nano_usd: Option<i64>,
    limits: String,
    policy: Option<String>,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    id: String,
    tenant_id: String,
    name: String,
    display_prefix: String,
    status: String,
    allowed_models: String,
    limits: String,
    expires_at: Option<i64>,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

/// What the authorization lookup selects (a join of a key and its tenant).
#[derive(sqlx::FromRow)]
pub(super) struct LookupRow {
    pub(super) key_id: String,
    pub(super) name: String,
    pub(super) tenant: String,
    pub(super) allowed_models: String,
    pub(super) expires_at: Option<i64>,
    pub(super) last_used_at: Option<i64>,
    /// The key's own limits (JSON).
    pub(super) key_limits: String,
    /// The tenant's defaults for its keys (JSON).
    pub(super) tenant_limits: String,
    pub(super) monthly_budget_nano_usd: Option<i64>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = sqlx::Error;

    fn try_from(row: TenantRow) -> Result<Self, Self::Error> {
        let status = match row.status.as_str() {
            "active" => TenantStatus::Active,
            "disabled" => TenantStatus::Disabled,
            other => return Err(decode_error(format!("unknown tenant status {other:?}"))),
        };
        let monthly_budget_nano_usd = parse_budget(row.monthly_budget_nano_usd)?;
        Ok(Tenant {
            limits: parse_limits(&row.limits)?,
            id: row.id,
            name: row.name,
            status,
            monthly_budget_nano_usd,
            policy: row.policy,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = sqlx::Error;

    fn try_from(row: KeyRow) -> Result<Self, Self::Error> {
        let status = match row.status.as_str() {
            "active" => KeyStatus::Active,
            "revoked" => KeyStatus::Revoked,
            other => return Err(decode_error(format!("unknown key status {other:?}"))),
        };
        Ok(ApiKey {
            allowed_models: parse_models(&row.allowed_models)?,
            limits: parse_limits(&row.limits)?,
            id: row.id,
            tenant_id: row.tenant_id,
            name: row.name,
            display_prefix: row.display_prefix,
            status,
            expires_at: row.expires_at,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        })
    }
}

pub(super) fn tenant_status_db(status: TenantStatus) -> &'static str {
    match status {
        TenantStatus::Active => "active",
        TenantStatus::Disabled => "disabled",
    }
}

pub(super) fn parse_models(json: &str) -> Result<Vec<String>, sqlx::Error> {
    serde_json::from_str(json).map_err(|e| decode_error(format!("allowed_models: {e}")))
}

pub(super) fn parse_limits(json: &str) -> Result<Limits, sqlx::Error> {
    serde_json::from_str(json).map_err(|e| decode_error(format!("limits: {e}")))
}

pub(super) fn parse_budget(budget: Option<i64>) -> Result<Option<u64>, sqlx::Error> {
    budget
        .map(|b| u64::try_from(b).map_err(|_| decode_error(format!("negative budget {b}"))))
        .transpose()
}

/// JSON text of a value for a TEXT column. Serializing these plain structs
/// cannot fail, but the error is still passed on rather than unwrapped.
pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

fn decode_error(message: String) -> sqlx::Error {
    sqlx::Error::Decode(message.into())
}
