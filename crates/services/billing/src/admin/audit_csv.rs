//! CSV renderings of the audit trails: one line per recorded hit or admin
//! action, the time both as UTC text and as unix milliseconds.

use super::csv::line;
use crate::store::admin_audit::AdminAuditRow;
use crate::store::audit_query::AuditRow;

pub const EVENT_HEADER: [&str; 18] = [
    "occurred_at",
    "occurred_at_ms",
    "request_id",
    "attempt",
    "sequence",
    "tenant",
    "key_id",
    "model",
    "policy",
    "rule_id",
    "rule_kind",
    "direction",
    "action",
    "location",
    "offset",
    "length",
    "match_hash",
    "excerpt",
];

pub const ADMIN_HEADER: [&str; 9] = [
    "at",
    "at_ms",
    "id",
    "actor",
    "client_address",
    "action",
    "target",
    "before",
    "after",
];

pub fn events_header() -> String {
    let mut out = String::new();
    line(&mut out, EVENT_HEADER.iter().copied());
    out
}

pub fn event_rows(rows: &[AuditRow]) -> String {
    let mut out = String::new();
    for row in rows {
        let cells: [String; 18] = [
            utc(row.occurred_at_ms),
            row.occurred_at_ms.to_string(),
            row.request_id.clone(),
            row.attempt.to_string(),
            row.sequence.to_string(),
            row.tenant.clone(),
            row.key_id.clone(),
            row.model.clone(),
            row.policy.clone(),
            row.rule_id.clone(),
            row.rule_kind.clone(),
            row.direction.clone(),
            row.action.clone(),
            row.location.clone(),
            row.offset.to_string(),
            row.length.to_string(),
            row.match_hash.clone(),
            row.excerpt.clone(),
        ];
        line(&mut out, cells.iter().map(String::as_str));
    }
    out
}

pub fn admin_header() -> String {
    let mut out = String::new();
    line(&mut out, ADMIN_HEADER.iter().copied());
    out
}

pub fn admin_rows(rows: &[AdminAuditRow]) -> String {
    let mut out = String::new();
    let json = |value: &Option<serde_json::Value>| {
        value
            .as_ref()
            .map_or_else(String::new, serde_json::Value::to_string)
    };
    for row in rows {
        let cells: [String; 9] = [
            utc(row.at),
            row.at.to_string(),
            row.id.to_string(),
            row.actor.clone(),
            row.client_address.clone(),
            row.action.clone(),
            row.target.clone(),
            json(&row.before),
            json(&row.after),
        ];
        line(&mut out, cells.iter().map(String::as_str));
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339, UTC).
pub fn utc(ms: i64) -> String {
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (year, month, day) = llmgw_calendar::civil_from_days(days);
    let (hour, minute, second, milli) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000,
    );
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_793_491_200_001), "2026-11-01T00:00:00.001Z");
        assert_eq!(utc(1_793_491_199_999), "2026-10-31T23:59:59.999Z");
    }

    #[test]
    fn admin_json_cells_are_quoted() {
        let row = AdminAuditRow {
            id: 7,
            at: 0,
            actor: "admin:0123456789ab".into(),
            client_address: "127.0.0.1:5000".into(),
            action: "tenant.update".into(),
            target: "tenant:t1".into(),
            before: Some(serde_json::json!({"name": "a"})),
            after: None,
        };
        assert_eq!(
            admin_rows(&[row]),
            "1970-01-01T00:00:00.000Z,0,7,admin:0123456789ab,127.0.0.1:5000,tenant.update,\
             tenant:t1,\"{\"\"name\"\":\"\"a\"\"}\",\r\n"
        );
    }
}
