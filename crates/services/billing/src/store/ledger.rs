//! Writes of the usage ledger: batches of usage events from the routers,
//! recorded exactly once per (request_id, attempt) however often a batch is
//! redelivered, and added to the daily rollup in the same transaction.
//!
//! One transaction per batch:
//! 1. insert the events with `ON CONFLICT DO NOTHING RETURNING` their keys:
//!    what comes back is exactly what this transaction added (a concurrent
//!    delivery of the same event waits on our uncommitted row and then sees
//!    the conflict, or inserts it itself if we roll back);
//! 2. add only those rows to `usage_daily`, one upsert row per (tenant, key,
//!    model, provider, day) aggregated here.
//!
//! Deadlocks: concurrent batches take row locks (ledger keys, then rollup
//! rows) in one global order, because the events are sorted by (request_id,
//! attempt) and the rollup groups by their key before anything is written.
//! Two transactions can then never each hold a lock the other waits for:
//! whoever waits, waits for a key that sorts after everything it holds.
//! (SQLite has a single writer, `BEGIN IMMEDIATE`, so the order is moot.)

use std::collections::{BTreeMap, BTreeSet};

use llmgw_proto::billing_v1::UsageEvent;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, QueryBuilder};

use super::calendar::{Day, Month};
use super::{BeginWrite as _, Pool, Store, StoreError, statement_rows};

/// The most events one RecordUsage batch may carry (the routers send about
/// 1000): bounds the transaction and the memory a call can take.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Longest text field of an event (ids, names, statuses, prices).
const MAX_TEXT_BYTES: usize = 512;

/// What a batch did to the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Events newly recorded.
    pub inserted: u32,
    /// Events already in the ledger (or repeated within the batch).
    pub duplicates: u32,
}

/// An event checked and converted to column values.
struct Row<'a> {
    event: &'a UsageEvent,
    attempt: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    cache_creation_tokens: i64,
    cost_nano_usd: i64,
    ttft_ms: i64,
    duration_ms: i64,
    day: Day,
    day_text: String,
}

/// A `usage_daily` key: tenant, key id, model, provider, day.
type Group<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

/// The sums a batch adds to one `usage_daily` row.
#[derive(Debug, Default)]
struct Sums {
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cached_tokens: i64,
    reasoning_tokens: i64,
    cost_nano_usd: i64,
}

impl Store {
    /// Records a batch of usage events, all or nothing. Events whose
    /// (request_id, attempt) is already in the ledger are counted as
    /// duplicates and change nothing. [`StoreError::Invalid`] (nothing
    /// written) when any event is malformed.
    pub async fn record_usage(&self, events: &[UsageEvent]) -> Result<Recorded, StoreError> {
        let rows = prepare(events)?;
        if rows.is_empty() {
            // Nothing to write: no transaction for it.
            return Ok(Recorded::default());
        }
        let inserted = match &self.pool {
            Pool::Postgres(pool) => record_postgres(pool, &rows).await?,
            Pool::Sqlite(pool) => record_sqlite(pool, &rows).await?,
        };
        // Both fit: the batch is at most MAX_BATCH_EVENTS long.
        let inserted = u32::try_from(inserted).unwrap_or(u32::MAX);
        let total = u32::try_from(events.len()).unwrap_or(u32::MAX);
        Ok(Recorded {
            inserted,
            duplicates: total.saturating_sub(inserted),
        })
    }
}

