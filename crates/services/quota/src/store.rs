//! Where counters live: Redis (shared by every replica) with a bounded wait
//! and a failure policy, or this process's memory when there is no Redis.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use llmgw_limiter::{
    Acquire, Bucket, BudgetFloor, Decision, FloorOutcome, Kind, Limits, MemoryStore, RedisStore,
    Settle,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use crate::config::{Config, FailMode, FailurePolicy};
use crate::incidents::{Incidents, REPORT_INTERVAL};
use crate::metrics::Metrics;

/// Between attempts to open the first Redis connection. After that the
/// connection manager reconnects on its own.
const CONNECT_RETRY: Duration = Duration::from_secs(1);
/// Suggested wait after a fail-closed denial: about one reconnect attempt.
const UNAVAILABLE_RETRY_MS: u64 = 1_000;
/// Bound on one budget floor (background work, not a request's).
const FLOOR_TIMEOUT: Duration = Duration::from_secs(1);

/// The store's verdict on one Acquire: the decision and how it was
/// reached (with or without Redis).
pub(crate) struct Verdict {
    pub decision: Decision,
    /// Made without Redis, per the failure policy.
    pub degraded: bool,
    /// Denied because a fail-closed limit could not be checked.
    pub unavailable: bool,
}

enum Primary {
    /// No Redis configured: the in-memory store is the truth (one replica).
    Memory,
    Redis(Connection),
}

/// The Redis connection, filled by the connect task once Redis first
/// answers. Until its first attempt has ended, callers wait for it (within
/// their Redis timeout): a service that has just started is connecting, not
/// facing a Redis outage, and must not decide without Redis. Once an attempt
/// has failed, callers no longer wait: Redis is down until it answers.
struct Connection {
    slot: Arc<OnceLock<RedisStore>>,
    first_attempt_ended: watch::Receiver<bool>,
}

impl Connection {
    /// The store once connected. Otherwise `Timeout` when the first
    /// attempt was still going after `wait`, `NotConnected` when attempts
    /// have failed (Redis is down: no wait).
    async fn store(&self, wait: Duration) -> Result<&RedisStore, RedisFailure> {
        if let Some(store) = self.slot.get() {
            return Ok(store);
        }
        let mut ended = self.first_attempt_ended.clone();
        let waited = tokio::time::timeout(wait, ended.wait_for(|ended| *ended)).await;
        match (self.slot.get(), waited) {
            (Some(store), _) => Ok(store),
            (None, Err(_)) => Err(RedisFailure::Timeout(wait)),
            (None, Ok(_)) => Err(RedisFailure::NotConnected),
        }
    }
}

pub(crate) struct Store {
    primary: Primary,
    /// This replica's counters: the store itself without Redis, the `local`
    /// failure mode with it.
    local: MemoryStore,
    timeout: Duration,
    policy: FailurePolicy,
    metrics: Arc<Metrics>,
    incidents: Arc<Incidents>,
    _tasks: Vec<AbortOnDropHandle<()>>,
}

/// Why Redis gave no decision.
pub(crate) enum RedisFailure {
    NotConnected,
    Timeout(Duration),
    Store(llmgw_limiter::StoreError),
}

impl RedisFailure {
    /// The service stopped waiting at `redis_timeout_ms`.
    fn is_timeout(&self) -> bool {
        matches!(self, RedisFailure::Timeout(_))
    }
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisFailure::NotConnected => f.write_str("not connected to Redis yet"),
            RedisFailure::Timeout(timeout) => {
                write!(f, "no answer from Redis within {} ms", timeout.as_millis())
            }
            RedisFailure::Store(error) => write!(f, "{error}"),
        }
    }
}

