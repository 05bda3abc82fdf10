//! The memory store on a fake clock: exact numbers at exact instants.
#![allow(clippy::unwrap_used)]

mod support;

use llmgw_limiter::{Kind, Limits, Scope, Window};
use support::{bucket, memory_at, request, rpm, settle_of};

/// Mid-day, with microseconds, so absolute times are realistic.
const NOON: u64 = 1_767_225_600 + 12 * 3600;
const JAN_1_2026: u64 = 1_767_225_600;
const FEB_28_2024: u64 = 1_709_078_400;
const FEB_29_2024: u64 = 1_709_164_800;
const DAY_MS: u64 = 86_400_000;

#[test]
fn burst_of_exactly_the_limit_then_exact_retry() {
    for limit in [1, 7, 20, 97] {
        let (clock, store) = memory_at(NOON, 123_457);
        let buckets = [bucket(Scope::Key, "k1", rpm(limit))];
        let admitted = (0..limit * 10)
            .filter(|_| store.acquire(&request(&buckets, 0, 0)).allowed)
            .count() as u64;
        assert_eq!(admitted, limit, "limit {limit}");

        let denied = store.acquire(&request(&buckets, 0, 0));
        assert_eq!(denied.denied, Some((Scope::Key, Kind::RequestsPerMinute)));
        // The next cell frees one emission interval (60 s / L) after now.
        let retry = (60_000_000u64).div_ceil(limit * 1000);
        assert_eq!(denied.retry_after_ms, retry, "limit {limit}");

        clock.advance_ms(retry - 1);
        let early = store.acquire(&request(&buckets, 0, 0));
        assert!(!early.allowed, "limit {limit}");
        assert_eq!(early.retry_after_ms, 1);
        clock.advance_ms(1);
        assert!(store.acquire(&request(&buckets, 0, 0)).allowed);
        assert!(!store.acquire(&request(&buckets, 0, 0)).allowed);
    }
}

#[test]
fn remaining_counts_down_and_never_goes_negative_or_up() {
    let (_clock, store) = memory_at(NOON, 0);
    let buckets = [bucket(Scope::Tenant, "acme", rpm(5))];
    let mut last: Option<Window> = None;
    for i in 0..10u64 {
        let decision = store.acquire(&request(&buckets, 0, 0));
        let window = decision.requests.unwrap();
        assert_eq!(window.limit, 5);
        assert_eq!(window.remaining, 5u64.saturating_sub(i + 1));
        assert_eq!(decision.allowed, i < 5);
        if let Some(last) = last {
            assert!(window.remaining <= last.remaining);
            assert!(window.reset_ms >= last.reset_ms);
        }
        last = Some(window);
    }
    // Five requests of 12 s each: full again in 60 s.
    assert_eq!(last.unwrap().reset_ms, 60_000);
}

