//! Quota on a real Redis Cluster (three masters started from the machine's
//! `redis-server`): exact across replicas, whichever master holds a tenant,
//! and a master going down degrades per policy and recovers without a
//! restart.

#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use llmgw_quota::LimitsConfig;
use support::cluster::RedisCluster;
use support::*;
use tokio::task::JoinSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_a_cluster_are_exact_on_every_master() {
    let cluster = RedisCluster::start();
    let mut config = config(&cluster.url());
    config.limits.keys.insert("shared".into(), rpm(10));
    let one = start(config.clone()).await;
    let two = start(config.clone()).await;
    for service in [&one, &two] {
        wait_for_redis(&mut service.client.clone(), Duration::from_secs(30)).await;
    }
    // Tenants until every master holds at least one.
    let tenants: Vec<String> = (0..64).map(|i| format!("tenant-{i}")).collect();
    let mut masters = BTreeSet::new();
    let tenants: Vec<String> = tenants
        .into_iter()
        .filter(|tenant| masters.insert(cluster.owner_of(tenant)))
        .collect();
    assert_eq!(masters.len(), 3, "64 tenants should cover three masters");

    let mut calls = JoinSet::new();
    for tenant in &tenants {
        for i in 0..100 {
            let mut client = if i % 2 == 0 { &one } else { &two }.client.clone();
            let tenant = tenant.clone();
            calls.spawn(async move {
                let answer = acquire(&mut client, request(&tenant, "shared")).await;
                (tenant, answer)
            });
        }
    }
    let answers = calls.join_all().await;
    assert!(answers.iter().all(|(_, answer)| !answer.degraded));
    for tenant in &tenants {
        let allowed = answers
            .iter()
            .filter(|(of, answer)| of == tenant && answer.allowed)
            .count();
        assert_eq!(
            allowed,
            10,
            "tenant {tenant} on master {}",
            cluster.owner_of(tenant)
        );
    }
    // The counters are in the cluster, not in either replica's memory.
    assert!(cluster.key_count(&config.key_prefix) >= tenants.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_down_degrades_per_policy_and_recovers_without_restart() {
    let mut cluster = RedisCluster::start();
    let mut config = config(&cluster.url());
    config.limits.tenants.insert(
        "t-budget".into(),
        LimitsConfig {
            monthly_budget_usd: Some("100".into()),
            ..LimitsConfig::default()
        },
    );
    let service = start(config).await;
    let mut client = service.client.clone();
    wait_for_redis(&mut client, Duration::from_secs(30)).await;
    let answer = acquire(&mut client, request("t-budget", "k")).await;
    assert!(answer.allowed && !answer.degraded);

    let owner = cluster.owner_of("t-budget");
    cluster.kill(owner);
    // Budgets fail closed: the tenant's spend cannot be checked.
    let start = Instant::now();
    loop {
        let answer = acquire(&mut client, request("t-budget", "k")).await;
        if answer.degraded {
            assert!(answer.unavailable && !answer.allowed, "{answer:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never noticed the master down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    cluster.restart(owner);
    wait_for_redis(&mut client, Duration::from_secs(30)).await;
    let start = Instant::now();
    loop {
        let answer = acquire(&mut client, request("t-budget", "k")).await;
        if !answer.degraded {
            assert!(answer.allowed, "{answer:?}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the tenant's master never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
