//! Reads of the audit trail of content-policy hits: filtered, newest first,
//! in keyset pages (a cursor is the last row's key, so paging is stable
//! while new events arrive and costs the same on page 1 and page 1000).

use serde::Serialize;
use sqlx::QueryBuilder;

use super::audit::AUDIT_COLUMNS;
use super::{Store, StoreError};

/// Filters of the audit trail; `None` = any. Times are unix ms, `from`
/// inclusive and `to` exclusive.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub tenant: Option<String>,
    pub key_id: Option<String>,
    pub rule_id: Option<String>,
    pub action: Option<String>,
    pub direction: Option<String>,
    pub policy: Option<String>,
    pub request_id: Option<String>,
    pub match_hash: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// Only rows after this one in the page order (older, or equally old
    /// with a smaller key).
    pub after: Option<AuditCursor>,
    pub limit: u32,
}

/// A row's position in the page order: its time and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    pub occurred_at_ms: i64,
    pub request_id: String,
    pub attempt: i64,
    pub sequence: i64,
}

impl AuditCursor {
    /// The cursor as an opaque token: `<ms>.<attempt>.<sequence>.<hex of
    /// request id>` (hex, so any request id survives a query string).
    pub fn encode(&self) -> String {
        let hex: String = self
            .request_id
            .bytes()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        format!(
            "{}.{}.{}.{hex}",
            self.occurred_at_ms, self.attempt, self.sequence
        )
    }

    pub fn decode(token: &str) -> Option<AuditCursor> {
        let mut parts = token.splitn(4, '.');
        let occurred_at_ms = parts.next()?.parse().ok()?;
        let attempt = parts.next()?.parse().ok()?;
        let sequence = parts.next()?.parse().ok()?;
        let hex = parts.next()?;
        if hex.len() % 2 != 0 {
            return None;
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        Some(AuditCursor {
            occurred_at_ms,
            request_id: String::from_utf8(bytes).ok()?,
            attempt,
            sequence,
        })
    }
}

/// One recorded hit (the fields of `llmgw.billing.v1.AuditEvent`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub request_id: String,
    pub attempt: i64,
    pub sequence: i64,
    pub tenant: String,
    pub key_id: String,
    pub model: String,
    pub policy: String,
    pub rule_id: String,
    pub rule_kind: String,
    pub direction: String,
    pub action: String,
    pub location: String,
    #[sqlx(rename = "match_offset")]
    pub offset: i64,
    #[sqlx(rename = "match_length")]
    pub length: i64,
    pub match_hash: String,
    pub excerpt: String,
    pub occurred_at_ms: i64,
}

impl AuditRow {
    pub fn cursor(&self) -> AuditCursor {
        AuditCursor {
            occurred_at_ms: self.occurred_at_ms,
            request_id: self.request_id.clone(),
            attempt: self.attempt,
            sequence: self.sequence,
        }
    }
}

impl Store {
    /// Up to `query.limit` recorded hits matching the filters, newest first
    /// (ties by request id, attempt and sequence, descending).
    pub async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<AuditRow>, StoreError> {
        Ok(on_pool!(self, pool => {
            let mut sql = QueryBuilder::new(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE 1 = 1"
            ));
            for (column, value) in [
                ("tenant", &query.tenant),
                ("key_id", &query.key_id),
                ("rule_id", &query.rule_id),
                ("action", &query.action),
                ("direction", &query.direction),
                ("policy", &query.policy),
                ("request_id", &query.request_id),
                ("match_hash", &query.match_hash),
            ] {
                if let Some(value) = value {
                    sql.push(" AND ").push(column).push(" = ").push_bind(value.clone());
                }
            }
            if let Some(from) = query.from_ms {
                sql.push(" AND occurred_at_ms >= ").push_bind(from);
            }
            if let Some(to) = query.to_ms {
                sql.push(" AND occurred_at_ms < ").push_bind(to);
            }
            if let Some(last) = &query.after {
                // A row-value comparison: the index on (occurred_at_ms,
                // request_id, attempt, sequence) seeks to the page's start.
                sql.push(" AND (occurred_at_ms, request_id, attempt, sequence) < (")
                    .push_bind(last.occurred_at_ms)
                    .push(", ")
                    .push_bind(last.request_id.clone())
                    .push(", ")
                    .push_bind(last.attempt)
                    .push(", ")
                    .push_bind(last.sequence)
                    .push(")");
            }
            sql.push(
                " ORDER BY occurred_at_ms DESC, request_id DESC, attempt DESC, sequence DESC \
                 LIMIT ",
            )
            .push_bind(i64::from(query.limit));
            sql.build_query_as::<AuditRow>().fetch_all(pool).await
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = AuditCursor {
            occurred_at_ms: 1_793_491_200_000,
            request_id: "req.with.dots/and é".into(),
            attempt: 2,
            sequence: 7,
        };
        assert_eq!(AuditCursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "1.2.3", "x.1.2.61", "1.2.3.6", "1.2.3.zz", "1.2.3.ff"] {
            assert_eq!(AuditCursor::decode(bad), None, "{bad}");
        }
    }
}
