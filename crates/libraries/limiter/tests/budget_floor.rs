//! Budget floors (the usage ledger's month-to-date spend) on both stores:
//! raise, never lower, restart an older month's counter at the floor, ignore
//! a figure for another month.
#![allow(clippy::unwrap_used)]

mod support;

use llmgw_limiter::{
    BudgetFloor, FloorOutcome, FloorScope, Kind, Limits, Month, RedisStore, Scope, Store,
};
use support::{bucket, memory_at, request};

const JAN_1_2026: u64 = 1_767_225_600;
/// A budget of 10 (units of nano-USD, small to keep numbers readable).
const BUDGET: u64 = 10_000;

fn tenant_budget() -> [llmgw_limiter::Bucket; 1] {
    let limits = Limits {
        monthly_budget_nano_usd: Some(BUDGET),
        ..Limits::default()
    };
    // The tenant-scope bucket's id is the tenant ("acme" in `request`).
    [bucket(Scope::Tenant, "acme", limits)]
}

fn floor(month: Month, spent: u64) -> BudgetFloor {
    BudgetFloor {
        tenant: "acme".to_owned(),
        scope: FloorScope::Tenant,
        month,
        spent_nano_usd: spent,
    }
}

/// Whether a request of `cost` would pass now (and reserves it if so).
async fn fits(store: &Store, cost: u64) -> bool {
    let decision = store
        .acquire(&request(&tenant_budget(), 0, cost))
        .await
        .unwrap();
    if !decision.allowed {
        assert_eq!(decision.denied, Some((Scope::Tenant, Kind::MonthlyBudget)));
    }
    decision.allowed
}

/// The suite both stores answer the same on the real clock.
async fn raises_never_lowers_and_checks_the_month(store: Store) {
    let now = Month::current();
    // Nothing yet: the floor starts the counter.
    let raised = store.raise_budget_floor(&floor(now, 7_000)).await.unwrap();
    assert_eq!(raised, FloorOutcome::Raised);
    assert!(!fits(&store, 3_001).await);
    assert!(fits(&store, 1_000).await); // used: 8 000
    // A lower figure never lowers the counter (it holds that reservation).
    let lower = store.raise_budget_floor(&floor(now, 7_500)).await.unwrap();
    assert_eq!(lower, FloorOutcome::Unchanged);
    let equal = store.raise_budget_floor(&floor(now, 8_000)).await.unwrap();
    assert_eq!(equal, FloorOutcome::Unchanged);
    assert!(!fits(&store, 2_001).await);
    // A figure for another month changes nothing, whatever its size.
    for other in [Month::parse("2001-01").unwrap(), now.succ()] {
        let outcome = store.raise_budget_floor(&floor(other, BUDGET)).await;
        assert_eq!(outcome.unwrap(), FloorOutcome::OtherMonth);
    }
    assert!(fits(&store, 1_500).await); // used: 9 500
    // A higher one raises it.
    let higher = store.raise_budget_floor(&floor(now, 9_900)).await.unwrap();
    assert_eq!(higher, FloorOutcome::Raised);
    assert!(!fits(&store, 101).await);
    assert!(fits(&store, 100).await);
    // Another tenant's floor leaves this one alone.
    let other = BudgetFloor {
        tenant: "globex".to_owned(),
        ..floor(now, 5)
    };
    assert_eq!(
        store.raise_budget_floor(&other).await.unwrap(),
        FloorOutcome::Raised
    );
    assert!(!fits(&store, 1).await);
}

#[tokio::test]
async fn memory_raises_never_lowers_and_checks_the_month() {
    raises_never_lowers_and_checks_the_month(support::store("memory").await).await;
}

#[tokio::test]
async fn redis_raises_never_lowers_and_checks_the_month() {
    raises_never_lowers_and_checks_the_month(support::store("redis").await).await;
}

