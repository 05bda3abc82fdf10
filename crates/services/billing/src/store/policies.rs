//! Content policies and word lists in the database: what the admin API
//! edits and `Policies.GetPolicies` serves, over the config file's defaults
//! (a database policy or word list overrides the file's of the same name).
//!
//! Every change is one transaction that first bumps the single-row policy
//! revision (the replicas' etag derives from it), which also serializes all
//! such changes: a policy cannot be deleted while a tenant is being assigned
//! it, nor a word list while a policy starts using it. Each change writes
//! its `admin_audit` row in the same transaction.

use std::collections::{BTreeMap, BTreeSet};

use llmgw_policy::PolicySpec;
use rand::TryRngCore as _;
use serde::Serialize;

use super::admin_audit::{Actor, Change, record_change};
use super::{BeginSnapshot as _, BeginWrite as _, Store, StoreError, now_ms};

/// Bumps the policy revision on `$executor` (a write transaction), first
/// thing in it: see the module docs.
macro_rules! bump_policy_revision {
    ($executor:expr) => {
        sqlx::query("UPDATE policy_state SET revision = revision + 1 WHERE id = 1")
            .execute($executor)
            .await
            .map(drop)
    };
}
pub(super) use bump_policy_revision;

/// `Err(StoreError::InvalidField)` unless `$name` is a policy of the
/// database (read on `$executor`) or of `$store`'s config defaults.
macro_rules! check_policy_exists {
    ($store:expr, $executor:expr, $name:expr) => {{
        let name: &str = $name;
        let found = if $store.policy_defaults().policies.contains_key(name) {
            true
        } else {
            let row: Option<(String,)> = sqlx::query_as("SELECT name FROM policies WHERE name = $1")
                .bind(name)
                .fetch_optional($executor)
                .await?;
            row.is_some()
        };
        if found {
            Ok(())
        } else {
            Err($crate::store::StoreError::InvalidField {
                field: "policy".to_owned(),
                message: format!(
                    "policy: no policy named {name:?} (create it with PUT /admin/v1/policies/{name})"
                ),
            })
        }
    }};
}
pub(super) use check_policy_exists;

/// A policy stored in the database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredPolicy {
    pub name: String,
    pub spec: PolicySpec,
    pub updated_at: i64,
}

/// The database's part of the policy set, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct PolicySnapshot {
    pub revision: i64,
    /// Policy name -> spec JSON.
    pub policies: BTreeMap<String, String>,
    pub word_lists: BTreeMap<String, Vec<String>>,
    /// Tenant name -> policy name, for tenants with one assigned.
    pub tenants: BTreeMap<String, String>,
}

/// The policy revision and the match-hash key: what the etag derives from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    pub revision: i64,
    pub match_hash_key: [u8; 32],
}

#[derive(sqlx::FromRow)]
struct PolicyRow {
    name: String,
    spec: String,
    updated_at: i64,
}

impl TryFrom<PolicyRow> for StoredPolicy {
    type Error = sqlx::Error;

    fn try_from(row: PolicyRow) -> Result<Self, Self::Error> {
        let spec = serde_json::from_str(&row.spec).map_err(|error| {
            sqlx::Error::Decode(format!("policy {:?}: {error}", row.name).into())
        })?;
        Ok(StoredPolicy {
            name: row.name,
            spec,
            updated_at: row.updated_at,
        })
    }
}

impl Store {
    /// The revision and the match-hash key, generating the key (32 bytes
    /// from the OS) the first time: of replicas racing, the first write
    /// wins and all read it back.
    pub async fn policy_state(&self) -> Result<PolicyState, StoreError> {
        let read = "SELECT revision, match_hash_key FROM policy_state WHERE id = 1";
        let (revision, key): (i64, Option<Vec<u8>>) =
            on_pool!(self, pool => sqlx::query_as(read).fetch_one(pool).await)?;
        let key = match key {
            Some(key) => key,
            None => {
                let mut fresh = [0u8; 32];
                rand::rngs::OsRng
                    .try_fill_bytes(&mut fresh)
                    .map_err(|error| {
                        StoreError::Invalid(format!(
                            "no randomness for the match-hash key: {error}"
                        ))
                    })?;
                let write = "UPDATE policy_state SET match_hash_key = $1 \
                     WHERE id = 1 AND match_hash_key IS NULL";
                on_pool!(self, pool => sqlx::query(write)
                    .bind(&fresh[..])
                    .execute(pool)
                    .await
                    .map(drop))?;
                let (_, key): (i64, Option<Vec<u8>>) =
                    on_pool!(self, pool => sqlx::query_as(read).fetch_one(pool).await)?;
                key.ok_or_else(|| {
                    StoreError::Invalid("the match-hash key could not be stored".to_owned())
                })?
            }
        };
        let match_hash_key = <[u8; 32]>::try_from(key.as_slice()).map_err(|_| {
            sqlx::Error::Decode("policy_state.match_hash_key is not 32 bytes".into())
        })?;
        Ok(PolicyState {
            revision,
            match_hash_key,
        })
    }

