//! Tenants and API keys in Postgres (production) or SQLite (the embedded
//! default).
//!
//! Both backends run the same SQL text: it sticks to what the two dialects
//! share (`$N` parameters, `RETURNING`, partial unique indexes, BIGINT unix
//! milliseconds, TEXT ids) so there is one query per operation to review.
//! The schema lives in `migrations/billing/postgres/` and `migrations/billing/sqlite/`,
//! embedded at compile time.
//!
//! Secrets never reach the database: a key is generated here, its SHA-256
//! digest stored, and the text returned once to the caller.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use llmgw_policy::PolicySource;

use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// Runs `$body` with `$pool` bound to whichever pool the store holds. The
/// body is written once and type-checked once per backend, which is what
/// keeps the two backends from drifting apart.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Postgres($pool) => $body,
            $crate::store::Pool::Sqlite($pool) => $body,
        }
    };
}

/// Columns of `rows::TenantRow`, for every SELECT and RETURNING. Macros
/// rather than constants so `concat!` keeps each query a `&'static str`
/// (which sqlx accepts as SQL without an `AssertSqlSafe`).
macro_rules! tenant_columns {
    () => {
        "id, name, status, monthly_budget_nano_usd, limits, policy, created_at, updated_at"
    };
}

/// Columns of `rows::KeyRow`. The digest is deliberately absent: nothing but
/// the lookup ever reads it back.
macro_rules! key_columns {
    () => {
        "id, tenant_id, name, display_prefix, status, allowed_models, limits, \
         expires_at, created_at, last_used_at, revoked_at"
    };
}

pub use llmgw_calendar as calendar;
pub mod admin_audit;
pub mod admins;
pub mod audit;
pub mod audit_query;
mod keys;
pub mod ledger;
mod partitions;
pub mod policies;
mod rows;
pub mod sessions;
mod statement_rows;
mod tenants;
pub mod usage_query;
pub mod word_lists;

pub use admin_audit::Actor;
pub use admins::{AdminCredential, NewCredential, Role};
pub use sessions::{NewSession, Session};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../../migrations/billing/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../../migrations/billing/sqlite");

/// How long a SQLite writer waits for another one before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest tenant or key name.
const MAX_NAME_CHARS: usize = 64;
/// Longest model alias accepted in `allowed_models`.
const MAX_MODEL_CHARS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    Active,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Revoked,
}

/// Rate limits of a key (or, on a tenant, the defaults of its keys). `None`
/// means "not limited here".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    pub concurrent: Option<u64>,
}

