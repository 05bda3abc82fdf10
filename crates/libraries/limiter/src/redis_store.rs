//! The Redis store: one Lua script per operation, so every acquire, settle
//! and budget floor is one atomic round trip, exact across all replicas
//! sharing the Redis.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use crate::plan::{self, RawWindow, StoreAnswer};
use crate::redis_connection::RedisConnection;
use crate::{
    Acquire, BudgetFloor, DEFAULT_SETTLED_TTL_MS, Decision, FloorOutcome, Kind, Settle, StoreError,
};

// `Script` sends EVALSHA and loads the script only when Redis answers
// NOSCRIPT (first use after a restart or SCRIPT FLUSH).
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("common.lua"),
        include_str!("acquire.lua")
    ))
});
static SETTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("common.lua"),
        include_str!("settle.lua")
    ))
});
static FLOOR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("common.lua"),
        include_str!("floor.lua")
    ))
});

/// Lua numbers are doubles: amounts and limits above this would round.
const MAX_EXACT: u64 = 1 << 53;

/// Limits shared by every replica through one Redis (or Redis Cluster: all
/// keys of a request share the `{tenant}` hash tag). Cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    connection: RedisConnection,
    prefix: Arc<str>,
    settled_ttl_ms: u64,
}

impl RedisStore {
    /// `prefix` namespaces every key (e.g. "llmgw" or a per-test uuid).
    pub fn new(connection: impl Into<RedisConnection>, prefix: impl Into<String>) -> Self {
        RedisStore {
            connection: connection.into(),
            prefix: Arc::from(prefix.into()),
            settled_ttl_ms: DEFAULT_SETTLED_TTL_MS,
        }
    }

    /// How long a settled lease is remembered (a second settle within it is
    /// ignored). Default [`DEFAULT_SETTLED_TTL_MS`].
    pub fn with_settled_ttl(mut self, ttl: Duration) -> Self {
        self.settled_ttl_ms = u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_EXACT);
        self
    }

    /// One `PING`: whether Redis answers at all (a health probe).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }

    /// Checks and reserves every limit of the request: one `EVALSHA`.
    pub async fn acquire(&self, request: &Acquire) -> Result<Decision, StoreError> {
        let specs = plan::specs(&self.prefix, &request.tenant, &request.buckets, |_| true);
        if specs.is_empty() {
            return Ok(Decision::unlimited());
        }
        exact("tokens", request.tokens)?;
        exact("cost_nano_usd", request.cost_nano_usd)?;
        let mut invocation = ACQUIRE.prepare_invoke();
        invocation
            .arg(request.tokens)
            .arg(request.cost_nano_usd)
            .arg(request.lease_ttl_ms.clamp(1, MAX_EXACT / 1000))
            .arg(&request.lease_id);
        for spec in &specs {
            exact(spec.kind.as_str(), spec.limit)?;
            invocation
                .key(&spec.key)
                .arg(spec.kind.code())
                .arg(spec.limit);
        }
        let mut connection = self.connection.clone();
        let raw: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        let outcome = parse_acquire(&raw, &specs)
            .ok_or_else(|| StoreError::Invalid(format!("acquire script answered {raw:?}")))?;
        outcome
            .into_decision(&specs, &request.buckets)
            .ok_or_else(|| StoreError::Invalid(format!("acquire script answered {raw:?}")))
    }

    /// Replaces the reservation by the actual usage and releases the lease:
    /// one `EVALSHA`.
    pub async fn settle(&self, settle: &Settle) -> Result<(), StoreError> {
        let specs = plan::specs(
            &self.prefix,
            &settle.tenant,
            &settle.buckets,
            plan::settled_kind,
        );
        if specs.is_empty() {
            return Ok(());
        }
        for amount in [
            settle.reserved_tokens,
            settle.actual_tokens,
            settle.reserved_cost_nano_usd,
            settle.actual_cost_nano_usd,
        ] {
            exact("settled amount", amount)?;
        }
        // Both fit in 2^53, so the differences fit in i64.
        let tokens = settle.actual_tokens as i64 - settle.reserved_tokens as i64;
        let cost = settle.actual_cost_nano_usd as i64 - settle.reserved_cost_nano_usd as i64;
        let mut invocation = SETTLE.prepare_invoke();
        invocation
            .key(plan::settled_key(
                &self.prefix,
                &settle.tenant,
                &settle.lease_id,
            ))
            .arg(&settle.lease_id)
            .arg(self.settled_ttl_ms)
            .arg(tokens)
            .arg(cost);
        for spec in &specs {
            exact(spec.kind.as_str(), spec.limit)?;
            invocation
                .key(&spec.key)
                .arg(spec.kind.code())
                .arg(spec.limit);
        }
        let mut connection = self.connection.clone();
        let fresh: i64 = invocation.invoke_async(&mut connection).await?;
        if fresh == 0 {
            tracing::debug!(
                tenant = %settle.tenant,
                lease_id = %settle.lease_id,
                "lease already settled; only its slot was released"
            );
        }
        Ok(())
    }

    /// Raises the budget counter of the floor's scope (the tenant's or one
    /// of its keys') of the current month to at least the floor: one
    /// `EVALSHA`. A floor above 2^53 nano-USD is held at 2^53
    /// (still above every budget the store can count).
    pub async fn raise_budget_floor(
        &self,
        floor: &BudgetFloor,
    ) -> Result<FloorOutcome, StoreError> {
        let mut invocation = FLOOR.prepare_invoke();
        invocation
            .key(plan::floor_budget_key(&self.prefix, floor))
            .arg(floor.month_id())
            .arg(floor.spent_nano_usd.min(MAX_EXACT));
        let mut connection = self.connection.clone();
        let raw: i64 = invocation.invoke_async(&mut connection).await?;
        match raw {
            1 => Ok(FloorOutcome::Raised),
            0 => Ok(FloorOutcome::Unchanged),
            -1 => Ok(FloorOutcome::OtherMonth),
            _ => Err(StoreError::Invalid(format!("floor script answered {raw}"))),
        }
    }
}

