//! One behavioural suite, run against the memory store and against Redis:
//! both must answer the same. The memory store runs on a clock the test
//! moves; Redis on its own (`TIME`), so its times are checked against how
//! long the test really took, measured, never a guessed bound.
#![allow(clippy::unwrap_used)]

mod support;

use llmgw_limiter::{Kind, Limits, Scope, Store, Window};
use support::{Time, bucket, request, rpm, settle_of};

/// Generates `memory::<test>` and `redis::<test>` for each suite function.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[tokio::test]
            async fn $name() {
                let (store, time) = super::support::store_and_time("memory").await;
                super::$name(store, time).await;
            })*
        }
        mod redis {
            $(#[tokio::test]
            async fn $name() {
                let (store, time) = super::support::store_and_time("redis").await;
                super::$name(store, time).await;
            })*
        }
    };
}

both_stores!(
    burst_then_deny,
    token_reservation_and_refund,
    concurrency_acquire_and_settle,
    all_or_nothing,
    double_settle_refunds_once,
    headers_report_the_tightest_bucket,
    monthly_budget,
    impossible_requests,
    no_limits,
);

async fn burst_then_deny(store: Store, time: Time) {
    let buckets = [bucket(Scope::Key, "k1", rpm(5))];
    for left in (0..5).rev() {
        let decision = store.acquire(&request(&buckets, 0, 0)).await.unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.retry_after_ms, 0);
        assert_eq!(decision.requests.unwrap().remaining, left);
    }
    for _ in 0..20 {
        let denied = store.acquire(&request(&buckets, 0, 0)).await.unwrap();
        assert_eq!(denied.denied, Some((Scope::Key, Kind::RequestsPerMinute)));
        // One emission interval (12 s) minus the time the test took.
        let earliest = 12_000u64.saturating_sub(time.elapsed_ms());
        assert!(
            (earliest..=12_000).contains(&denied.retry_after_ms),
            "{denied:?}"
        );
        assert_eq!(denied.requests.unwrap().remaining, 0);
    }
}

async fn token_reservation_and_refund(store: Store, time: Time) {
    let limits = Limits {
        tokens_per_minute: Some(1000),
        tokens_per_day: Some(1500),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    let first = request(&buckets, 600, 0);
    let decision = store.acquire(&first).await.unwrap();
    assert_eq!(decision.tokens.unwrap().remaining, 400);
    let denied = store.acquire(&request(&buckets, 600, 0)).await.unwrap();
    assert_eq!(denied.denied, Some((Scope::Key, Kind::TokensPerMinute)));
    // 200 tokens too many at 60 ms each, less the time the test took.
    let earliest = 12_000u64.saturating_sub(time.elapsed_ms());
    assert!(
        (earliest..=12_000).contains(&denied.retry_after_ms),
        "{denied:?}"
    );

    // Only 100 were used: 500 back in the minute and in the day.
    store.settle(&settle_of(&first, 100, 0)).await.unwrap();
    let second = store.acquire(&request(&buckets, 600, 0)).await.unwrap();
    assert!(second.allowed, "{second:?}");
    assert!(second.tokens.unwrap().remaining >= 300);
    // Day: 100 + 600 used of 1500.
    let day = store.acquire(&request(&buckets, 900, 0)).await.unwrap();
    assert_eq!(day.denied, Some((Scope::Key, Kind::TokensPerMinute)));
    let limits = Limits {
        tokens_per_day: Some(1500),
        ..Limits::default()
    };
    let day_only = [bucket(Scope::Key, "k1", limits)];
    assert!(
        !store
            .acquire(&request(&day_only, 801, 0))
            .await
            .unwrap()
            .allowed
    );
    assert!(
        store
            .acquire(&request(&day_only, 800, 0))
            .await
            .unwrap()
            .allowed
    );
}

async fn concurrency_acquire_and_settle(store: Store, time: Time) {
    let limits = Limits {
        concurrent: Some(2),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Tenant, "acme", limits)];
    let first = request(&buckets, 0, 0);
    assert!(store.acquire(&first).await.unwrap().allowed);
    assert!(
        store
            .acquire(&request(&buckets, 0, 0))
            .await
            .unwrap()
            .allowed
    );
    let denied = store.acquire(&request(&buckets, 0, 0)).await.unwrap();
    assert_eq!(denied.denied, Some((Scope::Tenant, Kind::Concurrent)));
    assert_eq!(denied.retry_after_ms, 1000);
    store.settle(&settle_of(&first, 0, 0)).await.unwrap();
    let third = request(&buckets, 0, 0);
    assert!(store.acquire(&third).await.unwrap().allowed);
    assert!(
        !store
            .acquire(&request(&buckets, 0, 0))
            .await
            .unwrap()
            .allowed
    );

    // A short lease frees itself.
    store.settle(&settle_of(&third, 0, 0)).await.unwrap();
    let mut short = request(&buckets, 0, 0);
    short.lease_ttl_ms = 300;
    assert!(store.acquire(&short).await.unwrap().allowed);
    let denied = store.acquire(&request(&buckets, 0, 0)).await.unwrap();
    assert!((1..=300).contains(&denied.retry_after_ms), "{denied:?}");
    time.pass(320).await;
    assert!(
        store
            .acquire(&request(&buckets, 0, 0))
            .await
            .unwrap()
            .allowed
    );
}