impl Store {
    /// Starts the Redis connection in the background (if configured), so the
    /// service serves at once even while Redis is down. Must run inside the
    /// runtime; the tasks stop when the store is dropped.
    pub fn start(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Store> {
        let timeout = Duration::from_millis(config.redis_timeout_ms);
        let incidents = Arc::new(Incidents::default());
        let mut tasks = Vec::new();
        let url = config.redis_url.as_deref().filter(|url| !url.is_empty());
        let primary = match url {
            None => {
                tracing::warn!(
                    "quota: no redis_url (or REDIS_URL): counters are kept in this process's \
                     memory, which is correct for ONE quota replica only"
                );
                Primary::Memory
            }
            Some(url) => {
                // The URL itself stays out of the message: it may hold a
                // password (redis-rs's parse errors never quote it).
                let client =
                    redis::Client::open(url).context("quota.redis_url is not a valid Redis URL")?;
                let slot = Arc::new(OnceLock::new());
                let (attempt_ended, first_attempt_ended) = watch::channel(false);
                tasks.push(AbortOnDropHandle::new(tokio::spawn(connect(
                    client,
                    connection_config(timeout),
                    config.key_prefix.clone(),
                    slot.clone(),
                    attempt_ended,
                ))));
                let reporter = incidents.clone();
                tasks.push(AbortOnDropHandle::new(tokio::spawn(async move {
                    reporter.report_every(REPORT_INTERVAL).await;
                })));
                Primary::Redis(Connection {
                    slot,
                    first_attempt_ended,
                })
            }
        };
        Ok(Store {
            primary,
            local: MemoryStore::new(),
            timeout,
            policy: config.on_redis_failure,
            metrics,
            incidents,
            _tasks: tasks,
        })
    }

    /// Shared (`Arc`) so that a Redis call outliving its wait can keep it
    /// without copying it on every request.
    pub async fn acquire(&self, acquire: Arc<Acquire>) -> Verdict {
        let connection = match &self.primary {
            Primary::Memory => {
                return Verdict {
                    decision: self.local.acquire(&acquire),
                    degraded: false,
                    unavailable: false,
                };
            }
            Primary::Redis(connection) => connection,
        };
        let result = match connection.store(self.timeout).await {
            Ok(store) => self.acquire_on_redis(store, acquire.clone()).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(decision) => Verdict {
                decision,
                degraded: false,
                unavailable: false,
            },
            Err(error) => {
                self.metrics.redis_error("acquire", error.is_timeout());
                self.incidents.degraded(&error);
                self.degraded_acquire(&acquire)
            }
        }
    }

    /// Settles where the Acquire was decided: `degraded` ones locally.
    pub async fn settle(&self, settle: Arc<Settle>, degraded: bool) {
        let connection = match &self.primary {
            Primary::Memory => return self.local.settle(&settle),
            Primary::Redis(connection) => connection,
        };
        if degraded {
            let buckets = local_buckets(&settle.buckets, self.policy);
            if !buckets.is_empty() {
                self.local.settle(&Settle {
                    buckets,
                    tenant: settle.tenant.clone(),
                    lease_id: settle.lease_id.clone(),
                    ..*settle
                });
            }
            return;
        }
        let result = match connection.store(self.timeout).await {
            Ok(store) => self.settle_on_redis(store, settle).await,
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            self.metrics.redis_error("settle", error.is_timeout());
            self.incidents.failed_settle(&error);
        }
    }

    /// Raises a tenant's (or key's) budget counter to the ledger's figure
    /// where budgets are decided: Redis (once connected) or memory, and also
    /// this replica's store when budgets fall back to it (`local`).
    pub async fn raise_budget_floor(
        &self,
        floor: &BudgetFloor,
    ) -> Result<FloorOutcome, RedisFailure> {
        let connection = match &self.primary {
            Primary::Memory => return Ok(self.local.raise_budget_floor(floor)),
            Primary::Redis(connection) => connection,
        };
        if self.policy.budgets == FailMode::Local {
            self.local.raise_budget_floor(floor);
        }
        let store = connection.store(self.timeout).await?;
        // On no request's path: a slow Redis may take longer than requests wait.
        let timeout = self.timeout.max(FLOOR_TIMEOUT);
        match tokio::time::timeout(timeout, store.raise_budget_floor(floor)).await {
            Ok(result) => result.map_err(RedisFailure::Store),
            Err(_) => Err(RedisFailure::Timeout(timeout)),
        }
    }

    /// One Acquire on Redis, waited for at most `redis_timeout_ms`. A call
    /// that outlives the wait was sent and may still run: dropping it could
    /// leave a reservation nobody settles (the request was refused or decided
    /// locally), holding budget for the rest of the month. So it finishes in
    /// the background, and whatever it reserved is handed back at once.
    async fn acquire_on_redis(
        &self,
        store: &RedisStore,
        acquire: Arc<Acquire>,
    ) -> Result<Decision, RedisFailure> {
        let start = Instant::now();
        let mut call = Box::pin({
            let store = store.clone();
            async move {
                let result = store.acquire(&acquire).await;
                (store, acquire, result)
            }
        });
        let waited = tokio::time::timeout(self.timeout, &mut call).await;
        self.metrics.redis_round_trip("acquire", start.elapsed());
        match waited {
            Ok((_, _, result)) => result.map_err(RedisFailure::Store),
            Err(_) => {
                let metrics = self.metrics.clone();
                tokio::spawn(async move {
                    let (store, acquire, result) = call.await;
                    if !result.is_ok_and(|decision| decision.allowed) {
                        return; // Nothing was reserved.
                    }
                    match store.settle(&Settle::unused(&acquire)).await {
                        Ok(()) => metrics.late_acquire_released(),
                        Err(error) => tracing::debug!(%error, lease_id = %acquire.lease_id,
                            "quota: a late reservation could not be handed back; its lease timeout frees the slot"),
                    }
                });
                Err(RedisFailure::Timeout(self.timeout))
            }
        }
    }

    /// One Settle on Redis, waited for at most `redis_timeout_ms`; past that
    /// it finishes in the background rather than being dropped half-sent.
    async fn settle_on_redis(
        &self,
        store: &RedisStore,
        settle: Arc<Settle>,
    ) -> Result<(), RedisFailure> {
        let start = Instant::now();
        let mut call = Box::pin({
            let store = store.clone();
            async move { store.settle(&settle).await }
        });
        let waited = tokio::time::timeout(self.timeout, &mut call).await;
        self.metrics.redis_round_trip("settle", start.elapsed());
        match waited {
            Ok(result) => result.map_err(RedisFailure::Store),
            Err(_) => {
                tokio::spawn(call);
                Err(RedisFailure::Timeout(self.timeout))
            }
        }
    }

    /// The failure policy: `closed` limits deny as unavailable, `local`
    /// ones go to this replica's limiter, `open` ones are dropped.
    fn degraded_acquire(&self, acquire: &Acquire) -> Verdict {
        if let Some(denied) = fails_closed(&acquire.buckets, self.policy) {
            return Verdict {
                decision: Decision {
                    allowed: false,
                    denied: Some(denied),
                    retry_after_ms: UNAVAILABLE_RETRY_MS,
                    requests: None,
                    tokens: None,
                },
                degraded: true,
                unavailable: true,
            };
        }
        let buckets = local_buckets(&acquire.buckets, self.policy);
        let decision = if buckets.is_empty() {
            allowed()
        } else {
            self.local.acquire(&Acquire {
                buckets,
                tenant: acquire.tenant.clone(),
                lease_id: acquire.lease_id.clone(),
                ..*acquire
            })
        };
        Verdict {
            decision,
            degraded: true,
            unavailable: false,
        }
    }
}

pub(crate) fn allowed() -> Decision {
    Decision {
        allowed: true,
        denied: None,
        retry_after_ms: 0,
        requests: None,
        tokens: None,
    }
}

/// The first limit that fails closed, if any: budgets before rates, since a
/// budget is what `closed` exists for.
fn fails_closed(buckets: &[Bucket], policy: FailurePolicy) -> Option<(llmgw_limiter::Scope, Kind)> {
    if policy.budgets == FailMode::Closed {
        let budget = buckets
            .iter()
            .find(|bucket| bucket.limits.monthly_budget_nano_usd.is_some());
        if let Some(bucket) = budget {
            return Some((bucket.scope, Kind::MonthlyBudget));
        }
    }
    if policy.rates == FailMode::Closed {
        for bucket in buckets {
            let limits = &bucket.limits;
            let kind = if limits.requests_per_minute.is_some() {
                Kind::RequestsPerMinute
            } else if limits.tokens_per_minute.is_some() {
                Kind::TokensPerMinute
            } else if limits.tokens_per_day.is_some() {
                Kind::TokensPerDay
            } else if limits.concurrent.is_some() {
                Kind::Concurrent
            } else {
                continue;
            };
            return Some((bucket.scope, kind));
        }
    }
    None
}

/// The buckets with only the limits whose failure mode is `local`; the
/// `open` ones are not enforced during the outage.
fn local_buckets(buckets: &[Bucket], policy: FailurePolicy) -> Vec<Bucket> {
    let rates = policy.rates == FailMode::Local;
    let budgets = policy.budgets == FailMode::Local;
    buckets
        .iter()
        .filter_map(|bucket| {
            let limits = Limits {
                requests_per_minute: bucket.limits.requests_per_minute.filter(|_| rates),
                tokens_per_minute: bucket.limits.tokens_per_minute.filter(|_| rates),
                tokens_per_day: bucket.limits.tokens_per_day.filter(|_| rates),
                concurrent: bucket.limits.concurrent.filter(|_| rates),
                monthly_budget_nano_usd: bucket.limits.monthly_budget_nano_usd.filter(|_| budgets),
            };
            (!limits.is_empty()).then(|| Bucket {
                scope: bucket.scope,
                id: bucket.id.clone(),
                limits,
            })
        })
        .collect()
}

fn connection_config(timeout: Duration) -> ConnectionManagerConfig {
    // Calls are bounded by our own `timeout`; these only keep a dead
    // connection attempt or an unanswered command from lingering, and stay
    // generous so a brief hiccup does not tear down a working connection.
    let floor = timeout.max(Duration::from_secs(1));
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(floor))
        .set_response_timeout(Some(floor))
        // Reconnect attempts are cheap and every request while disconnected
        // triggers one; long backoffs would only delay recovery.
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1))
}

