-- The audit trail (Postgres): content-policy hits delivered by the edge and
-- the routers, and the admin actions billing records itself. Keep
-- equivalent to sqlite/0003_audit.sql. Conventions as in 0001: BIGINT unix
-- milliseconds, TEXT ids.
--
-- Both tables are append-only: triggers refuse UPDATE, DELETE and TRUNCATE
-- through the table. Archiving a month of audit_events is detaching its
-- partition (ALTER TABLE audit_events DETACH PARTITION audit_events_YYYYMM),
-- which is DDL, not a row change.

CREATE FUNCTION llmgw_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- One row per content-policy hit (llmgw.billing.v1.AuditEvent). Never the
-- matched text or the prompt: match_hash is a keyed hash of the match, and
-- excerpt is empty unless the policy opts in (then the match is masked).
-- Partitioned by month on occurred_at_ms like usage_events, partitions
-- (audit_events_YYYYMM) created by billing when an insert first needs one,
-- no DEFAULT partition.
CREATE TABLE audit_events (
    request_id     TEXT   NOT NULL,
    -- 0 = found by the edge in the prompt; 1.. = the router's attempt.
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
    -- The match as a byte range of the text at `location`.
    match_offset   BIGINT NOT NULL CHECK (match_offset >= 0),
    match_length   BIGINT NOT NULL CHECK (match_length >= 0),
    match_hash     TEXT   NOT NULL,
    excerpt        TEXT   NOT NULL,
    occurred_at_ms BIGINT NOT NULL,
    -- As for usage_events: a partitioned table's unique keys must contain
    -- the partition column. It still means one row per (request_id,
    -- attempt, sequence): the sender fixes occurred_at_ms when it writes the
    -- event to its spool, and a redelivery resends those same bytes. Billing
    -- also folds repeats inside one batch on (request_id, attempt, sequence).
    PRIMARY KEY (request_id, attempt, sequence, occurred_at_ms)
) PARTITION BY RANGE (occurred_at_ms);

-- The audit query pages newest first over (occurred_at_ms, request_id,
-- attempt, sequence); with a tenant filter, the tenant's index.
CREATE INDEX audit_events_occurred ON audit_events (occurred_at_ms, request_id, attempt, sequence);
CREATE INDEX audit_events_tenant_occurred ON audit_events (tenant, occurred_at_ms);
-- Correlating repeated leaks of one value.
CREATE INDEX audit_events_match_hash ON audit_events (match_hash);

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION llmgw_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION llmgw_refuse_change();

-- One row per change made through the admin API, written in the same
-- transaction as the change. `actor` identifies the admin token
-- ("admin:" + the first 12 hex digits of its SHA-256), never the token;
-- before/after are JSON of the changed object (never a key's secret or
-- digest), NULL for what did not exist.
CREATE TABLE admin_audit (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms          BIGINT NOT NULL,
    actor          TEXT   NOT NULL,
    client_address TEXT   NOT NULL,
    -- "tenant.create", "key.revoke", "policy.update", ...
    action         TEXT   NOT NULL,
    -- "tenant:<id>", "key:<id>", "policy:<name>", "word_list:<name>".
    target         TEXT   NOT NULL,
    before         TEXT   NULL,
    after          TEXT   NULL
);

CREATE INDEX admin_audit_at ON admin_audit (at_ms);
CREATE INDEX admin_audit_target ON admin_audit (target, id);

CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION llmgw_refuse_change();
CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit
    FOR EACH STATEMENT EXECUTE FUNCTION llmgw_refuse_change();