/// Validates every event and gives the rows sorted by (request_id, attempt),
/// with repeats within the batch folded into their first occurrence.
fn prepare(events: &[UsageEvent]) -> Result<Vec<Row<'_>>, StoreError> {
    if events.len() > MAX_BATCH_EVENTS {
        return Err(StoreError::Invalid(format!(
            "a batch holds at most {MAX_BATCH_EVENTS} events, got {}",
            events.len()
        )));
    }
    let mut rows = events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            check(event).map_err(|why| {
                StoreError::Invalid(format!(
                    "event {index} (request_id {:?}, attempt {}): {why}",
                    event.request_id, event.attempt
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Stable: of repeats, the first sent is kept.
    rows.sort_by(|a, b| key_of(a).cmp(&key_of(b)));
    rows.dedup_by(|later, kept| key_of(later) == key_of(kept));
    Ok(rows)
}

fn key_of<'a>(row: &Row<'a>) -> (&'a str, i64) {
    (row.event.request_id.as_str(), row.attempt)
}

fn check(event: &UsageEvent) -> Result<Row<'_>, String> {
    for (name, value, required) in [
        ("request_id", &event.request_id, true),
        ("tenant", &event.tenant, true),
        ("key_id", &event.key_id, false),
        ("model", &event.model, true),
        ("route", &event.route, false),
        ("provider", &event.provider, false),
        ("deployment", &event.deployment, false),
        ("upstream_model", &event.upstream_model, false),
        ("status", &event.status, true),
        ("finish_reason", &event.finish_reason, false),
        ("api", &event.api, false),
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
    for (name, price) in [
        ("input_price_per_mtok", &event.input_price_per_mtok),
        ("output_price_per_mtok", &event.output_price_per_mtok),
        (
            "cache_read_price_per_mtok",
            &event.cache_read_price_per_mtok,
        ),
        (
            "cache_write_price_per_mtok",
            &event.cache_write_price_per_mtok,
        ),
    ] {
        // Empty: no price was configured for the route.
        if !price.is_empty() {
            llmgw_usd::parse_usd(price).map_err(|why| format!("{name}: {why}"))?;
        }
    }
    if event.attempt < 1 {
        return Err("attempt must be 1 or more".to_owned());
    }
    let fit = |name: &str, value: u64| {
        i64::try_from(value).map_err(|_| format!("{name} {value} is larger than {}", i64::MAX))
    };
    let day = Day::of_ms(event.started_at_ms).ok_or_else(|| {
        format!(
            "started_at_ms {} is not a time between 1970 and 9999 (unix milliseconds)",
            event.started_at_ms
        )
    })?;
    Ok(Row {
        event,
        attempt: i64::from(event.attempt),
        prompt_tokens: fit("prompt_tokens", event.prompt_tokens)?,
        completion_tokens: fit("completion_tokens", event.completion_tokens)?,
        cached_tokens: fit("cached_tokens", event.cached_tokens)?,
        reasoning_tokens: fit("reasoning_tokens", event.reasoning_tokens)?,
        cache_creation_tokens: fit("cache_creation_tokens", event.cache_creation_tokens)?,
        cost_nano_usd: fit("cost_nano_usd", event.cost_nano_usd)?,
        ttft_ms: fit("ttft_ms", event.ttft_ms)?,
        duration_ms: fit("duration_ms", event.duration_ms)?,
        day,
        day_text: day.to_string(),
    })
}

/// The `usage_daily` increments of the rows at `inserted`, in key order (the
/// lock order, see the module docs). Sums that overflow are refused: the
/// database could not hold them either.
fn rollup<'a>(
    rows: &'a [Row<'a>],
    inserted: &[usize],
) -> Result<BTreeMap<Group<'a>, Sums>, StoreError> {
    let mut groups: BTreeMap<Group<'a>, Sums> = BTreeMap::new();
    for row in inserted.iter().filter_map(|index| rows.get(*index)) {
        let e = row.event;
        let group = (
            e.tenant.as_str(),
            e.key_id.as_str(),
            e.model.as_str(),
            e.provider.as_str(),
            row.day_text.as_str(),
        );
        let sums = groups.entry(group).or_default();
        let add = |total: &mut i64, value: i64| {
            *total = total.checked_add(value).ok_or_else(|| {
                StoreError::Invalid("the batch's sums exceed 64-bit integers".to_owned())
            })?;
            Ok::<(), StoreError>(())
        };
        add(&mut sums.requests, 1)?;
        add(&mut sums.prompt_tokens, row.prompt_tokens)?;
        add(&mut sums.completion_tokens, row.completion_tokens)?;
        add(&mut sums.cached_tokens, row.cached_tokens)?;
        add(&mut sums.reasoning_tokens, row.reasoning_tokens)?;
        add(&mut sums.cost_nano_usd, row.cost_nano_usd)?;
    }
    Ok(groups)
}

