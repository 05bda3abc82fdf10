//! `/admin/v1/audit`: the content-policy hits the edge and the routers
//! recorded, and `/admin/v1/audit/admin`: the admin-action trail. Both
//! newest first, filtered, JSON pages with a `next_cursor`, or CSV
//! (`format=csv` or `Accept: text/csv`): an export of every matching row
//! from the cursor on (or the first `limit`), streamed a page at a time.
//!
//! Times (`from` inclusive, `to` exclusive) are unix milliseconds or UTC
//! days `YYYY-MM-DD` (midnight); either may be omitted.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse as _, Response};
use futures_util::StreamExt as _;
use http::HeaderMap;
use serde_json::json;

use super::error::ApiError;
use super::usage::{Params, csv_response, optional_name, parse_params, wants_csv};
use super::{AdminState, audit_csv};
use crate::store::admin_audit::{AdminAuditQuery, AdminAuditRow};
use crate::store::audit::{ACTIONS, DIRECTIONS};
use crate::store::audit_query::{AuditCursor, AuditQuery, AuditRow};
use crate::store::{Store, StoreError};

type Shared = State<Arc<AdminState>>;

/// Rows of a JSON page when `limit` is not given, and the most it may ask.
const DEFAULT_PAGE_ROWS: u32 = 100;
const MAX_PAGE_ROWS: u32 = 1_000;
/// Rows per database round trip of a CSV export.
const EXPORT_PAGE_ROWS: u32 = 5_000;

/// `GET /admin/v1/audit?tenant=&key_id=&rule_id=&action=&direction=&policy=
/// &request_id=&match_hash=&from=&to=&limit=&cursor=&format=`
pub async fn events(
    State(state): Shared,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut params = parse_params(
        params,
        &[
            "tenant",
            "key_id",
            "rule_id",
            "action",
            "direction",
            "policy",
            "request_id",
            "match_hash",
            "from",
            "to",
            "limit",
            "cursor",
            "format",
        ],
    )?;
    let action = one_of(&mut params, "action", &ACTIONS)?;
    let direction = one_of(&mut params, "direction", &DIRECTIONS)?;
    let (from_ms, to_ms) = time_range(&mut params)?;
    let after = params
        .remove("cursor")
        .map(|token| {
            AuditCursor::decode(&token).ok_or_else(|| {
                ApiError::invalid_param("cursor", "cursor: not a cursor this API gave")
            })
        })
        .transpose()?;
    let csv = wants_csv(params.remove("format").as_deref(), &headers)?;
    let limit = limit(&mut params, csv)?;
    let mut query = AuditQuery {
        tenant: optional_name(&mut params, "tenant")?,
        key_id: optional_name(&mut params, "key_id")?,
        rule_id: optional_name(&mut params, "rule_id")?,
        action,
        direction,
        policy: optional_name(&mut params, "policy")?,
        request_id: optional_name(&mut params, "request_id")?,
        match_hash: optional_name(&mut params, "match_hash")?,
        from_ms,
        to_ms,
        after,
        limit: json_page(limit),
    };
    if !csv {
        let rows = page(&state.store, &query).await?;
        let next_cursor = (rows.len() == query.limit as usize)
            .then(|| rows.last().map(|row| row.cursor().encode()))
            .flatten();
        return Ok(Json(json!({ "data": rows, "next_cursor": next_cursor })).into_response());
    }
    // An export: pages until the rows (or the asked limit) run out.
    query.limit = export_page(limit);
    let first = page(&state.store, &query).await?;
    let head = audit_csv::events_header() + &audit_csv::event_rows(&first);
    let exported = first.len() as u64;
    query.after = first.last().map(AuditRow::cursor);
    let pages = EventPages {
        store: state.store.clone(),
        query,
        left: limit.map(|limit| limit.saturating_sub(exported)),
        more: first.len() as u64 == u64::from(export_page(limit)),
    };
    let rest = futures_util::stream::unfold(pages, EventPages::next);
    let body = futures_util::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    Ok(csv_response(Body::from_stream(body), Some("audit.csv")))
}

