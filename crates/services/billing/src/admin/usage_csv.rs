//! CSV (RFC 4180) renderings of usage reports and ledger rows, for
//! spreadsheets and finance tools. Money is given both as an exact USD
//! decimal string and in integer nano-USD, as in the JSON.

use super::csv::line;
use crate::store::usage_query::{LedgerRow, UsageReport, UsageSums};

/// The sums' columns, after the group columns.
pub const SUM_COLUMNS: [&str; 7] = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_nano_usd",
];

/// A header line, one line per row, then the totals line: its first group
/// cell says `total`. Without grouping there is no row but the total, so
/// the output is the header and the totals line alone (its one data line).
pub fn report(report: &UsageReport) -> String {
    let mut out = String::new();
    let groups: Vec<&str> = report.group_by.iter().map(|d| d.field()).collect();
    line(&mut out, groups.iter().chain(&SUM_COLUMNS).copied());
    for row in &report.rows {
        let cells: Vec<String> = row.group.iter().map(|(_, value)| value.clone()).collect();
        line(
            &mut out,
            cells
                .iter()
                .map(String::as_str)
                .chain(sum_cells(&row.sums).iter().map(String::as_str)),
        );
    }
    let mut labels = vec![String::new(); groups.len()];
    if let Some(first) = labels.first_mut() {
        "total".clone_into(first);
    }
    line(
        &mut out,
        labels
            .iter()
            .map(String::as_str)
            .chain(sum_cells(&report.total).iter().map(String::as_str)),
    );
    out
}

fn sum_cells(sums: &UsageSums) -> [String; 7] {
    [
        sums.requests.to_string(),
        sums.prompt_tokens.to_string(),
        sums.completion_tokens.to_string(),
        sums.cached_tokens.to_string(),
        sums.reasoning_tokens.to_string(),
        llmgw_usd::format_usd(sums.cost_nano_usd),
        sums.cost_nano_usd.to_string(),
    ]
}

/// The ledger export's columns: every column of the ledger, and the cost
/// in USD next to the nano-USD.
pub const LEDGER_HEADER: [&str; 30] = [
    "request_id",
    "attempt",
    "tenant",
    "key_id",
    "model",
    "route",
    "provider",
    "deployment",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "estimated",
    "input_price_per_mtok",
    "output_price_per_mtok",
    "cost_usd",
    "cost_nano_usd",
    "status",
    "finish_reason",
    "ttft_ms",
    "duration_ms",
    "started_at_ms",
    "ended_at_ms",
    "client_cancelled",
    "day",
    "api",
    "cache_creation_tokens",
    "cache_read_price_per_mtok",
    "cache_write_price_per_mtok",
];

pub fn ledger_header() -> String {
    let mut out = String::new();
    line(&mut out, LEDGER_HEADER.iter().copied());
    out
}

pub fn ledger_rows(rows: &[LedgerRow]) -> String {
    let mut out = String::new();
    for row in rows {
        let cost_usd = llmgw_usd::format_usd(u64::try_from(row.cost_nano_usd).unwrap_or(0));
        let cells: [String; 30] = [
            row.request_id.clone(),
            row.attempt.to_string(),
            row.tenant.clone(),
            row.key_id.clone(),
            row.model.clone(),
            row.route.clone(),
            row.provider.clone(),
            row.deployment.clone(),
            row.upstream_model.clone(),
            row.prompt_tokens.to_string(),
            row.completion_tokens.to_string(),
            row.cached_tokens.to_string(),
            row.reasoning_tokens.to_string(),
            row.estimated.to_string(),
            row.input_price_per_mtok.clone(),
            row.output_price_per_mtok.clone(),
            cost_usd,
            row.cost_nano_usd.to_string(),
            row.status.clone(),
            row.finish_reason.clone(),
            row.ttft_ms.to_string(),
            row.duration_ms.to_string(),
            row.started_at_ms.to_string(),
            row.ended_at_ms.to_string(),
            row.client_cancelled.to_string(),
            row.day.clone(),
            row.api.clone(),
            row.cache_creation_tokens.to_string(),
            row.cache_read_price_per_mtok.clone(),
            row.cache_write_price_per_mtok.clone(),
        ];
        line(&mut out, cells.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::usage_query::{Dimension, UsageRow};

    #[test]
    fn report_has_header_rows_and_total() {
        let sums = UsageSums {
            requests: 2,
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 1,
            reasoning_tokens: 0,
            cost_nano_usd: 1_500,
        };
        let report = UsageReport {
            group_by: vec![Dimension::Model, Dimension::Day],
            rows: vec![UsageRow {
                group: vec![
                    (Dimension::Model, "m".to_owned()),
                    (Dimension::Day, "2026-11-01".to_owned()),
                ],
                sums,
            }],
            total: sums,
        };
        assert_eq!(
            super::report(&report),
            "model,day,requests,prompt_tokens,completion_tokens,cached_tokens,reasoning_tokens,\
             cost_usd,cost_nano_usd\r\n\
             m,2026-11-01,2,10,5,1,0,0.0000015,1500\r\n\
             total,,2,10,5,1,0,0.0000015,1500\r\n"
        );
        let ungrouped = UsageReport {
            group_by: vec![],
            rows: vec![],
            total: UsageSums::default(),
        };
        assert_eq!(
            super::report(&ungrouped),
            "requests,prompt_tokens,completion_tokens,cached_tokens,reasoning_tokens,cost_usd,\
             cost_nano_usd\r\n0,0,0,0,0,0,0\r\n"
        );
    }
}