async fn all_or_nothing(store: Store, _time: Time) {
    let key = bucket(
        Scope::Key,
        "k1",
        Limits {
            requests_per_minute: Some(100),
            tokens_per_minute: Some(100_000),
            tokens_per_day: Some(1000),
            concurrent: Some(10),
            monthly_budget_nano_usd: Some(1000),
        },
    );
    let tenant = bucket(
        Scope::Tenant,
        "acme",
        Limits {
            tokens_per_day: Some(500),
            ..Limits::default()
        },
    );
    let both = [key.clone(), tenant];
    assert!(
        store
            .acquire(&request(&both, 400, 400))
            .await
            .unwrap()
            .allowed
    );
    for _ in 0..20 {
        let denied = store.acquire(&request(&both, 200, 200)).await.unwrap();
        assert_eq!(denied.denied, Some((Scope::Tenant, Kind::TokensPerDay)));
        assert_eq!(denied.requests.unwrap().remaining, 99);
    }
    // The key bucket saw one request: 600 tokens, 600 nano-USD and 9 slots left.
    let alone = store
        .acquire(&request(std::slice::from_ref(&key), 600, 600))
        .await
        .unwrap();
    assert!(alone.allowed, "{alone:?}");
    assert_eq!(alone.requests.unwrap().remaining, 98);
    for _ in 0..8 {
        assert!(
            store
                .acquire(&request(std::slice::from_ref(&key), 0, 0))
                .await
                .unwrap()
                .allowed
        );
    }
    let full = store.acquire(&request(&[key], 0, 0)).await.unwrap();
    assert_eq!(full.denied, Some((Scope::Key, Kind::Concurrent)));
}

async fn double_settle_refunds_once(store: Store, _time: Time) {
    let limits = Limits {
        tokens_per_day: Some(1000),
        monthly_budget_nano_usd: Some(1000),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    assert!(
        store
            .acquire(&request(&buckets, 500, 500))
            .await
            .unwrap()
            .allowed
    );
    let second = request(&buckets, 300, 300);
    assert!(store.acquire(&second).await.unwrap().allowed);
    for _ in 0..3 {
        store.settle(&settle_of(&second, 0, 0)).await.unwrap();
    }
    // 500 used: 500 more fit, then nothing (three refunds would leave room).
    assert!(
        store
            .acquire(&request(&buckets, 500, 500))
            .await
            .unwrap()
            .allowed
    );
    let denied = store.acquire(&request(&buckets, 1, 0)).await.unwrap();
    assert_eq!(denied.denied, Some((Scope::Key, Kind::TokensPerDay)));
    let denied = store.acquire(&request(&buckets, 0, 1)).await.unwrap();
    assert_eq!(denied.denied, Some((Scope::Key, Kind::MonthlyBudget)));
}

async fn headers_report_the_tightest_bucket(store: Store, _time: Time) {
    let buckets = [
        bucket(
            Scope::Key,
            "k1",
            Limits {
                requests_per_minute: Some(10),
                tokens_per_minute: Some(10_000),
                ..Limits::default()
            },
        ),
        bucket(
            Scope::Tenant,
            "acme",
            Limits {
                requests_per_minute: Some(4),
                tokens_per_minute: Some(100_000),
                ..Limits::default()
            },
        ),
    ];
    let decision = store.acquire(&request(&buckets, 1000, 0)).await.unwrap();
    assert_eq!(
        decision.requests,
        Some(Window {
            limit: 4,
            remaining: 3,
            reset_ms: 15_000
        })
    );
    assert_eq!(
        decision.tokens,
        Some(Window {
            limit: 10_000,
            remaining: 9000,
            reset_ms: 6000
        })
    );
}

async fn monthly_budget(store: Store, _time: Time) {
    let limits = Limits {
        monthly_budget_nano_usd: Some(1_000_000_000),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Tenant, "acme", limits)];
    assert!(
        store
            .acquire(&request(&buckets, 0, 600_000_000))
            .await
            .unwrap()
            .allowed
    );
    let denied = store
        .acquire(&request(&buckets, 0, 600_000_000))
        .await
        .unwrap();
    assert_eq!(denied.denied, Some((Scope::Tenant, Kind::MonthlyBudget)));
    // Until the 1st of next month: at most 31 days.
    assert!((1..=31 * 86_400_000).contains(&denied.retry_after_ms));
    assert_eq!((denied.requests, denied.tokens), (None, None));
    assert!(
        store
            .acquire(&request(&buckets, 0, 400_000_000))
            .await
            .unwrap()
            .allowed
    );
}

async fn impossible_requests(store: Store, _time: Time) {
    let limits = Limits {
        tokens_per_minute: Some(100),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::KeyModel, "k1/gpt", limits)];
    let denied = store.acquire(&request(&buckets, 101, 0)).await.unwrap();
    assert_eq!(
        denied.denied,
        Some((Scope::KeyModel, Kind::TokensPerMinute))
    );
    assert_eq!(denied.retry_after_ms, 60_000);
    assert_eq!(denied.tokens.unwrap().remaining, 100);
    let zero = [bucket(Scope::Key, "k0", rpm(0))];
    let denied = store.acquire(&request(&zero, 0, 0)).await.unwrap();
    assert_eq!(denied.retry_after_ms, 60_000);
}

async fn no_limits(store: Store, _time: Time) {
    let buckets = [bucket(Scope::Key, "k1", Limits::default())];
    let decision = store.acquire(&request(&buckets, 10, 10)).await.unwrap();
    assert!(decision.allowed);
    assert_eq!((decision.requests, decision.tokens), (None, None));
    store
        .settle(&settle_of(&request(&buckets, 1, 1), 2, 2))
        .await
        .unwrap();
}
