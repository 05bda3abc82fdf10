//! The audit trail through the real service (gRPC `Audit.RecordAudit` and
//! the admin audit routes), each test on a fresh Postgres database and on a
//! fresh SQLite file: redelivery, bad input, monthly partitions, filters,
//! paging and CSV.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

#[path = "../support/mod.rs"]
mod support;

mod query;
mod record;

use llmgw_proto::billing_v1::audit_client::AuditClient;
use llmgw_proto::billing_v1::{AuditEvent, RecordAuditRequest, RecordAuditResponse};
use tonic::transport::Channel;

/// 2026-11-01T00:00:00Z in unix milliseconds.
pub const NOV_1: i64 = 1_793_491_200_000;
pub const DAY_MS: i64 = 86_400_000;

/// A hit found by the edge in request `request_id`'s prompt.
pub fn event(request_id: &str, sequence: u32, occurred_at_ms: i64) -> AuditEvent {
    AuditEvent {
        request_id: request_id.to_owned(),
        attempt: 0,
        sequence,
        tenant: "acme".to_owned(),
        key_id: "key-a".to_owned(),
        model: "gpt-4o".to_owned(),
        policy: "strict".to_owned(),
        rule_id: "no-secrets".to_owned(),
        rule_kind: "secret".to_owned(),
        direction: "input".to_owned(),
        action: "block".to_owned(),
        location: "messages[0].content".to_owned(),
        offset: 10,
        length: 51,
        match_hash: "9f86d081884c7d659a2feaa0c55ad015".to_owned(),
        excerpt: String::new(),
        occurred_at_ms,
    }
}

/// A varied set: 3 tenants, 2 keys each, 2 rules, both directions, the
/// three actions, over 4 days around the November 2026 boundary. `n`
/// events, deterministic, occurred_at_ms all distinct.
pub fn varied(prefix: &str, n: usize) -> Vec<AuditEvent> {
    let tenants = ["acme", "globex", "initech"];
    let actions = ["block", "redact", "flag"];
    (0..n)
        .map(|i| {
            let at = NOV_1 - 2 * DAY_MS + i64::try_from(i).unwrap() * 7_919_000 % (4 * DAY_MS);
            let mut e = event(
                &format!("{prefix}-{}", i / 3),
                u32::try_from(i % 3).unwrap(),
                at,
            );
            e.tenant = tenants[i % 3].to_owned();
            e.key_id = format!("{}-key-{}", e.tenant, i % 2);
            e.rule_id = ["no-secrets", "banned-words"][i % 2].to_owned();
            e.direction = ["input", "output"][i % 4 / 2].to_owned();
            e.attempt = if e.direction == "input" { 0 } else { 1 };
            e.action = actions[i % 5 % 3].to_owned();
            e.offset = u64::try_from(i).unwrap();
            e
        })
        .collect()
}

pub async fn record(
    client: &mut AuditClient<Channel>,
    events: Vec<AuditEvent>,
) -> Result<RecordAuditResponse, tonic::Status> {
    client
        .record_audit(RecordAuditRequest { events })
        .await
        .map(tonic::Response::into_inner)
}
