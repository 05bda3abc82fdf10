//! The failure policy's split of a request's limits.

use llmgw_limiter::Scope;

use super::*;

fn bucket(scope: Scope, limits: Limits) -> Bucket {
    Bucket {
        scope,
        id: "id".into(),
        limits,
    }
}

fn policy(rates: FailMode, budgets: FailMode) -> FailurePolicy {
    FailurePolicy { rates, budgets }
}

#[test]
fn budgets_fail_closed_rates_go_local() {
    let rpm = Limits {
        requests_per_minute: Some(5),
        ..Limits::default()
    };
    let budget = Limits {
        monthly_budget_nano_usd: Some(1),
        ..Limits::default()
    };
    let buckets = [bucket(Scope::Key, rpm), bucket(Scope::Tenant, budget)];
    let default = FailurePolicy::default();
    assert!(matches!(
        fails_closed(&buckets, default),
        Some((Scope::Tenant, Kind::MonthlyBudget))
    ));
    assert!(fails_closed(&buckets[..1], default).is_none());
    let local = local_buckets(&buckets, default);
    assert_eq!(local.len(), 1);
    assert_eq!(local[0].limits, rpm);

    let open = policy(FailMode::Open, FailMode::Open);
    assert!(fails_closed(&buckets, open).is_none());
    assert!(local_buckets(&buckets, open).is_empty());

    let strict = policy(FailMode::Closed, FailMode::Open);
    assert!(matches!(
        fails_closed(&buckets, strict),
        Some((Scope::Key, Kind::RequestsPerMinute))
    ));
    let budgets_local = policy(FailMode::Open, FailMode::Local);
    let local = local_buckets(&buckets, budgets_local);
    assert_eq!(local.len(), 1);
    assert_eq!(local[0].limits, budget);
}
