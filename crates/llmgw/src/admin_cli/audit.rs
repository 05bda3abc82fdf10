//! `llmgw audit …`: the content-policy hits (`GET /admin/v1/audit`) and,
//! with `llmgw audit admin …`, the admin-action trail
//! (`GET /admin/v1/audit/admin`). A table of one page (newest first, and
//! the `--cursor` of the next), `--json`, or `--csv`: every matching row.

use serde_json::{Map, Value};

use super::*;

/// Filters of `llmgw audit`. Times: YYYY-MM-DD (UTC midnight) or unix ms.
#[derive(Debug, Default, clap::Args)]
pub struct AuditFilters {
    /// Only this tenant (by name).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this API key (by id).
    #[arg(long = "key")]
    pub key_id: Option<String>,
    /// Only this rule (by id).
    #[arg(long = "rule")]
    pub rule_id: Option<String>,
    /// block, redact or flag.
    #[arg(long)]
    pub action: Option<String>,
    /// input (prompts) or output (answers).
    #[arg(long)]
    pub direction: Option<String>,
    /// Only this policy.
    #[arg(long)]
    pub policy: Option<String>,
    /// Only this request.
    #[arg(long = "request")]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub page: Page,
}

/// Time range and paging, shared by both trails.
#[derive(Debug, Default, clap::Args)]
pub struct Page {
    /// From this time on: YYYY-MM-DD (UTC midnight) or unix milliseconds.
    #[arg(long)]
    pub from: Option<String>,
    /// Before this time (excluded): YYYY-MM-DD or unix milliseconds.
    #[arg(long)]
    pub to: Option<String>,
    /// Rows per page (1 to 1000, default 100); with --csv, the most rows
    /// exported (default: all).
    #[arg(long)]
    pub limit: Option<u64>,
    /// Continue after a previous page (its "next page" cursor).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print CSV: every matching row (or the first --limit), newest first.
    #[arg(long, conflicts_with = "json")]
    pub csv: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// The admin-action trail: who changed what through the admin API.
    Admin {
        /// Only this admin token id (admin:<12 hex digits>).
        #[arg(long)]
        actor: Option<String>,
        /// e.g. tenant.update, key.revoke, policy.update, word_list.add_terms.
        #[arg(long)]
        action: Option<String>,
        /// e.g. tenant:<id>, key:<id>, policy:<name>, word_list:<name>.
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        page: Page,
    },
}

impl AuditFilters {
    fn is_empty(&self) -> bool {
        [
            &self.tenant,
            &self.key_id,
            &self.rule_id,
            &self.action,
            &self.direction,
            &self.policy,
            &self.request_id,
        ]
        .iter()
        .all(|filter| filter.is_none())
            && self.page.from.is_none()
            && self.page.to.is_none()
            && self.page.limit.is_none()
            && self.page.cursor.is_none()
            && !self.page.csv
    }
}

pub async fn audit(
    args: &AdminArgs,
    filters: AuditFilters,
    command: Option<AuditCommand>,
) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    let Some(AuditCommand::Admin {
        actor,
        action,
        target,
        page,
    }) = command
    else {
        return events(&admin, filters).await;
    };
    if !filters.is_empty() {
        bail!(
            "`llmgw audit admin` takes its options after `admin`: --actor, --action, --target, --from, --to, --limit, --cursor, --csv"
        );
    }
    let limit = page.limit.map(|limit| limit.to_string());
    let request = admin.query(
        &["audit", "admin"],
        &[
            ("actor", actor.as_deref()),
            ("action", action.as_deref()),
            ("target", target.as_deref()),
            ("from", page.from.as_deref()),
            ("to", page.to.as_deref()),
            ("limit", limit.as_deref()),
            ("cursor", page.cursor.as_deref()),
            ("format", page.csv.then_some("csv")),
        ],
    )?;
    if page.csv {
        return admin.print_text(request).await;
    }
    admin
        .print(request, |page: AuditPage| admin_table(&page))
        .await
}

