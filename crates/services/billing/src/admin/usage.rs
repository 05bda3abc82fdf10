//! `/admin/v1/usage`: usage reports from the daily rollup (JSON or CSV),
//! one request's attempts, and a month of the ledger as CSV.
//!
//! Dates are UTC days `YYYY-MM-DD`; `from` is inclusive and `to` exclusive,
//! so `from=2026-11-01&to=2026-12-01` is November. `from == to` is an empty
//! range (a valid question with a zero answer); `from > to` is refused, as
//! is a range longer than 366 days. Without `from` and `to`, the current
//! UTC month.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse as _, Response};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::{AdminState, usage_csv};
use crate::store::Store;
use crate::store::calendar::{Day, Month};
use crate::store::usage_query::{Dimension, LedgerRow, UsageQuery, UsageSums, check_range};

type Shared = State<Arc<AdminState>>;
pub(super) type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// Ledger rows per database round trip of an export.
const EXPORT_PAGE_ROWS: u32 = 5_000;

/// `GET /admin/v1/usage?tenant=&key_id=&from=&to=&group_by=model,day&format=csv`
pub async fn report(
    State(state): Shared,
    params: Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut params = parse_params(
        params,
        &["tenant", "key_id", "from", "to", "group_by", "format"],
    )?;
    let tenant = optional_name(&mut params, "tenant")?;
    let key_id = optional_name(&mut params, "key_id")?;
    let (from, to) = range(params.remove("from"), params.remove("to"))?;
    let group_by = group_by(params.remove("group_by").as_deref().unwrap_or(""))?;
    let csv = wants_csv(params.remove("format").as_deref(), &headers)?;
    let query = UsageQuery {
        tenant,
        key_id,
        from,
        to,
        group_by,
    };
    let report = state
        .store
        .usage_report(&query)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    if csv {
        return Ok(csv_response(usage_csv::report(&report), None));
    }
    let rows: Vec<Value> = report
        .rows
        .iter()
        .map(|row| {
            let mut fields = Map::new();
            for (dimension, value) in &row.group {
                fields.insert(dimension.field().to_owned(), Value::from(value.clone()));
            }
            fields.extend(sums_json(&row.sums));
            Value::Object(fields)
        })
        .collect();
    let group_by: Vec<&str> = report.group_by.iter().map(|d| d.name()).collect();
    Ok(Json(json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "tenant": query.tenant,
        "key_id": query.key_id,
        "group_by": group_by,
        "rows": rows,
        "total": Value::Object(sums_json(&report.total)),
    }))
    .into_response())
}

