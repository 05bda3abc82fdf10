-- The usage ledger (Postgres): one row per upstream attempt, and a daily
-- rollup the finance queries read. Keep equivalent to sqlite/0002_usage.sql.
-- Conventions as in 0001: BIGINT unix milliseconds, TEXT ids; money in
-- integer nano-USD (1e-9 USD), prices as the exact decimal strings applied.

-- Append-only, partitioned by month on started_at_ms: old months can be
-- detached and archived without touching the current one, and month-bounded
-- queries (exports, rebuilds) read one partition. Billing creates each
-- month's partition (usage_events_YYYYMM) the first time an insert needs
-- it. There is deliberately no DEFAULT partition: rows parked there would
-- make creating the matching month's partition fail later.
CREATE TABLE usage_events (
    request_id            TEXT    NOT NULL,
    attempt               BIGINT  NOT NULL CHECK (attempt >= 1),
    tenant                TEXT    NOT NULL,
    key_id                TEXT    NOT NULL,
    model                 TEXT    NOT NULL,
    route                 TEXT    NOT NULL,
    provider              TEXT    NOT NULL,
    deployment            TEXT    NOT NULL,
    upstream_model        TEXT    NOT NULL,
    prompt_tokens         BIGINT  NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens     BIGINT  NOT NULL CHECK (completion_tokens >= 0),
    cached_tokens         BIGINT  NOT NULL CHECK (cached_tokens >= 0),
    reasoning_tokens      BIGINT  NOT NULL CHECK (reasoning_tokens >= 0),
    estimated             BOOLEAN NOT NULL,
    input_price_per_mtok  TEXT    NOT NULL,
    output_price_per_mtok TEXT    NOT NULL,
    cost_nano_usd         BIGINT  NOT NULL CHECK (cost_nano_usd >= 0),
    status                TEXT    NOT NULL,
    finish_reason         TEXT    NOT NULL,
    ttft_ms               BIGINT  NOT NULL CHECK (ttft_ms >= 0),
    duration_ms           BIGINT  NOT NULL CHECK (duration_ms >= 0),
    started_at_ms         BIGINT  NOT NULL,
    ended_at_ms           BIGINT  NOT NULL,
    client_cancelled      BOOLEAN NOT NULL,
    -- The UTC day of started_at_ms, 'YYYY-MM-DD' (text compares as dates).
    day                   TEXT    NOT NULL,
    -- A partitioned table's unique keys must contain the partition column.
    -- This is still uniqueness on (request_id, attempt): an event's
    -- started_at_ms is fixed when the router writes it to its spool, and a
    -- redelivery resends those same bytes, so the same attempt always
    -- arrives with the same started_at_ms and lands on this key. (Billing
    -- also folds repeats inside one batch on (request_id, attempt) alone.)
    -- The key's leading request_id also serves lookups of one request.
    PRIMARY KEY (request_id, attempt, started_at_ms)
) PARTITION BY RANGE (started_at_ms);

-- A tenant's rows over a period (exports, audits).
CREATE INDEX usage_events_tenant_started ON usage_events (tenant, started_at_ms);

-- Per (tenant, key, model, provider, UTC day) sums, maintained in the same
-- transaction as the ledger rows they count: each newly inserted event is
-- added exactly once. `requests` counts attempts.
CREATE TABLE usage_daily (
    tenant            TEXT   NOT NULL,
    key_id            TEXT   NOT NULL,
    model             TEXT   NOT NULL,
    provider          TEXT   NOT NULL,
    day               TEXT   NOT NULL,
    requests          BIGINT NOT NULL CHECK (requests >= 0),
    prompt_tokens     BIGINT NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens BIGINT NOT NULL CHECK (completion_tokens >= 0),
    cached_tokens     BIGINT NOT NULL CHECK (cached_tokens >= 0),
    reasoning_tokens  BIGINT NOT NULL CHECK (reasoning_tokens >= 0),
    cost_nano_usd     BIGINT NOT NULL CHECK (cost_nano_usd >= 0),
    PRIMARY KEY (tenant, key_id, model, provider, day)
);

-- Reports over every tenant (and month-to-date spend) filter on day alone;
-- reports for one tenant on tenant and day.
CREATE INDEX usage_daily_day ON usage_daily (day);
CREATE INDEX usage_daily_tenant_day ON usage_daily (tenant, day);
