//! `llmgw usage …`: a usage report from the billing service's admin API
//! (`GET /admin/v1/usage`), as a table, CSV (`--csv`) or JSON (`--json`).

use serde_json::{Map, Value};

use super::*;

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// Only this tenant (by name).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this API key (by id).
    #[arg(long)]
    pub key_id: Option<String>,
    /// First UTC day, YYYY-MM-DD, included. Give --from and --to, or neither
    /// for the current month.
    #[arg(long, requires = "to")]
    pub from: Option<String>,
    /// UTC day, YYYY-MM-DD, excluded: --from 2026-11-01 --to 2026-12-01 is
    /// November.
    #[arg(long, requires = "from")]
    pub to: Option<String>,
    /// Group rows by any of tenant, key, model, provider, day, month
    /// (comma-separated or repeated); none: a single total.
    #[arg(long, value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// Print CSV (a header line, the rows, a totals line).
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

pub async fn usage(args: &AdminArgs, usage: UsageArgs) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    let mut url = admin.base.clone();
    url.path_segments_mut()
        .map_err(|()| anyhow!("admin API URL {} cannot have a path", admin.base))?
        .pop_if_empty()
        .extend(["admin", "v1", "usage"]);
    {
        let mut query = url.query_pairs_mut();
        let group_by = usage.group_by.join(",");
        let params = [
            ("tenant", usage.tenant.as_deref()),
            ("key_id", usage.key_id.as_deref()),
            ("from", usage.from.as_deref()),
            ("to", usage.to.as_deref()),
            (
                "group_by",
                (!group_by.is_empty()).then_some(group_by.as_str()),
            ),
            ("format", usage.csv.then_some("csv")),
        ];
        for (name, value) in params {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        }
    }
    let request = admin.http.get(url).bearer_auth(&admin.token);
    if !usage.csv {
        return admin
            .print(request, |report: Report| usage_table(&report))
            .await;
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the admin API at {}", admin.base))?;
    let status = response.status();
    if !status.is_success() {
        let message = response.json::<ErrorEnvelope>().await.ok();
        bail!(api_error_message(
            status,
            message.map(|m| m.error.message).as_deref()
        ));
    }
    let text = response
        .text()
        .await
        .context("reading the admin API response")?;
    print!("{text}");
    Ok(())
}

/// The parts of the report the table shows.
#[derive(Debug, Deserialize)]
pub(super) struct Report {
    group_by: Vec<String>,
    rows: Vec<Map<String, Value>>,
    total: Map<String, Value>,
}

const SUM_FIELDS: [(&str, &str); 6] = [
    ("REQUESTS", "requests"),
    ("PROMPT", "prompt_tokens"),
    ("COMPLETION", "completion_tokens"),
    ("CACHED", "cached_tokens"),
    ("REASONING", "reasoning_tokens"),
    ("COST USD", "cost_usd"),
];

/// Group columns, then the sums; a TOTAL line last.
pub(super) fn usage_table(report: &Report) -> String {
    // The JSON field of each group: `key` groups are in `key_id`.
    let fields: Vec<&str> = report
        .group_by
        .iter()
        .map(|name| {
            if name == "key" {
                "key_id"
            } else {
                name.as_str()
            }
        })
        .collect();
    let headers: Vec<String> = report
        .group_by
        .iter()
        .map(|name| name.to_uppercase())
        .chain(SUM_FIELDS.iter().map(|(header, _)| (*header).to_owned()))
        .collect();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let cell = |value: Option<&Value>| match value {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let sums = |row: &Map<String, Value>| {
        SUM_FIELDS
            .iter()
            .map(|(_, field)| cell(row.get(*field)))
            .collect::<Vec<_>>()
    };
    let rows = report.rows.iter().map(|row| {
        let mut line: Vec<String> = fields.iter().map(|field| cell(row.get(*field))).collect();
        line.extend(sums(row));
        line
    });
    let mut total: Vec<String> = vec![String::new(); fields.len()];
    if let Some(first) = total.first_mut() {
        "TOTAL".clone_into(first);
    }
    total.extend(sums(&report.total));
    if fields.is_empty() {
        // Ungrouped, the one row is the total.
        return render_table(&header_refs, std::iter::once(total));
    }
    let total_line = (!report.rows.is_empty()).then_some(total);
    render_table(&header_refs, rows.chain(total_line))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // panicking is how tests fail

    use super::*;

    #[test]
    fn table_has_groups_sums_and_total() {
        let json = r#"{"from":"2026-11-01","to":"2026-12-01","group_by":["model","key"],
            "rows":[{"model":"gpt-4o","key_id":"k1","requests":3,"prompt_tokens":30,
                     "completion_tokens":6,"cached_tokens":0,"reasoning_tokens":0,
                     "cost_usd":"0.00012","cost_nano_usd":120000}],
            "total":{"requests":3,"prompt_tokens":30,"completion_tokens":6,"cached_tokens":0,
                     "reasoning_tokens":0,"cost_usd":"0.00012","cost_nano_usd":120000}}"#;
        let report: Report = serde_json::from_str(json).unwrap();
        assert_eq!(
            usage_table(&report),
            "MODEL   KEY  REQUESTS  PROMPT  COMPLETION  CACHED  REASONING  COST USD\n\
             gpt-4o  k1   3         30      6           0       0          0.00012\n\
             TOTAL        3         30      6           0       0          0.00012\n"
        );
    }

    #[test]
    fn ungrouped_and_empty() {
        let json = r#"{"group_by":[],"rows":[],"total":{"requests":0,"prompt_tokens":0,
            "completion_tokens":0,"cached_tokens":0,"reasoning_tokens":0,"cost_usd":"0"}}"#;
        let report: Report = serde_json::from_str(json).unwrap();
        assert_eq!(
            usage_table(&report),
            "REQUESTS  PROMPT  COMPLETION  CACHED  REASONING  COST USD\n\
             0         0       0           0       0          0\n"
        );
        // Ungrouped with usage: the row is the total, shown once.
        let json = r#"{"group_by":[],"rows":[{"requests":2,"cost_usd":"1.5"}],
            "total":{"requests":2,"cost_usd":"1.5"}}"#;
        let report: Report = serde_json::from_str(json).unwrap();
        assert_eq!(
            usage_table(&report),
            "REQUESTS  PROMPT  COMPLETION  CACHED  REASONING  COST USD\n\
             2                                                1.5\n"
        );
        let grouped = r#"{"group_by":["day"],"rows":[],"total":{"requests":0}}"#;
        let report: Report = serde_json::from_str(grouped).unwrap();
        assert_eq!(
            usage_table(&report),
            "DAY  REQUESTS  PROMPT  COMPLETION  CACHED  REASONING  COST USD\n"
        );
    }
}
