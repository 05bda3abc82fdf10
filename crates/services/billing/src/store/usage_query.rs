//! Reads of the usage ledger: finance reports and month-to-date spend from
//! the daily rollup (small, one row per tenant × key × model × provider ×
//! day), and the raw ledger rows for one request or one month's export.

use serde::Serialize;
use sqlx::{AssertSqlSafe, QueryBuilder};

use super::calendar::{Day, Month};
use super::ledger::EVENT_COLUMNS;
use super::{Store, StoreError};

/// The longest report range, in days: reports read the rollup, but an
/// unbounded range per day and key could still be millions of rows.
pub const MAX_REPORT_DAYS: i64 = 366;

/// What a report can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Tenant,
    Key,
    Model,
    Provider,
    Day,
    Month,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Dimension::Tenant,
        Dimension::Key,
        Dimension::Model,
        Dimension::Provider,
        Dimension::Day,
        Dimension::Month,
    ];

    /// By its `group_by` name: tenant, key, model, provider, day or month.
    pub fn parse(name: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The name `group_by` takes.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Key => "key",
            other => other.field(),
        }
    }

    /// The name of the field (JSON, CSV) that holds the group's value.
    pub fn field(self) -> &'static str {
        match self {
            Dimension::Tenant => "tenant",
            Dimension::Key => "key_id",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
            Dimension::Day => "day",
            Dimension::Month => "month",
        }
    }

    /// Its value in `usage_daily` (`day` is 'YYYY-MM-DD').
    fn sql(self) -> &'static str {
        match self {
            Dimension::Month => "substr(day, 1, 7)",
            other => other.field(),
        }
    }
}

/// A usage report: from (inclusive) to (exclusive) UTC days; `from == to` is
/// an empty range.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub tenant: Option<String>,
    pub key_id: Option<String>,
    pub from: Day,
    pub to: Day,
    /// Group columns in this order (repeats are ignored); empty = one row.
    pub group_by: Vec<Dimension>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UsageSums {
    /// Upstream attempts.
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_nano_usd: u64,
}

