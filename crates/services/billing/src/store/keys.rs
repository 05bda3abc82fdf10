//! API keys: create, list, revoke, rotate, and the lookup that authorizes a
//! request.

use serde::Serialize;

use super::admin_audit::{Actor, Change, record_change};
use super::rows::{KeyRow, LookupRow, parse_budget, parse_limits, parse_models, to_json};
use super::{
    ApiKey, BeginWrite, KeyInfo, KeyStatus, KeyUpdate, NewKey, Store, StoreError, TenantStatus,
    conflict_or_db, now_ms, validate_models, validate_name,
};

/// `last_used_at` is written at most this often per key: the lookup runs on
/// every request and must not turn into a write per request.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// Inserts a key for a tenant, but only if that tenant exists and is active:
/// the check and the write are one statement, so a tenant disabled at the same
/// moment cannot get a new key.
const INSERT_KEY: &str = "INSERT INTO api_keys \
     (id, tenant_id, name, digest, display_prefix, status, allowed_models, limits, \
      expires_at, created_at) \
     SELECT $1, id, $2, $3, $4, 'active', $5, $6, $7, $8 \
     FROM tenants WHERE id = $9 AND status = 'active'";

/// Revokes an active key, giving it as revoked.
const REVOKE_KEY: &str = concat!(
    "UPDATE api_keys SET status = 'revoked', revoked_at = $2 \
     WHERE id = $1 AND status = 'active' RETURNING ",
    key_columns!()
);

/// A rotation's "after": the old key revoked and its successor (records,
/// never secrets).
#[derive(Serialize)]
struct Rotated<'a> {
    revoked: &'a ApiKey,
    issued: &'a ApiKey,
}

/// What a key just revoked looked like before: only the status and the
/// revocation time changed.
fn active_before(revoked: &ApiKey) -> ApiKey {
    ApiKey {
        status: KeyStatus::Active,
        revoked_at: None,
        ..revoked.clone()
    }
}

/// A key about to be inserted, with its secret (returned to the caller once).
struct Minted {
    key: ApiKey,
    secret: String,
    digest: [u8; 32],
    allowed_models: String,
    limits: String,
}

impl Minted {
    fn new(tenant_id: &str, new: NewKey) -> Result<Minted, StoreError> {
        let secret = llmgw_apikey::generate();
        Ok(Minted {
            digest: llmgw_apikey::digest(&secret),
            allowed_models: to_json(&new.allowed_models)?,
            limits: to_json(&new.limits)?,
            key: ApiKey {
                id: uuid::Uuid::new_v4().to_string(),
                tenant_id: tenant_id.to_owned(),
                name: new.name,
                display_prefix: llmgw_apikey::display_prefix(&secret),
                status: KeyStatus::Active,
                allowed_models: new.allowed_models,
                limits: new.limits,
                expires_at: new.expires_at,
                created_at: now_ms(),
                last_used_at: None,
                revoked_at: None,
            },
            secret,
        })
    }

    fn name_taken(&self) -> String {
        format!(
            "the tenant already has an active key named {:?}",
            self.key.name
        )
    }
}

/// How a rotation's transaction ended.
enum Rotation {
    Done(Box<Minted>),
    /// No active key with that id (missing or already revoked).
    NotActive,
    /// The key's tenant (this id) is disabled: nothing was changed.
    TenantInactive(String),
}

/// Binds a [`Minted`] key to [`INSERT_KEY`] and runs it on `$executor`,
/// giving the number of rows written. A macro because the executor's type
/// differs per backend and between pool and transaction.
macro_rules! insert_key {
    ($executor:expr, $minted:expr) => {{
        let m: &Minted = $minted;
        sqlx::query(INSERT_KEY)
            .bind(&m.key.id)
            .bind(&m.key.name)
            .bind(&m.digest[..])
            .bind(&m.key.display_prefix)
            .bind(&m.allowed_models)
            .bind(&m.limits)
            .bind(m.key.expires_at)
            .bind(m.key.created_at)
            .bind(&m.key.tenant_id)
            .execute($executor)
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| conflict_or_db(e, || m.name_taken()))
    }};
}