#[tokio::test]
async fn memory_older_month_restarts_at_the_floor() {
    // Dec 31, 2025, 23:59:59.999999: December's counter holds 9 000.
    let (clock, memory) = memory_at(JAN_1_2026 - 1, 999_999);
    let store = Store::Memory(memory);
    assert!(fits(&store, 9_000).await);
    clock.advance_us(1);
    // December's figure arriving in January is ignored.
    let december = floor(Month::parse("2025-12").unwrap(), 9_500);
    let late = store.raise_budget_floor(&december).await.unwrap();
    assert_eq!(late, FloorOutcome::OtherMonth);
    // January's floor replaces December's counter (it is not added to it).
    let january = floor(Month::parse("2026-01").unwrap(), 4_000);
    let outcome = store.raise_budget_floor(&january).await.unwrap();
    assert_eq!(outcome, FloorOutcome::Raised);
    assert!(!fits(&store, 6_001).await);
    assert!(fits(&store, 6_000).await);
    // A zero floor never creates anything.
    let zero = BudgetFloor {
        tenant: "fresh".to_owned(),
        ..floor(Month::parse("2026-01").unwrap(), 0)
    };
    let outcome = store.raise_budget_floor(&zero).await.unwrap();
    assert_eq!(outcome, FloorOutcome::Unchanged);
}

#[tokio::test]
async fn redis_older_month_restarts_at_the_floor_with_an_expiry() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let mut connection = support::connection().await;
    let store = Store::Redis(RedisStore::new(connection.clone(), prefix.clone()));
    let key = format!("{prefix}:{{acme}}:tenant:acme:budget");
    // A counter left over from an older month, nearly full, no expiry.
    let old_month = 2001 * 12;
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("w")
        .arg(old_month)
        .arg("n")
        .arg(BUDGET)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(fits(&store, BUDGET).await, "an older month counts as 0");
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("w")
        .arg(old_month)
        .arg("n")
        .arg(BUDGET)
        .query_async(&mut connection)
        .await
        .unwrap();
    let _: () = redis::cmd("PERSIST")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    let now = Month::current();
    let outcome = store.raise_budget_floor(&floor(now, 4_000)).await;
    assert_eq!(outcome.unwrap(), FloorOutcome::Raised);
    let (window, used): (u64, u64) = redis::cmd("HMGET")
        .arg(&key)
        .arg("w")
        .arg("n")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_ne!(window, old_month);
    assert_eq!(used, 4_000);
    // Like every budget counter: gone an hour after the month ends.
    let (_, month_end_ms) = now.range_ms();
    let expires_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(expires_at, month_end_ms + 3_600_000);
    assert!(!fits(&store, 6_001).await);
    assert!(fits(&store, 6_000).await);
    // A zero floor never creates a key.
    let zero = BudgetFloor {
        tenant: "fresh".to_owned(),
        ..floor(now, 0)
    };
    assert_eq!(
        store.raise_budget_floor(&zero).await.unwrap(),
        FloorOutcome::Unchanged
    );
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}:{{fresh}}:tenant:fresh:budget"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!exists);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn redis_floor_above_2_53_is_held_at_2_53() {
    let store = support::store("redis").await;
    let huge = floor(Month::current(), u64::MAX);
    assert_eq!(
        store.raise_budget_floor(&huge).await.unwrap(),
        FloorOutcome::Raised
    );
    assert!(!fits(&store, 0).await);
}

/// Key "k1" of "acme" with its own budget (and no tenant budget).
fn key_budget() -> [llmgw_limiter::Bucket; 1] {
    let limits = Limits {
        monthly_budget_nano_usd: Some(BUDGET),
        ..Limits::default()
    };
    [bucket(Scope::Key, "k1", limits)]
}

fn key_floor(key_id: &str, month: Month, spent: u64) -> BudgetFloor {
    BudgetFloor {
        scope: FloorScope::Key(key_id.to_owned()),
        ..floor(month, spent)
    }
}

/// Whether a request of `cost` on key "k1" would pass now (and reserves it
/// if so).
async fn key_fits(store: &Store, cost: u64) -> bool {
    let decision = store
        .acquire(&request(&key_budget(), 0, cost))
        .await
        .unwrap();
    if !decision.allowed {
        assert_eq!(decision.denied, Some((Scope::Key, Kind::MonthlyBudget)));
    }
    decision.allowed
}

