//! The policies in force in one edge or router process, kept current.
//!
//! A [`PolicyFeed`] starts from the config file's `policy:` section,
//! compiled at start (a bad section fails the start). When the service has
//! a billing URL, the feed then polls billing's `Policies.GetPolicies` every
//! `refresh` (default 5 s; at most 10 s, so an admin's change is in force
//! everywhere within 10 s plus a compile), sending the etag it holds so an
//! unchanged set costs one small round trip. A new set is compiled off the
//! request path (`spawn_blocking`) and swapped in atomically: a request
//! holds the `Arc` it started with, the next one sees the new set.
//!
//! Failure behaviour: billing unreachable, or a set from billing that does
//! not compile, keeps the last good set in force (config file's or an
//! earlier one from billing), logged as an outage (once when it starts, at
//! most once a minute while it lasts, once when it ends) and counted in
//! `policy_fetch_failures_total` / `policy_rejected_total`. A set that did
//! not compile is not compiled again until billing's etag changes.
//!
//! The match-hash key: billing generates one and serves it with the set,
//! so every replica's audit hashes of one value agree. Until billing has
//! answered once (or without billing), hashes are keyed with a random key
//! of this process: they correlate repeated leaks within the process only.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use llmgw_grpc::Channel;
use llmgw_proto::billing_v1::policies_client::PoliciesClient;
use llmgw_proto::billing_v1::{GetPoliciesRequest, GetPoliciesResponse};
use llmgw_telemetry::OutageLog;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::{PolicyError, PolicySet, PolicySource, PolicySpec};

/// How often billing is asked for changes unless configured.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// The longest refresh allowed: every replica must use a change within 10 s.
pub const MAX_REFRESH: Duration = Duration::from_secs(10);
/// One `GetPolicies` call may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// An outage is logged when it starts, then at most this often.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(60);

/// The feed's Prometheus metrics.
#[derive(Clone, Debug, Default)]
pub struct FeedMetrics {
    /// Policy sets from billing put in force.
    pub updates: Counter,
    /// Policy sets from billing that did not compile (the last good one
    /// stayed in force).
    pub rejected: Counter,
    /// `GetPolicies` calls that failed (billing unreachable or too slow).
    pub fetch_failures: Counter,
    /// 1 once a set from billing is in force; 0 while the config file's is.
    pub from_billing: Gauge,
}

impl FeedMetrics {
    /// Registers `<prefix>_policy_updates_total`, `..._policy_rejected_total`,
    /// `..._policy_fetch_failures_total` and `..._policy_from_billing`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("policy");
        registry.register(
            "updates",
            "Policy sets from billing put in force",
            self.updates.clone(),
        );
        registry.register(
            "rejected",
            "Policy sets from billing that did not compile (the last good set stayed in force)",
            self.rejected.clone(),
        );
        registry.register(
            "fetch_failures",
            "Calls to billing's GetPolicies that failed",
            self.fetch_failures.clone(),
        );
        registry.register(
            "from_billing",
            "1 once a policy set from billing is in force, 0 while the config file's is",
            self.from_billing.clone(),
        );
    }
}

/// The current [`PolicySet`] of this process. Share it as `Arc<PolicyFeed>`.
#[derive(Debug)]
pub struct PolicyFeed {
    current: RwLock<Arc<PolicySet>>,
    metrics: FeedMetrics,
    /// Keys match hashes until billing sends its key.
    process_key: Vec<u8>,
}

impl PolicyFeed {
    /// Compiles the config file's `source` with a random key of this
    /// process (see the module docs). Blocking: call it at start.
    pub fn new(
        source: &PolicySource,
        metrics: FeedMetrics,
    ) -> Result<Arc<PolicyFeed>, PolicyError> {
        let process_key = process_key();
        let set = PolicySet::compile(source, &process_key)?;
        Ok(Arc::new(PolicyFeed {
            current: RwLock::new(Arc::new(set)),
            metrics,
            process_key,
        }))
    }

    /// A feed holding `set` until a poll replaces it.
    pub fn fixed(set: PolicySet, metrics: FeedMetrics) -> Arc<PolicyFeed> {
        Arc::new(PolicyFeed {
            current: RwLock::new(Arc::new(set)),
            metrics,
            process_key: process_key(),
        })
    }

    /// The set in force. Cheap (a read lock and an `Arc` clone): call it
    /// once per request and use that set for the whole request.
    pub fn current(&self) -> Arc<PolicySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn metrics(&self) -> &FeedMetrics {
        &self.metrics
    }

