//! What both stores share: the flat, ordered list of limits a request
//! touches (bucket order, then [`Kind`] order, which is also the order of
//! denials), their keys, and turning the raw outcome into a [`Decision`].

use crate::{Bucket, BudgetFloor, Decision, FloorScope, Kind, Scope, Window};

/// One limit of one bucket.
#[derive(Debug)]
pub(crate) struct Spec {
    pub bucket: usize,
    pub kind: Kind,
    pub limit: u64,
    pub key: String,
}

impl Kind {
    /// The kind's code in the Lua scripts' ARGV.
    pub(crate) fn code(self) -> u8 {
        match self {
            Kind::RequestsPerMinute => 1,
            Kind::TokensPerMinute => 2,
            Kind::TokensPerDay => 3,
            Kind::Concurrent => 4,
            Kind::MonthlyBudget => 5,
        }
    }

    /// The last component of the kind's key.
    fn key_suffix(self) -> &'static str {
        match self {
            Kind::RequestsPerMinute => "rpm",
            Kind::TokensPerMinute => "tpm",
            Kind::TokensPerDay => "tpd",
            Kind::Concurrent => "conc",
            Kind::MonthlyBudget => "budget",
        }
    }
}

/// `{prefix}:{tenant}:` — every key of a tenant starts with it; the braces
/// are the Redis Cluster hash tag.
pub(crate) fn tenant_prefix(prefix: &str, tenant: &str) -> String {
    format!("{prefix}:{{{tenant}}}:")
}

/// The key of the "settled" marker of a lease.
pub(crate) fn settled_key(prefix: &str, tenant: &str, lease_id: &str) -> String {
    format!("{}settled:{lease_id}", tenant_prefix(prefix, tenant))
}

/// The key of one limit of one bucket, after its tenant prefix.
fn counter_key(base: &str, scope: Scope, id: &str, kind: Kind) -> String {
    format!("{base}{}:{id}:{}", scope.as_str(), kind.key_suffix())
}

/// The key of the monthly budget counter a budget floor raises: the
/// tenant's own (its tenant-scope bucket, whose id is the tenant) or one of
/// its keys' (the key-scope bucket, whose id is the key id).
pub(crate) fn floor_budget_key(prefix: &str, floor: &BudgetFloor) -> String {
    let (scope, id) = match &floor.scope {
        FloorScope::Tenant => (Scope::Tenant, floor.tenant.as_str()),
        FloorScope::Key(key_id) => (Scope::Key, key_id.as_str()),
    };
    counter_key(
        &tenant_prefix(prefix, &floor.tenant),
        scope,
        id,
        Kind::MonthlyBudget,
    )
}

/// Every limit of `buckets` whose kind passes `wanted`, in check order.
pub(crate) fn specs(
    prefix: &str,
    tenant: &str,
    buckets: &[Bucket],
    wanted: impl Fn(Kind) -> bool,
) -> Vec<Spec> {
    let base = tenant_prefix(prefix, tenant);
    let mut specs = Vec::new();
    for (index, bucket) in buckets.iter().enumerate() {
        for kind in Kind::ALL {
            let Some(limit) = bucket.limits.get(kind) else {
                continue;
            };
            if !wanted(kind) {
                continue;
            }
            specs.push(Spec {
                bucket: index,
                kind,
                limit,
                key: counter_key(&base, bucket.scope, &bucket.id, kind),
            });
        }
    }
    specs
}

/// Settle touches everything but requests/min, which is never refunded.
pub(crate) fn settled_kind(kind: Kind) -> bool {
    kind != Kind::RequestsPerMinute
}

/// A per-minute window reported by a store: which spec, its remaining
/// cells and reset time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawWindow {
    pub spec: usize,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// A store's raw answer to one acquire, indexes into the spec list.
#[derive(Debug, Default)]
pub(crate) struct StoreAnswer {
    /// The first denying spec and its retry-after.
    pub denied: Option<(usize, u64)>,
    pub requests: Option<RawWindow>,
    pub tokens: Option<RawWindow>,
}

impl StoreAnswer {
    /// Keeps the window with the least remaining (the first one on ties).
    pub fn offer(&mut self, kind: Kind, window: RawWindow) {
        let slot = match kind {
            Kind::RequestsPerMinute => &mut self.requests,
            Kind::TokensPerMinute => &mut self.tokens,
            _ => return,
        };
        if slot.is_none_or(|best| window.remaining < best.remaining) {
            *slot = Some(window);
        }
    }

    /// Resolves spec indexes into scopes and limits; `None` if the store
    /// answered with an index that is not in `specs` (a broken script).
    pub fn into_decision(self, specs: &[Spec], buckets: &[Bucket]) -> Option<Decision> {
        let window = |raw: Option<RawWindow>| -> Option<Option<Window>> {
            match raw {
                None => Some(None),
                Some(raw) => specs.get(raw.spec).map(|spec| {
                    Some(Window {
                        limit: spec.limit,
                        remaining: raw.remaining,
                        reset_ms: raw.reset_ms,
                    })
                }),
            }
        };
        let denied = match self.denied {
            None => None,
            Some((index, _)) => {
                let spec = specs.get(index)?;
                Some((buckets.get(spec.bucket)?.scope, spec.kind))
            }
        };
        Some(Decision {
            allowed: denied.is_none(),
            denied,
            retry_after_ms: self.denied.map_or(0, |(_, retry)| retry.max(1)),
            requests: window(self.requests)?,
            tokens: window(self.tokens)?,
        })
    }
}