impl Limits {
    /// These limits where set, `defaults`' elsewhere (a key's own limits over
    /// its tenant's defaults for its keys).
    pub fn or(&self, defaults: &Limits) -> Limits {
        Limits {
            requests_per_minute: self.requests_per_minute.or(defaults.requests_per_minute),
            tokens_per_minute: self.tokens_per_minute.or(defaults.tokens_per_minute),
            tokens_per_day: self.tokens_per_day.or(defaults.tokens_per_day),
            concurrent: self.concurrent.or(defaults.concurrent),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub status: TenantStatus,
    pub monthly_budget_nano_usd: Option<u64>,
    pub limits: Limits,
    /// The tenant's content policy; `None` = the default policy.
    pub policy: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A stored key. The secret is not part of it: it exists only in the answer
/// of [`Store::create_key`] / [`Store::rotate_key`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub display_prefix: String,
    pub status: KeyStatus,
    pub allowed_models: Vec<String>,
    pub limits: Limits,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub struct NewTenant {
    pub name: String,
    pub monthly_budget_nano_usd: Option<u64>,
    pub limits: Limits,
    /// A policy of the database or the config file; `None` = the default.
    pub policy: Option<String>,
}

/// Fields to change; `None` leaves a field as it is. The budget and the
/// policy are doubly optional so that they can be removed: `Some(None)`.
#[derive(Default)]
pub struct TenantUpdate {
    pub name: Option<String>,
    pub monthly_budget_nano_usd: Option<Option<u64>>,
    pub limits: Option<Limits>,
    pub policy: Option<Option<String>>,
}

pub struct NewKey {
    pub name: String,
    pub allowed_models: Vec<String>,
    pub limits: Limits,
    pub expires_at: Option<i64>,
}

/// Settings of an active key to change; `None` leaves a field as it is. The
/// expiry is doubly optional so that it can be removed: `Some(None)`.
#[derive(Default)]
pub struct KeyUpdate {
    pub allowed_models: Option<Vec<String>>,
    pub limits: Option<Limits>,
    pub expires_at: Option<Option<i64>>,
}

/// What the edge needs to authorize a request (an active key of an active
/// tenant, not expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_id: String,
    pub name: String,
    /// The tenant's name (what quotas and logs are keyed by).
    pub tenant: String,
    pub allowed_models: Vec<String>,
    pub expires_at: Option<i64>,
    /// The key's effective limits: each one the key sets, else its tenant's
    /// default for its keys (field by field).
    pub limits: Limits,
    /// The tenant's monthly budget.
    pub tenant_monthly_budget_nano_usd: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A name is already taken; the message says which.
    #[error("{0}")]
    Conflict(String),
    /// The request cannot be honoured as asked (bad name, unknown or disabled
    /// tenant...); the message says why and is safe to show to an operator.
    #[error("{0}")]
    Invalid(String),
    /// As `Invalid`, about one field of the request (`policy`, `rules[2]`).
    #[error("{message}")]
    InvalidField { field: String, message: String },
    /// The change would leave something pointing at nothing (a policy a
    /// tenant uses, a word list a policy uses); the message says what.
    #[error("{0}")]
    InUse(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The accounts database. Cloning is cheap (the pool is shared).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The config file's policies and word lists: the defaults the
    /// database's override, consulted when a change must not leave a
    /// tenant or a policy pointing at nothing.
    defaults: Arc<PolicySource>,
}

/// By hand: the defaults can hold word lists of 100k terms.
impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("pool", &self.pool)
            .field("default_policies", &self.defaults.policies.keys())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects to `postgres://...` (or `postgresql://`) or `sqlite://PATH`
    /// (`sqlite:PATH` and `sqlite::memory:` work too). A missing SQLite file
    /// is created; it runs in WAL mode (readers never wait for the writer),
    /// with foreign keys enforced and writers waiting up to 5 s for each
    /// other instead of failing at once.
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        let pool = if database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
        {
            let options = PgConnectOptions::from_str(database_url)?;
            // A database that stops answering fails calls in seconds, not
            // sqlx's default 30 s: the edge falls back to its cache meanwhile.
            Pool::Postgres(
                PgPoolOptions::new()
                    .acquire_timeout(std::time::Duration::from_secs(3))
                    .connect_with(options)
                    .await?,
            )
        } else if database_url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(database_url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            Pool::Sqlite(SqlitePoolOptions::new().connect_with(options).await?)
        } else {
            return Err(StoreError::Invalid(
                "unsupported database URL: expected postgres://... or sqlite://PATH".into(),
            ));
        };
        Ok(Store {
            pool,
            defaults: Arc::default(),
        })
    }

    /// This store, with the config file's policies and word lists as the
    /// defaults (see [`Store::policy_defaults`]).
    pub fn with_policy_defaults(mut self, defaults: Arc<PolicySource>) -> Store {
        self.defaults = defaults;
        self
    }

    /// The config file's `policy:` section: policies and word lists the
    /// database's of the same name override, and the default policy.
    pub fn policy_defaults(&self) -> &Arc<PolicySource> {
        &self.defaults
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    /// Applies pending migrations; safe to run from several processes at once.
    ///
    /// `run_direct` on a connection we hold, not `run(&pool)`: `run` is
    /// generic over `Acquire` lifetimes, which makes the future impossible to
    /// prove `Send` where it is spawned (rust-lang/rust#102211).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                // sqlx serializes migrators with a session-level advisory
                // lock. If a migration fails the lock is not released, so the
                // connection must not go back to the pool holding it.
                let mut conn = pool.acquire().await?;
                let result = POSTGRES_MIGRATIONS
                    .run_direct(None, &mut *conn, false)
                    .await;
                if result.is_err() {
                    conn.close_on_drop();
                }
                result?;
            }
            Pool::Sqlite(pool) => {
                // sqlx takes no lock on SQLite: two processes could both read
                // "nothing applied" and both apply 0001. Running the whole
                // migrator inside one BEGIN IMMEDIATE transaction takes the
                // database's write lock first, so the second waits (busy
                // timeout) and then sees the first's work. Each migration's
                // own transaction becomes a savepoint inside it. (A future
                // `-- no-transaction` migration would need another scheme.)
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                SQLITE_MIGRATIONS.run_direct(None, &mut *tx, false).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))?;
        Ok(())
    }
}

