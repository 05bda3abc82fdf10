//! Migrations: several processes migrating one fresh database at once.

use std::path::PathBuf;

use llmgw_billing::store::Store;

use crate::support::TestDb;

/// The number of migration files the store embeds for a backend.
fn migration_files(dir: &str) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".sql")
        })
        .count()
}

async fn assert_migrated_once(db: &TestDb, dir: &str) {
    let rows = db
        .raw_rows("SELECT CAST(version AS TEXT) AS v FROM _sqlx_migrations")
        .await;
    let mut versions: Vec<&String> = rows.iter().flat_map(|r| &r.texts).collect();
    let expected = migration_files(dir);
    assert!(expected >= 1);
    assert_eq!(
        versions.len(),
        expected,
        "one row per migration: {versions:?}"
    );
    versions.dedup();
    assert_eq!(versions.len(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrate_applies_once() {
    let db = TestDb::postgres_unmigrated().await;
    let other = Store::connect(&db.url).await.unwrap();
    let (a, b) = tokio::join!(db.store.migrate(), other.migrate());
    a.unwrap();
    b.unwrap();
    assert_migrated_once(&db, "../../../migrations/billing/postgres").await;
    db.store.migrate().await.unwrap(); // idempotent
    assert_migrated_once(&db, "../../../migrations/billing/postgres").await;
    assert_eq!(db.store.backend(), "postgres");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_migrate_applies_once() {
    let db = TestDb::sqlite_unmigrated().await;
    let other = Store::connect(&db.url).await.unwrap();
    let (a, b) = tokio::join!(db.store.migrate(), other.migrate());
    a.unwrap();
    b.unwrap();
    assert_migrated_once(&db, "../../../migrations/billing/sqlite").await;
    db.store.migrate().await.unwrap();
    assert_migrated_once(&db, "../../../migrations/billing/sqlite").await;
    assert_eq!(db.store.backend(), "sqlite");
    db.store.ping().await.unwrap();
}
