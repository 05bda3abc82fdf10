//! Monthly partitions on Postgres of the append-only tables (`usage_events`,
//! `audit_events`), created by billing the first time a batch needs one
//! (see `ledger.rs` and `audit.rs`).

use std::collections::BTreeSet;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

use super::calendar::Month;

/// A table partitioned by month. A closed set: its name is interpolated
/// into DDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Partitioned {
    UsageEvents,
    AuditEvents,
}

impl Partitioned {
    fn table(self) -> &'static str {
        match self {
            Partitioned::UsageEvents => "usage_events",
            Partitioned::AuditEvents => "audit_events",
        }
    }

    /// For log lines.
    fn what(self) -> &'static str {
        match self {
            Partitioned::UsageEvents => "usage ledger",
            Partitioned::AuditEvents => "audit trail",
        }
    }
}

/// Creates the partition of each month that does not have one yet. Several
/// replicas may race to create the same month: `IF NOT EXISTS` checks the
/// catalog before creating, so two creators can both pass the check and
/// the loser fails with "already exists" (42P07) or a unique violation on
/// the catalog (23505). Either means the partition now exists, which is all
/// we wanted.
pub(super) async fn ensure(
    pool: &PgPool,
    table: Partitioned,
    months: &BTreeSet<Month>,
) -> Result<(), sqlx::Error> {
    let (name, what) = (table.table(), table.what());
    for month in months {
        let (from, to) = month.range_ms();
        // Only a fixed table name and digits are interpolated: the month's
        // and the bounds'.
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {name}_{} PARTITION OF {name} \
             FOR VALUES FROM ({from}) TO ({to})",
            month.compact()
        );
        match sqlx::raw_sql(AssertSqlSafe(sql)).execute(pool).await {
            Ok(_) => tracing::info!(%month, table = name, "{what} partition ready"),
            Err(error) if lost_creation_race(&error) => {
                tracing::debug!(%month, table = name, "{what} partition created concurrently");
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
