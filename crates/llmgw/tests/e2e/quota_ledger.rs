//! Quota counters and the usage ledger agree: the quota service's token and
//! spend counters (Redis) end at exactly what the ledger (Postgres) records
//! for the key and tenant, for answered, streamed, retried-and-fallen-back
//! and client-cancelled requests alike. The router is the one source of
//! both numbers.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::accounts::scratch_dir;
use crate::harness::Gateway;
use llmgw_testdb::TestDatabase;

use crate::ledger::{Billing, Ledger, cancelled_stream, json_call, ledger_models, stream_call};

const REDIS_URL: &str = "redis://127.0.0.1:6379";

fn prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_nanos());
    format!("llmgw-test-agree-{}-{nanos}", std::process::id())
}

/// The sum of the calendar counters (tokens per day, monthly budget) under
/// `prefix` whose key ends with `suffix` (`{scope}:{id}:{kind}`).
async fn counter(redis: &mut redis::aio::MultiplexedConnection, prefix: &str, suffix: &str) -> u64 {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*:{suffix}"))
        .query_async(redis)
        .await
        .expect("redis KEYS");
    let mut total = 0;
    for key in keys {
        let count: Option<u64> = redis::cmd("HGET")
            .arg(&key)
            .arg("n")
            .query_async(redis)
            .await
            .expect("redis HGET");
        total += count.unwrap_or(0);
    }
    total
}

/// The ledger's totals: (attempt rows, tokens, cost in nano-USD).
async fn ledger_totals(ledger: &Ledger) -> (u64, u64, u64) {
    let today = llmgw_calendar::Day::today();
    let (status, report) = ledger
        .get(&format!(
            "/admin/v1/usage?from={today}&to={}&group_by=model",
            today.succ()
        ))
        .await;
    assert_eq!(status, 200, "{report}");
    let total = &report["total"];
    let field = |name: &str| total[name].as_u64().unwrap_or(0);
    (
        field("requests"),
        field("prompt_tokens") + field("completion_tokens"),
        field("cost_nano_usd"),
    )
}

/// A JSON call whose client gives up while the upstream is still thinking.
async fn abandoned_json_call(gateway: &Gateway) {
    let call = gateway
        .client
        .post(format!("http://{}/v1/chat/completions", gateway.edge))
        .bearer_auth(crate::harness::KEY)
        .timeout(Duration::from_millis(300))
        .json(&json!({
            "model": "mock",
            "mock": {"first_byte_latency_ms": 2_000},
            "messages": [{"role": "user", "content": "think about it for a while"}],
        }))
        .send()
        .await;
    assert!(call.is_err(), "the client gave up before the answer");
}

