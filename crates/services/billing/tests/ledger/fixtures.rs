//! Events, clients and expected answers computed independently of the
//! service (straight from the events, in Rust).

use std::collections::BTreeMap;

use llmgw_proto::billing_v1::ledger_client::LedgerClient;
use llmgw_proto::billing_v1::{RecordUsageRequest, RecordUsageResponse, UsageEvent};
use serde_json::Value;
use tonic::transport::Channel;

use crate::support::Service;

/// 2026-11-01T00:00:00Z in unix milliseconds.
pub const NOV_1: i64 = 1_793_491_200_000;
pub const DAY_MS: i64 = 86_400_000;

/// An attempt of `request_id` with distinct, checkable numbers.
pub fn event(request_id: &str, attempt: u32, started_at_ms: i64) -> UsageEvent {
    UsageEvent {
        request_id: request_id.to_owned(),
        attempt,
        tenant: "acme".to_owned(),
        key_id: "key-a".to_owned(),
        model: "gpt-4o".to_owned(),
        route: "gpt-4o".to_owned(),
        provider: "openai".to_owned(),
        deployment: "openai-eu".to_owned(),
        upstream_model: "gpt-4o-2024-08-06".to_owned(),
        prompt_tokens: 1_000,
        completion_tokens: 200,
        cached_tokens: 100,
        reasoning_tokens: 50,
        estimated: false,
        input_price_per_mtok: "2.5".to_owned(),
        output_price_per_mtok: "10".to_owned(),
        cost_nano_usd: 4_500_000,
        status: "ok".to_owned(),
        finish_reason: "stop".to_owned(),
        ttft_ms: 150,
        duration_ms: 900,
        started_at_ms,
        ended_at_ms: started_at_ms + 900,
        client_cancelled: false,
        traceparent: String::new(),
        cache_creation_tokens: 30,
        cache_read_price_per_mtok: "1.25".to_owned(),
        cache_write_price_per_mtok: "3.125".to_owned(),
        api: "messages".to_owned(),
    }
}

/// A varied set: 3 tenants, 2 keys each, 3 models on 2 providers, over 4
/// days around the November 2026 boundary, tokens and costs that differ per
/// event. `n` events, deterministic.
pub fn varied(prefix: &str, n: usize) -> Vec<UsageEvent> {
    let tenants = ["acme", "globex", "initech"];
    let models = [
        ("gpt-4o", "openai"),
        ("gpt-4o-mini", "openai"),
        ("claude", "anthropic"),
    ];
    (0..n)
        .map(|i| {
            let i64_i = i64::try_from(i).unwrap();
            let u64_i = u64::try_from(i).unwrap();
            // From Oct 30 to Nov 2, spread over the hours.
            let started = NOV_1 - 2 * DAY_MS + (i64_i * 7_919_000) % (4 * DAY_MS);
            let mut e = event(
                &format!("{prefix}-{}", i / 2),
                1 + u32::try_from(i % 2).unwrap(),
                started,
            );
            e.tenant = tenants[i % 3].to_owned();
            e.key_id = format!("{}-key-{}", e.tenant, i % 2);
            let (model, provider) = models[i % models.len()];
            e.model = model.to_owned();
            e.provider = provider.to_owned();
            e.prompt_tokens = 100 + u64_i * 3;
            e.completion_tokens = 10 + u64_i % 17;
            e.cached_tokens = u64_i % 5;
            e.reasoning_tokens = u64_i % 3;
            e.cost_nano_usd = 1_000 + u64_i * 37;
            e
        })
        .collect()
}

/// The UTC day of an event, `YYYY-MM-DD`, computed without the service.
pub fn day_of(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The value of a `group_by` dimension for an event.
pub fn dimension(e: &UsageEvent, name: &str) -> String {
    match name {
        "tenant" => e.tenant.clone(),
        "key" => e.key_id.clone(),
        "model" => e.model.clone(),
        "provider" => e.provider.clone(),
        "day" => day_of(e.started_at_ms),
        "month" => day_of(e.started_at_ms)[..7].to_owned(),
        other => panic!("no dimension {other}"),
    }
}

/// requests, prompt, completion, cached, reasoning, cost.
pub type Sums = [u64; 6];

pub fn sums_of<'a>(events: impl IntoIterator<Item = &'a UsageEvent>) -> Sums {
    let mut sums = [0u64; 6];
    for e in events {
        let values = [
            1,
            e.prompt_tokens,
            e.completion_tokens,
            e.cached_tokens,
            e.reasoning_tokens,
            e.cost_nano_usd,
        ];
        for (sum, value) in sums.iter_mut().zip(values) {
            *sum += value;
        }
    }
    sums
}

/// What a report grouped by `group_by` must answer, in its row order.
pub fn expected(events: &[UsageEvent], group_by: &[&str]) -> BTreeMap<Vec<String>, Sums> {
    let mut groups: BTreeMap<Vec<String>, Vec<&UsageEvent>> = BTreeMap::new();
    for e in events {
        let key = group_by.iter().map(|name| dimension(e, name)).collect();
        groups.entry(key).or_default().push(e);
    }
    groups
        .into_iter()
        .map(|(key, events)| (key, sums_of(events)))
        .collect()
}

/// The sums of a report row or total (JSON), checking `cost_usd` agrees.
pub fn sums_json(value: &Value) -> Sums {
    let field = |name: &str| {
        value[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {value}"))
    };
    let cost = field("cost_nano_usd");
    assert_eq!(value["cost_usd"], llmgw_usd::format_usd(cost), "{value}");
    [
        field("requests"),
        field("prompt_tokens"),
        field("completion_tokens"),
        field("cached_tokens"),
        field("reasoning_tokens"),
        cost,
    ]
}

/// A report's rows keyed by their group fields, in the answer's order.
pub fn report_rows(report: &Value, group_by: &[&str]) -> Vec<(Vec<String>, Sums)> {
    report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let key = group_by
                .iter()
                .map(|name| {
                    let field = if *name == "key" { "key_id" } else { name };
                    row[field].as_str().unwrap().to_owned()
                })
                .collect();
            (key, sums_json(row))
        })
        .collect()
}

pub async fn ledger(service: &Service) -> LedgerClient<Channel> {
    LedgerClient::connect(format!("http://{}", service.grpc))
        .await
        .unwrap()
}

pub async fn record(
    client: &mut LedgerClient<Channel>,
    events: Vec<UsageEvent>,
) -> Result<RecordUsageResponse, tonic::Status> {
    client
        .record_usage(RecordUsageRequest { events })
        .await
        .map(tonic::Response::into_inner)
}

/// A deterministic shuffle (xorshift), so a failing order can be replayed.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (u64::try_from(i).unwrap() + 1)).unwrap();
        items.swap(i, j);
    }
}