/// `GET /admin/v1/audit/admin?actor=&action=&target=&from=&to=&limit=&cursor=&format=`
pub async fn admin_actions(
    State(state): Shared,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut params = parse_params(
        params,
        &[
            "actor", "action", "target", "from", "to", "limit", "cursor", "format",
        ],
    )?;
    let (from_ms, to_ms) = time_range(&mut params)?;
    let before_id = params
        .remove("cursor")
        .map(|token| {
            token.parse::<i64>().map_err(|_| {
                ApiError::invalid_param("cursor", "cursor: not a cursor this API gave")
            })
        })
        .transpose()?;
    let csv = wants_csv(params.remove("format").as_deref(), &headers)?;
    let limit = limit(&mut params, csv)?;
    let mut query = AdminAuditQuery {
        actor: optional_name(&mut params, "actor")?,
        action: optional_name(&mut params, "action")?,
        target: optional_name(&mut params, "target")?,
        from_ms,
        to_ms,
        before_id,
        limit: json_page(limit),
    };
    if !csv {
        let rows = admin_page(&state.store, &query).await?;
        let next_cursor = (rows.len() == query.limit as usize)
            .then(|| rows.last().map(|row| row.id.to_string()))
            .flatten();
        return Ok(Json(json!({ "data": rows, "next_cursor": next_cursor })).into_response());
    }
    query.limit = export_page(limit);
    let first = admin_page(&state.store, &query).await?;
    let head = audit_csv::admin_header() + &audit_csv::admin_rows(&first);
    let exported = first.len() as u64;
    query.before_id = first.last().map(|row| row.id);
    let pages = AdminPages {
        store: state.store.clone(),
        query,
        left: limit.map(|limit| limit.saturating_sub(exported)),
        more: first.len() as u64 == u64::from(export_page(limit)),
    };
    let rest = futures_util::stream::unfold(pages, AdminPages::next);
    let body = futures_util::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    Ok(csv_response(
        Body::from_stream(body),
        Some("admin-audit.csv"),
    ))
}

async fn page(store: &Store, query: &AuditQuery) -> Result<Vec<AuditRow>, ApiError> {
    store
        .audit_page(query)
        .await
        .map_err(|error| ApiError::store(error, None))
}

async fn admin_page(
    store: &Store,
    query: &AdminAuditQuery,
) -> Result<Vec<AdminAuditRow>, ApiError> {
    store
        .admin_audit_page(query)
        .await
        .map_err(|error| ApiError::store(error, None))
}

/// Rows of a JSON page: the asked limit (at most `MAX_PAGE_ROWS`, checked
/// by `limit`), else `DEFAULT_PAGE_ROWS`.
fn json_page(limit: Option<u64>) -> u32 {
    limit.map_or(DEFAULT_PAGE_ROWS, |limit| {
        u32::try_from(limit).unwrap_or(u32::MAX)
    })
}

/// The rows of an export's first database page: a page, or fewer when the
/// limit asks for fewer.
fn export_page(limit: Option<u64>) -> u32 {
    limit.map_or(EXPORT_PAGE_ROWS, |limit| {
        u32::try_from(limit.min(u64::from(EXPORT_PAGE_ROWS))).unwrap_or(EXPORT_PAGE_ROWS)
    })
}

/// An export's state between pages: where it is, how many rows it may
/// still give (`None`: no limit), whether the last page was full.
struct EventPages {
    store: Store,
    query: AuditQuery,
    left: Option<u64>,
    more: bool,
}

impl EventPages {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, EventPages)> {
        if !self.more || self.left == Some(0) {
            return None;
        }
        self.query.limit = export_page(self.left);
        match self.store.audit_page(&self.query).await {
            Ok(rows) => {
                self.more = rows.len() == self.query.limit as usize;
                self.left = self.left.map(|left| left.saturating_sub(rows.len() as u64));
                self.query.after = rows.last().map(AuditRow::cursor);
                Some((Ok(Bytes::from(audit_csv::event_rows(&rows))), self))
            }
            Err(error) => {
                self.more = false;
                Some((Err(export_failed(&error)), self))
            }
        }
    }
}

