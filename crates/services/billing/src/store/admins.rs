//! Admin credentials: several bearer credentials for the admin API and the
//! console, each with a [`Role`], stored as SHA-256 digests like API keys
//! (the text is returned once, by [`Store::create_credential`]). Revoking
//! one also ends its console sessions, in the same transaction.

use serde::{Deserialize, Serialize};

use super::admin_audit::{Actor, Change, record_change};
use super::{BeginWrite, KeyStatus, Store, StoreError, conflict_or_db, now_ms, validate_name};

/// `last_used_at` is written at most this often per credential.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// What a credential may do. `admin`: everything; `finance`: read usage,
/// tenants (their budgets) and exports; `auditor`: read usage and the audit
/// trails. What each route needs is decided in `admin::roles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Finance,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Finance, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Finance => "finance",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// A stored credential: never its text or digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminCredential {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub display_prefix: String,
    pub status: KeyStatus,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl AdminCredential {
    /// Its name in the admin trail: names are never reused, so this names
    /// one credential for good.
    pub fn actor_id(&self) -> String {
        format!("credential:{}", self.name)
    }
}

pub struct NewCredential {
    pub name: String,
    pub role: Role,
}

macro_rules! credential_columns {
    () => {
        "id, name, role, display_prefix, status, created_at, last_used_at, revoked_at"
    };
}

#[derive(sqlx::FromRow)]
struct CredentialRow {
    id: String,
    name: String,
    role: String,
    display_prefix: String,
    status: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<CredentialRow> for AdminCredential {
    type Error = sqlx::Error;

    fn try_from(row: CredentialRow) -> Result<Self, Self::Error> {
        let role = Role::parse(&row.role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role {:?}", row.role).into()))?;
        let status = match row.status.as_str() {
            "active" => KeyStatus::Active,
            "revoked" => KeyStatus::Revoked,
            other => {
                return Err(sqlx::Error::Decode(
                    format!("unknown credential status {other:?}").into(),
                ));
            }
        };
        Ok(AdminCredential {
            id: row.id,
            name: row.name,
            role,
            display_prefix: row.display_prefix,
            status,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        })
    }
}

impl Store {
    /// A new credential: its record and its text, which is shown once and
    /// never stored. [`StoreError::Conflict`] if the name was ever used.
    pub async fn create_credential(
        &self,
        new: NewCredential,
        by: &Actor,
    ) -> Result<(AdminCredential, String), StoreError> {
        validate_name("credential", &new.name)?;
        // Ids are UUIDs: a name that is never one lets `id = $1 OR name =
        // $1` match at most one credential.
        if uuid::Uuid::parse_str(&new.name).is_ok() {
            return Err(StoreError::InvalidField {
                field: "name".to_owned(),
                message: "a credential name cannot be a UUID (ids are)".to_owned(),
            });
        }
        let secret = llmgw_apikey::generate_admin();
        let digest = llmgw_apikey::digest(&secret);
        let credential = AdminCredential {
            id: uuid::Uuid::new_v4().to_string(),
            name: new.name,
            role: new.role,
            display_prefix: llmgw_apikey::display_prefix_admin(&secret),
            status: KeyStatus::Active,
            created_at: now_ms(),
            last_used_at: None,
            revoked_at: None,
        };
        let change = Change::new(
            "admin_credential.create",
            format!("admin_credential:{}", credential.id),
            None::<&AdminCredential>,
            Some(&credential),
        )?;
        let taken = || {
            format!(
                "an admin credential named {:?} exists or existed; names are never reused",
                credential.name
            )
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO admin_credentials \
                 (id, name, role, digest, display_prefix, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 'active', $6)",
            )
            .bind(&credential.id)
            .bind(&credential.name)
            .bind(credential.role.as_str())
            .bind(&digest[..])
            .bind(&credential.display_prefix)
            .bind(credential.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|error| conflict_or_db(error, taken))?;
            record_change!(&mut *tx, by, &change)?;
            tx.commit().await?;
        });
        Ok((credential, secret))
    }

