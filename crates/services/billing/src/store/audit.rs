//! Writes of the audit trail: batches of content-policy hits from the edge
//! and the routers, recorded exactly once per (request_id, attempt,
//! sequence) however often a batch is redelivered. The same scheme as the
//! usage ledger (`ledger.rs`): one transaction per batch, `INSERT ... ON
//! CONFLICT DO NOTHING RETURNING` tells what this delivery added, rows go in
//! key order, and a month's partition is created on Postgres when an insert
//! first needs it.

use std::collections::BTreeSet;

use llmgw_proto::billing_v1::AuditEvent;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, QueryBuilder};

use super::calendar::{Day, Month};
use super::ledger::Recorded;
use super::partitions::{self, Partitioned};
use super::{BeginWrite as _, Pool, Store, StoreError};

/// The most events one RecordAudit batch may carry.
pub const MAX_AUDIT_BATCH_EVENTS: usize = 10_000;
/// Longest id or name field of an event.
const MAX_TEXT_BYTES: usize = 512;
/// Longest excerpt (a policy opts in to a short one; this bounds a row).
const MAX_EXCERPT_BYTES: usize = 2_048;

/// The values an audit event's `direction` and `action` may take.
pub const DIRECTIONS: [&str; 2] = ["input", "output"];
pub const ACTIONS: [&str; 3] = ["block", "redact", "flag"];

/// An event checked and converted to column values.
struct Row<'a> {
    event: &'a AuditEvent,
    attempt: i64,
    sequence: i64,
    offset: i64,
    length: i64,
    /// The excerpt with NUL replaced (Postgres TEXT cannot hold it).
    excerpt: String,
    month: Month,
}

impl Store {
    /// Records a batch of audit events, all or nothing. Events whose
    /// (request_id, attempt, sequence) is already recorded are counted as
    /// duplicates and change nothing. [`StoreError::Invalid`] (nothing
    /// written) when any event is malformed.
    pub async fn record_audit(&self, events: &[AuditEvent]) -> Result<Recorded, StoreError> {
        let rows = prepare(events)?;
        if rows.is_empty() {
            return Ok(Recorded::default());
        }
        let inserted = match &self.pool {
            Pool::Postgres(pool) => record_postgres(pool, &rows).await?,
            Pool::Sqlite(pool) => record_sqlite(pool, &rows).await?,
        };
        let inserted = u32::try_from(inserted).unwrap_or(u32::MAX);
        let total = u32::try_from(events.len()).unwrap_or(u32::MAX);
        Ok(Recorded {
            inserted,
            duplicates: total.saturating_sub(inserted),
        })
    }
}

