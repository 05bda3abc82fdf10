//! `llmgw policies …`: content policies through the admin API. A policy is
//! a JSON file in the config file's `policy.policies.<name>` schema.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

#[derive(Debug, clap::Subcommand)]
pub enum PoliciesCommand {
    /// List the policies in force (the database's and the config file's).
    List,
    /// Show a policy's rules and the tenants assigned it.
    Show { name: String },
    /// Create or replace a policy from a JSON file (`-` reads stdin), e.g.
    /// {"rules": [{"id": "no-secrets", "kind": "secret", "action": "block"}]}.
    Put {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Delete a policy of the database (not while a tenant or the default
    /// uses it, unless the config file defines one of that name).
    Delete { name: String },
}

pub async fn policies(args: &AdminArgs, command: PoliciesCommand) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    match command {
        PoliciesCommand::List => {
            let request = admin.request(Method::GET, &["policies"])?;
            admin
                .print(request, |list: PolicyList| policy_list(&list))
                .await
        }
        PoliciesCommand::Show { name } => {
            let request = admin.request(Method::GET, &["policies", &name])?;
            admin
                .print(request, |policy: Value| policy_detail(&policy))
                .await
        }
        PoliciesCommand::Put { name, file } => {
            let spec = read_json(&file)?;
            let request = admin
                .request(Method::PUT, &["policies", &name])?
                .json(&spec);
            admin
                .print(request, |policy: Value| policy_detail(&policy))
                .await
        }
        PoliciesCommand::Delete { name } => {
            let request = admin.request(Method::DELETE, &["policies", &name])?;
            admin
                .print(request, |deleted: Value| {
                    let mut out = format!("Deleted policy {name}.");
                    if deleted["falls_back_to_config"] == true {
                        out.push_str(" The config file's policy of that name applies again.");
                    }
                    out
                })
                .await
        }
    }
}

/// A JSON file, or stdin for `-`; parsed here so a typo is reported with
/// its line before anything is sent.
pub(super) fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text = read_input(path)?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// A file's text, or stdin's for `-`.
pub(super) fn read_input(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        return std::io::read_to_string(std::io::stdin()).context("reading stdin");
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[derive(Debug, Deserialize)]
pub(super) struct PolicyList {
    default: Option<String>,
    data: Vec<Value>,
}

fn source(item: &Value) -> String {
    let source = item["source"].as_str().unwrap_or_default();
    if item["overrides_config"] == true {
        format!("{source} (overrides config)")
    } else {
        source.to_owned()
    }
}

fn updated(item: &Value) -> String {
    item["updated_at"]
        .as_i64()
        .map_or_else(|| "-".to_owned(), format_ms)
}

pub(super) fn policy_list(list: &PolicyList) -> String {
    let rows = list.data.iter().map(|policy| {
        vec![
            policy["name"].as_str().unwrap_or_default().to_owned(),
            source(policy),
            policy["rules"].to_string(),
            updated(policy),
        ]
    });
    let table = render_table(&["NAME", "SOURCE", "RULES", "UPDATED"], rows);
    let default = list.default.as_deref().unwrap_or("none");
    format!("Default policy: {default}\n{table}")
}

pub(super) fn policy_detail(policy: &Value) -> String {
    let name = policy["name"].as_str().unwrap_or_default();
    let mut out = format!(
        "Policy {name}: {}, updated {}",
        source(policy),
        updated(policy)
    );
    if policy["is_default"] == true {
        out.push_str(", the default policy");
    }
    out.push('\n');
    if let Some(tenants) = policy["tenants"].as_array().filter(|t| !t.is_empty()) {
        let names: Vec<&str> = tenants.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!("Tenants: {}\n", names.join(", ")));
    }
    if policy["spec"]["audit_excerpts"] == true {
        out.push_str("Audit events keep a masked excerpt.\n");
    }
    let empty = Vec::new();
    let rules = policy["spec"]["rules"].as_array().unwrap_or(&empty);
    let rows = rules.iter().map(|rule| {
        let text = |field: &str| rule[field].as_str().unwrap_or_default().to_owned();
        let mut matches = Vec::new();
        if let Some(terms) = rule["terms"].as_array().filter(|t| !t.is_empty()) {
            matches.push(format!("{} terms", terms.len()));
        }
        if let Some(lists) = rule["word_lists"].as_array().filter(|l| !l.is_empty()) {
            let names: Vec<&str> = lists.iter().filter_map(Value::as_str).collect();
            matches.push(format!("lists {}", names.join(",")));
        }
        if let Some(pattern) = rule["pattern"].as_str() {
            matches.push(format!("/{pattern}/"));
        }
        let direction = rule["direction"].as_str().unwrap_or("both").to_owned();
        vec![
            text("id"),
            text("kind"),
            direction,
            text("action"),
            matches.join("; "),
        ]
    });
    out.push_str(&render_table(
        &["RULE", "KIND", "DIRECTION", "ACTION", "MATCHES"],
        rows,
    ));
    out
}
