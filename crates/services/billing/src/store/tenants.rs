//! Tenants: create, read, update, enable/disable.

use super::rows::{TenantRow, tenant_status_db, to_json};
use super::{
    NewTenant, Store, StoreError, Tenant, TenantStatus, TenantUpdate, budget_to_db, conflict_or_db,
    now_ms, validate_name,
};

impl Store {
    /// A new active tenant. [`StoreError::Conflict`] if the name is taken.
    pub async fn create_tenant(&self, new: NewTenant) -> Result<Tenant, StoreError> {
        validate_name("tenant", &new.name)?;
        let budget = budget_to_db(new.monthly_budget_nano_usd)?;
        let limits = to_json(&new.limits)?;
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        // One statement: it either writes the whole row or nothing.
        let sql = "INSERT INTO tenants \
             (id, name, status, monthly_budget_nano_usd, limits, created_at, updated_at) \
             VALUES ($1, $2, 'active', $3, $4, $5, $5)";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(&id)
            .bind(&new.name)
            .bind(budget)
            .bind(&limits)
            .bind(now)
            .execute(pool)
            .await
            .map(drop))
        .map_err(|e| conflict_or_db(e, || tenant_taken(&new.name)))?;
        Ok(Tenant {
            id,
            name: new.name,
            status: TenantStatus::Active,
            monthly_budget_nano_usd: new.monthly_budget_nano_usd,
            limits: new.limits,
            created_at: now,
            updated_at: now,
        })
    }

    /// Every tenant, ordered by name.
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let sql = concat!("SELECT ", tenant_columns!(), " FROM tenants ORDER BY name");
        let rows: Vec<TenantRow> =
            on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(Tenant::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// The tenant with this id or, failing that, this name. (An id match wins
    /// so that a tenant named like another's id cannot shadow it.)
    pub async fn get_tenant(&self, id_or_name: &str) -> Result<Option<Tenant>, StoreError> {
        let sql = concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE id = $1 OR name = $1 \
             ORDER BY CASE WHEN id = $1 THEN 0 ELSE 1 END LIMIT 1"
        );
        let row: Option<TenantRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(id_or_name)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(Tenant::try_from).transpose()?)
    }

    /// Changes the given fields of tenant `id`; `None` if there is no such
    /// tenant, [`StoreError::Conflict`] if the new name is taken.
    pub async fn update_tenant(
        &self,
        id: &str,
        update: TenantUpdate,
    ) -> Result<Option<Tenant>, StoreError> {
        if let Some(name) = &update.name {
            validate_name("tenant", name)?;
        }
        let set_budget = update.monthly_budget_nano_usd.is_some();
        let budget = budget_to_db(update.monthly_budget_nano_usd.flatten())?;
        let limits = update.limits.as_ref().map(to_json).transpose()?;
        // One conditional UPDATE rather than read-modify-write, so two
        // concurrent updates of different fields cannot undo each other.
        let sql = concat!(
            "UPDATE tenants SET \
               name = COALESCE($2, name), \
               monthly_budget_nano_usd = CASE WHEN $3 THEN $4 ELSE monthly_budget_nano_usd END, \
               limits = COALESCE($5, limits), \
               updated_at = $6 \
             WHERE id = $1 RETURNING ",
            tenant_columns!()
        );
        let row: Option<TenantRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(id)
            .bind(update.name.as_deref())
            .bind(set_budget)
            .bind(budget)
            .bind(limits.as_deref())
            .bind(now_ms())
            .fetch_optional(pool)
            .await)
        .map_err(|e| conflict_or_db(e, || tenant_taken(update.name.as_deref().unwrap_or(""))))?;
        Ok(row.map(Tenant::try_from).transpose()?)
    }

    /// Enables or disables tenant `id`. A disabled tenant's keys stop
    /// authorizing at once but are kept, so enabling it again restores them.
    pub async fn set_tenant_status(
        &self,
        id: &str,
        status: TenantStatus,
    ) -> Result<Option<Tenant>, StoreError> {
        let sql = concat!(
            "UPDATE tenants SET status = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            tenant_columns!()
        );
        let row: Option<TenantRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(id)
            .bind(tenant_status_db(status))
            .bind(now_ms())
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(Tenant::try_from).transpose()?)
    }

    /// Status and name of tenant `id` (not by name): used to explain why a
    /// key could not be created.
    pub(super) async fn tenant_by_id(&self, id: &str) -> Result<Option<Tenant>, StoreError> {
        let sql = concat!("SELECT ", tenant_columns!(), " FROM tenants WHERE id = $1");
        let row: Option<TenantRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(Tenant::try_from).transpose()?)
    }
}

fn tenant_taken(name: &str) -> String {
    format!("a tenant named {name:?} already exists")
}