/// Validates every event and gives the rows sorted by (request_id, attempt,
/// sequence), with repeats within the batch folded into their first
/// occurrence.
fn prepare(events: &[AuditEvent]) -> Result<Vec<Row<'_>>, StoreError> {
    if events.len() > MAX_AUDIT_BATCH_EVENTS {
        return Err(StoreError::Invalid(format!(
            "a batch holds at most {MAX_AUDIT_BATCH_EVENTS} events, got {}",
            events.len()
        )));
    }
    let mut rows = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            check(event).map_err(|why| {
                StoreError::Invalid(format!(
                    "audit event {index} (request_id {:?}, attempt {}, sequence {}): {why}",
                    event.request_id, event.attempt, event.sequence
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort_by(|a, b| key_of(a).cmp(&key_of(b)));
    rows.dedup_by(|later, kept| key_of(later) == key_of(kept));
    Ok(rows)
}

fn key_of<'a>(row: &Row<'a>) -> (&'a str, i64, i64) {
    (row.event.request_id.as_str(), row.attempt, row.sequence)
}

fn check(event: &AuditEvent) -> Result<Row<'_>, String> {
    for (name, value, required) in [
        ("request_id", &event.request_id, true),
        ("tenant", &event.tenant, false),
        ("key_id", &event.key_id, false),
        ("model", &event.model, false),
        ("policy", &event.policy, false),
        ("rule_id", &event.rule_id, true),
        ("rule_kind", &event.rule_kind, true),
        ("location", &event.location, false),
        ("match_hash", &event.match_hash, false),
    ] {
        if required && value.is_empty() {
            return Err(format!("{name} is empty"));
        }
        // Control characters would forge lines in logs and CSV exports.
        if value.len() > MAX_TEXT_BYTES || value.chars().any(char::is_control) {
            return Err(format!(
                "{name} must be at most {MAX_TEXT_BYTES} bytes without control characters"
            ));
        }
    }
    if !DIRECTIONS.contains(&event.direction.as_str()) {
        return Err(format!(
            "direction {:?} is not one of {DIRECTIONS:?}",
            event.direction
        ));
    }
    if !ACTIONS.contains(&event.action.as_str()) {
        return Err(format!(
            "action {:?} is not one of {ACTIONS:?}",
            event.action
        ));
    }
    if !event.match_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("match_hash must be hexadecimal".to_owned());
    }
    // An excerpt is prompt or answer text around a masked match: line
    // breaks and the like are legitimate there (CSV quotes them; nothing
    // logs it), only its size is bounded.
    if event.excerpt.len() > MAX_EXCERPT_BYTES {
        return Err(format!("excerpt must be at most {MAX_EXCERPT_BYTES} bytes"));
    }
    let fit = |name: &str, value: u64| {
        i64::try_from(value).map_err(|_| format!("{name} {value} is larger than {}", i64::MAX))
    };
    let day = Day::of_ms(event.occurred_at_ms).ok_or_else(|| {
        format!(
            "occurred_at_ms {} is not a time between 1970 and 9999 (unix milliseconds)",
            event.occurred_at_ms
        )
    })?;
    Ok(Row {
        event,
        attempt: i64::from(event.attempt),
        sequence: i64::from(event.sequence),
        offset: fit("offset", event.offset)?,
        length: fit("length", event.length)?,
        excerpt: event.excerpt.replace('\0', "\u{FFFD}"),
        month: day.month(),
    })
}

pub(super) const AUDIT_COLUMNS: &str = "request_id, attempt, sequence, tenant, key_id, model, \
    policy, rule_id, rule_kind, direction, action, location, match_offset, match_length, \
    match_hash, excerpt, occurred_at_ms";

const ON_CONFLICT_SKIP: &str = " ON CONFLICT (request_id, attempt, sequence, occurred_at_ms) \
     DO NOTHING RETURNING request_id";