impl Store {
    /// A new key for tenant `tenant_id` (an id, not a name): the stored record
    /// and the secret, which is shown once and never stored.
    /// [`StoreError::Conflict`] if an active key of the tenant has the name;
    /// [`StoreError::Invalid`] if the tenant does not exist or is disabled.
    pub async fn create_key(
        &self,
        tenant_id: &str,
        new: NewKey,
        by: &Actor,
    ) -> Result<(ApiKey, String), StoreError> {
        validate_name("key", &new.name)?;
        validate_models(&new.allowed_models)?;
        let minted = Minted::new(tenant_id, new)?;
        let change = Change::new(
            "key.create",
            format!("key:{}", minted.key.id),
            None::<&ApiKey>,
            Some(&minted.key),
        )?;
        let written = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let written = insert_key!(&mut *tx, &minted)?;
            if written > 0 {
                record_change!(&mut *tx, by, &change)?;
                tx.commit().await?;
            }
            written
        });
        if written == 0 {
            return Err(self.why_no_key(tenant_id).await);
        }
        Ok((minted.key, minted.secret))
    }

    /// The keys of tenant `tenant_id`, revoked ones included, newest first.
    pub async fn list_keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            key_columns!(),
            " FROM api_keys WHERE tenant_id = $1 ORDER BY created_at DESC, id"
        );
        let rows: Vec<KeyRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(tenant_id)
            .fetch_all(pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(ApiKey::try_from)
            .collect::<Result<_, _>>()?)
    }

    pub async fn get_key(&self, key_id: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = concat!("SELECT ", key_columns!(), " FROM api_keys WHERE id = $1");
        let row: Option<KeyRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(key_id)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(ApiKey::try_from).transpose()?)
    }

    /// Revokes key `key_id` (at once: the next lookup fails). Revoking a
    /// revoked key changes (and records) nothing and returns it as it is;
    /// `None` if there is no such key.
    pub async fn revoke_key(&self, key_id: &str, by: &Actor) -> Result<Option<ApiKey>, StoreError> {
        let revoked = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let row: Option<KeyRow> = sqlx::query_as(REVOKE_KEY)
                .bind(key_id)
                .bind(now_ms())
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                Some(row) => {
                    let after = ApiKey::try_from(row)?;
                    let change = Change::new(
                        "key.revoke",
                        format!("key:{key_id}"),
                        Some(&active_before(&after)),
                        Some(&after),
                    )?;
                    record_change!(&mut *tx, by, &change)?;
                    tx.commit().await?;
                    Some(after)
                }
                None => None,
            }
        });
        match revoked {
            Some(key) => Ok(Some(key)),
            None => self.get_key(key_id).await,
        }
    }

    /// Changes the given settings of active key `key_id`. `None` if there is
    /// no such key; [`StoreError::Invalid`] if it is revoked.
    pub async fn update_key(
        &self,
        key_id: &str,
        update: KeyUpdate,
        by: &Actor,
    ) -> Result<Option<ApiKey>, StoreError> {
        if let Some(models) = &update.allowed_models {
            validate_models(models)?;
        }
        let models = update.allowed_models.as_ref().map(to_json).transpose()?;
        let limits = update.limits.as_ref().map(to_json).transpose()?;
        let set_expiry = update.expires_at.is_some();
        let expiry = update.expires_at.flatten();
        // The no-op UPDATE locks the row (see tenants.rs) for an exact
        // "before"; the condition leaves revoked keys alone.
        let lock = concat!(
            "UPDATE api_keys SET status = status WHERE id = $1 AND status = 'active' RETURNING ",
            key_columns!()
        );
        let sql = concat!(
            "UPDATE api_keys SET \
               allowed_models = COALESCE($2, allowed_models), \
               limits = COALESCE($3, limits), \
               expires_at = CASE WHEN $4 THEN $5 ELSE expires_at END \
             WHERE id = $1 RETURNING ",
            key_columns!()
        );
        let updated = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let before: Option<KeyRow> =
                sqlx::query_as(lock).bind(key_id).fetch_optional(&mut *tx).await?;
            match before {
                None => None,
                Some(before) => {
                    let after: KeyRow = sqlx::query_as(sql)
                        .bind(key_id)
                        .bind(models.as_deref())
                        .bind(limits.as_deref())
                        .bind(set_expiry)
                        .bind(expiry)
                        .fetch_one(&mut *tx)
                        .await?;
                    let (before, after) = (ApiKey::try_from(before)?, ApiKey::try_from(after)?);
                    let change = Change::new(
                        "key.update",
                        format!("key:{key_id}"),
                        Some(&before),
                        Some(&after),
                    )?;
                    record_change!(&mut *tx, by, &change)?;
                    tx.commit().await?;
                    Some(after)
                }
            }
        });
        match updated {
            Some(key) => Ok(Some(key)),
            None => match self.get_key(key_id).await? {
                None => Ok(None),
                Some(_) => Err(StoreError::Invalid(format!(
                    "key {key_id} is revoked; create a new key instead"
                ))),
            },
        }
    }

    /// In one transaction: revokes key `key_id` and creates a new one with the
    /// same tenant, name, models, limits and expiry. `None` if there is no
    /// such key; [`StoreError::Invalid`] if it is already revoked or its
    /// tenant is disabled (then nothing changes).
    pub async fn rotate_key(
        &self,
        key_id: &str,
        by: &Actor,
    ) -> Result<Option<(ApiKey, String)>, StoreError> {
        // The revoking UPDATE comes first: it locks the row (Postgres) or the
        // database (SQLite), so of two concurrent rotations one finds the key
        // already revoked instead of both minting a successor.
        let outcome: Result<Rotation, StoreError> = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let old: Option<KeyRow> = sqlx::query_as(REVOKE_KEY)
                .bind(key_id)
                .bind(now_ms())
                .fetch_optional(&mut *tx)
                .await?;
            match old {
                None => Ok(Rotation::NotActive),
                Some(old) => {
                    let old = ApiKey::try_from(old)?;
                    let minted = Minted::new(&old.tenant_id, NewKey {
                        name: old.name.clone(),
                        allowed_models: old.allowed_models.clone(),
                        limits: old.limits.clone(),
                        expires_at: old.expires_at,
                    })?;
                    // On 0 rows (tenant disabled) or an error, dropping `tx`
                    // rolls the revocation back: nothing half-done remains.
                    if insert_key!(&mut *tx, &minted)? == 0 {
                        Ok(Rotation::TenantInactive(old.tenant_id))
                    } else {
                        let change = Change::new(
                            "key.rotate",
                            format!("key:{key_id}"),
                            Some(&active_before(&old)),
                            Some(&Rotated { revoked: &old, issued: &minted.key }),
                        )?;
                        record_change!(&mut *tx, by, &change)?;
                        tx.commit().await?;
                        Ok(Rotation::Done(Box::new(minted)))
                    }
                }
            }
        });
        // The transaction has ended here, so explaining a failure does not
        // hold the write lock.
        match outcome? {
            Rotation::Done(minted) => {
                let minted = *minted;
                Ok(Some((minted.key, minted.secret)))
            }
            Rotation::TenantInactive(tenant_id) => Err(self.why_no_key(&tenant_id).await),
            // Not active: say whether it is missing or already revoked.
            Rotation::NotActive => match self.get_key(key_id).await? {
                None => Ok(None),
                Some(_) => Err(StoreError::Invalid(format!(
                    "key {key_id} is revoked; create a new key instead"
                ))),
            },
        }
    }

    /// The active, unexpired key with this digest, of an active tenant, with
    /// its effective limits (its own over its tenant's defaults for its keys)
    /// and its tenant's budget. Notes
    /// the use in `last_used_at`, at most once a minute per key and in the
    /// background: authorization never waits for that write or its failure.
    pub async fn lookup_digest(&self, digest: &[u8; 32]) -> Result<Option<KeyInfo>, StoreError> {
        let now = now_ms();
        let sql = "SELECT k.id AS key_id, k.name AS name, t.name AS tenant, \
             k.allowed_models AS allowed_models, k.expires_at AS expires_at, \
             k.last_used_at AS last_used_at, k.limits AS key_limits, \
             t.limits AS tenant_limits, t.monthly_budget_nano_usd AS monthly_budget_nano_usd \
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.digest = $1 AND k.status = 'active' AND t.status = 'active' \
               AND (k.expires_at IS NULL OR k.expires_at > $2)";
        let row: Option<LookupRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&digest[..])
            .bind(now)
            .fetch_optional(pool)
            .await)?;
        let Some(row) = row else {
            return Ok(None);
        };
        if row
            .last_used_at
            .is_none_or(|at| at <= now - LAST_USED_RESOLUTION_MS)
        {
            self.touch_in_background(row.key_id.clone(), now);
        }
        let key_limits = parse_limits(&row.key_limits)?;
        let tenant_limits = parse_limits(&row.tenant_limits)?;
        Ok(Some(KeyInfo {
            allowed_models: parse_models(&row.allowed_models)?,
            limits: key_limits.or(&tenant_limits),
            tenant_monthly_budget_nano_usd: parse_budget(row.monthly_budget_nano_usd)?,
            key_id: row.key_id,
            name: row.name,
            tenant: row.tenant,
            expires_at: row.expires_at,
        }))
    }

    /// Sets `last_used_at` unless another request did within the resolution:
    /// the condition makes concurrent touches of one key write once.
    fn touch_in_background(&self, key_id: String, now: i64) {
        let store = self.clone();
        tokio::spawn(async move {
            let sql = "UPDATE api_keys SET last_used_at = $2 \
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)";
            let result = on_pool!(store, pool => sqlx::query(sql)
                .bind(&key_id)
                .bind(now)
                .bind(now - LAST_USED_RESOLUTION_MS)
                .execute(pool)
                .await
                .map(drop));
            if let Err(error) = result {
                // Losing a last-used time is harmless; the next use retries.
                tracing::warn!(%error, key_id, "could not record the key's last use");
            }
        });
    }

    /// Why a key could not be inserted for `tenant_id` (the INSERT wrote no
    /// row): the tenant is missing or disabled.
    async fn why_no_key(&self, tenant_id: &str) -> StoreError {
        match self.tenant_by_id(tenant_id).await {
            Err(error) => error,
            Ok(None) => StoreError::Invalid(format!("no tenant with id {tenant_id:?}")),
            Ok(Some(tenant)) if tenant.status == TenantStatus::Disabled => StoreError::Invalid(
                format!("tenant {:?} is disabled: enable it first", tenant.name),
            ),
            // Enabled again between the INSERT and this read.
            Ok(Some(tenant)) => StoreError::Invalid(format!(
                "tenant {:?} changed while the key was created; try again",
                tenant.name
            )),
        }
    }
}