#[tokio::test]
async fn quota_counters_equal_the_ledger_cancelled_streams_included() {
    let database = TestDatabase::create("e2e_quota_ledger")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("quota-ledger");
    let billing = Billing::start(database.url(), &dir, None).await;
    let prefix = prefix();
    let gateway = Arc::new(
        Gateway::start_with({
            let (billing_grpc, dir, prefix) = (billing.grpc, dir.clone(), prefix.clone());
            move |config| {
                ledger_models(config);
                config.edge.billing_url = Some(format!("http://{billing_grpc}"));
                config.router.usage.spool_dir = Some(dir.join("spool"));
                config.quota.redis_url = Some(REDIS_URL.to_owned());
                config.quota.key_prefix = prefix;
                // Exactness is under test, not speed: no fallback limiter.
                config.quota.redis_timeout_ms = 5_000;
                config.edge.quota_timeout_ms = 5_000;
                // No floor from the ledger under the budget counter: the
                // counter must reach the ledger's figure by settling alone.
                config.quota.budget_sync_secs = 0;
                config.quota.limits.default_key.tokens_per_day = Some(10_000_000);
                config.quota.limits.default_tenant.monthly_budget_usd = Some("1000".to_owned());
            }
        })
        .await,
    );

    let mut calls = Vec::new();
    for i in 0..3 {
        let gateway = gateway.clone();
        calls.push(tokio::spawn(async move {
            json_call(&gateway, "mock", 3 + i).await;
            stream_call(&gateway, 5 + i).await;
            json_call(&gateway, "flaky", 4 + i).await;
            let cancelled = cancelled_stream(&gateway).await;
            abandoned_json_call(&gateway).await;
            cancelled
        }));
    }
    let mut cancelled = Vec::new();
    for call in calls {
        cancelled.push(call.await.expect("calls"));
    }
    // Ledger rows: per round, 1 + 1 + 3 (two refused flaky attempts and the
    // fallback) + 1 + 1.
    let rows = 3 * 7;

    let ledger = Ledger::at(billing.admin);
    let mut redis = redis::Client::open(REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    // Settles and ledger deliveries finish in the background: wait (with a
    // generous bound) until both sides are complete and equal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (ledger_side, quota_side) = loop {
        let (recorded, tokens, cost) = ledger_totals(&ledger).await;
        let quota_side = (
            // The key's tokens per day, the tenant's monthly budget.
            counter(&mut redis, &prefix, "key:*:tpd").await,
            counter(&mut redis, &prefix, "tenant:team-a:budget").await,
        );
        let settled = recorded == rows && (tokens, cost) == quota_side;
        if settled || tokio::time::Instant::now() >= deadline {
            break ((recorded, tokens, cost), quota_side);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ledger_side.0, rows, "every attempt reached the ledger");
    assert!(ledger_side.1 > 0 && ledger_side.2 > 0, "{ledger_side:?}");
    assert_eq!(
        quota_side,
        (ledger_side.1, ledger_side.2),
        "quota counters (tokens, nano-USD) = the ledger's sums"
    );

    // The cancelled streams were billed (on the router's estimate of what
    // was generated), and the quota settled exactly that, as checked above.
    for seen in &cancelled {
        let attempts = ledger.attempts(&seen.request_id).await;
        let last: &Value = attempts.last().expect("a cancelled attempt");
        assert_eq!(last["status"], "cancelled", "{last}");
        assert_eq!(last["estimated"], true, "{last}");
        assert!(last["completion_tokens"].as_u64() > Some(0), "{last}");
    }
    // The abandoned JSON calls too: the edge cancelled them at the router.
    let mut db = sqlx::PgConnection::connect(database.url())
        .await
        .expect("ledger database");
    let cancelled_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM usage_events WHERE client_cancelled")
            .fetch_one(&mut db)
            .await
            .expect("count cancelled rows");
    assert_eq!(
        cancelled_rows, 6,
        "3 cancelled streams + 3 abandoned JSON calls"
    );
    drop(db);
    drop(gateway);
    billing.stop().await;
    let _: () = redis::cmd("EVAL")
        .arg("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end")
        .arg(0)
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .expect("clean up");
}

/// A USD budget under concurrent load: the spend the ledger records for
/// everything admitted never exceeds the budget, and the budget was used
/// up (requests were refused only once less than one reservation was left,
/// not early).
#[tokio::test]
async fn admitted_spend_never_exceeds_the_usd_budget() {
    let database = TestDatabase::create("e2e_quota_budget")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("quota-budget");
    let billing = Billing::start(database.url(), &dir, None).await;
    let prefix = prefix();
    // Each call reserves its prompt estimate at 150 nano-USD a token plus
    // max_tokens (100) at 600: about 60 500 nano-USD; it spends a tenth of
    // that. So ~25 calls fit, many at once compete for the last of it.
    const BUDGET_NANO_USD: u64 = 200_000;
    const MAX_TOKENS: u64 = 100;
    let gateway = Arc::new(
        Gateway::start_with({
            let (billing_grpc, dir, prefix) = (billing.grpc, dir.clone(), prefix.clone());
            move |config| {
                ledger_models(config);
                config.edge.billing_url = Some(format!("http://{billing_grpc}"));
                config.router.usage.spool_dir = Some(dir.join("spool"));
                config.quota.redis_url = Some(REDIS_URL.to_owned());
                config.quota.key_prefix = prefix;
                config.quota.redis_timeout_ms = 5_000;
                config.edge.quota_timeout_ms = 5_000;
                config.quota.budget_sync_secs = 0;
                config.quota.limits.default_tenant.monthly_budget_usd = Some("0.0002".to_owned());
            }
        })
        .await,
    );
    let body = json!({
        "model": "mock",
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": "Hello there"}],
    });
    let mut admitted = 0u64;
    let mut refused_waves = 0;
    for _ in 0..40 {
        let calls = (0..8).map(|_| {
            let gateway = gateway.clone();
            let body = body.clone();
            async move {
                let response = gateway.chat(body).await;
                let status = response.status().as_u16();
                let text = response.text().await.expect("body");
                (status, text)
            }
        });
        let results = futures_util::future::join_all(calls).await;
        for (status, text) in &results {
            match status {
                200 => admitted += 1,
                429 => assert!(text.contains("insufficient_quota"), "{text}"),
                _ => panic!("{status}: {text}"),
            }
        }
        if results.iter().all(|(status, _)| *status == 429) {
            refused_waves += 1;
            if refused_waves == 2 {
                break;
            }
        }
    }
    assert_eq!(refused_waves, 2, "the budget was never used up");
    assert!(admitted > 0);

    // Every admitted call in the ledger (delivered in the background).
    let ledger = Ledger::at(billing.admin);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (rows, _, spent) = loop {
        let totals = ledger_totals(&ledger).await;
        if totals.0 >= admitted || tokio::time::Instant::now() >= deadline {
            break totals;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows, admitted, "one ledger row per admitted call");
    assert!(
        spent <= BUDGET_NANO_USD,
        "admitted spend {spent} nano-USD exceeds the budget {BUDGET_NANO_USD}"
    );
    // Refused only once what was left could not cover one reservation
    // (max_tokens at the output price, and a prompt estimate of a few
    // tokens: 10 at most for "Hello there").
    let reservation = MAX_TOKENS * 600 + 10 * 150;
    assert!(
        spent + reservation > BUDGET_NANO_USD,
        "refused with {} nano-USD of budget left",
        BUDGET_NANO_USD - spent
    );

    // The counter is Redis's: its budget counter holds the same spend.
    let mut redis = redis::Client::open(REDIS_URL)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis reachable");
    assert_eq!(
        counter(&mut redis, &prefix, "tenant:team-a:budget").await,
        spent,
        "Redis's budget counter = the ledger's spend"
    );
    drop(gateway);
    billing.stop().await;
    let _: () = redis::cmd("EVAL")
        .arg("for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end")
        .arg(0)
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .expect("clean up");
}