/// Postgres: the batch, and if a month's partition is missing, that month's
/// partition created and the batch tried once more.
async fn record_postgres(pool: &PgPool, rows: &[Row<'_>]) -> Result<usize, StoreError> {
    match try_record_postgres(pool, rows).await {
        Err(StoreError::Database(error)) if partitions::is_missing(&error) => {
            let months: BTreeSet<Month> = rows.iter().map(|row| row.month).collect();
            partitions::ensure(pool, Partitioned::AuditEvents, &months).await?;
            try_record_postgres(pool, rows).await
        }
        other => other,
    }
}

async fn try_record_postgres(pool: &PgPool, rows: &[Row<'_>]) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    // One statement whatever the batch size; UNNEST keeps the key order.
    let sql = format!(
        "INSERT INTO audit_events ({AUDIT_COLUMNS}) SELECT * FROM UNNEST(\
         $1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::int8[], \
         $14::int8[], $15::text[], $16::text[], $17::int8[])\
         {ON_CONFLICT_SKIP}"
    );
    let text = |f: fn(&AuditEvent) -> &str| rows.iter().map(|r| f(r.event)).collect::<Vec<_>>();
    let int = |f: fn(&Row<'_>) -> i64| rows.iter().map(f).collect::<Vec<_>>();
    let returned: Vec<(String,)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(text(|e| &e.request_id))
        .bind(int(|r| r.attempt))
        .bind(int(|r| r.sequence))
        .bind(text(|e| &e.tenant))
        .bind(text(|e| &e.key_id))
        .bind(text(|e| &e.model))
        .bind(text(|e| &e.policy))
        .bind(text(|e| &e.rule_id))
        .bind(text(|e| &e.rule_kind))
        .bind(text(|e| &e.direction))
        .bind(text(|e| &e.action))
        .bind(text(|e| &e.location))
        .bind(int(|r| r.offset))
        .bind(int(|r| r.length))
        .bind(text(|e| &e.match_hash))
        .bind(rows.iter().map(|r| r.excerpt.as_str()).collect::<Vec<_>>())
        .bind(int(|r| r.event.occurred_at_ms))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(returned.len())
}

async fn record_sqlite(pool: &SqlitePool, rows: &[Row<'_>]) -> Result<usize, StoreError> {
    let mut tx = pool.begin_write().await?;
    let mut inserted = 0;
    for chunk in super::statement_rows::chunks(rows) {
        let mut insert = QueryBuilder::new(format!("INSERT INTO audit_events ({AUDIT_COLUMNS}) "));
        insert.push_values(chunk, |mut values, row| {
            let e = row.event;
            values
                .push_bind(e.request_id.as_str())
                .push_bind(row.attempt)
                .push_bind(row.sequence)
                .push_bind(e.tenant.as_str())
                .push_bind(e.key_id.as_str())
                .push_bind(e.model.as_str())
                .push_bind(e.policy.as_str())
                .push_bind(e.rule_id.as_str())
                .push_bind(e.rule_kind.as_str())
                .push_bind(e.direction.as_str())
                .push_bind(e.action.as_str())
                .push_bind(e.location.as_str())
                .push_bind(row.offset)
                .push_bind(row.length)
                .push_bind(e.match_hash.as_str())
                .push_bind(row.excerpt.as_str())
                .push_bind(e.occurred_at_ms);
        });
        insert.push(ON_CONFLICT_SKIP);
        inserted += insert
            .build_query_as::<(String,)>()
            .fetch_all(&mut *tx)
            .await?
            .len();
    }
    tx.commit().await?;
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        AuditEvent {
            request_id: "r1".into(),
            attempt: 0,
            sequence: 0,
            tenant: "acme".into(),
            key_id: "k".into(),
            model: "m".into(),
            policy: "p".into(),
            rule_id: "no-secrets".into(),
            rule_kind: "secret".into(),
            direction: "input".into(),
            action: "block".into(),
            location: "messages[0].content".into(),
            offset: 3,
            length: 5,
            match_hash: "ab12".into(),
            excerpt: String::new(),
            occurred_at_ms: 1_793_491_200_000,
        }
    }

    #[test]
    fn checks_each_field() {
        assert!(check(&event()).is_ok());
        let bad: [fn(&mut AuditEvent); 7] = [
            |e| e.request_id.clear(),
            |e| e.rule_id.clear(),
            |e| e.direction = "both".into(),
            |e| e.action = "allow".into(),
            |e| e.match_hash = "not hex".into(),
            |e| e.tenant = "a\nb".into(),
            |e| e.occurred_at_ms = -1,
        ];
        for spoil in bad {
            let mut e = event();
            spoil(&mut e);
            assert!(check(&e).is_err(), "{e:?}");
        }
        let mut e = event();
        e.excerpt = "line\nbreak and \0 NUL".into();
        let row = check(&e)
            .map_err(|_| ())
            .unwrap_or_else(|()| panic!("refused"));
        assert_eq!(row.excerpt, "line\nbreak and \u{FFFD} NUL");
    }

    #[test]
    fn repeats_in_a_batch_fold() {
        let mut later = event();
        later.sequence = 1;
        let events = [event(), later, event()];
        let rows = prepare(&events).map_err(|_| ()).unwrap_or_default();
        assert_eq!(rows.len(), 2);
    }
}
