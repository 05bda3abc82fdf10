//! Quota configuration: the `quota:` section of the gateway config.
//!
//! ```yaml
//! quota:
//!   listen: 127.0.0.1:8082
//!   redis_url: redis://127.0.0.1:6379     # $REDIS_URL overrides it; unset = in memory (ONE replica only)
//!                                        # a cluster: redis+cluster://host:port,host:port (or several URLs)
//!   key_prefix: llmgw
//!   redis_timeout_ms: 1000
//!   lease_timeout_secs: 600
//!   on_redis_failure: {rates: local, budgets: closed}
//!   billing_url: http://127.0.0.1:8083   # usage ledger; `llmgw all` sets it; unset = no budget sync
//!   budget_sync_secs: 60                 # 0 = never rebuild budgets from the ledger
//!   limits:
//!     default_key:    {requests_per_minute: 600, tokens_per_minute: 200000, concurrent: 20}
//!     default_tenant: {monthly_budget_usd: "500"}
//!     keys:    {"key_abc": {requests_per_minute: 60}}      # replaces default_key for that key
//!     tenants: {"acme": {monthly_budget_usd: "12.50"}}     # replaces default_tenant for that tenant
//!     models:  {"gpt-4o": {tokens_per_minute: 50000}}      # per key, for that model
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address (used by the binary; `run` takes a bound
    /// listener). `GET /metrics` is served on the same port over HTTP/1.
    pub listen: SocketAddr,
    /// Redis holding every counter, shared by all quota replicas. The
    /// `REDIS_URL` environment variable, when set and not empty, overrides
    /// the file (the binary's configuration layers). Without
    /// it, counters live in this process's memory: correct for exactly ONE
    /// quota replica, since each replica would otherwise count on its own.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several gateways can share one Redis.
    pub key_prefix: String,
    /// How long a Redis call or health probe may go unanswered before Redis
    /// is declared down: far above a round trip (well under a millisecond),
    /// so a busy process waiting on its own run queue never mistakes itself
    /// for a Redis outage. While Redis is down (this, or a connection
    /// error), requests are decided per `on_redis_failure` at once, without
    /// waiting, until a health probe (every 250 ms) answers again.
    pub redis_timeout_ms: u64,
    /// A reservation never settled (its edge died) is released after this:
    /// its concurrency slots come back.
    pub lease_timeout_secs: u64,
    /// What to decide while Redis is down, slow or not connected yet.
    pub on_redis_failure: FailurePolicy,
    /// The billing service (gRPC) whose usage ledger is the floor of the
    /// monthly budgets: every `budget_sync_secs` each tenant's budget
    /// counter is raised to the ledger's month-to-date spend, so counters
    /// Redis lost (restart, failover, flush) are rebuilt. Unset: no sync.
    pub billing_url: Option<String>,
    /// Between budget syncs from the ledger (the first runs a second after
    /// start); 0 disables them.
    pub budget_sync_secs: u64,
    /// The limits themselves. Defaults: no limits at all.
    pub limits: LimitTables,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            redis_url: None,
            key_prefix: "llmgw".to_owned(),
            redis_timeout_ms: 1_000,
            lease_timeout_secs: 600,
            on_redis_failure: FailurePolicy::default(),
            billing_url: None,
            budget_sync_secs: 60,
            limits: LimitTables::default(),
        }
    }
}

impl Config {
    /// What is wrong with this section, every problem at once, each naming
    /// its setting relative to `quota:`. Zero limits are not problems: a
    /// limit of 0 blocks on purpose.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(url) = &self.redis_url
            && let Err(error) = llmgw_limiter::RedisTarget::parse(url)
        {
            problems.push(format!("redis_url: {url:?} is not a Redis URL: {error}"));
        }
        if self.key_prefix.is_empty() {
            problems.push("key_prefix: must not be empty".to_owned());
        }
        if self.redis_timeout_ms == 0 {
            problems.push("redis_timeout_ms: must be above 0".to_owned());
        }
        if self.lease_timeout_secs == 0 {
            problems.push(
                "lease_timeout_secs: must be above 0 (every reservation would expire at once)"
                    .to_owned(),
            );
        }
        let tables = &self.limits;
        let scopes = [
            ("limits.default_key".to_owned(), &tables.default_key),
            ("limits.default_tenant".to_owned(), &tables.default_tenant),
        ]
        .into_iter()
        .chain(named("limits.keys", &tables.keys))
        .chain(named("limits.tenants", &tables.tenants))
        .chain(named("limits.models", &tables.models));
        for (at, limits) in scopes {
            if let Some(budget) = &limits.monthly_budget_usd
                && let Err(problem) = llmgw_usd::parse_usd(budget)
            {
                problems.push(format!("{at}.monthly_budget_usd: {budget:?}: {problem}"));
            }
        }
        problems
    }
}

