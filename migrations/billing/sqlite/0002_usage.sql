-- The usage ledger (SQLite). Keep equivalent to ../0002_usage.sql
-- (Postgres), minus the partitioning: one table holds every month. Booleans
-- are stored as 0/1 (what sqlx binds a bool as).

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
    estimated             BOOLEAN NOT NULL CHECK (estimated IN (0, 1)),
    input_price_per_mtok  TEXT    NOT NULL,
    output_price_per_mtok TEXT    NOT NULL,
    cost_nano_usd         BIGINT  NOT NULL CHECK (cost_nano_usd >= 0),
    status                TEXT    NOT NULL,
    finish_reason         TEXT    NOT NULL,
    ttft_ms               BIGINT  NOT NULL CHECK (ttft_ms >= 0),
    duration_ms           BIGINT  NOT NULL CHECK (duration_ms >= 0),
    started_at_ms         BIGINT  NOT NULL,
    ended_at_ms           BIGINT  NOT NULL,
    client_cancelled      BOOLEAN NOT NULL CHECK (client_cancelled IN (0, 1)),
    -- The UTC day of started_at_ms, 'YYYY-MM-DD'.
    day                   TEXT    NOT NULL,
    -- The same key as on Postgres (where the partition column must be part
    -- of it), so both backends deduplicate identically; see ../0002_usage.sql
    -- for why it amounts to uniqueness on (request_id, attempt).
    PRIMARY KEY (request_id, attempt, started_at_ms)
);

CREATE INDEX usage_events_tenant_started ON usage_events (tenant, started_at_ms);

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
) WITHOUT ROWID;

CREATE INDEX usage_daily_day ON usage_daily (day);
CREATE INDEX usage_daily_tenant_day ON usage_daily (tenant, day);