    /// Every policy, word list (with its terms) and tenant assignment in
    /// the database, and the revision they are at, from one snapshot.
    pub async fn policy_snapshot(&self) -> Result<PolicySnapshot, StoreError> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin_snapshot().await?;
            let (revision,): (i64,) =
                sqlx::query_as("SELECT revision FROM policy_state WHERE id = 1")
                    .fetch_one(&mut *tx)
                    .await?;
            let policies: Vec<(String, String)> =
                sqlx::query_as("SELECT name, spec FROM policies").fetch_all(&mut *tx).await?;
            let names: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM word_lists").fetch_all(&mut *tx).await?;
            let terms: Vec<(String, String)> =
                sqlx::query_as("SELECT list, term FROM word_list_terms")
                    .fetch_all(&mut *tx)
                    .await?;
            let tenants: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, policy FROM tenants WHERE policy IS NOT NULL",
            )
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            let mut word_lists: BTreeMap<String, Vec<String>> =
                names.into_iter().map(|(name,)| (name, Vec::new())).collect();
            for (list, term) in terms {
                word_lists.entry(list).or_default().push(term);
            }
            for terms in word_lists.values_mut() {
                terms.sort_unstable();
            }
            PolicySnapshot {
                revision,
                policies: policies.into_iter().collect(),
                word_lists,
                tenants: tenants.into_iter().collect(),
            }
        }))
    }

    /// The database's policies, by name.
    pub async fn list_policies(&self) -> Result<Vec<StoredPolicy>, StoreError> {
        let sql = "SELECT name, spec, updated_at FROM policies ORDER BY name";
        let rows: Vec<PolicyRow> =
            on_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)?;
        Ok(rows
            .into_iter()
            .map(StoredPolicy::try_from)
            .collect::<Result<_, _>>()?)
    }

    pub async fn get_policy(&self, name: &str) -> Result<Option<StoredPolicy>, StoreError> {
        let sql = "SELECT name, spec, updated_at FROM policies WHERE name = $1";
        let row: Option<PolicyRow> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(name).fetch_optional(pool).await)?;
        Ok(row.map(StoredPolicy::try_from).transpose()?)
    }

    /// Tenants assigned policy `name`, by name.
    pub async fn tenants_with_policy(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let sql = "SELECT name FROM tenants WHERE policy = $1 ORDER BY name";
        let rows: Vec<(String,)> =
            on_pool!(self, pool => sqlx::query_as(sql).bind(name).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    /// Creates or replaces policy `name`; `true` if it was created. The
    /// caller has compiled `spec`; here, inside the transaction, the word
    /// lists it names must exist (database or config file), so a list
    /// deleted meanwhile cannot leave the policy dangling.
    pub async fn put_policy(
        &self,
        name: &str,
        spec: &PolicySpec,
        by: &Actor,
    ) -> Result<(StoredPolicy, bool), StoreError> {
        let json = super::rows::to_json(spec)?;
        let stored = StoredPolicy {
            name: name.to_owned(),
            spec: spec.clone(),
            updated_at: now_ms(),
        };
        let lists: BTreeSet<&str> = spec
            .rules
            .iter()
            .flat_map(|rule| rule.word_lists.iter().map(String::as_str))
            .collect();
        let created = on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            bump_policy_revision!(&mut *tx)?;
            for list in &lists {
                if self.defaults.word_lists.contains_key(*list) {
                    continue;
                }
                let found: Option<(String,)> =
                    sqlx::query_as("SELECT name FROM word_lists WHERE name = $1")
                        .bind(*list)
                        .fetch_optional(&mut *tx)
                        .await?;
                if found.is_none() {
                    return Err(StoreError::InvalidField {
                        field: "rules".to_owned(),
                        message: format!("word list {list:?} is not defined"),
                    });
                }
            }
            let before: Option<PolicyRow> = sqlx::query_as(
                "SELECT name, spec, updated_at FROM policies WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let before = before.map(StoredPolicy::try_from).transpose()?;
            sqlx::query(
                "INSERT INTO policies (name, spec, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, \
                 updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(&json)
            .bind(stored.updated_at)
            .execute(&mut *tx)
            .await?;
            let action = if before.is_some() { "policy.update" } else { "policy.create" };
            let change = Change::new(
                action,
                format!("policy:{name}"),
                before.as_ref().map(|p| &p.spec),
                Some(spec),
            )?;
            record_change!(&mut *tx, by, &change)?;
            tx.commit().await?;
            before.is_none()
        });
        Ok((stored, created))
    }

    /// Deletes policy `name` from the database; `None` if it has none.
    /// [`StoreError::InUse`] if a tenant or the default uses it and the
    /// config file does not define it (else they fall back to the file's).
    pub async fn delete_policy(
        &self,
        name: &str,
        by: &Actor,
    ) -> Result<Option<StoredPolicy>, StoreError> {
        let falls_back = self.defaults.policies.contains_key(name);
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            bump_policy_revision!(&mut *tx)?;
            let before: Option<PolicyRow> =
                sqlx::query_as("DELETE FROM policies WHERE name = $1 RETURNING name, spec, updated_at")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(before) = before else {
                return Ok(None);
            };
            if !falls_back {
                if self.defaults.default == name {
                    return Err(StoreError::InUse(format!(
                        "policy {name:?} is the default policy (config file policy.default)"
                    )));
                }
                let users: Vec<(String,)> =
                    sqlx::query_as("SELECT name FROM tenants WHERE policy = $1 ORDER BY name LIMIT 5")
                        .bind(name)
                        .fetch_all(&mut *tx)
                        .await?;
                if !users.is_empty() {
                    let users: Vec<String> = users.into_iter().map(|(name,)| name).collect();
                    return Err(StoreError::InUse(format!(
                        "policy {name:?} is assigned to tenants {users:?}: assign them another \
                         policy first"
                    )));
                }
            }
            let before = StoredPolicy::try_from(before)?;
            let change = Change::new(
                "policy.delete",
                format!("policy:{name}"),
                Some(&before.spec),
                None::<&PolicySpec>,
            )?;
            record_change!(&mut *tx, by, &change)?;
            tx.commit().await?;
            Some(before)
        }))
    }
}
