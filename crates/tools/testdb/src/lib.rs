//! A fresh Postgres database per test (or bench run), so tests run in
//! parallel without seeing each other's rows.
//!
//! The server is `$LLMGW_TEST_POSTGRES` (a URL without a database, e.g.
//! `postgres://postgres@db.internal:5432`), else
//! `postgres://postgres@127.0.0.1:5432`. Each [`TestDatabase`] creates a
//! database named `<prefix>_<uuid>`, runs the workspace's Postgres
//! migrations when asked ([`TestDatabase::migrated`]), and drops the
//! database (`WITH (FORCE)`, ending sessions the code under test still
//! holds) when it is dropped, whether the test passed or panicked.
//!
//! Dev-only: no production crate depends on this one.

use std::time::Duration;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};

/// The environment variable naming the Postgres server tests use.
pub const SERVER_ENV: &str = "LLMGW_TEST_POSTGRES";
/// The server when [`SERVER_ENV`] is unset: the development set-up's.
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// The same files billing's `Store::migrate` embeds.
static MIGRATIONS: Migrator = sqlx::migrate!("../../../migrations/billing/postgres");

/// How long the best-effort drop may take before it gives up (a wedged
/// server must not hang a test that already passed).
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

/// One fresh database on the test server; dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// An empty database (no tables): for tests of migrations themselves,
    /// or of code that migrates on start-up. `prefix` says what made it
    /// (`billing_store`, `e2e_ledger`) for anyone looking at the server;
    /// characters other than `[a-z0-9_]` are dropped.
    pub async fn create(prefix: &str) -> Result<TestDatabase, sqlx::Error> {
        let server = server();
        let name = unique_name(prefix);
        let mut admin = admin_connection(&server).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
        // Best effort: a failed close only leaves an idle session behind.
        let _ = admin.close().await;
        Ok(TestDatabase {
            url: format!("{server}/{name}"),
            server,
            name,
        })
    }

    /// A database with the workspace's Postgres schema (`migrations/`)
    /// applied.
    pub async fn migrated(prefix: &str) -> Result<TestDatabase, sqlx::Error> {
        let database = TestDatabase::create(prefix).await?;
        let mut connection = PgConnection::connect(&database.url).await?;
        MIGRATIONS.run_direct(None, &mut connection, false).await?;
        let _ = connection.close().await;
        Ok(database)
    }

    /// The database's URL, for the code under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`<prefix>_<uuid>`), for statements about it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A small pool on the database, for looking under the code's API.
    pub async fn pool(&self) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await
    }

    /// Lets clients in again, or (false) refuses new connections and ends
    /// the open ones: Postgres is gone for the code under test while the
    /// server runs on (outage tests).
    pub async fn allow_connections(&self, allow: bool) -> Result<(), sqlx::Error> {
        let name = &self.name;
        let sql = if allow {
            format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true")
        } else {
            format!(
                "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
        };
        let mut admin = admin_connection(&self.server).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await?;
        let _ = admin.close().await;
        Ok(())
    }

    /// Drops the database now, ending the sessions on it: the database is
    /// gone from under the code under test. Dropping the value later is
    /// then a no-op.
    pub async fn drop_database(&self) -> Result<(), sqlx::Error> {
        drop_database(&self.server, &self.name).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await and may run inside the test's runtime (where
        // blocking on it would panic): a thread with its own runtime does
        // the clean-up and is joined, so the database is gone when the test
        // returns. Best effort: a leftover database is litter, not a test
        // failure, and a panic here would hide the test's own.
        let (server, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let _ = tokio::time::timeout(DROP_TIMEOUT, drop_database(&server, &name)).await;
            });
        })
        .join();
    }
}

fn server() -> String {
    std::env::var(SERVER_ENV)
        .ok()
        .filter(|server| !server.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
        .trim()
        .trim_end_matches('/')
        .to_owned()
}

/// `<prefix>_<uuid>`, within Postgres's 63-byte identifier limit, and
/// safe inside double quotes and single-quoted literals.
fn unique_name(prefix: &str) -> String {
    let prefix: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(30)
        .collect();
    let prefix = if prefix.is_empty() {
        "llmgw_test"
    } else {
        &prefix
    };
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

async fn admin_connection(server: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect(&format!("{server}/postgres")).await
}

async fn drop_database(server: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = admin_connection(server).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    let _ = admin.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_safe_identifiers() {
        let a = unique_name("Billing-Store \"x\"; DROP");
        let b = unique_name("Billing-Store \"x\"; DROP");
        assert_ne!(a, b);
        assert!(a.starts_with("billingstorexdrop_"), "{a}");
        assert!(a.len() <= 63, "{a}");
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'),
            "{a}"
        );
        assert!(unique_name(&"x".repeat(200)).len() <= 63);
        assert!(unique_name("").starts_with("llmgw_test_"));
    }
}
