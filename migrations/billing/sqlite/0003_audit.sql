-- The audit trail (SQLite). Keep equivalent to ../0003_audit.sql (Postgres),
-- minus the partitioning: one table holds every month. Append-only through
-- triggers, as there.

CREATE TABLE audit_events (
    request_id     TEXT   NOT NULL,
    attempt        BIGINT NOT NULL CHECK (attempt >= 0),
    sequence       BIGINT NOT NULL CHECK (sequence >= 0),
    tenant         TEXT   NOT NULL,
    key_id         TEXT   NOT NULL,
    model          TEXT   NOT NULL,
    policy         TEXT   NOT NULL,
    rule_id        TEXT   NOT NULL,
    rule_kind      TEXT   NOT NULL,
    direction      TEXT   NOT NULL CHECK (direction IN ('input', 'output')),
    action         TEXT   NOT NULL CHECK (action IN ('block', 'redact', 'flag')),
    location       TEXT   NOT NULL,
    match_offset   BIGINT NOT NULL CHECK (match_offset >= 0),
    match_length   BIGINT NOT NULL CHECK (match_length >= 0),
    match_hash     TEXT   NOT NULL,
    excerpt        TEXT   NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    -- The same key as on Postgres (where the partition column must be part
    -- of it), so both backends deduplicate identically.
    PRIMARY KEY (request_id, attempt, sequence, occurred_at_ms)
);

CREATE INDEX audit_events_occurred ON audit_events (occurred_at_ms, request_id, attempt, sequence);
CREATE INDEX audit_events_tenant_occurred ON audit_events (tenant, occurred_at_ms);
CREATE INDEX audit_events_match_hash ON audit_events (match_hash);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused');
END;

CREATE TABLE admin_audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms          BIGINT NOT NULL,
    actor          TEXT   NOT NULL,
    client_address TEXT   NOT NULL,
    action         TEXT   NOT NULL,
    target         TEXT   NOT NULL,
    before         TEXT   NULL,
    after          TEXT   NULL
);

CREATE INDEX admin_audit_at ON admin_audit (at_ms);
CREATE INDEX admin_audit_target ON admin_audit (target, id);

CREATE TRIGGER admin_audit_no_update BEFORE UPDATE ON admin_audit
BEGIN
    SELECT RAISE(ABORT, 'admin_audit is append-only: UPDATE refused');
END;
CREATE TRIGGER admin_audit_no_delete BEFORE DELETE ON admin_audit
BEGIN
    SELECT RAISE(ABORT, 'admin_audit is append-only: DELETE refused');
END;
