//! Console sessions: one row per signed-in browser, keyed by the SHA-256 of
//! the cookie's random token. In the database so a session survives a
//! restart and works on every billing replica.

use super::admins::Role;
use super::{BeginWrite, Store, StoreError, now_ms};

/// `last_seen_at` (the idle clock) is written at most this often.
const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;

/// A session about to be stored.
pub struct NewSession {
    /// SHA-256 of the cookie's token.
    pub digest: [u8; 32],
    /// `None` for a session opened with the configured admin token.
    pub credential_id: Option<String>,
    pub actor: String,
    pub role: Role,
    pub csrf_token: String,
    pub client_address: String,
    /// Absolute lifetime.
    pub ttl_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub credential_id: Option<String>,
    pub actor: String,
    pub role: Role,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    credential_id: Option<String>,
    actor: String,
    role: String,
    csrf_token: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
}

impl TryFrom<SessionRow> for Session {
    type Error = sqlx::Error;

    fn try_from(row: SessionRow) -> Result<Self, Self::Error> {
        let role = Role::parse(&row.role)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown role {:?}", row.role).into()))?;
        Ok(Session {
            credential_id: row.credential_id,
            actor: row.actor,
            role,
            csrf_token: row.csrf_token,
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
            expires_at: row.expires_at,
        })
    }
}

impl Store {
    /// Stores a new session, and deletes the expired ones (sign-ins are
    /// rare: this is the housekeeping).
    pub async fn create_session(&self, new: &NewSession) -> Result<Session, StoreError> {
        let now = now_ms();
        let session = Session {
            credential_id: new.credential_id.clone(),
            actor: new.actor.clone(),
            role: new.role,
            csrf_token: new.csrf_token.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now.saturating_add(new.ttl_ms),
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO admin_sessions (digest, credential_id, actor, role, csrf_token, \
                 client_address, created_at, last_seen_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)",
            )
            .bind(&new.digest[..])
            .bind(new.credential_id.as_deref())
            .bind(&new.actor)
            .bind(new.role.as_str())
            .bind(&new.csrf_token)
            .bind(&new.client_address)
            .bind(now)
            .bind(session.expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(session)
    }

    /// The live session with this digest: not past its expiry, seen within
    /// `idle_ms`, and opened with a credential that is still active (or
    /// with the configured token: the caller checks `actor` against it).
    /// Notes the use (the idle clock), at most once a minute.
    pub async fn session(
        &self,
        digest: &[u8; 32],
        idle_ms: i64,
    ) -> Result<Option<Session>, StoreError> {
        let now = now_ms();
        let sql = "SELECT s.credential_id, s.actor, s.role, s.csrf_token, s.created_at, \
                   s.last_seen_at, s.expires_at \
             FROM admin_sessions s LEFT JOIN admin_credentials c ON c.id = s.credential_id \
             WHERE s.digest = $1 AND s.expires_at > $2 AND s.last_seen_at > $3 \
               AND (s.credential_id IS NULL OR c.status = 'active')";
        let row: Option<SessionRow> = on_pool!(self, pool => sqlx::query_as(sql)
            .bind(&digest[..])
            .bind(now)
            .bind(now.saturating_sub(idle_ms))
            .fetch_optional(pool)
            .await)?;
        let Some(mut session) = row.map(Session::try_from).transpose()? else {
            return Ok(None);
        };
        if session.last_seen_at <= now - LAST_SEEN_RESOLUTION_MS {
            on_pool!(self, pool => sqlx::query(
                "UPDATE admin_sessions SET last_seen_at = $2 WHERE digest = $1 AND last_seen_at < $2",
            )
            .bind(&digest[..])
            .bind(now)
            .execute(pool)
            .await
            .map(drop))?;
            session.last_seen_at = now;
        }
        Ok(Some(session))
    }

    /// Ends a session (sign-out); whether there was one.
    pub async fn delete_session(&self, digest: &[u8; 32]) -> Result<bool, StoreError> {
        let deleted = on_pool!(self, pool => sqlx::query("DELETE FROM admin_sessions WHERE digest = $1")
            .bind(&digest[..])
            .execute(pool)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(deleted > 0)
    }
}
