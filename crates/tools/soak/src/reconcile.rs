//! The end of a soak: every request the mock saw against the ledger, and
//! the quota's concurrency counters.
//!
//! For a request the mock saw, the ledger must hold exactly one row (one
//! upstream attempt: retries are off) with the completion tokens the mock
//! produced (and, when the provider reported usage, its prompt tokens).
//! Two kinds of request are counted apart, because the gateway cannot know
//! their true count:
//! - in flight when the router was killed with SIGKILL: its usage event
//!   was never written (the spool keeps only what was emitted);
//! - left by the client mid-stream: the router bills what it had read when
//!   it dropped the upstream call; chunks the mock had already written into
//!   the socket were produced but never read (a shortfall, never an excess).

use std::collections::HashMap;

use serde_json::Value;
use sqlx::postgres::PgPool;

use crate::traffic::{Kind, Sent};

/// One ledger row of one request.
#[derive(Debug, Clone)]
struct Row {
    status: String,
    prompt: i64,
    completion: i64,
    estimated: bool,
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub mock_saw: usize,
    pub exact: usize,
    pub tokens_reconciled: i64,
    /// Requests the mock saw with no ledger row (not explained by a kill).
    pub missing: Vec<String>,
    pub duplicated: Vec<String>,
    pub mismatched: Vec<String>,
    /// Mismatches by what the request asked for.
    pub mismatched_kinds: HashMap<&'static str, usize>,
    /// Rows of requests the mock never saw.
    pub unexplained_rows: usize,
    pub lost_with_killed_router: usize,
    pub billed_despite_kill: usize,
    pub disconnect_shortfall: usize,
    pub disconnect_shortfall_tokens: i64,
    pub by_status: HashMap<String, usize>,
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.missing.is_empty()
            && self.duplicated.is_empty()
            && self.mismatched.is_empty()
            && self.unexplained_rows == 0
    }
}

pub async fn fetch_productions(mock_url: &str) -> anyhow::Result<HashMap<String, Value>> {
    let all: Value = reqwest::Client::new()
        .get(format!("{mock_url}/stats/requests"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(all
        .as_object()
        .map(|table| {
            table
                .iter()
                .map(|(tag, p)| (tag.clone(), p.clone()))
                .collect()
        })
        .unwrap_or_default())
}

async fn ledger(pool: &PgPool) -> anyhow::Result<HashMap<String, Vec<Row>>> {
    let rows: Vec<(String, String, i64, i64, bool)> = sqlx::query_as(
        "SELECT request_id, status, prompt_tokens, completion_tokens, estimated \
         FROM usage_events ORDER BY request_id, attempt",
    )
    .fetch_all(pool)
    .await?;
    let mut by_request: HashMap<String, Vec<Row>> = HashMap::new();
    for (request_id, status, prompt, completion, estimated) in rows {
        by_request.entry(request_id).or_default().push(Row {
            status,
            prompt,
            completion,
            estimated,
        });
    }
    Ok(by_request)
}

/// Reconciles `sent` against the mock's records and the ledger; `kills`
/// are the instants (seconds since the start) the router was SIGKILLed.
pub async fn reconcile(
    sent: &[Sent],
    productions: &HashMap<String, Value>,
    pool: &PgPool,
    kills: &[f64],
) -> anyhow::Result<Verdict> {
    let ledger = ledger(pool).await?;
    let mut verdict = Verdict::default();
    let mut explained = 0;
    for request in sent {
        let Some(produced) = productions.get(&request.tag) else {
            continue;
        };
        verdict.mock_saw += 1;
        // A second of slack: the router reads ahead of what the client saw.
        let killed = kills
            .iter()
            .any(|&kill| request.started <= kill && kill <= request.ended + 1.0);
        let Some(request_id) = &request.request_id else {
            verdict
                .missing
                .push(format!("{} (no request id)", request.tag));
            continue;
        };
        let rows = ledger.get(request_id).map(Vec::as_slice).unwrap_or(&[]);
        if !rows.is_empty() {
            explained += 1;
        }
        let row = match rows {
            [] if killed => {
                verdict.lost_with_killed_router += 1;
                continue;
            }
            [] => {
                verdict.missing.push(format!(
                    "{} {request_id} {}",
                    request.tag,
                    request.kind.label()
                ));
                continue;
            }
            [row] => row,
            _ => {
                verdict
                    .duplicated
                    .push(format!("{request_id}: {} rows", rows.len()));
                continue;
            }
        };
        if killed {
            verdict.billed_despite_kill += 1;
        }
        *verdict.by_status.entry(row.status.clone()).or_default() += 1;
        let completion = produced["completion_tokens"].as_i64().unwrap_or(-1);
        let prompt = produced["prompt_tokens"].as_i64().unwrap_or(-1);
        let prompt_matches = row.estimated || row.prompt == prompt;
        if row.completion == completion && prompt_matches {
            verdict.exact += 1;
            verdict.tokens_reconciled +=
                row.completion + if row.estimated { 0 } else { row.prompt };
        } else if request.kind == Kind::Disconnect && row.completion < completion && prompt_matches
        {
            verdict.disconnect_shortfall += 1;
            verdict.disconnect_shortfall_tokens += completion - row.completion;
        } else {
            *verdict
                .mismatched_kinds
                .entry(request.kind.label())
                .or_default() += 1;
            verdict.mismatched.push(format!(
                "{request_id} ({}, {}): ledger {}/{} ({}), mock {prompt}/{completion}",
                request.kind.label(),
                row.status,
                row.prompt,
                row.completion,
                if row.estimated {
                    "estimated"
                } else {
                    "reported"
                },
            ));
        }
    }
    verdict.unexplained_rows = ledger.len().saturating_sub(explained);
    Ok(verdict)
}

/// Leases held in the quota's concurrency sets under `prefix`.
pub async fn concurrency_leases(redis_url: &str, prefix: &str) -> anyhow::Result<(usize, u64)> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*:conc"))
        .query_async(&mut connection)
        .await?;
    let mut leases = 0u64;
    for key in &keys {
        let held: u64 = redis::cmd("ZCARD")
            .arg(key)
            .query_async(&mut connection)
            .await?;
        leases += held;
    }
    Ok((keys.len(), leases))
}