/// Opens the first connection, retrying every second for as long as it
/// takes: the service must come up (and degrade) while Redis is down, and use
/// Redis as soon as it answers, without a restart.
async fn connect(
    client: redis::Client,
    config: ConnectionManagerConfig,
    prefix: String,
    slot: Arc<OnceLock<RedisStore>>,
    attempt_ended: watch::Sender<bool>,
) {
    let address = client.get_connection_info().addr().to_string();
    let mut failures: u64 = 0;
    loop {
        let attempt = ConnectionManager::new_with_config(client.clone(), config.clone());
        let error = match tokio::time::timeout(CONNECT_RETRY * 2, attempt).await {
            Ok(Ok(connection)) => {
                // Only this task fills the slot.
                let _ = slot.set(RedisStore::new(connection, prefix));
                attempt_ended.send_replace(true);
                tracing::info!(%address, "quota: connected to Redis");
                return;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        attempt_ended.send_replace(true);
        failures += 1;
        // The first failure, then once a minute.
        if failures % 60 == 1 {
            tracing::warn!(
                %address,
                %error,
                failures,
                "quota: cannot connect to Redis, retrying every second; until then quotas follow on_redis_failure"
            );
        }
        tokio::time::sleep(CONNECT_RETRY).await;
    }
}

#[cfg(test)]
mod tests;