/// Key scope: the same semantics, on the key's counter only.
async fn key_scope_raises_never_lowers_and_checks_the_month(store: Store) {
    let now = Month::current();
    // A tenant floor (and another key's) leaves the key's counter alone.
    let tenant = store.raise_budget_floor(&floor(now, BUDGET)).await.unwrap();
    assert_eq!(tenant, FloorOutcome::Raised);
    let other_key = key_floor("k2", now, BUDGET);
    assert_eq!(
        store.raise_budget_floor(&other_key).await.unwrap(),
        FloorOutcome::Raised
    );
    assert!(key_fits(&store, 1_000).await); // used: 1 000
    // Lower than what the counter holds: unchanged.
    let lower = store.raise_budget_floor(&key_floor("k1", now, 500)).await;
    assert_eq!(lower.unwrap(), FloorOutcome::Unchanged);
    // Higher: raised.
    let raised = store.raise_budget_floor(&key_floor("k1", now, 7_000)).await;
    assert_eq!(raised.unwrap(), FloorOutcome::Raised);
    assert!(!key_fits(&store, 3_001).await);
    // Another month: nothing changes.
    for other in [Month::parse("2001-01").unwrap(), now.succ()] {
        let outcome = store
            .raise_budget_floor(&key_floor("k1", other, BUDGET))
            .await;
        assert_eq!(outcome.unwrap(), FloorOutcome::OtherMonth);
    }
    assert!(key_fits(&store, 3_000).await);
    assert!(!key_fits(&store, 1).await);
    // The key floor did not touch the tenant's counter: a tenant-only
    // request is still held by the tenant floor alone (full), and a fresh
    // key of the tenant is untouched.
    assert!(!fits(&store, 1).await);
    let fresh = [bucket(
        Scope::Key,
        "k3",
        Limits {
            monthly_budget_nano_usd: Some(BUDGET),
            ..Limits::default()
        },
    )];
    let decision = store.acquire(&request(&fresh, 0, BUDGET)).await.unwrap();
    assert!(decision.allowed);
}

#[tokio::test]
async fn memory_key_scope_raises_never_lowers_and_checks_the_month() {
    key_scope_raises_never_lowers_and_checks_the_month(support::store("memory").await).await;
}

#[tokio::test]
async fn redis_key_scope_raises_never_lowers_and_checks_the_month() {
    key_scope_raises_never_lowers_and_checks_the_month(support::store("redis").await).await;
}

#[tokio::test]
async fn memory_key_scope_older_month_restarts_at_the_floor() {
    let (clock, memory) = memory_at(JAN_1_2026 - 1, 999_999);
    let store = Store::Memory(memory);
    assert!(key_fits(&store, 9_000).await);
    clock.advance_us(1);
    let december = key_floor("k1", Month::parse("2025-12").unwrap(), 9_500);
    let late = store.raise_budget_floor(&december).await.unwrap();
    assert_eq!(late, FloorOutcome::OtherMonth);
    let january = key_floor("k1", Month::parse("2026-01").unwrap(), 4_000);
    let outcome = store.raise_budget_floor(&january).await.unwrap();
    assert_eq!(outcome, FloorOutcome::Raised);
    assert!(!key_fits(&store, 6_001).await);
    assert!(key_fits(&store, 6_000).await);
    let zero = key_floor("fresh", Month::parse("2026-01").unwrap(), 0);
    let outcome = store.raise_budget_floor(&zero).await.unwrap();
    assert_eq!(outcome, FloorOutcome::Unchanged);
}

#[tokio::test]
async fn redis_key_scope_floor_sets_the_key_counter_with_an_expiry() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let mut connection = support::connection().await;
    let store = Store::Redis(RedisStore::new(connection.clone(), prefix.clone()));
    let key = format!("{prefix}:{{acme}}:key:k1:budget");
    let tenant_key = format!("{prefix}:{{acme}}:tenant:acme:budget");
    let now = Month::current();
    let outcome = store.raise_budget_floor(&key_floor("k1", now, 4_000)).await;
    assert_eq!(outcome.unwrap(), FloorOutcome::Raised);
    let used: u64 = redis::cmd("HGET")
        .arg(&key)
        .arg("n")
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(used, 4_000);
    let (_, month_end_ms) = now.range_ms();
    let expires_at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(expires_at, month_end_ms + 3_600_000);
    let tenant_exists: bool = redis::cmd("EXISTS")
        .arg(&tenant_key)
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        !tenant_exists,
        "a key floor never creates the tenant counter"
    );
    assert!(!key_fits(&store, 6_001).await);
    assert!(key_fits(&store, 6_000).await);
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
}