    /// Every credential, revoked ones included, newest first.
    pub async fn list_credentials(&self) -> Result<Vec<AdminCredential>, StoreError> {
        let sql = concat!(
            "SELECT ",
            credential_columns!(),
            " FROM admin_credentials ORDER BY created_at DESC, id"
        );
        let rows: Vec<CredentialRow> =
            on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(AdminCredential::try_from)
            .collect::<Result<_, _>>()?)
    }

    /// Revokes credential `id_or_name` and ends its console sessions. A
    /// revoked credential is returned as it is (nothing recorded); `None`
    /// if there is no such credential.
    pub async fn revoke_credential(
        &self,
        id_or_name: &str,
        by: &Actor,
    ) -> Result<Option<AdminCredential>, StoreError> {
        let revoke = concat!(
            "UPDATE admin_credentials SET status = 'revoked', revoked_at = $2 \
             WHERE (id = $1 OR name = $1) AND status = 'active' RETURNING ",
            credential_columns!()
        );
        let revoked = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let row: Option<CredentialRow> = sqlx::query_as(revoke)
                .bind(id_or_name)
                .bind(now_ms())
                .fetch_optional(&mut *tx)
                .await?;
            match row {
                None => None,
                Some(row) => {
                    let after = AdminCredential::try_from(row)?;
                    sqlx::query("DELETE FROM admin_sessions WHERE credential_id = $1")
                        .bind(&after.id)
                        .execute(&mut *tx)
                        .await?;
                    let before = AdminCredential {
                        status: KeyStatus::Active,
                        revoked_at: None,
                        ..after.clone()
                    };
                    let change = Change::new(
                        "admin_credential.revoke",
                        format!("admin_credential:{}", after.id),
                        Some(&before),
                        Some(&after),
                    )?;
                    record_change!(&mut *tx, by, &change)?;
                    tx.commit().await?;
                    Some(after)
                }
            }
        });
        match revoked {
            Some(credential) => Ok(Some(credential)),
            None => self.credential(id_or_name).await,
        }
    }

    /// Credential `id_or_name`, whatever its status.
    pub async fn credential(
        &self,
        id_or_name: &str,
    ) -> Result<Option<AdminCredential>, StoreError> {
        let sql = concat!(
            "SELECT ",
            credential_columns!(),
            " FROM admin_credentials WHERE id = $1 OR name = $1"
        );
        let row: Option<CredentialRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(id_or_name)
            .fetch_optional(pool)
            .await)?;
        Ok(row.map(AdminCredential::try_from).transpose()?)
    }

    /// The active credential whose text has this digest; notes the use in
    /// `last_used_at` (at most once a minute).
    pub async fn authenticate_credential(
        &self,
        digest: &[u8; 32],
    ) -> Result<Option<AdminCredential>, StoreError> {
        let sql = concat!(
            "SELECT ",
            credential_columns!(),
            " FROM admin_credentials WHERE digest = $1 AND status = 'active'"
        );
        let row: Option<CredentialRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&digest[..])
            .fetch_optional(pool)
            .await)?;
        let Some(credential) = row.map(AdminCredential::try_from).transpose()? else {
            return Ok(None);
        };
        let now = now_ms();
        if credential
            .last_used_at
            .is_none_or(|at| at <= now - LAST_USED_RESOLUTION_MS)
        {
            // Conditional, so concurrent requests write once.
            let touch = "UPDATE admin_credentials SET last_used_at = $2 \
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)";
            on_pool!(self, pool => sqlx::query(touch)
                .bind(&credential.id)
                .bind(now)
                .bind(now - LAST_USED_RESOLUTION_MS)
                .execute(pool)
                .await
                .map(drop))?;
        }
        Ok(Some(credential))
    }
}