async fn events(admin: &Admin, filters: AuditFilters) -> anyhow::Result<()> {
    let page = &filters.page;
    let limit = page.limit.map(|limit| limit.to_string());
    let request = admin.query(
        &["audit"],
        &[
            ("tenant", filters.tenant.as_deref()),
            ("key_id", filters.key_id.as_deref()),
            ("rule_id", filters.rule_id.as_deref()),
            ("action", filters.action.as_deref()),
            ("direction", filters.direction.as_deref()),
            ("policy", filters.policy.as_deref()),
            ("request_id", filters.request_id.as_deref()),
            ("from", page.from.as_deref()),
            ("to", page.to.as_deref()),
            ("limit", limit.as_deref()),
            ("cursor", page.cursor.as_deref()),
            ("format", page.csv.then_some("csv")),
        ],
    )?;
    if page.csv {
        return admin.print_text(request).await;
    }
    admin
        .print(request, |page: AuditPage| events_table(&page))
        .await
}

/// A page of either trail; rows are kept as JSON, so fields the server
/// adds later do no harm.
#[derive(Debug, Deserialize)]
pub(super) struct AuditPage {
    data: Vec<Map<String, Value>>,
    next_cursor: Option<String>,
}

fn text(row: &Map<String, Value>, field: &str) -> String {
    match row.get(field) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn time(row: &Map<String, Value>, field: &str) -> String {
    row.get(field)
        .and_then(Value::as_i64)
        .map(format_ms)
        .unwrap_or_default()
}

/// The table, then how to get the next page.
fn with_next(table: String, next: Option<&str>) -> String {
    match next {
        Some(cursor) => format!("{table}more: add --cursor {cursor}\n"),
        None => table,
    }
}

pub(super) fn events_table(page: &AuditPage) -> String {
    let rows = page.data.iter().map(|row| {
        vec![
            time(row, "occurred_at_ms"),
            text(row, "tenant"),
            text(row, "key_id"),
            text(row, "direction"),
            text(row, "policy"),
            text(row, "rule_id"),
            text(row, "action"),
            text(row, "location"),
            format!(
                "{}/{}/{}",
                text(row, "request_id"),
                text(row, "attempt"),
                text(row, "sequence")
            ),
        ]
    });
    let table = render_table(
        &[
            "TIME",
            "TENANT",
            "KEY",
            "DIRECTION",
            "POLICY",
            "RULE",
            "ACTION",
            "LOCATION",
            "REQUEST/ATTEMPT/SEQ",
        ],
        rows,
    );
    with_next(table, page.next_cursor.as_deref())
}

pub(super) fn admin_table(page: &AuditPage) -> String {
    let rows = page.data.iter().map(|row| {
        vec![
            time(row, "at"),
            text(row, "actor"),
            text(row, "client_address"),
            text(row, "action"),
            text(row, "target"),
            changed(row.get("before"), row.get("after")),
        ]
    });
    let table = render_table(
        &["TIME", "ACTOR", "ADDRESS", "ACTION", "TARGET", "CHANGED"],
        rows,
    );
    with_next(table, page.next_cursor.as_deref())
}

/// What a change did, in a few words: created, deleted, or the fields
/// whose values differ (`--json` shows the values).
fn changed(before: Option<&Value>, after: Option<&Value>) -> String {
    match (before, after) {
        (None | Some(Value::Null), Some(after)) if !after.is_null() => "created".to_owned(),
        (Some(before), None | Some(Value::Null)) if !before.is_null() => "deleted".to_owned(),
        (Some(Value::Object(before)), Some(Value::Object(after))) => {
            let mut fields: Vec<&str> = after
                .iter()
                .filter(|(name, value)| before.get(*name) != Some(*value))
                .map(|(name, _)| name.as_str())
                .filter(|name| *name != "updated_at")
                .collect();
            fields.extend(
                before
                    .keys()
                    .filter(|name| !after.contains_key(*name))
                    .map(String::as_str),
            );
            fields.join(", ")
        }
        _ => String::new(),
    }
}