struct AdminPages {
    store: Store,
    query: AdminAuditQuery,
    left: Option<u64>,
    more: bool,
}

impl AdminPages {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, AdminPages)> {
        if !self.more || self.left == Some(0) {
            return None;
        }
        self.query.limit = export_page(self.left);
        match self.store.admin_audit_page(&self.query).await {
            Ok(rows) => {
                self.more = rows.len() == self.query.limit as usize;
                self.left = self.left.map(|left| left.saturating_sub(rows.len() as u64));
                self.query.before_id = rows.last().map(|row| row.id);
                Some((Ok(Bytes::from(audit_csv::admin_rows(&rows))), self))
            }
            Err(error) => {
                self.more = false;
                Some((Err(export_failed(&error)), self))
            }
        }
    }
}

/// A failure after the first page cuts the response short (no final
/// chunk): clients see an error, not a silently truncated file.
fn export_failed(error: &StoreError) -> std::io::Error {
    tracing::warn!(error = %error, "audit export failed midway");
    std::io::Error::other("the audit export failed")
}

/// `limit`: a positive integer; at most [`MAX_PAGE_ROWS`] for a JSON page,
/// any for an export.
fn limit(params: &mut HashMap<String, String>, csv: bool) -> Result<Option<u64>, ApiError> {
    let Some(text) = params.remove("limit") else {
        return Ok(None);
    };
    let most = if csv {
        u64::MAX
    } else {
        u64::from(MAX_PAGE_ROWS)
    };
    match text.parse::<u64>() {
        Ok(limit) if (1..=most).contains(&limit) => Ok(Some(limit)),
        _ => Err(ApiError::invalid_param(
            "limit",
            format!("limit: a whole number from 1 to {most}"),
        )),
    }
}

/// A filter that takes one of `allowed`.
fn one_of(
    params: &mut HashMap<String, String>,
    name: &'static str,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match params.remove(name) {
        Some(value) if !allowed.contains(&value.as_str()) => Err(ApiError::invalid_param(
            name,
            format!("{name}: {value:?} is not one of {allowed:?}"),
        )),
        other => Ok(other),
    }
}

/// `from` (inclusive) and `to` (exclusive), each unix ms or `YYYY-MM-DD`.
fn time_range(
    params: &mut HashMap<String, String>,
) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let mut time = |name: &'static str| {
        params
            .remove(name)
            .map(|text| parse_time(&text).map_err(|why| ApiError::invalid_param(name, why)))
            .transpose()
    };
    let (from, to) = (time("from")?, time("to")?);
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::invalid_param(
            "from",
            "from is after to (to is exclusive)",
        ));
    }
    Ok((from, to))
}

/// Unix milliseconds, or a UTC day `YYYY-MM-DD` (its midnight).
pub(super) fn parse_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| format!("{text} is out of range"));
    }
    llmgw_calendar::Day::parse(text)
        .map(llmgw_calendar::Day::start_ms)
        .map_err(|message| format!("{message}, or unix milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1793491200000"), Ok(1_793_491_200_000));
        assert_eq!(parse_time("2026-11-01"), Ok(1_793_491_200_000));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("-5").is_err());
        assert!(parse_time("99999999999999999999").is_err());
    }

    #[test]
    fn limits() {
        let mut params = HashMap::from([("limit".to_owned(), "1001".to_owned())]);
        assert!(limit(&mut params.clone(), false).is_err());
        assert_eq!(limit(&mut params, true).ok(), Some(Some(1001)));
        let mut zero = HashMap::from([("limit".to_owned(), "0".to_owned())]);
        assert!(limit(&mut zero, true).is_err());
        assert_eq!(limit(&mut HashMap::new(), false).ok(), Some(None));
    }
}
