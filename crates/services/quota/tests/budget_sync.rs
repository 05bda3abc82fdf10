//! Budgets rebuilt from the usage ledger: a fake billing `Ledger` reports
//! month-to-date spend, the quota service raises its (empty: fresh prefix,
//! as after a Redis flush) budget counters to it; billing unreachable
//! changes nothing but a counted failure.

#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use llmgw_proto::billing_v1::ledger_server::{Ledger, LedgerServer};
use llmgw_proto::billing_v1::{
    KeySpend, MonthToDateSpendRequest, MonthToDateSpendResponse, RecordUsageRequest,
    RecordUsageResponse, TenantSpend,
};
use llmgw_proto::limits_v1::Limits;
use llmgw_proto::quota_v1::{AcquireRequest, LimitKind};
use llmgw_quota::{Config, LimitsConfig};
use support::*;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const USD: u64 = 1_000_000_000;

/// Answers `MonthToDateSpend` with fixed figures.
struct FakeLedger {
    month: String,
    tenants: Vec<(&'static str, u64)>,
    /// (tenant, key id, spend)
    keys: Vec<(&'static str, &'static str, u64)>,
}

#[tonic::async_trait]
impl Ledger for FakeLedger {
    async fn record_usage(
        &self,
        _request: Request<RecordUsageRequest>,
    ) -> Result<Response<RecordUsageResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn month_to_date_spend(
        &self,
        request: Request<MonthToDateSpendRequest>,
    ) -> Result<Response<MonthToDateSpendResponse>, Status> {
        assert_eq!(request.into_inner().tenant, "", "the sync asks for all");
        Ok(Response::new(MonthToDateSpendResponse {
            month: self.month.clone(),
            tenants: self
                .tenants
                .iter()
                .map(|&(tenant, cost_nano_usd)| TenantSpend {
                    tenant: tenant.to_owned(),
                    cost_nano_usd,
                })
                .collect(),
            keys: self
                .keys
                .iter()
                .map(|&(tenant, key_id, cost_nano_usd)| KeySpend {
                    tenant: tenant.to_owned(),
                    key_id: key_id.to_owned(),
                    cost_nano_usd,
                })
                .collect(),
        }))
    }
}

/// Serves `ledger` on a free port until the test ends.
async fn start_ledger(ledger: FakeLedger) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LedgerServer::new(ledger))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    address
}

fn this_month() -> String {
    llmgw_limiter::Month::current().to_string()
}

/// `redis_url` with "acme"'s budget of 10 USD in the config, syncing every
/// second from `billing`.
fn budget_config(redis_url: &str, billing: SocketAddr) -> Config {
    let mut config = config(redis_url);
    config.limits.tenants.insert(
        "acme".into(),
        LimitsConfig {
            monthly_budget_usd: Some("10".into()),
            ..LimitsConfig::default()
        },
    );
    config.billing_url = Some(format!("http://{billing}"));
    config.budget_sync_secs = 1;
    config
}

fn costing(tenant: &str, cost_nano_usd: u64) -> AcquireRequest {
    AcquireRequest {
        cost_nano_usd,
        ..request(tenant, "k")
    }
}

