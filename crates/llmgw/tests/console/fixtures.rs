//! Ledger fixtures for the console: usage of three tenants, three models on
//! three providers and several keys over the days of the current month so
//! far (plus one event of the previous month, which month-to-date figures
//! must leave out), with costs that are not round, and one request that
//! fell back from one provider to another.

use llmgw_calendar::{Day, Month};
use llmgw_proto::billing_v1::UsageEvent;

pub const TENANTS: [&str; 3] = ["marketing", "research", "support"];
pub const FALLBACK_REQUEST: &str = "req-console-fallback";

const MODELS: [(&str, &str); 3] = [
    ("gpt-4o", "openai"),
    ("claude-sonnet", "anthropic"),
    ("deepseek-chat", "deepseek"),
];

fn event(request_id: &str, attempt: u32, started_at_ms: i64) -> UsageEvent {
    UsageEvent {
        request_id: request_id.to_owned(),
        attempt,
        tenant: TENANTS[0].to_owned(),
        key_id: "key-marketing-0".to_owned(),
        model: MODELS[0].0.to_owned(),
        route: MODELS[0].0.to_owned(),
        provider: MODELS[0].1.to_owned(),
        deployment: format!("{}-eu", MODELS[0].1),
        upstream_model: format!("{}-2026", MODELS[0].0),
        prompt_tokens: 1_000,
        completion_tokens: 200,
        cached_tokens: 0,
        reasoning_tokens: 0,
        estimated: false,
        input_price_per_mtok: "2.5".to_owned(),
        output_price_per_mtok: "10".to_owned(),
        cost_nano_usd: 4_500_000,
        status: "ok".to_owned(),
        finish_reason: "stop".to_owned(),
        ttft_ms: 180,
        duration_ms: 950,
        started_at_ms,
        ended_at_ms: started_at_ms + 950,
        client_cancelled: false,
        traceparent: String::new(),
        cache_creation_tokens: 0,
        cache_read_price_per_mtok: String::new(),
        cache_write_price_per_mtok: String::new(),
        api: "chat".to_owned(),
    }
}

/// The events, deterministic for a given day of the month.
pub fn events() -> Vec<UsageEvent> {
    let month = Month::current();
    let today = Day::today();
    let mut days = vec![month.first_day()];
    while *days.last().unwrap_or(&today) < today && days.len() < 8 {
        let next = days[days.len() - 1].succ();
        days.push(next);
    }
    let mut events = Vec::new();
    for i in 0..60usize {
        let n = u64::try_from(i).unwrap_or(0);
        let day = days[i % days.len()];
        let started = day.start_ms() + i64::try_from(n * 1_234_567 % 80_000_000).unwrap_or(0);
        let mut e = event(&format!("req-console-{i}"), 1, started);
        let tenant = TENANTS[i % 3];
        let (model, provider) = MODELS[(i / 3) % 3];
        e.tenant = tenant.to_owned();
        e.key_id = format!("key-{tenant}-{}", i % 2);
        e.model = model.to_owned();
        e.route = model.to_owned();
        e.provider = provider.to_owned();
        e.deployment = format!("{provider}-eu");
        e.upstream_model = format!("{model}-2026");
        e.prompt_tokens = 900 + n * 37;
        e.completion_tokens = 120 + n * 11 % 97;
        e.cached_tokens = n % 4 * 10;
        e.reasoning_tokens = n % 3;
        // Not round: nano-dollars matter.
        e.cost_nano_usd = 1_000_003 * (n + 1) + 7 * n;
        events.push(e);
    }
    // The previous month: never in a month-to-date figure.
    let last_month = month.first_day().start_ms() - 3_600_000;
    events.push(event("req-console-last-month", 1, last_month));
    // One request, two attempts: rate-limited by one provider, answered by
    // the fallback.
    let at = today.start_ms() + 60_000;
    let mut refused = event(FALLBACK_REQUEST, 1, at);
    refused.status = "upstream_rate_limited".to_owned();
    refused.finish_reason = String::new();
    refused.prompt_tokens = 0;
    refused.completion_tokens = 0;
    refused.cost_nano_usd = 0;
    refused.ttft_ms = 0;
    refused.duration_ms = 120;
    let mut answered = event(FALLBACK_REQUEST, 2, at + 200);
    answered.provider = "anthropic".to_owned();
    answered.deployment = "anthropic-us".to_owned();
    answered.upstream_model = "claude-sonnet-2026".to_owned();
    answered.cost_nano_usd = 5_123_457;
    events.extend([refused, answered]);
    events
}

/// Month-to-date spend of a tenant in these events, in nano-USD.
pub fn month_to_date_nano(events: &[UsageEvent], tenant: &str) -> u64 {
    let (start, end) = Month::current().range_ms();
    events
        .iter()
        .filter(|e| e.tenant == tenant && (start..end).contains(&e.started_at_ms))
        .map(|e| e.cost_nano_usd)
        .sum()
}