    /// Polls billing (over `billing`, a lazily connected channel) now and
    /// every `refresh` (capped at [`MAX_REFRESH`]) until `shutdown`
    /// resolves; the returned task then ends.
    pub fn follow(
        self: &Arc<Self>,
        billing: Channel,
        refresh: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let poller = Poller {
            feed: Arc::clone(self),
            client: PoliciesClient::new(billing),
            etag: String::new(),
            key: None,
            outage: OutageLog::new(OUTAGE_LOG_EVERY),
        };
        let refresh = refresh.clamp(Duration::from_millis(1), MAX_REFRESH);
        tokio::spawn(async move {
            let mut poller = poller;
            let mut shutdown = std::pin::pin!(shutdown);
            loop {
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = poller.poll() => {}
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(refresh) => {}
                }
            }
            tracing::debug!("policy feed stopped");
        })
    }

    fn swap(&self, set: PolicySet) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }
}

/// The polling task's state.
struct Poller {
    feed: Arc<PolicyFeed>,
    client: PoliciesClient<Channel>,
    /// The etag of the last set billing served (in force, or rejected).
    etag: String,
    /// Billing's match-hash key, once it has sent one.
    key: Option<Vec<u8>>,
    outage: OutageLog,
}

impl Poller {
    async fn poll(&mut self) {
        let mut request = tonic::Request::new(GetPoliciesRequest {
            known_etag: self.etag.clone(),
        });
        request.set_timeout(FETCH_TIMEOUT);
        let answer = tokio::time::timeout(FETCH_TIMEOUT, self.client.get_policies(request)).await;
        let response = match answer {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => {
                return self.failed(&format!("{:?}: {}", status.code(), status.message()));
            }
            Err(_) => return self.failed("no answer within 5 s"),
        };
        if let Some(recovered) = self.outage.recovered() {
            tracing::info!(
                outage_secs = recovered.lasted.as_secs_f64(),
                failed_calls = recovered.failures,
                "policy feed: billing answers again"
            );
        }
        if response.unchanged {
            return;
        }
        let etag = response.etag.clone();
        if !response.match_hash_key.is_empty() {
            self.key = Some(response.match_hash_key.to_vec());
        }
        let key = self
            .key
            .clone()
            .unwrap_or_else(|| self.feed.process_key.clone());
        let compiled = tokio::task::spawn_blocking(move || {
            let source = source_from(response)?;
            PolicySet::compile(&source, &key).map(|set| (set, source.policies.len()))
        })
        .await;
        match compiled {
            Ok(Ok((set, policies))) => {
                self.feed.swap(set);
                self.feed.metrics.updates.inc();
                self.feed.metrics.from_billing.set(1);
                tracing::info!(%etag, policies, "policy feed: new policy set in force");
            }
            Ok(Err(error)) => {
                self.feed.metrics.rejected.inc();
                tracing::error!(
                    %etag,
                    %error,
                    "policy feed: the policy set from billing does not compile; keeping the one in force"
                );
            }
            Err(panicked) => {
                self.feed.metrics.rejected.inc();
                tracing::error!(
                    %etag,
                    error = %panicked,
                    "policy feed: compiling the policy set from billing panicked; keeping the one in force"
                );
            }
        }
        // Rejected sets too: not compiled again until billing's changes.
        self.etag = etag;
    }

    fn failed(&mut self, error: &str) {
        self.feed.metrics.fetch_failures.inc();
        if let Some(failed_calls) = self.outage.failed() {
            tracing::warn!(
                error,
                failed_calls,
                "policy feed: billing unreachable; keeping the policy set in force"
            );
        }
    }
}

/// What billing served, in the config file's schema.
fn source_from(response: GetPoliciesResponse) -> Result<PolicySource, PolicyError> {
    let mut policies = BTreeMap::new();
    for document in response.policies {
        let spec: PolicySpec =
            serde_json::from_str(&document.spec_json).map_err(|error| PolicyError::Policy {
                policy: document.name.clone(),
                reason: format!("its spec_json does not parse: {error}"),
            })?;
        policies.insert(document.name, spec);
    }
    Ok(PolicySource {
        default: response.default_policy,
        policies,
        word_lists: response
            .word_lists
            .into_iter()
            .map(|list| (list.name, list.terms))
            .collect(),
        tenants: response.tenant_policies.into_iter().collect(),
    })
}

/// A random match-hash key for this process (see the module docs).
fn process_key() -> Vec<u8> {
    rand::random::<[u8; 32]>().to_vec()
}

#[cfg(test)]
mod tests;