fn named<'a>(
    at: &'a str,
    table: &'a BTreeMap<String, LimitsConfig>,
) -> impl Iterator<Item = (String, &'a LimitsConfig)> + 'a {
    table
        .iter()
        .map(move |(name, limits)| (format!("{at}.{name:?}"), limits))
}

/// The failure policy, per kind of limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailurePolicy {
    /// Requests/min, tokens/min, tokens/day and concurrency. Default `local`:
    /// a short Redis outage should not take the gateway down, and a
    /// per-replica limiter still bounds each key.
    pub rates: FailMode,
    /// The monthly USD budget. Default `closed`: money is not spent on a
    /// limit nobody can check. Applies when the request has a budget; the
    /// request's other limits follow `rates`.
    pub budgets: FailMode,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            rates: FailMode::Local,
            budgets: FailMode::Closed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Decide with this replica's in-memory limiter and the same limits:
    /// open, but still bounded (each replica allows up to the limit).
    Local,
    /// Allow: these limits are not enforced during the outage.
    Open,
    /// Deny with `unavailable` (the client gets 503, not 429).
    Closed,
}

/// Which limits apply to whom. A request is checked against up to three
/// buckets at once, all or nothing: its key, its tenant, and its key's use
/// of the model.
///
/// A request may also carry limits for its key and its tenant (the edge
/// passes those stored with the key and tenant in the accounts database):
/// each one it carries replaces this config's limit of the same kind for
/// that scope, kind by kind; the config applies to the kinds it leaves
/// unset, and to every key-model bucket.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitTables {
    /// Every key without an entry in `keys`.
    pub default_key: LimitsConfig,
    /// Every tenant without an entry in `tenants`.
    pub default_tenant: LimitsConfig,
    /// Per key id. An entry replaces `default_key` entirely (it is not merged
    /// field by field): a key listed with only `requests_per_minute` has no
    /// token or concurrency limit, which makes exceptions explicit.
    pub keys: BTreeMap<String, LimitsConfig>,
    /// Per tenant; an entry replaces `default_tenant` entirely.
    pub tenants: BTreeMap<String, LimitsConfig>,
    /// Per model alias, counted separately for each key using that model
    /// (bucket id `key_id/model`).
    pub models: BTreeMap<String, LimitsConfig>,
}

/// One set of limits; every field is optional (absent = unlimited). Zero is a
/// limit: a key with `requests_per_minute: 0` is blocked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub requests_per_minute: Option<u64>,
    /// Estimated at Acquire (prompt + max_tokens), corrected at Settle.
    pub tokens_per_minute: Option<u64>,
    pub tokens_per_day: Option<u64>,
    /// Requests in flight at once.
    pub concurrent: Option<u64>,
    /// Spend per month, in USD as a decimal string ("12.50", at most 9
    /// decimals): a string so the amount is exact, never a float.
    pub monthly_budget_usd: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    #[test]
    fn defaults_and_yaml_names() {
        let config = Config::default();
        assert_eq!(config.key_prefix, "llmgw");
        assert_eq!(config.redis_timeout_ms, 1_000);
        assert_eq!(config.lease_timeout_secs, 600);
        assert_eq!(config.on_redis_failure.rates, FailMode::Local);
        assert_eq!(config.on_redis_failure.budgets, FailMode::Closed);
        assert!(config.limits.keys.is_empty());
        assert_eq!(config.billing_url, None);
        assert_eq!(config.budget_sync_secs, 60);
    }

    #[test]
    fn parses_the_documented_format_and_rejects_typos() {
        let config: Config = serde_json::from_value(serde_json::json!({
            "redis_url": "redis://redis:6379",
            "on_redis_failure": {"rates": "open"},
            "billing_url": "http://billing:8083",
            "budget_sync_secs": 0,
            "limits": {
                "default_key": {"requests_per_minute": 600, "concurrent": 20},
                "tenants": {"acme": {"monthly_budget_usd": "12.50"}},
                "models": {"gpt-4o": {"tokens_per_day": 1000000}},
            },
        }))
        .unwrap();
        assert_eq!(config.redis_url.as_deref(), Some("redis://redis:6379"));
        assert_eq!(config.on_redis_failure.rates, FailMode::Open);
        assert_eq!(config.on_redis_failure.budgets, FailMode::Closed);
        assert_eq!(config.billing_url.as_deref(), Some("http://billing:8083"));
        assert_eq!(config.budget_sync_secs, 0);
        assert_eq!(config.limits.default_key.concurrent, Some(20));
        assert_eq!(
            config.limits.models["gpt-4o"].tokens_per_day,
            Some(1_000_000)
        );

        let typo = serde_json::json!({"limits": {"keys": {"k": {"requests_per_minte": 5}}}});
        assert!(serde_json::from_value::<Config>(typo).is_err());
        let mode = serde_json::json!({"on_redis_failure": {"budgets": "fail"}});
        assert!(serde_json::from_value::<Config>(mode).is_err());
    }

    #[test]
    fn validate_lists_every_problem_and_allows_zero_limits() {
        assert!(Config::default().validate().is_empty());
        let config: Config = serde_json::from_value(serde_json::json!({
            "redis_url": "localhost:6379",
            "redis_timeout_ms": 0,
            "limits": {
                "default_key": {"requests_per_minute": 0},
                "keys": {"k1": {"monthly_budget_usd": "ten"}},
                "models": {"m": {"monthly_budget_usd": "1.0000000001"}},
            },
        }))
        .unwrap();
        let problems = config.validate();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].starts_with("redis_url: \"localhost:6379\""));
        assert_eq!(problems[1], "redis_timeout_ms: must be above 0");
        assert!(problems[2].starts_with("limits.keys.\"k1\".monthly_budget_usd: \"ten\""));
        assert!(problems[3].starts_with("limits.models.\"m\".monthly_budget_usd"));
    }
}