impl UsageSums {
    fn add(&mut self, other: &UsageSums) {
        // Each term fits in i64 (it came from a BIGINT): the sums cannot
        // realistically reach u64::MAX, and saturating beats panicking.
        self.requests = self.requests.saturating_add(other.requests);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(other.cached_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
        self.cost_nano_usd = self.cost_nano_usd.saturating_add(other.cost_nano_usd);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The group's values, in the query's `group_by` order.
    pub group: Vec<(Dimension, String)>,
    pub sums: UsageSums,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    /// The query's dimensions, repeats removed.
    pub group_by: Vec<Dimension>,
    /// Ordered by the group values; only groups with usage.
    pub rows: Vec<UsageRow>,
    pub total: UsageSums,
}

/// One row of the ledger: one upstream attempt. Counts are BIGINT columns,
/// never negative (CHECK constraints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LedgerRow {
    pub request_id: String,
    pub attempt: i64,
    pub tenant: String,
    pub key_id: String,
    pub model: String,
    pub route: String,
    pub provider: String,
    pub deployment: String,
    pub upstream_model: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub reasoning_tokens: i64,
    pub estimated: bool,
    pub input_price_per_mtok: String,
    pub output_price_per_mtok: String,
    pub cost_nano_usd: i64,
    pub status: String,
    pub finish_reason: String,
    pub ttft_ms: i64,
    pub duration_ms: i64,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    pub client_cancelled: bool,
    /// UTC day of `started_at_ms`, `YYYY-MM-DD`.
    pub day: String,
    /// The client API: `chat`, `messages` or `embeddings`.
    pub api: String,
    /// Of the prompt tokens, written to the provider's cache.
    pub cache_creation_tokens: i64,
    /// Cache prices applied; empty = the input price.
    pub cache_read_price_per_mtok: String,
    pub cache_write_price_per_mtok: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantSpend {
    pub tenant: String,
    pub cost_nano_usd: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeySpend {
    pub tenant: String,
    pub key_id: String,
    pub cost_nano_usd: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthSpend {
    pub month: Month,
    /// Tenants with usage in the month, by name.
    pub tenants: Vec<TenantSpend>,
    /// Keys with usage in the month, by tenant then key id; per tenant they
    /// sum to its figure in `tenants` (both from one query).
    pub keys: Vec<KeySpend>,
}

impl Store {
    /// Sums from the daily rollup over `[from, to)`, grouped as asked.
    /// [`StoreError::Invalid`] if `from > to` or the range is longer than
    /// [`MAX_REPORT_DAYS`].
    pub async fn usage_report(&self, query: &UsageQuery) -> Result<UsageReport, StoreError> {
        check_range(query.from, query.to)?;
        let mut group_by: Vec<Dimension> = Vec::new();
        for dimension in &query.group_by {
            if !group_by.contains(dimension) {
                group_by.push(*dimension);
            }
        }
        let rows = on_pool!(self, pool => {
            let mut sql = report_sql(query, &group_by);
            let found = sql.build().fetch_all(pool).await?;
            found
                .iter()
                .map(|row| report_row(row, &group_by))
                .collect::<Result<Vec<UsageRow>, sqlx::Error>>()?
        });
        // Without grouping, SQL answers one row even over no data.
        let rows: Vec<UsageRow> = rows.into_iter().filter(|r| r.sums.requests > 0).collect();
        let mut total = UsageSums::default();
        for row in &rows {
            total.add(&row.sums);
        }
        Ok(UsageReport {
            group_by,
            rows,
            total,
        })
    }

    /// The attempts recorded for one request, by attempt number.
    pub async fn request_attempts(&self, request_id: &str) -> Result<Vec<LedgerRow>, StoreError> {
        // Served by the primary key's leading column (on every partition).
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events WHERE request_id = $1 \
             ORDER BY attempt, started_at_ms"
        );
        Ok(on_pool!(self, pool => sqlx::query_as(AssertSqlSafe(sql))
            .bind(request_id)
            .fetch_all(pool)
            .await)?)
    }

    /// Up to `limit` ledger rows of `month` (optionally one tenant's) after
    /// `after`, ordered by tenant, start time, request id and attempt: call
    /// again with the last row until a short page, to export a month without
    /// holding it in memory.
    pub async fn ledger_page(
        &self,
        month: Month,
        tenant: Option<&str>,
        after: Option<&LedgerRow>,
        limit: u32,
    ) -> Result<Vec<LedgerRow>, StoreError> {
        let (start, end) = month.range_ms();
        Ok(on_pool!(self, pool => {
            let mut sql = QueryBuilder::new(format!(
                "SELECT {EVENT_COLUMNS} FROM usage_events WHERE started_at_ms >= "
            ));
            sql.push_bind(start).push(" AND started_at_ms < ").push_bind(end);
            if let Some(tenant) = tenant {
                sql.push(" AND tenant = ").push_bind(tenant.to_owned());
            }
            if let Some(last) = after {
                // A row-value comparison: the (tenant, started_at_ms) index
                // seeks straight to the page's start.
                sql.push(" AND (tenant, started_at_ms, request_id, attempt) > (")
                    .push_bind(last.tenant.clone())
                    .push(", ")
                    .push_bind(last.started_at_ms)
                    .push(", ")
                    .push_bind(last.request_id.clone())
                    .push(", ")
                    .push_bind(last.attempt)
                    .push(")");
            }
            sql.push(" ORDER BY tenant, started_at_ms, request_id, attempt LIMIT ")
                .push_bind(i64::from(limit));
            sql.build_query_as::<LedgerRow>().fetch_all(pool).await
        })?)
    }

    /// Each tenant's and each key's spend in the current UTC month (or one
    /// tenant's, if it has any), from the rollup.
    pub async fn month_to_date_spend(
        &self,
        tenant: Option<&str>,
    ) -> Result<MonthSpend, StoreError> {
        self.month_spend(Month::current(), tenant).await
    }

    /// Each tenant's and each key's spend in `month` (or one tenant's, if it
    /// has any). One query grouped by key: the tenant figures are its sums, so
    /// both come from the same snapshot.
    pub async fn month_spend(
        &self,
        month: Month,
        tenant: Option<&str>,
    ) -> Result<MonthSpend, StoreError> {
        let from = month.first_day().to_string();
        let to = month.succ().first_day().to_string();
        let sql = "SELECT tenant, key_id, CAST(SUM(cost_nano_usd) AS BIGINT) FROM usage_daily \
             WHERE day >= $1 AND day < $2 AND ($3 IS NULL OR tenant = $3) \
             GROUP BY tenant, key_id ORDER BY tenant, key_id";
        let found: Vec<(String, String, i64)> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&from)
            .bind(&to)
            .bind(tenant)
            .fetch_all(pool)
            .await)?;
        let mut tenants: Vec<TenantSpend> = Vec::new();
        let mut keys = Vec::with_capacity(found.len());
        for (tenant, key_id, cost) in found {
            let cost_nano_usd = u64::try_from(cost).unwrap_or(0);
            match tenants.last_mut() {
                Some(last) if last.tenant == tenant => {
                    last.cost_nano_usd = last.cost_nano_usd.saturating_add(cost_nano_usd);
                }
                _ => tenants.push(TenantSpend {
                    tenant: tenant.clone(),
                    cost_nano_usd,
                }),
            }
            keys.push(KeySpend {
                tenant,
                key_id,
                cost_nano_usd,
            });
        }
        Ok(MonthSpend {
            month,
            tenants,
            keys,
        })
    }
}

/// Refuses reversed or over-long ranges.
pub fn check_range(from: Day, to: Day) -> Result<(), StoreError> {
    if from > to {
        return Err(StoreError::Invalid(format!(
            "from ({from}) is after to ({to}); to is exclusive, so from = to is an empty range"
        )));
    }
    let days = to.days_since_epoch() - from.days_since_epoch();
    if days > MAX_REPORT_DAYS {
        return Err(StoreError::Invalid(format!(
            "the range {from} to {to} spans {days} days; at most {MAX_REPORT_DAYS}"
        )));
    }
    Ok(())
}

const SUMS: &str = "CAST(COALESCE(SUM(requests), 0) AS BIGINT) AS requests, \
    CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
    CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens, \
    CAST(COALESCE(SUM(cached_tokens), 0) AS BIGINT) AS cached_tokens, \
    CAST(COALESCE(SUM(reasoning_tokens), 0) AS BIGINT) AS reasoning_tokens, \
    CAST(COALESCE(SUM(cost_nano_usd), 0) AS BIGINT) AS cost_nano_usd";

/// The report's SQL: fixed fragments only (the dimensions' expressions come
/// from a closed enum), values bound. Postgres's SUM of BIGINT is NUMERIC,
/// hence the casts back.
fn report_sql<DB>(query: &UsageQuery, group_by: &[Dimension]) -> QueryBuilder<DB>
where
    DB: sqlx::Database,
    String: for<'e> sqlx::Encode<'e, DB> + sqlx::Type<DB>,
{
    let mut sql = QueryBuilder::new("SELECT ");
    for dimension in group_by {
        sql.push(dimension.sql())
            .push(" AS ")
            .push(dimension.field())
            .push(", ");
    }
    sql.push(SUMS)
        .push(" FROM usage_daily WHERE day >= ")
        .push_bind(query.from.to_string())
        .push(" AND day < ")
        .push_bind(query.to.to_string());
    if let Some(tenant) = &query.tenant {
        sql.push(" AND tenant = ").push_bind(tenant.clone());
    }
    if let Some(key_id) = &query.key_id {
        sql.push(" AND key_id = ").push_bind(key_id.clone());
    }
    if !group_by.is_empty() {
        // By position: the same in both dialects, and no expression repeated.
        let positions: Vec<String> = (1..=group_by.len()).map(|n| n.to_string()).collect();
        let positions = positions.join(", ");
        sql.push(" GROUP BY ")
            .push(&positions)
            .push(" ORDER BY ")
            .push(&positions);
    }
    sql
}

fn report_row<R>(row: &R, group_by: &[Dimension]) -> Result<UsageRow, sqlx::Error>
where
    R: sqlx::Row,
    for<'n> &'n str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let group = group_by
        .iter()
        .map(|d| Ok((*d, row.try_get::<String, _>(d.field())?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let count = |name: &str| -> Result<u64, sqlx::Error> {
        let value: i64 = row.try_get(name)?;
        u64::try_from(value)
            .map_err(|_| sqlx::Error::Decode(format!("negative {name} in usage_daily").into()))
    };
    Ok(UsageRow {
        group,
        sums: UsageSums {
            requests: count("requests")?,
            prompt_tokens: count("prompt_tokens")?,
            completion_tokens: count("completion_tokens")?,
            cached_tokens: count("cached_tokens")?,
            reasoning_tokens: count("reasoning_tokens")?,
            cost_nano_usd: count("cost_nano_usd")?,
        },
    })
}
