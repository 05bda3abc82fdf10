//! The admin-action trail: one `admin_audit` row per change made through
//! the admin API, written by the store method making the change, inside its
//! transaction, so a change is never committed without its row (nor a row
//! without its change). Read back newest first.

use serde::Serialize;
use serde_json::Value;
use sqlx::QueryBuilder;

use super::{Store, StoreError};

/// Who asks for a change: the admin token's id (never the token) and the
/// client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `admin:` + the first 12 hex digits of the token's SHA-256, or
    /// `system:<tool>` for changes made without the admin API.
    pub id: String,
    /// The TCP peer (`ip:port`), or `local` for tools.
    pub address: String,
}

impl Actor {
    /// A tool writing to the store directly (tests, benchmarks, seeding).
    pub fn system(tool: &str) -> Actor {
        Actor {
            id: format!("system:{tool}"),
            address: "local".to_owned(),
        }
    }
}

/// One change, as recorded: `before`/`after` are JSON of the object, `None`
/// for what did not exist. Built only from types without secrets (a key's
/// record never holds its secret or digest).
pub(super) struct Change {
    pub action: &'static str,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl Change {
    pub fn new(
        action: &'static str,
        target: String,
        before: Option<&impl Serialize>,
        after: Option<&impl Serialize>,
    ) -> Result<Change, sqlx::Error> {
        Ok(Change {
            action,
            target,
            before: before.map(super::rows::to_json).transpose()?,
            after: after.map(super::rows::to_json).transpose()?,
        })
    }
}

/// Inserts a [`Change`] by an [`Actor`] on `$executor` (the change's
/// transaction). A macro because the executor's type differs per backend.
macro_rules! record_change {
    ($executor:expr, $actor:expr, $change:expr) => {{
        let actor: &$crate::store::admin_audit::Actor = $actor;
        let change: &$crate::store::admin_audit::Change = $change;
        sqlx::query(
            "INSERT INTO admin_audit (at_ms, actor, client_address, action, target, before, after) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind($crate::store::now_ms())
        .bind(&actor.id)
        .bind(&actor.address)
        .bind(change.action)
        .bind(&change.target)
        .bind(change.before.as_deref())
        .bind(change.after.as_deref())
        .execute($executor)
        .await
        .map(drop)
    }};
}
pub(super) use record_change;

/// Filters of the admin trail; `None` = any. Times are unix ms, `from`
/// inclusive and `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct AdminAuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Only rows older than this id (the previous page's last).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminAuditRow {
    pub id: i64,
    /// Unix ms.
    pub at: i64,
    pub actor: String,
    pub client_address: String,
    pub action: String,
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

#[derive(sqlx::FromRow)]
struct RawRow {
    id: i64,
    at_ms: i64,
    actor: String,
    client_address: String,
    action: String,
    target: String,
    before: Option<String>,
    after: Option<String>,
}

impl Store {
    /// Up to `query.limit` admin-trail rows matching the filters, newest
    /// first (by id: the order they were written in).
    pub async fn admin_audit_page(
        &self,
        query: &AdminAuditQuery,
    ) -> Result<Vec<AdminAuditRow>, StoreError> {
        let rows: Vec<RawRow> = on_pool!(self, pool => {
            let mut sql = QueryBuilder::new(
                "SELECT id, at_ms, actor, client_address, action, target, before, after \
                 FROM admin_audit WHERE 1 = 1",
            );
            for (column, value) in [
                ("actor", &query.actor),
                ("action", &query.action),
                ("target", &query.target),
            ] {
                if let Some(value) = value {
                    sql.push(" AND ").push(column).push(" = ").push_bind(value.clone());
                }
            }
            if let Some(from) = query.from_ms {
                sql.push(" AND at_ms >= ").push_bind(from);
            }
            if let Some(to) = query.to_ms {
                sql.push(" AND at_ms < ").push_bind(to);
            }
            if let Some(id) = query.before_id {
                sql.push(" AND id < ").push_bind(id);
            }
            sql.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(query.limit));
            sql.build_query_as::<RawRow>().fetch_all(pool).await
        })?;
        rows.into_iter()
            .map(|row| {
                let parse = |text: Option<String>| {
                    text.map(|text| {
                        serde_json::from_str(&text).map_err(|error| {
                            sqlx::Error::Decode(format!("admin_audit {}: {error}", row.id).into())
                        })
                    })
                    .transpose()
                };
                Ok(AdminAuditRow {
                    before: parse(row.before)?,
                    after: parse(row.after)?,
                    id: row.id,
                    at: row.at_ms,
                    actor: row.actor,
                    client_address: row.client_address,
                    action: row.action,
                    target: row.target,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