/// `GET /admin/v1/usage/requests/{request_id}`: 404 until the request's
/// first attempt is in the ledger.
pub async fn attempts(
    State(state): Shared,
    Path(request_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rows = state
        .store
        .request_attempts(&request_id)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    if rows.is_empty() {
        return Err(ApiError::not_found(format!(
            "no usage recorded for request {request_id:?} (events reach the ledger a few \
             seconds after the request ends)"
        )));
    }
    let attempts: Vec<Value> = rows.iter().map(attempt_json).collect::<Result<_, _>>()?;
    Ok(Json(
        json!({ "request_id": request_id, "attempts": attempts }),
    ))
}

/// `GET /admin/v1/usage/export?month=2026-11[&tenant=X]`: the month's
/// ledger rows as CSV, streamed a page at a time. A database failure after
/// the first page cuts the response short (no final chunk), which HTTP
/// clients report as an error rather than a silently truncated file.
pub async fn export(State(state): Shared, params: Params) -> Result<Response, ApiError> {
    let mut params = parse_params(params, &["month", "tenant"])?;
    let text = params
        .remove("month")
        .ok_or_else(|| ApiError::invalid_param("month", "month is required, e.g. month=2026-11"))?;
    let month = Month::parse(&text).map_err(|message| ApiError::invalid_param("month", message))?;
    let tenant = optional_name(&mut params, "tenant")?;
    // The first page before answering: an unreachable database is a 503,
    // not a 200 with an empty file.
    let first = state
        .store
        .ledger_page(month, tenant.as_deref(), None, EXPORT_PAGE_ROWS)
        .await
        .map_err(|error| ApiError::store(error, None))?;
    let head = usage_csv::ledger_header() + &usage_csv::ledger_rows(&first);
    let pages = Pages {
        store: state.store.clone(),
        month,
        tenant: tenant.clone(),
        last: full_page_last(first),
    };
    let rest = futures_util::stream::unfold(pages, Pages::next);
    let body = futures_util::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    let name = match &tenant {
        Some(tenant) => format!("usage-{month}-{tenant}.csv"),
        None => format!("usage-{month}.csv"),
    };
    Ok(csv_response(Body::from_stream(body), Some(&name)))
}

/// The export's state between pages: `last` is the cursor, `None` once a
/// short page showed there is nothing more.
struct Pages {
    store: Store,
    month: Month,
    tenant: Option<String>,
    last: Option<LedgerRow>,
}

impl Pages {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Pages)> {
        let last = self.last.take()?;
        let page = self
            .store
            .ledger_page(
                self.month,
                self.tenant.as_deref(),
                Some(&last),
                EXPORT_PAGE_ROWS,
            )
            .await;
        match page {
            Ok(rows) => {
                let text = usage_csv::ledger_rows(&rows);
                self.last = full_page_last(rows);
                Some((Ok(Bytes::from(text)), self))
            }
            Err(error) => {
                tracing::warn!(error = %error, month = %self.month, "usage export failed midway");
                Some((Err(std::io::Error::other("the ledger export failed")), self))
            }
        }
    }
}

fn full_page_last(mut rows: Vec<LedgerRow>) -> Option<LedgerRow> {
    if rows.len() < EXPORT_PAGE_ROWS as usize {
        None
    } else {
        rows.pop()
    }
}

pub(super) fn csv_response(body: impl Into<Body>, file_name: Option<&str>) -> Response {
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    // The file name holds a tenant name (letters, digits, '.', '_', '-'),
    // so it needs no quoting rules beyond the quotes themselves.
    if let Some(value) = file_name
        .and_then(|name| HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")).ok())
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

fn sums_json(sums: &UsageSums) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("requests".into(), sums.requests.into());
    fields.insert("prompt_tokens".into(), sums.prompt_tokens.into());
    fields.insert("completion_tokens".into(), sums.completion_tokens.into());
    fields.insert("cached_tokens".into(), sums.cached_tokens.into());
    fields.insert("reasoning_tokens".into(), sums.reasoning_tokens.into());
    fields.insert(
        "cost_usd".into(),
        llmgw_usd::format_usd(sums.cost_nano_usd).into(),
    );
    fields.insert("cost_nano_usd".into(), sums.cost_nano_usd.into());
    fields
}

/// A ledger row as JSON, with the cost also as an exact USD string.
fn attempt_json(row: &LedgerRow) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(row).map_err(|error| {
        tracing::error!(error = %error, "serializing a ledger row");
        ApiError::unavailable("internal error serializing the ledger")
    })?;
    if let Some(fields) = value.as_object_mut() {
        let cost = u64::try_from(row.cost_nano_usd).unwrap_or(0);
        fields.insert("cost_usd".into(), llmgw_usd::format_usd(cost).into());
    }
    Ok(value)
}

/// The query string as a map; unknown and repeated parameters are refused
/// (a misspelt `groupby` silently ignored would give a wrong report).
pub(super) fn parse_params(
    params: Params,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(pairs) = params.map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
    let mut map = HashMap::new();
    for (name, value) in pairs {
        if !known.contains(&name.as_str()) {
            return Err(ApiError::invalid_param(
                name.clone(),
                format!("unknown query parameter {name:?}; expected any of {known:?}"),
            ));
        }
        if map.contains_key(&name) {
            return Err(ApiError::invalid_param(
                name.clone(),
                format!("query parameter {name:?} is given more than once"),
            ));
        }
        map.insert(name, value);
    }
    Ok(map)
}

