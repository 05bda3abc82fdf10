-- Accounts: tenants and their API keys (SQLite).
-- Keep equivalent to ../0001_accounts.sql (Postgres). Timestamps are INTEGER
-- (BIGINT) unix milliseconds and ids TEXT uuids, as there.

CREATE TABLE tenants (
    id                      TEXT PRIMARY KEY NOT NULL,
    name                    TEXT NOT NULL UNIQUE,
    status                  TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    monthly_budget_nano_usd BIGINT NULL CHECK (monthly_budget_nano_usd >= 0),
    -- JSON object: the default limits of the tenant's keys.
    limits                  TEXT NOT NULL DEFAULT '{}',
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    name           TEXT NOT NULL,
    -- SHA-256 of the key text; the key itself is never stored.
    digest         BLOB NOT NULL UNIQUE CHECK (typeof(digest) = 'blob' AND length(digest) = 32),
    display_prefix TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    -- JSON array of model aliases; empty means every model.
    allowed_models TEXT NOT NULL DEFAULT '[]',
    limits         TEXT NOT NULL DEFAULT '{}',
    expires_at     BIGINT NULL,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT NULL,
    revoked_at     BIGINT NULL
);

-- A name identifies one active key of a tenant; revoked keys keep their name
-- (for the audit trail), so rotation can reuse it.
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (tenant_id, name) WHERE status = 'active';

CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