fn exact(what: &str, value: u64) -> Result<(), StoreError> {
    if value > MAX_EXACT {
        return Err(StoreError::Invalid(format!(
            "{what} {value} is above 2^53, which the Redis limiter cannot count exactly"
        )));
    }
    Ok(())
}

/// Reads the script's `{allowed, denied, retry, rpm j, remaining, reset,
/// tpm j, remaining, reset}` (limit indexes 1-based, 0 = none).
fn parse_acquire(raw: &[i64], specs: &[plan::Spec]) -> Option<StoreAnswer> {
    let &[
        allowed,
        denied,
        retry,
        rpm,
        rpm_left,
        rpm_reset,
        tpm,
        tpm_left,
        tpm_reset,
    ] = raw
    else {
        return None;
    };
    let index = |j: i64| -> Option<Option<usize>> {
        match j {
            0 => Some(None),
            j => usize::try_from(j - 1)
                .ok()
                .filter(|&i| i < specs.len())
                .map(Some),
        }
    };
    let count = |v: i64| u64::try_from(v).ok();
    let window = |j: i64, left: i64, reset: i64| -> Option<Option<RawWindow>> {
        Some(match index(j)? {
            None => None,
            Some(spec) => Some(RawWindow {
                spec,
                remaining: count(left)?,
                reset_ms: count(reset)?,
            }),
        })
    };
    let denied = match index(denied)? {
        None => None,
        Some(spec) => Some((spec, count(retry)?)),
    };
    if (allowed == 1) != denied.is_none() {
        return None;
    }
    let outcome = StoreAnswer {
        denied,
        requests: window(rpm, rpm_left, rpm_reset)?,
        tokens: window(tpm, tpm_left, tpm_reset)?,
    };
    // The script picks per-minute windows by kind; make sure it did.
    let kind_ok = |w: Option<RawWindow>, kind: Kind| w.is_none_or(|w| specs[w.spec].kind == kind);
    (kind_ok(outcome.requests, Kind::RequestsPerMinute)
        && kind_ok(outcome.tokens, Kind::TokensPerMinute))
    .then_some(outcome)
}