/// Positions in `rows` (sorted by key) of the keys the insert returned.
fn positions(rows: &[Row<'_>], keys: &[(String, i64)]) -> Vec<usize> {
    let mut found: Vec<usize> = keys
        .iter()
        .filter_map(|(request_id, attempt)| {
            rows.binary_search_by(|row| key_of(row).cmp(&(request_id.as_str(), *attempt)))
                .ok()
        })
        .collect();
    found.sort_unstable();
    found
}

pub(super) const EVENT_COLUMNS: &str = "request_id, attempt, tenant, key_id, model, route, provider, \
    deployment, upstream_model, prompt_tokens, completion_tokens, cached_tokens, \
    reasoning_tokens, estimated, input_price_per_mtok, output_price_per_mtok, cost_nano_usd, \
    status, finish_reason, ttft_ms, duration_ms, started_at_ms, ended_at_ms, client_cancelled, day, \
    api, cache_creation_tokens, cache_read_price_per_mtok, cache_write_price_per_mtok";

const ON_CONFLICT_SKIP: &str =
    " ON CONFLICT (request_id, attempt, started_at_ms) DO NOTHING RETURNING request_id, attempt";

/// Postgres: the batch, and if a month's partition is missing, that month's
/// partition created and the batch tried once more. Creating on demand keeps
/// DDL off the normal path entirely (no per-batch check, no cache to go
/// stale when an operator detaches an archived month).
async fn record_postgres(pool: &PgPool, rows: &[Row<'_>]) -> Result<usize, StoreError> {
    match try_record_postgres(pool, rows).await {
        Err(StoreError::Database(error)) if super::partitions::is_missing(&error) => {
            let months: BTreeSet<Month> = rows.iter().map(|row| row.day.month()).collect();
            super::partitions::ensure(pool, super::partitions::Partitioned::UsageEvents, &months)
                .await?;
            try_record_postgres(pool, rows).await
        }
        other => other,
    }
}

async fn try_record_postgres(pool: &PgPool, rows: &[Row<'_>]) -> Result<usize, StoreError> {
    let mut tx = pool.begin().await?;
    // One statement whatever the batch size: arrays, not 25 binds per row.
    // UNNEST yields the array elements in order, so rows go in key order.
    let sql = format!(
        "INSERT INTO usage_events ({EVENT_COLUMNS}) SELECT * FROM UNNEST(\
         $1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
         $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], \
         $14::bool[], $15::text[], $16::text[], $17::int8[], $18::text[], $19::text[], \
         $20::int8[], $21::int8[], $22::int8[], $23::int8[], $24::bool[], $25::text[], \
         $26::text[], $27::int8[], $28::text[], $29::text[])\
         {ON_CONFLICT_SKIP}"
    );
    let text = |f: fn(&UsageEvent) -> &str| rows.iter().map(|r| f(r.event)).collect::<Vec<_>>();
    let int = |f: fn(&Row<'_>) -> i64| rows.iter().map(f).collect::<Vec<_>>();
    let flag = |f: fn(&UsageEvent) -> bool| rows.iter().map(|r| f(r.event)).collect::<Vec<_>>();
    let keys: Vec<(String, i64)> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(text(|e| &e.request_id))
        .bind(int(|r| r.attempt))
        .bind(text(|e| &e.tenant))
        .bind(text(|e| &e.key_id))
        .bind(text(|e| &e.model))
        .bind(text(|e| &e.route))
        .bind(text(|e| &e.provider))
        .bind(text(|e| &e.deployment))
        .bind(text(|e| &e.upstream_model))
        .bind(int(|r| r.prompt_tokens))
        .bind(int(|r| r.completion_tokens))
        .bind(int(|r| r.cached_tokens))
        .bind(int(|r| r.reasoning_tokens))
        .bind(flag(|e| e.estimated))
        .bind(text(|e| &e.input_price_per_mtok))
        .bind(text(|e| &e.output_price_per_mtok))
        .bind(int(|r| r.cost_nano_usd))
        .bind(text(|e| &e.status))
        .bind(text(|e| &e.finish_reason))
        .bind(int(|r| r.ttft_ms))
        .bind(int(|r| r.duration_ms))
        .bind(int(|r| r.event.started_at_ms))
        .bind(int(|r| r.event.ended_at_ms))
        .bind(flag(|e| e.client_cancelled))
        .bind(rows.iter().map(|r| r.day_text.as_str()).collect::<Vec<_>>())
        .bind(text(api_of))
        .bind(int(|r| r.cache_creation_tokens))
        .bind(text(|e| &e.cache_read_price_per_mtok))
        .bind(text(|e| &e.cache_write_price_per_mtok))
        .fetch_all(&mut *tx)
        .await?;
    let inserted = positions(rows, &keys);
    for chunk in groups_in_chunks(&rollup(rows, &inserted)?) {
        daily_upsert(&chunk).build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(inserted.len())
}

async fn record_sqlite(pool: &SqlitePool, rows: &[Row<'_>]) -> Result<usize, StoreError> {
    let mut tx = pool.begin_write().await?;
    let mut keys: Vec<(String, i64)> = Vec::with_capacity(rows.len());
    for chunk in statement_rows::chunks(rows) {
        let mut insert = QueryBuilder::new(format!("INSERT INTO usage_events ({EVENT_COLUMNS}) "));
        insert.push_values(chunk, |mut values, row| {
            let e = row.event;
            values
                .push_bind(e.request_id.as_str())
                .push_bind(row.attempt)
                .push_bind(e.tenant.as_str())
                .push_bind(e.key_id.as_str())
                .push_bind(e.model.as_str())
                .push_bind(e.route.as_str())
                .push_bind(e.provider.as_str())
                .push_bind(e.deployment.as_str())
                .push_bind(e.upstream_model.as_str())
                .push_bind(row.prompt_tokens)
                .push_bind(row.completion_tokens)
                .push_bind(row.cached_tokens)
                .push_bind(row.reasoning_tokens)
                .push_bind(e.estimated)
                .push_bind(e.input_price_per_mtok.as_str())
                .push_bind(e.output_price_per_mtok.as_str())
                .push_bind(row.cost_nano_usd)
                .push_bind(e.status.as_str())
                .push_bind(e.finish_reason.as_str())
                .push_bind(row.ttft_ms)
                .push_bind(row.duration_ms)
                .push_bind(e.started_at_ms)
                .push_bind(e.ended_at_ms)
                .push_bind(e.client_cancelled)
                .push_bind(row.day_text.as_str())
                .push_bind(api_of(e))
                .push_bind(row.cache_creation_tokens)
                .push_bind(e.cache_read_price_per_mtok.as_str())
                .push_bind(e.cache_write_price_per_mtok.as_str());
        });
        insert.push(ON_CONFLICT_SKIP);
        keys.extend(
            insert
                .build_query_as::<(String, i64)>()
                .fetch_all(&mut *tx)
                .await?,
        );
    }
    let inserted = positions(rows, &keys);
    for chunk in groups_in_chunks(&rollup(rows, &inserted)?) {
        daily_upsert(&chunk).build().execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(inserted.len())
}

/// The event's client API; routers older than the field send none, and
/// they served chat only.
fn api_of(event: &UsageEvent) -> &str {
    if event.api.is_empty() {
        "chat"
    } else {
        &event.api
    }
}

/// The rollup groups, in key order, a statement's worth at a time.
fn groups_in_chunks<'g, 'a>(
    groups: &'g BTreeMap<Group<'a>, Sums>,
) -> Vec<Vec<(&'g Group<'a>, &'g Sums)>> {
    let all: Vec<_> = groups.iter().collect();
    statement_rows::chunks(&all).map(<[_]>::to_vec).collect()
}

/// One multi-row upsert into `usage_daily`, the same text on both backends.
/// The VALUES rows are applied in order, which is the key order.
fn daily_upsert<DB>(groups: &[(&Group<'_>, &Sums)]) -> QueryBuilder<DB>
where
    DB: sqlx::Database,
    for<'e> &'e str: sqlx::Encode<'e, DB> + sqlx::Type<DB>,
    i64: for<'e> sqlx::Encode<'e, DB> + sqlx::Type<DB>,
{
    let mut upsert = QueryBuilder::new(
        "INSERT INTO usage_daily (tenant, key_id, model, provider, day, requests, \
         prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost_nano_usd) ",
    );
    upsert.push_values(
        groups,
        |mut values, ((tenant, key_id, model, provider, day), sums)| {
            values
                .push_bind(*tenant)
                .push_bind(*key_id)
                .push_bind(*model)
                .push_bind(*provider)
                .push_bind(*day)
                .push_bind(sums.requests)
                .push_bind(sums.prompt_tokens)
                .push_bind(sums.completion_tokens)
                .push_bind(sums.cached_tokens)
                .push_bind(sums.reasoning_tokens)
                .push_bind(sums.cost_nano_usd);
        },
    );
    upsert.push(
        " ON CONFLICT (tenant, key_id, model, provider, day) DO UPDATE SET \
         requests = usage_daily.requests + excluded.requests, \
         prompt_tokens = usage_daily.prompt_tokens + excluded.prompt_tokens, \
         completion_tokens = usage_daily.completion_tokens + excluded.completion_tokens, \
         cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens, \
         reasoning_tokens = usage_daily.reasoning_tokens + excluded.reasoning_tokens, \
         cost_nano_usd = usage_daily.cost_nano_usd + excluded.cost_nano_usd",
    );
    upsert
}