/// The current time in unix milliseconds, the unit of every timestamp here.
pub fn now_ms() -> i64 {
    // A clock before 1970 is a broken host; 0 keeps the store working and
    // makes the problem visible in the data instead of panicking.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Begins a transaction that writes. On SQLite it takes the write lock at
/// once (`BEGIN IMMEDIATE`): a deferred transaction that reads first and
/// writes later can fail with SQLITE_BUSY instead of waiting.
trait BeginWrite {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginWrite for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error> {
        self.begin().await
    }
}

impl BeginWrite for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

/// Begins a read-only transaction whose reads all see one snapshot (on
/// Postgres REPEATABLE READ; a SQLite read transaction already does).
trait BeginSnapshot {
    type Db: sqlx::Database;
    async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>;
}

impl BeginSnapshot for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error> {
        self.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
    }
}

impl BeginSnapshot for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_snapshot(&self) -> Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error> {
        self.begin().await
    }
}

/// Names of tenants and keys: 1 to 64 of `A-Z a-z 0-9 . _ -`, so they are
/// safe in URLs, logs, metrics labels and Redis keys without escaping.
fn validate_name(what: &str, name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "invalid {what} name {name:?}: use 1 to {MAX_NAME_CHARS} characters of A-Z, a-z, 0-9, '.', '_' and '-'"
        )))
    }
}

fn validate_models(models: &[String]) -> Result<(), StoreError> {
    for model in models {
        if model.is_empty() || model.len() > MAX_MODEL_CHARS || model.chars().any(char::is_control)
        {
            return Err(StoreError::Invalid(format!(
                "invalid model name {model:?} in allowed_models"
            )));
        }
    }
    Ok(())
}

/// Budgets are `u64` in the API and BIGINT in the database.
fn budget_to_db(budget: Option<u64>) -> Result<Option<i64>, StoreError> {
    budget
        .map(|b| {
            i64::try_from(b).map_err(|_| {
                StoreError::Invalid(format!("monthly budget {b} nano-USD is too large"))
            })
        })
        .transpose()
}

/// Turns a unique violation into a [`StoreError::Conflict`] with `message`;
/// any other error stays a database error.
fn conflict_or_db(error: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.is_unique_violation()
    {
        return StoreError::Conflict(message());
    }
    StoreError::Database(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("key", "prod-1.a_b").is_ok());
        assert!(validate_name("key", &"a".repeat(64)).is_ok());
        assert!(validate_name("key", &"a".repeat(65)).is_err());
        assert!(validate_name("key", "").is_err());
        assert!(validate_name("key", "has space").is_err());
        assert!(validate_name("key", "é").is_err());
    }

    #[test]
    fn budgets() {
        assert!(matches!(
            budget_to_db(Some(u64::MAX)),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(budget_to_db(Some(5)), Ok(Some(5))));
        assert!(matches!(budget_to_db(None), Ok(None)));
    }
}
