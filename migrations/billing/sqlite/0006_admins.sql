-- Admin credentials with roles, and console sessions (SQLite). Keep
-- equivalent to ../postgres/0005_admins.sql. Conventions as in 0001: BIGINT unix
-- milliseconds, TEXT ids, SHA-256 digests instead of secrets.

-- One row per admin credential (`llmgw admins create`). The credential's
-- text is shown once; only its SHA-256 is stored. A name is never reused,
-- revoked or not, so `credential:<name>` names one credential forever in
-- the admin trail.
CREATE TABLE admin_credentials (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'finance', 'auditor')),
    digest         BLOB NOT NULL UNIQUE CHECK (typeof(digest) = 'blob' AND length(digest) = 32),
    display_prefix TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT NULL,
    revoked_at     BIGINT NULL
);

-- One row per console session. The cookie holds a random token; only its
-- SHA-256 is stored, so a copy of the database signs nobody in. The CSRF
-- token is kept as it is: the console reads it back after a reload, and it
-- is worthless without the cookie. credential_id is NULL for a session
-- opened with the configured admin token; `actor` then names that token,
-- and the session ends when the token changes. In the database rather than
-- in memory so sessions survive restarts and work across replicas.
CREATE TABLE admin_sessions (
    digest         BLOB PRIMARY KEY NOT NULL CHECK (typeof(digest) = 'blob' AND length(digest) = 32),
    credential_id  TEXT NULL REFERENCES admin_credentials (id),
    actor          TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'finance', 'auditor')),
    csrf_token     TEXT NOT NULL,
    client_address TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);

CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);
CREATE INDEX admin_sessions_credential ON admin_sessions (credential_id);
