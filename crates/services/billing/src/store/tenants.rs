//! Tenants: create, read, update, enable/disable. Every change is one
//! transaction that also writes its `admin_audit` row, and, when it changes
//! what the policy distribution serves (a tenant's policy or name), bumps
//! the policy revision first.

use super::admin_audit::{Actor, Change, record_change};
use super::policies::{bump_policy_revision, check_policy_exists};
use super::rows::{TenantRow, tenant_status_db, to_json};
use super::{
    BeginWrite as _, NewTenant, Store, StoreError, Tenant, TenantStatus, TenantUpdate,
    budget_to_db, conflict_or_db, now_ms, validate_name,
};

/// Locks tenant `$1` for the rest of the transaction and reads it (a no-op
/// UPDATE: the same SQL locks the row on Postgres and is covered by the
/// write lock SQLite's `BEGIN IMMEDIATE` already holds), so the audit row's
/// "before" is exactly what the change replaced.
const LOCK_TENANT: &str = concat!(
    "UPDATE tenants SET updated_at = updated_at WHERE id = $1 RETURNING ",
    tenant_columns!()
);

impl Store {
    /// A new active tenant. [`StoreError::Conflict`] if the name is taken,
    /// [`StoreError::InvalidField`] (`policy`) if its policy does not exist.
    pub async fn create_tenant(&self, new: NewTenant, by: &Actor) -> Result<Tenant, StoreError> {
        validate_name("tenant", &new.name)?;
        let budget = budget_to_db(new.monthly_budget_nano_usd)?;
        let limits = to_json(&new.limits)?;
        let now = now_ms();
        let tenant = Tenant {
            id: uuid::Uuid::new_v4().to_string(),
            name: new.name,
            status: TenantStatus::Active,
            monthly_budget_nano_usd: new.monthly_budget_nano_usd,
            limits: new.limits,
            policy: new.policy,
            created_at: now,
            updated_at: now,
        };
        let change = Change::new(
            "tenant.create",
            format!("tenant:{}", tenant.id),
            None::<&Tenant>,
            Some(&tenant),
        )?;
        let sql = "INSERT INTO tenants \
             (id, name, status, monthly_budget_nano_usd, limits, policy, created_at, updated_at) \
             VALUES ($1, $2, 'active', $3, $4, $5, $6, $6)";
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if let Some(policy) = &tenant.policy {
                bump_policy_revision!(&mut *tx)?;
                check_policy_exists!(self, &mut *tx, policy)?;
            }
            sqlx::query(sql)
                .bind(&tenant.id)
                .bind(&tenant.name)
                .bind(budget)
                .bind(&limits)
                .bind(tenant.policy.as_deref())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or_db(e, || tenant_taken(&tenant.name)))?;
            record_change!(&mut *tx, by, &change)?;
            tx.commit().await?;
        });
        Ok(tenant)
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
    /// tenant, [`StoreError::Conflict`] if the new name is taken,
    /// [`StoreError::InvalidField`] (`policy`) if the new policy does not
    /// exist.
    pub async fn update_tenant(
        &self,
        id: &str,
        update: TenantUpdate,
        by: &Actor,
    ) -> Result<Option<Tenant>, StoreError> {
        if let Some(name) = &update.name {
            validate_name("tenant", name)?;
        }
        let set_budget = update.monthly_budget_nano_usd.is_some();
        let budget = budget_to_db(update.monthly_budget_nano_usd.flatten())?;
        let limits = update.limits.as_ref().map(to_json).transpose()?;
        let set_policy = update.policy.is_some();
        let policy = update.policy.clone().flatten();
        // The tenant -> policy map the replicas poll is keyed by name.
        let changes_distribution = set_policy || update.name.is_some();
        let sql = concat!(
            "UPDATE tenants SET \
               name = COALESCE($2, name), \
               monthly_budget_nano_usd = CASE WHEN $3 THEN $4 ELSE monthly_budget_nano_usd END, \
               limits = COALESCE($5, limits), \
               policy = CASE WHEN $6 THEN $7 ELSE policy END, \
               updated_at = $8 \
             WHERE id = $1 RETURNING ",
            tenant_columns!()
        );
        let updated = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if changes_distribution {
                bump_policy_revision!(&mut *tx)?;
            }
            let before: Option<TenantRow> =
                sqlx::query_as(LOCK_TENANT).bind(id).fetch_optional(&mut *tx).await?;
            let Some(before) = before else {
                return Ok(None);
            };
            if let Some(policy) = &policy {
                check_policy_exists!(self, &mut *tx, policy)?;
            }
            let after: TenantRow = sqlx::query_as(sql)
                .bind(id)
                .bind(update.name.as_deref())
                .bind(set_budget)
                .bind(budget)
                .bind(limits.as_deref())
                .bind(set_policy)
                .bind(policy.as_deref())
                .bind(now_ms())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| {
                    conflict_or_db(e, || tenant_taken(update.name.as_deref().unwrap_or("")))
                })?;
            let (before, after) = (Tenant::try_from(before)?, Tenant::try_from(after)?);
            let change = Change::new(
                "tenant.update",
                format!("tenant:{id}"),
                Some(&before),
                Some(&after),
            )?;
            record_change!(&mut *tx, by, &change)?;
            tx.commit().await?;
            after
        });
        Ok(Some(updated))
    }

    /// Enables or disables tenant `id`. A disabled tenant's keys stop
    /// authorizing at once but are kept, so enabling it again restores them.
    /// Setting the status it already has changes (and records) nothing.
    pub async fn set_tenant_status(
        &self,
        id: &str,
        status: TenantStatus,
        by: &Actor,
    ) -> Result<Option<Tenant>, StoreError> {
        let sql = concat!(
            "UPDATE tenants SET status = $2, updated_at = $3 WHERE id = $1 RETURNING ",
            tenant_columns!()
        );
        let action = match status {
            TenantStatus::Active => "tenant.enable",
            TenantStatus::Disabled => "tenant.disable",
        };
        let updated = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let before: Option<TenantRow> =
                sqlx::query_as(LOCK_TENANT).bind(id).fetch_optional(&mut *tx).await?;
            let Some(before) = before else {
                return Ok(None);
            };
            let before = Tenant::try_from(before)?;
            if before.status == status {
                return Ok(Some(before));
            }
            let after: TenantRow = sqlx::query_as(sql)
                .bind(id)
                .bind(tenant_status_db(status))
                .bind(now_ms())
                .fetch_one(&mut *tx)
                .await?;
            let after = Tenant::try_from(after)?;
            let change =
                Change::new(action, format!("tenant:{id}"), Some(&before), Some(&after))?;
            record_change!(&mut *tx, by, &change)?;
            tx.commit().await?;
            after
        });
        Ok(Some(updated))
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
