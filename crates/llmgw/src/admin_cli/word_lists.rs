//! `llmgw word-lists …`: the word lists policies' `words` rules refer to,
//! through the admin API. `show` prints one term per line, which is what
//! `put --file` reads, so a list round-trips through a text file.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::policies::read_input;
use super::*;

#[derive(Debug, clap::Subcommand)]
pub enum WordListsCommand {
    /// List the word lists in force (without their terms).
    List,
    /// Print a list's terms, one per line.
    Show { name: String },
    /// Create a list or replace all its terms from a text file, one term
    /// per line (`-` reads stdin; blank lines are skipped).
    Put {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Add terms to a list.
    Add {
        name: String,
        #[arg(required = true)]
        terms: Vec<String>,
    },
    /// Remove terms from a list.
    Remove {
        name: String,
        #[arg(required = true)]
        terms: Vec<String>,
    },
    /// Delete a list of the database (not while a policy in force uses it,
    /// unless the config file defines one of that name).
    Delete { name: String },
}

pub async fn word_lists(args: &AdminArgs, command: WordListsCommand) -> anyhow::Result<()> {
    let admin = Admin::new(args)?;
    let request = match command {
        WordListsCommand::List => {
            let request = admin.request(Method::GET, &["word-lists"])?;
            return admin
                .print(request, |list: Value| word_list_table(&list))
                .await;
        }
        WordListsCommand::Show { name } => {
            let request = admin.request(Method::GET, &["word-lists", &name])?;
            return admin.print(request, |list: Value| terms_lines(&list)).await;
        }
        WordListsCommand::Put { name, file } => {
            let text = read_input(&file)?;
            let terms = terms_of(&text);
            admin
                .request(Method::PUT, &["word-lists", &name])?
                .json(&json!({ "terms": terms }))
        }
        WordListsCommand::Add { name, terms } => admin
            .request(Method::POST, &["word-lists", &name, "terms"])?
            .json(&json!({ "terms": terms })),
        WordListsCommand::Remove { name, terms } => admin
            .request(Method::POST, &["word-lists", &name, "terms:remove"])?
            .json(&json!({ "terms": terms })),
        WordListsCommand::Delete { name } => {
            let request = admin.request(Method::DELETE, &["word-lists", &name])?;
            return admin
                .print(request, |deleted: Value| {
                    let mut out = format!("Deleted word list {name}.");
                    if deleted["falls_back_to_config"] == true {
                        out.push_str(" The config file's list of that name applies again.");
                    }
                    out
                })
                .await;
        }
    };
    admin.print(request, |list: Value| summary(&list)).await
}

/// One term per line; surrounding spaces and blank lines do not count
/// (the server trims and deduplicates too).
pub(super) fn terms_of(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect()
}

pub(super) fn summary(list: &Value) -> String {
    format!(
        "Word list {}: {} terms",
        list["name"].as_str().unwrap_or_default(),
        list["term_count"]
    )
}

pub(super) fn terms_lines(list: &Value) -> String {
    let empty = Vec::new();
    let terms = list["terms"].as_array().unwrap_or(&empty);
    let mut out = String::new();
    for term in terms.iter().filter_map(Value::as_str) {
        // Terms never hold control characters (the server refuses them);
        // filtered anyway, so a file cannot drive the terminal.
        out.extend(term.chars().filter(|c| !c.is_control()));
        out.push('\n');
    }
    out
}

pub(super) fn word_list_table(list: &Value) -> String {
    let empty = Vec::new();
    let rows = list["data"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .map(|item| {
            let source = item["source"].as_str().unwrap_or_default();
            let source = if item["overrides_config"] == true {
                format!("{source} (overrides config)")
            } else {
                source.to_owned()
            };
            vec![
                item["name"].as_str().unwrap_or_default().to_owned(),
                source,
                item["term_count"].to_string(),
                item["updated_at"]
                    .as_i64()
                    .map_or_else(|| "-".to_owned(), format_ms),
            ]
        });
    render_table(&["NAME", "SOURCE", "TERMS", "UPDATED"], rows)
}