/// An optional tenant or key filter. Present but empty is refused: an unset
/// shell variable must not turn "one tenant" into "every tenant".
pub(super) fn optional_name(
    params: &mut HashMap<String, String>,
    name: &'static str,
) -> Result<Option<String>, ApiError> {
    match params.remove(name) {
        Some(value) if value.is_empty() => Err(ApiError::invalid_param(
            name,
            format!("{name} is empty; omit it to include every {name}"),
        )),
        other => Ok(other),
    }
}

/// `[from, to)`: both given, or neither (the current UTC month).
fn range(from: Option<String>, to: Option<String>) -> Result<(Day, Day), ApiError> {
    let day = |name: &'static str, text: &str| {
        Day::parse(text)
            .map_err(|message| ApiError::invalid_param(name, format!("{name}: {message}")))
    };
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (day("from", &from)?, day("to", &to)?),
        (None, None) => {
            let month = Month::current();
            (month.first_day(), month.succ().first_day())
        }
        (Some(_), None) => {
            return Err(ApiError::invalid_param(
                "to",
                "to is missing: give both from and to (to is exclusive), or neither for the \
                 current month",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid_param(
                "from",
                "from is missing: give both from and to (to is exclusive), or neither for the \
                 current month",
            ));
        }
    };
    check_range(from, to).map_err(|error| {
        // Reversed: `from` is at fault; too long (over MAX_REPORT_DAYS): `to`.
        let param = if from > to { "from" } else { "to" };
        ApiError::store(error, Some(param))
    })?;
    Ok((from, to))
}

/// `group_by=model,day`: comma-separated dimensions, in column order.
fn group_by(text: &str) -> Result<Vec<Dimension>, ApiError> {
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            Dimension::parse(name).ok_or_else(|| {
                let known: Vec<&str> = Dimension::ALL.iter().map(|d| d.name()).collect();
                ApiError::invalid_param(
                    "group_by",
                    format!(
                        "unknown group_by {name:?}: expected a comma-separated list of {}",
                        known.join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// `format=csv|json`; without it, CSV if the client's Accept names
/// `text/csv`, else JSON.
pub(super) fn wants_csv(format: Option<&str>, headers: &HeaderMap) -> Result<bool, ApiError> {
    match format {
        Some("csv") => Ok(true),
        Some("json") => Ok(false),
        Some(other) => Err(ApiError::invalid_param(
            "format",
            format!("unknown format {other:?}: expected csv or json"),
        )),
        None => Ok(headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_by_parses_in_order() {
        assert!(matches!(
            group_by("model, day,").as_deref(),
            Ok([Dimension::Model, Dimension::Day])
        ));
        assert!(matches!(group_by("").as_deref(), Ok([])));
        assert!(group_by("modle").is_err());
        assert!(group_by("key_id").is_err());
    }

    #[test]
    fn ranges() {
        let some = |text: &str| Some(text.to_owned());
        assert!(range(some("2026-11-01"), some("2026-12-01")).is_ok());
        assert!(range(some("2026-11-01"), some("2026-11-01")).is_ok());
        assert!(range(some("2026-11-02"), some("2026-11-01")).is_err());
        assert!(range(some("2026-01-01"), some("2027-01-02")).is_ok());
        assert!(range(some("2026-01-01"), some("2027-01-03")).is_err());
        assert!(range(some("2026-11-01"), None).is_err());
        assert!(range(some("2026-11-31"), some("2026-12-01")).is_err());
        let (from, to) = range(None, None).unwrap_or((Day::today(), Day::today()));
        assert_eq!(from.month(), Month::current());
        assert_eq!(to, Month::current().succ().first_day());
    }
}
