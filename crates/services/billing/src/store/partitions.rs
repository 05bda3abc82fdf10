//! Monthly partitions of `usage_events` on Postgres, created by billing the
//! first time a batch needs one (see `ledger.rs`).

use std::collections::BTreeSet;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

use super::calendar::Month;

/// Creates the partition of each month that does not have one yet. Several
/// replicas may race to create the same month: `IF NOT EXISTS` checks the
/// catalog before creating, so two creators can both pass the check and
/// the loser fails with "already exists" (42P07) or a unique violation on
/// the catalog (23505). Either means the partition now exists, which is all
/// we wanted.
pub(super) async fn ensure(pool: &PgPool, months: &BTreeSet<Month>) -> Result<(), sqlx::Error> {
    for month in months {
        let (from, to) = month.range_ms();
        // Only digits are interpolated: the month's and the bounds'.
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS usage_events_{} PARTITION OF usage_events \
             FOR VALUES FROM ({from}) TO ({to})",
            month.compact()
        );
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await {
            Ok(_) => tracing::info!(%month, "usage ledger partition ready"),
            Err(error) if lost_creation_race(&error) => {
                tracing::debug!(%month, "usage ledger partition created concurrently");
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn lost_creation_race(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("42P07" | "23505")))
}

/// Postgres's "no partition of relation ... found for row": a check
/// violation (23514) that, unlike a CHECK constraint's, names no constraint.
pub(super) fn is_missing(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23514") && db.constraint().is_none())
}
