//! What a test author relies on: the database exists and is empty (or
//! migrated) while the fixture lives, and is gone once it is dropped.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

use llmgw_testdb::{DEFAULT_SERVER, SERVER_ENV, TestDatabase};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

async fn exists(name: &str) -> bool {
    let server = std::env::var(SERVER_ENV).unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await
        .unwrap();
    found.is_some()
}

async fn tables(database: &TestDatabase) -> Vec<String> {
    let pool = database.pool().await.unwrap();
    let tables = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    tables
}

#[tokio::test]
async fn a_created_database_is_empty_and_dropped_with_the_fixture() {
    let database = TestDatabase::create("testdb_empty").await.unwrap();
    let name = database.name().to_owned();
    assert!(name.starts_with("testdb_empty_"), "{name}");
    assert!(database.url().ends_with(&format!("/{name}")));
    assert!(exists(&name).await);
    assert!(tables(&database).await.is_empty());

    // An open session does not keep the database alive.
    let mut held = PgConnection::connect(database.url()).await.unwrap();
    drop(database);
    assert!(!exists(&name).await, "{name} outlived its fixture");
    assert!(sqlx::query("SELECT 1").execute(&mut held).await.is_err());
}

#[tokio::test]
async fn migrated_has_the_workspace_schema() {
    let a = TestDatabase::migrated("testdb_migrated").await.unwrap();
    let b = TestDatabase::migrated("testdb_migrated").await.unwrap();
    assert_ne!(a.name(), b.name());
    let tables = tables(&a).await;
    for table in ["_sqlx_migrations", "tenants", "api_keys"] {
        assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
    }
}

#[tokio::test]
async fn drop_database_now_then_the_fixture_drops_quietly() {
    let database = TestDatabase::create("testdb_now").await.unwrap();
    let name = database.name().to_owned();
    database.drop_database().await.unwrap();
    assert!(!exists(&name).await);
    drop(database);
}

#[tokio::test]
async fn connections_can_be_refused_and_allowed_again() {
    let database = TestDatabase::create("testdb_outage").await.unwrap();
    let mut before = PgConnection::connect(database.url()).await.unwrap();

    database.allow_connections(false).await.unwrap();
    assert!(sqlx::query("SELECT 1").execute(&mut before).await.is_err());
    assert!(PgConnection::connect(database.url()).await.is_err());

    database.allow_connections(true).await.unwrap();
    let mut after = PgConnection::connect(database.url()).await.unwrap();
    sqlx::query("SELECT 1").execute(&mut after).await.unwrap();
    after.close().await.unwrap();
}
