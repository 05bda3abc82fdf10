//! The JSON the admin API answers with. Separate from the store's types so
//! the wire format is decided here: budgets as decimal strings, the key's
//! `display_prefix` as `prefix`, and never a secret or digest in a listing.

use serde::Serialize;

use crate::store::{ApiKey, KeyStatus, Limits, Tenant, TenantStatus};

#[derive(Serialize)]
pub struct TenantView {
    id: String,
    name: String,
    status: TenantStatus,
    /// A decimal string ("12.5"), exact; null = no budget.
    monthly_budget_usd: Option<String>,
    limits: Limits,
    /// The tenant's content policy; null = the default policy.
    policy: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<Tenant> for TenantView {
    fn from(tenant: Tenant) -> Self {
        TenantView {
            id: tenant.id,
            name: tenant.name,
            status: tenant.status,
            monthly_budget_usd: tenant.monthly_budget_nano_usd.map(llmgw_usd::format_usd),
            limits: tenant.limits,
            policy: tenant.policy,
            created_at: tenant.created_at,
            updated_at: tenant.updated_at,
        }
    }
}

#[derive(Serialize)]
pub struct KeyView {
    id: String,
    tenant_id: String,
    name: String,
    /// The first characters of the key, enough to recognise it in a list.
    prefix: String,
    status: KeyStatus,
    allowed_models: Vec<String>,
    limits: Limits,
    expires_at: Option<i64>,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        KeyView {
            id: key.id,
            tenant_id: key.tenant_id,
            name: key.name,
            prefix: key.display_prefix,
            status: key.status,
            allowed_models: key.allowed_models,
            limits: key.limits,
            expires_at: key.expires_at,
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
        }
    }
}

/// A new key with its secret: the only answer that ever carries one.
#[derive(Serialize)]
pub struct CreatedKey {
    pub key: KeyView,
    pub secret: String,
}

/// `{"data": [...]}`, as OpenAI's list endpoints.
#[derive(Serialize)]
pub struct List<T> {
    pub data: Vec<T>,
}

impl<T> List<T> {
    pub fn of<S: Into<T>>(items: Vec<S>) -> Self {
        List {
            data: items.into_iter().map(Into::into).collect(),
        }
    }
}
