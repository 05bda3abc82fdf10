//! Fresh databases per test, raw access under the API, small builders.

use std::path::PathBuf;

use llmgw_billing::store::{Actor, KeyInfo, Limits, NewKey, NewTenant, Store};
use llmgw_testdb::TestDatabase;
use sqlx::{Connection, Row};

/// A fresh database, dropped (Postgres, by the shared fixture) or deleted
/// (SQLite) when the test ends, even when it fails.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    pub postgres: Option<TestDatabase>,
    pub sqlite_file: Option<PathBuf>,
}

impl TestDb {
    pub async fn postgres() -> TestDb {
        let db = TestDb::postgres_unmigrated().await;
        db.store.migrate().await.unwrap();
        db
    }

    pub async fn postgres_unmigrated() -> TestDb {
        let database = TestDatabase::create("billing_store").await.unwrap();
        let url = database.url().to_owned();
        TestDb {
            store: Store::connect(&url).await.unwrap(),
            url,
            postgres: Some(database),
            sqlite_file: None,
        }
    }

    pub async fn sqlite() -> TestDb {
        let db = TestDb::sqlite_unmigrated().await;
        db.store.migrate().await.unwrap();
        db
    }

    pub async fn sqlite_unmigrated() -> TestDb {
        let file = std::env::temp_dir().join(format!("llmgw_test_{}.db", uuid::Uuid::new_v4()));
        let url = format!("sqlite://{}", file.display());
        TestDb {
            store: Store::connect(&url).await.unwrap(),
            url,
            postgres: None,
            sqlite_file: Some(file),
        }
    }

    /// A plain sqlx connection to the same database, to look under the API.
    pub async fn raw_rows(&self, sql: &'static str) -> Vec<RawRow> {
        let mut out = Vec::new();
        if self.postgres.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            for row in sqlx::query(sql).fetch_all(&mut conn).await.unwrap() {
                out.push(RawRow::from_row(&row));
            }
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            for row in sqlx::query(sql).fetch_all(&mut conn).await.unwrap() {
                out.push(RawRow::from_row(&row));
            }
        }
        out
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(file) = self.sqlite_file.take() {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

/// Every column of a row, as text or bytes where it is one of those.
pub struct RawRow {
    pub texts: Vec<String>,
    pub blobs: Vec<Vec<u8>>,
}

impl RawRow {
    fn from_row<R: Row>(row: &R) -> RawRow
    where
        usize: sqlx::ColumnIndex<R>,
        for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let mut raw = RawRow {
            texts: Vec::new(),
            blobs: Vec::new(),
        };
        for i in 0..row.len() {
            if let Ok(text) = row.try_get::<Option<String>, _>(i) {
                raw.texts.extend(text);
            } else if let Ok(blob) = row.try_get::<Option<Vec<u8>>, _>(i) {
                raw.blobs.extend(blob);
            }
        }
        raw
    }
}

pub fn tenant(name: &str) -> NewTenant {
    NewTenant {
        name: name.into(),
        monthly_budget_nano_usd: None,
        limits: Limits::default(),
        policy: None,
    }
}

/// Who the store tests act as (a tool, not the admin API).
pub fn by() -> Actor {
    Actor::system("test")
}

pub fn key(name: &str) -> NewKey {
    NewKey {
        name: name.into(),
        allowed_models: vec![],
        limits: Limits::default(),
        expires_at: None,
    }
}

pub async fn lookup(store: &Store, secret: &str) -> Option<KeyInfo> {
    store
        .lookup_digest(&llmgw_apikey::digest(secret))
        .await
        .unwrap()
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
