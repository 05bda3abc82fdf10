//! Exactness under concurrency: many tasks over several connections (as
//! several replicas would) race for one bucket in real Redis; the script's
//! atomicity must admit exactly what fits.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use llmgw_limiter::{Acquire, Decision, Kind, Limits, RedisStore, Scope};
use redis::AsyncCommands;
use support::{bucket, connection, request, rpm, settle_of};

const REPLICAS: usize = 4;

/// `REPLICAS` stores (own connection each) under one random prefix.
async fn replicas() -> (String, Vec<RedisStore>) {
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let mut stores = Vec::new();
    for _ in 0..REPLICAS {
        stores.push(RedisStore::new(connection().await, prefix.clone()));
    }
    (prefix, stores)
}

/// Runs every request at once, spread over the replicas; decisions in
/// request order.
async fn race(stores: &[RedisStore], requests: Vec<Acquire>) -> Vec<Decision> {
    let start = Arc::new(tokio::sync::Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| {
            let store = stores[i % stores.len()].clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                store.acquire(&request).await.unwrap()
            })
        })
        .collect();
    let mut decisions = Vec::new();
    for task in tasks {
        decisions.push(task.await.unwrap());
    }
    decisions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_rate_limit_is_admitted() {
    let (_, stores) = replicas().await;
    let buckets = [bucket(Scope::Key, "k1", rpm(20))];
    let requests = (0..200).map(|_| request(&buckets, 0, 0)).collect();
    let decisions = race(&stores, requests).await;
    let allowed = decisions.iter().filter(|d| d.allowed).count();
    assert_eq!(allowed, 20);
    for denied in decisions.iter().filter(|d| !d.allowed) {
        assert_eq!(denied.denied, Some((Scope::Key, Kind::RequestsPerMinute)));
        assert!(denied.retry_after_ms >= 1);
    }
    let mut remaining: Vec<u64> = decisions
        .iter()
        .filter(|d| d.allowed)
        .map(|d| d.requests.unwrap().remaining)
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..20).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_concurrency_limit_is_admitted() {
    let (_, stores) = replicas().await;
    let limits = Limits {
        concurrent: Some(5),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Tenant, "acme", limits)];
    let requests: Vec<Acquire> = (0..50).map(|_| request(&buckets, 0, 0)).collect();
    let decisions = race(&stores, requests.clone()).await;
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 5);

    // Settling the five admitted frees exactly five slots.
    for (request, decision) in requests.iter().zip(&decisions) {
        if decision.allowed {
            stores[0].settle(&settle_of(request, 0, 0)).await.unwrap();
        }
    }
    let again = race(&stores, (0..50).map(|_| request(&buckets, 0, 0)).collect()).await;
    assert_eq!(again.iter().filter(|d| d.allowed).count(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_budget_admits_what_fits_and_never_more() {
    let (prefix, stores) = replicas().await;
    let budget = 10_000;
    let limits = Limits {
        tokens_per_day: Some(budget),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    let requests: Vec<Acquire> = (0..50)
        .map(|_| request(&buckets, fastrand::u64(100..=1000), 0))
        .collect();
    let decisions = race(&stores, requests.clone()).await;
    let admitted: u64 = requests
        .iter()
        .zip(&decisions)
        .filter(|(_, d)| d.allowed)
        .map(|(r, _)| r.tokens)
        .sum();
    assert!(admitted <= budget);
    // Usage only grows, so whatever was denied did not fit even at the end.
    for (request, decision) in requests.iter().zip(&decisions) {
        if !decision.allowed {
            assert_eq!(decision.denied, Some((Scope::Key, Kind::TokensPerDay)));
            assert!(admitted + request.tokens > budget);
        }
    }
    // Random sizes average 550: 50 of them must not all fit in 10 000.
    assert!(decisions.iter().any(|d| !d.allowed));
    // The stored counter is exactly the admitted sum.
    let mut redis = connection().await;
    let used: u64 = redis
        .hget(format!("{prefix}:{{acme}}:key:k1:tpd"), "n")
        .await
        .unwrap();
    assert_eq!(used, admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn all_or_nothing_holds_under_races() {
    let (_, stores) = replicas().await;
    let key = |id: &str| {
        bucket(
            Scope::Key,
            id,
            Limits {
                tokens_per_day: Some(1000),
                ..Limits::default()
            },
        )
    };
    let tenant = bucket(
        Scope::Tenant,
        "acme",
        Limits {
            tokens_per_day: Some(1500),
            ..Limits::default()
        },
    );
    // Two keys share the tenant's 1500: 100-token requests from both race.
    let requests: Vec<Acquire> = (0..60)
        .map(|i| {
            request(
                &[key(if i % 2 == 0 { "a" } else { "b" }), tenant.clone()],
                100,
                0,
            )
        })
        .collect();
    let decisions = race(&stores, requests).await;
    let allowed = decisions.iter().filter(|d| d.allowed).count();
    assert_eq!(allowed, 15);
    // Neither key went over its own 1000 (10 requests), so each key still
    // holds exactly 1000 minus what was admitted for it.
    let count = |parity: usize| {
        decisions
            .iter()
            .enumerate()
            .filter(|(i, d)| i % 2 == parity && d.allowed)
            .count() as u64
    };
    for (id, used) in [("a", count(0)), ("b", count(1))] {
        let room = 1000 - used * 100;
        let alone = [key(id)];
        let store = &stores[0];
        assert!(
            store
                .acquire(&request(&alone, room, 0))
                .await
                .unwrap()
                .allowed
        );
        assert!(!store.acquire(&request(&alone, 1, 0)).await.unwrap().allowed);
    }
}