#[test]
fn tokens_per_minute_with_costs() {
    let (clock, store) = memory_at(NOON, 999);
    let limits = Limits {
        tokens_per_minute: Some(1000),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    let first = store.acquire(&request(&buckets, 400, 0));
    assert_eq!(
        first.tokens,
        Some(Window {
            limit: 1000,
            remaining: 600,
            reset_ms: 24_000
        })
    );
    assert_eq!(first.requests, None);
    assert!(store.acquire(&request(&buckets, 400, 0)).allowed);
    let denied = store.acquire(&request(&buckets, 300, 0));
    assert_eq!(denied.denied, Some((Scope::Key, Kind::TokensPerMinute)));
    // 100 tokens too many at 60 ms per token.
    assert_eq!(denied.retry_after_ms, 6000);
    assert_eq!(denied.tokens.unwrap().remaining, 200);
    clock.advance_ms(6000);
    let later = store.acquire(&request(&buckets, 300, 0));
    assert!(later.allowed);
    assert_eq!(later.tokens.unwrap().remaining, 0);
}

#[test]
fn cost_above_the_whole_limit_is_denied_for_a_period() {
    let (_clock, store) = memory_at(NOON, 0);
    let limits = Limits {
        tokens_per_minute: Some(100),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    let denied = store.acquire(&request(&buckets, 101, 0));
    assert_eq!(denied.denied, Some((Scope::Key, Kind::TokensPerMinute)));
    assert_eq!(denied.retry_after_ms, 60_000);
    // Nothing was taken.
    assert_eq!(denied.tokens.unwrap().remaining, 100);
    assert!(store.acquire(&request(&buckets, 100, 0)).allowed);
}

#[test]
fn zero_limits_deny_everything() {
    let (_clock, store) = memory_at(NOON, 0);
    for limits in [
        rpm(0),
        Limits {
            tokens_per_day: Some(0),
            ..Limits::default()
        },
        Limits {
            concurrent: Some(0),
            ..Limits::default()
        },
        Limits {
            monthly_budget_nano_usd: Some(0),
            ..Limits::default()
        },
    ] {
        let decision = store.acquire(&request(&[bucket(Scope::Key, "k", limits)], 0, 0));
        assert!(!decision.allowed, "{limits:?}");
        assert!(decision.retry_after_ms >= 1);
    }
}

#[test]
fn settle_refunds_tokens_once() {
    let (_clock, store) = memory_at(NOON, 0);
    let limits = Limits {
        tokens_per_minute: Some(1000),
        tokens_per_day: Some(2000),
        monthly_budget_nano_usd: Some(5000),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    let big = request(&buckets, 800, 4000);
    assert!(store.acquire(&big).allowed);
    assert!(!store.acquire(&request(&buckets, 800, 0)).allowed);

    // Used 200 of 800 tokens and 1000 of 4000 nano-USD: 600 tokens back.
    store.settle(&settle_of(&big, 200, 1000));
    store.settle(&settle_of(&big, 200, 1000));
    let next = store.acquire(&request(&buckets, 800, 4000));
    assert!(next.allowed);
    assert_eq!(next.tokens.unwrap().remaining, 0);
    // Budget: 1000 + 4000 used of 5000; a second refund would have left room.
    let over = store.acquire(&request(&buckets, 0, 1));
    assert_eq!(over.denied, Some((Scope::Key, Kind::MonthlyBudget)));
}

#[test]
fn refunds_never_go_below_now_or_zero() {
    let (clock, store) = memory_at(NOON, 0);
    let limits = Limits {
        tokens_per_minute: Some(600),
        tokens_per_day: Some(1000),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    let first = request(&buckets, 600, 0);
    assert!(store.acquire(&first).allowed);
    // A minute later the bucket is full again; a refund must not make it
    // hold more than its limit.
    clock.advance_ms(60_000);
    store.settle(&settle_of(&first, 0, 0));
    let after = store.acquire(&request(&buckets, 600, 0));
    assert!(after.allowed);
    assert_eq!(after.tokens.unwrap().remaining, 0);
    assert!(!store.acquire(&request(&buckets, 1, 0)).allowed);
}

#[test]
fn settle_above_the_reservation_charges_the_difference() {
    let (_clock, store) = memory_at(NOON, 0);
    let limits = Limits {
        tokens_per_minute: Some(1000),
        tokens_per_day: Some(1000),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    let small = request(&buckets, 100, 0);
    assert!(store.acquire(&small).allowed);
    store.settle(&settle_of(&small, 1500, 0));
    let denied = store.acquire(&request(&buckets, 0, 0));
    // The minute TAT is 1500 tokens (90 s) ahead: 30 s over the tolerance.
    assert_eq!(denied.denied, Some((Scope::Key, Kind::TokensPerMinute)));
    assert_eq!(denied.retry_after_ms, 30_000);
    assert_eq!(denied.tokens.unwrap().remaining, 0);
}

#[test]
fn day_resets_at_midnight_utc() {
    // 23:59:59.999 on Dec 31, 2025.
    let (clock, store) = memory_at(JAN_1_2026 - 1, 999_000);
    let limits = Limits {
        tokens_per_day: Some(100),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    assert!(store.acquire(&request(&buckets, 100, 0)).allowed);
    let denied = store.acquire(&request(&buckets, 1, 0));
    assert_eq!(denied.denied, Some((Scope::Key, Kind::TokensPerDay)));
    assert_eq!(denied.retry_after_ms, 1);
    assert_eq!((denied.requests, denied.tokens), (None, None));
    clock.advance_ms(1);
    assert!(store.acquire(&request(&buckets, 100, 0)).allowed);
    let denied = store.acquire(&request(&buckets, 1, 0));
    assert_eq!(denied.retry_after_ms, DAY_MS);
}

#[test]
fn month_resets_on_the_first_utc() {
    // Dec 31, 2025, 23:59:59.999999: one microsecond before January.
    let (clock, store) = memory_at(JAN_1_2026 - 1, 999_999);
    let limits = Limits {
        monthly_budget_nano_usd: Some(1_000_000),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Tenant, "acme", limits)];
    assert!(store.acquire(&request(&buckets, 0, 1_000_000)).allowed);
    let denied = store.acquire(&request(&buckets, 0, 1));
    assert_eq!(denied.denied, Some((Scope::Tenant, Kind::MonthlyBudget)));
    assert_eq!(denied.retry_after_ms, 1);
    clock.advance_us(1);
    assert!(store.acquire(&request(&buckets, 0, 1_000_000)).allowed);
    // January has 31 days.
    assert_eq!(
        store.acquire(&request(&buckets, 0, 1)).retry_after_ms,
        31 * DAY_MS
    );
}

#[test]
fn february_of_a_leap_year_has_29_days() {
    let limits = Limits {
        monthly_budget_nano_usd: Some(10),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    for (start, days_left) in [(FEB_28_2024, 2), (FEB_29_2024, 1)] {
        let (clock, store) = memory_at(start, 0);
        assert!(store.acquire(&request(&buckets, 0, 10)).allowed);
        let denied = store.acquire(&request(&buckets, 0, 10));
        assert_eq!(denied.retry_after_ms, days_left * DAY_MS);
        // Still February at 23:59:59 on the 29th; March resets.
        clock.advance_ms(days_left * DAY_MS - 1000);
        assert!(!store.acquire(&request(&buckets, 0, 10)).allowed);
        clock.advance_ms(1000);
        assert!(store.acquire(&request(&buckets, 0, 10)).allowed);
    }
}

#[test]
fn leases_expire_and_settle_frees_them() {
    let (clock, store) = memory_at(NOON, 0);
    let limits = Limits {
        concurrent: Some(2),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    let mut first = request(&buckets, 0, 0);
    first.lease_ttl_ms = 300;
    let mut second = request(&buckets, 0, 0);
    second.lease_ttl_ms = 5000;
    assert!(store.acquire(&first).allowed);
    assert!(store.acquire(&second).allowed);

    let denied = store.acquire(&request(&buckets, 0, 0));
    assert_eq!(denied.denied, Some((Scope::Key, Kind::Concurrent)));
    assert_eq!(denied.retry_after_ms, 300);
    clock.advance_ms(299);
    assert_eq!(store.acquire(&request(&buckets, 0, 0)).retry_after_ms, 1);
    clock.advance_ms(1);
    // The first lease expired; the new one has a 60 s TTL.
    let third = request(&buckets, 0, 0);
    assert!(store.acquire(&third).allowed);
    // Earliest expiry is 4.7 s away: capped at 1 s, a settle is likelier.
    assert_eq!(store.acquire(&request(&buckets, 0, 0)).retry_after_ms, 1000);
    store.settle(&settle_of(&second, 0, 0));
    assert!(store.acquire(&request(&buckets, 0, 0)).allowed);
    // Settling an unknown lease is harmless.
    store.settle(&settle_of(&request(&buckets, 0, 0), 0, 0));
    assert!(!store.acquire(&request(&buckets, 0, 0)).allowed);
}

#[test]
fn a_denial_changes_nothing() {
    let (_clock, store) = memory_at(NOON, 0);
    let key = bucket(
        Scope::Key,
        "k1",
        Limits {
            requests_per_minute: Some(10),
            tokens_per_minute: Some(10_000),
            tokens_per_day: Some(10_000),
            concurrent: Some(3),
            monthly_budget_nano_usd: Some(10_000),
        },
    );
    let tenant = bucket(Scope::Tenant, "acme", rpm(2));
    let both = [key.clone(), tenant];
    assert!(store.acquire(&request(&both, 1000, 1000)).allowed);
    assert!(store.acquire(&request(&both, 1000, 1000)).allowed);
    for _ in 0..5 {
        let denied = store.acquire(&request(&both, 1000, 1000));
        assert_eq!(
            denied.denied,
            Some((Scope::Tenant, Kind::RequestsPerMinute))
        );
        assert_eq!(denied.requests.unwrap().remaining, 0);
        assert_eq!(denied.tokens.unwrap().remaining, 8000);
    }
    // The key bucket only saw the two admitted requests.
    let alone = store.acquire(&request(&[key], 8000, 8000));
    assert!(alone.allowed);
    assert_eq!(alone.requests.unwrap().remaining, 7);
    assert_eq!(alone.tokens.unwrap().remaining, 0);
}

#[test]
fn the_first_denying_limit_is_reported() {
    let (_clock, store) = memory_at(NOON, 0);
    let tight = Limits {
        requests_per_minute: Some(0),
        tokens_per_day: Some(0),
        ..Limits::default()
    };
    let buckets = [
        bucket(Scope::Key, "k1", rpm(10)),
        bucket(Scope::KeyModel, "k1/gpt", tight),
        bucket(Scope::Tenant, "acme", tight),
    ];
    let denied = store.acquire(&request(&buckets, 1, 0));
    assert_eq!(
        denied.denied,
        Some((Scope::KeyModel, Kind::RequestsPerMinute))
    );
    // The least remaining requests window is the zero one.
    assert_eq!(denied.requests.unwrap().limit, 0);
}

#[test]
fn no_limits_means_allowed_without_windows() {
    let (_clock, store) = memory_at(NOON, 0);
    let decision = store.acquire(&request(
        &[bucket(Scope::Key, "k", Limits::default())],
        5,
        5,
    ));
    assert!(decision.allowed);
    assert_eq!((decision.requests, decision.tokens), (None, None));
    assert!(Limits::default().is_empty());
    assert!(!rpm(1).is_empty());
}

#[test]
fn many_buckets_over_time_stay_consistent() {
    // Exercises the periodic sweep of expired state.
    let (clock, store) = memory_at(NOON, 0);
    for i in 0..5000u64 {
        let buckets = [bucket(Scope::Key, &format!("k{}", i % 50), rpm(1))];
        let decision = store.acquire(&request(&buckets, 0, 0));
        // Each key is hit every 50 × 1.3 s = 65 s > 60 s: always allowed.
        assert!(decision.allowed, "request {i}");
        clock.advance_ms(1300);
    }
}

#[test]
fn settle_after_midnight_corrects_the_new_day() {
    let (clock, store) = memory_at(JAN_1_2026 - 1, 0);
    let limits = Limits {
        tokens_per_day: Some(100),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, "k1", limits)];
    let late = request(&buckets, 100, 0);
    assert!(store.acquire(&late).allowed);
    clock.advance_ms(2000);
    // Used 130 of the 100 reserved: the extra 30 count in the new day.
    store.settle(&settle_of(&late, 130, 0));
    assert!(store.acquire(&request(&buckets, 70, 0)).allowed);
    assert!(!store.acquire(&request(&buckets, 1, 0)).allowed);
}