/// The value of a counter line in `/metrics` (0 if absent).
async fn metric(service: &Service, line: &str) -> u64 {
    let text = http_get(service.address, "/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `line` counts at least once.
async fn wait_for_metric(service: &Service, line: &str) {
    let start = Instant::now();
    while metric(service, line).await == 0 {
        assert!(start.elapsed() < Duration::from_secs(15), "no {line}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SYNC_OK: &str = r#"llmgw_quota_budget_syncs_total{outcome="ok"}"#;
const FLOORS_RAISED: &str = "llmgw_quota_budget_floors_raised_total";

/// Spend S = 7 USD against a budget B = 10 USD: after a sync, 5 USD (fits B,
/// not B - S) is denied, 3 USD is allowed. Also for a budget the request
/// carries (accounts database) rather than the config.
async fn ledger_spend_is_the_floor(redis_url: &str) {
    let billing = start_ledger(FakeLedger {
        month: this_month(),
        tenants: vec![("acme", 7 * USD), ("globex", 9 * USD), ("idle", 0)],
        keys: vec![],
    })
    .await;
    let service = start(budget_config(redis_url, billing)).await;
    let mut client = service.client.clone();
    if !redis_url.is_empty() {
        wait_for_redis(&mut client, Duration::from_secs(10)).await;
    }
    wait_for_metric(&service, SYNC_OK).await;
    assert_eq!(metric(&service, FLOORS_RAISED).await, 2);

    let denied = acquire(&mut client, costing("acme", 5 * USD)).await;
    assert!(!denied.allowed && !denied.degraded, "{denied:?}");
    assert_eq!(denied.denied_by(), LimitKind::MonthlyBudget);
    assert_eq!(denied.denied_scope, "tenant");
    assert!(acquire(&mut client, costing("acme", 3 * USD)).await.allowed);
    assert!(!acquire(&mut client, costing("acme", 1)).await.allowed);

    let carried = |cost| AcquireRequest {
        tenant_limits: Some(Limits {
            monthly_budget_nano_usd: Some(10 * USD),
            ..Limits::default()
        }),
        ..costing("globex", cost)
    };
    let denied = acquire(&mut client, carried(2 * USD)).await;
    assert_eq!(denied.denied_by(), LimitKind::MonthlyBudget);
    assert!(acquire(&mut client, carried(USD)).await.allowed);

    // Later syncs never lower a counter: acme's holds 10 USD (7 from the
    // ledger, 3 reserved in flight) and stays full.
    let syncs = metric(&service, SYNC_OK).await;
    let start = Instant::now();
    while metric(&service, SYNC_OK).await == syncs {
        assert!(start.elapsed() < Duration::from_secs(15), "no second sync");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!acquire(&mut client, costing("acme", 1)).await.allowed);
    assert_eq!(metric(&service, FLOORS_RAISED).await, 2);
}

#[tokio::test]
async fn ledger_spend_rebuilds_wiped_redis_budgets() {
    ledger_spend_is_the_floor(REDIS).await;
}

#[tokio::test]
async fn ledger_spend_is_the_floor_in_memory_too() {
    // An empty redis_url: counters in memory (a restarted single replica).
    ledger_spend_is_the_floor("").await;
}

/// Key "kb" of "initech" (no tenant budget) has a budget B_k = 4 USD in
/// the config and spent S_k = 3 USD: after a sync, 2 USD (fits B_k, not
/// B_k - S_k) is denied by the key scope, 1 USD is allowed. The tenant's
/// own spend raises no key's counter, and a zero spend raises nothing.
async fn ledger_key_spend_is_the_key_floor(redis_url: &str) {
    let billing = start_ledger(FakeLedger {
        month: this_month(),
        tenants: vec![("initech", 3 * USD), ("acme", USD)],
        keys: vec![
            ("initech", "kb", 3 * USD),
            ("initech", "idle", 0),
            ("acme", "k", USD),
        ],
    })
    .await;
    let mut config = budget_config(redis_url, billing);
    config.limits.keys.insert(
        "kb".into(),
        LimitsConfig {
            monthly_budget_usd: Some("4".into()),
            ..LimitsConfig::default()
        },
    );
    let service = start(config).await;
    let mut client = service.client.clone();
    if !redis_url.is_empty() {
        wait_for_redis(&mut client, Duration::from_secs(10)).await;
    }
    wait_for_metric(&service, SYNC_OK).await;
    // Two tenants and two keys with spend.
    assert_eq!(metric(&service, FLOORS_RAISED).await, 4);

    let on_kb = |cost_nano_usd| AcquireRequest {
        cost_nano_usd,
        ..request("initech", "kb")
    };
    let denied = acquire(&mut client, on_kb(2 * USD)).await;
    assert!(!denied.allowed && !denied.degraded, "{denied:?}");
    assert_eq!(denied.denied_by(), LimitKind::MonthlyBudget);
    assert_eq!(denied.denied_scope, "key");
    assert!(acquire(&mut client, on_kb(USD)).await.allowed);
    assert!(!acquire(&mut client, on_kb(1)).await.allowed);
    // acme: 1 USD on the tenant, 9 left of its 10.
    assert!(
        !acquire(&mut client, costing("acme", 9 * USD + 1))
            .await
            .allowed
    );
    assert!(acquire(&mut client, costing("acme", 9 * USD)).await.allowed);
}

#[tokio::test]
async fn ledger_key_spend_rebuilds_wiped_redis_key_budgets() {
    ledger_key_spend_is_the_key_floor(REDIS).await;
}

#[tokio::test]
async fn ledger_key_spend_is_the_key_floor_in_memory_too() {
    ledger_key_spend_is_the_key_floor("").await;
}

#[tokio::test]
async fn figures_for_another_month_are_ignored() {
    let billing = start_ledger(FakeLedger {
        month: "2001-01".into(),
        tenants: vec![("acme", 10 * USD)],
        keys: vec![("acme", "k", 10 * USD)],
    })
    .await;
    let service = start(budget_config(REDIS, billing)).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;
    wait_for_metric(
        &service,
        r#"llmgw_quota_budget_syncs_total{outcome="other_month"}"#,
    )
    .await;
    assert_eq!(metric(&service, FLOORS_RAISED).await, 0);
    assert!(
        acquire(&mut client, costing("acme", 10 * USD))
            .await
            .allowed
    );
}

#[tokio::test]
async fn billing_unreachable_keeps_enforcing_with_redis() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let billing = closed.local_addr().unwrap();
    drop(closed);
    let service = start(budget_config(REDIS, billing)).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(10)).await;
    wait_for_metric(
        &service,
        r#"llmgw_quota_budget_syncs_total{outcome="billing_unavailable"}"#,
    )
    .await;

    // Budgets are enforced with what Redis counts.
    for _ in 0..2 {
        let answer = acquire(&mut client, costing("acme", 5 * USD)).await;
        assert!(answer.allowed && !answer.degraded, "{answer:?}");
    }
    let denied = acquire(&mut client, costing("acme", 1)).await;
    assert!(!denied.allowed && !denied.degraded && !denied.unavailable);
    assert_eq!(denied.denied_by(), LimitKind::MonthlyBudget);
    assert_eq!(metric(&service, SYNC_OK).await, 0);
}
