//! The `llmgw.billing.v1.Policies` gRPC service: every edge and router
//! replica polls it (every few seconds) for the content policies in force:
//! the config file's defaults with the database's over them (a database
//! policy or word list replaces the file's of the same name), the default
//! policy, each tenant's assigned policy, and the match-hash key.
//!
//! The etag derives from the database's policy revision (bumped by every
//! change, in its transaction), the config file's policies and the key, so
//! it changes when anything served changes, and a caller that is current
//! costs one single-row read. The last full answer is cached by etag: after
//! a change, the replicas' polls share one read of the word lists.

use std::sync::{Arc, Mutex};

use llmgw_policy::PolicySource;
use llmgw_proto::ErrorCode;
use llmgw_proto::billing_v1::policies_server::Policies;
use llmgw_proto::billing_v1::{GetPoliciesRequest, GetPoliciesResponse, PolicyDocument, WordList};
use sha2::{Digest as _, Sha256};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::policies::PolicySnapshot;

pub struct PoliciesService {
    store: Store,
    metrics: Arc<Metrics>,
    /// SHA-256 of the config file's policy section (it never changes while
    /// billing runs).
    defaults_digest: [u8; 32],
    /// The last full answer, by etag.
    cache: Mutex<Option<Arc<GetPoliciesResponse>>>,
}

impl PoliciesService {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> anyhow::Result<PoliciesService> {
        let defaults = serde_json::to_vec(store.policy_defaults().as_ref())?;
        Ok(PoliciesService {
            defaults_digest: Sha256::digest(&defaults).into(),
            store,
            metrics,
            cache: Mutex::new(None),
        })
    }

    /// Opaque to callers: `<revision>-<16 hex digits>`. The hash covers the
    /// config's policies and the match-hash key, so a new database (whose
    /// revision restarts at 0) gets a new etag too.
    fn etag(&self, revision: i64, key: &[u8; 32]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.defaults_digest);
        hasher.update(key);
        let digest = hasher.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{revision}-{hex}")
    }

    fn cached(&self, etag: &str) -> Option<Arc<GetPoliciesResponse>> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache.as_ref().filter(|answer| answer.etag == etag).cloned()
    }

    async fn answer(&self, known_etag: &str) -> Result<GetPoliciesResponse, Status> {
        let state = self.store.policy_state().await.map_err(unavailable)?;
        let etag = self.etag(state.revision, &state.match_hash_key);
        if known_etag == etag {
            self.metrics.policy_fetch("unchanged");
            return Ok(GetPoliciesResponse {
                etag,
                unchanged: true,
                ..GetPoliciesResponse::default()
            });
        }
        if let Some(answer) = self.cached(&etag) {
            self.metrics.policy_fetch("full");
            return Ok(answer.as_ref().clone());
        }
        let snapshot = self.store.policy_snapshot().await.map_err(unavailable)?;
        // A change may have committed since the revision was read: the
        // etag must be the snapshot's, so that it names this content.
        let etag = self.etag(snapshot.revision, &state.match_hash_key);
        let answer = Arc::new(merge(
            self.store.policy_defaults(),
            snapshot,
            etag,
            &state.match_hash_key,
        ));
        *self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&answer));
        self.metrics.policy_fetch("full");
        Ok(answer.as_ref().clone())
    }
}

#[tonic::async_trait]
impl Policies for PoliciesService {
    async fn get_policies(
        &self,
        request: Request<GetPoliciesRequest>,
    ) -> Result<Response<GetPoliciesResponse>, Status> {
        let span = tracing::info_span!(
            "billing.get_policies",
            unchanged = tracing::field::Empty,
            etag = tracing::field::Empty,
        );
        async move {
            let known = request.into_inner().known_etag;
            let answer = self.answer(&known).await.inspect_err(|_| {
                self.metrics.policy_fetch("error");
            })?;
            let span = tracing::Span::current();
            span.record("unchanged", answer.unchanged);
            span.record("etag", answer.etag.as_str());
            Ok(Response::new(answer))
        }
        .instrument(span)
        .await
    }
}

/// The set in force: the config file's, the database's over it.
fn merge(
    defaults: &PolicySource,
    snapshot: PolicySnapshot,
    etag: String,
    key: &[u8; 32],
) -> GetPoliciesResponse {
    let mut policies: std::collections::BTreeMap<String, String> = defaults
        .policies
        .iter()
        .filter_map(|(name, spec)| Some((name.clone(), serde_json::to_string(spec).ok()?)))
        .collect();
    policies.extend(snapshot.policies);
    let mut word_lists = defaults.word_lists.clone();
    word_lists.extend(snapshot.word_lists);
    let mut tenants = defaults.tenants.clone();
    tenants.extend(snapshot.tenants);
    GetPoliciesResponse {
        etag,
        unchanged: false,
        default_policy: defaults.default.clone(),
        policies: policies
            .into_iter()
            .map(|(name, spec_json)| PolicyDocument { name, spec_json })
            .collect(),
        word_lists: word_lists
            .into_iter()
            .map(|(name, terms)| WordList { name, terms })
            .collect(),
        tenant_policies: tenants.into_iter().collect(),
        match_hash_key: key.to_vec().into(),
    }
}

/// Driver messages can carry host names and SQL: they go to the log.
fn unavailable(error: crate::store::StoreError) -> Status {
    tracing::warn!(error = %error, "policies not read");
    ErrorCode::Unavailable.status("the billing database is unavailable; retry later")
}
