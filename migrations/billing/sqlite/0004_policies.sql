-- Content policies as data (SQLite). Keep equivalent to ../0004_policies.sql
-- (Postgres), which explains each table.

CREATE TABLE policies (
    name       TEXT   PRIMARY KEY NOT NULL,
    spec       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE word_lists (
    name       TEXT   PRIMARY KEY NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE word_list_terms (
    list TEXT NOT NULL REFERENCES word_lists (name) ON DELETE CASCADE,
    term TEXT NOT NULL,
    PRIMARY KEY (list, term)
) WITHOUT ROWID;

CREATE TABLE policy_state (
    id             INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    revision       BIGINT  NOT NULL CHECK (revision >= 0),
    match_hash_key BLOB    NULL CHECK (match_hash_key IS NULL OR (typeof(match_hash_key) = 'blob' AND length(match_hash_key) = 32))
);
INSERT INTO policy_state (id, revision) VALUES (1, 0);

ALTER TABLE tenants ADD COLUMN policy TEXT NULL;
