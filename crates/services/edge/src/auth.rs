//! API key authentication: bootstrap keys from the config file, then keys
//! from the accounts database (the billing service), cached.
//!
//! Database keys are looked up by the SHA-256 digest of their text (the key
//! itself never leaves the edge) and cached: a hit costs a hash and a map
//! lookup, no network call. A revoked key stops working within
//! `auth_cache_ttl_secs`; an unknown key is remembered for
//! `auth_negative_ttl_secs` so guessing cannot hammer the database. When the
//! billing service is unreachable, keys already cached keep working
//! (stale-while-error) and unknown keys get 503, not 401: the key may well be
//! valid.
//!
//! A database key's limits and its tenant's budget come with the lookup and
//! are cached with it, so a change reaches the quota service within the same
//! `auth_cache_ttl_secs`, at no cost per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use llmgw_grpc::Channel;
use llmgw_proto::ErrorCode;
use llmgw_proto::billing_v1::accounts_client::AccountsClient;
use llmgw_proto::billing_v1::{KeyInfo, LookupKeyRequest};
use llmgw_proto::limits_v1::Limits;
use llmgw_telemetry::OutageLog;

use crate::config::ApiKeyConfig;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: String,
    pub key_id: String,
    /// Model aliases the key may use; empty = all.
    pub allowed_models: Arc<[String]>,
    /// Unix milliseconds; `None` = never.
    expires_at: Option<u64>,
    /// Limits from the accounts database (none for bootstrap keys), cached
    /// with the key and passed to the quota service with each request.
    pub limits: AccountLimits,
}

/// Limits the accounts database sets for a key, per quota scope. `None`: it
/// sets none there, so the quota service's config applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountLimits {
    /// The key's effective limits (its own over its tenant's defaults).
    pub key: Option<Limits>,
    /// The tenant's: its monthly budget.
    pub tenant: Option<Limits>,
}

impl AccountLimits {
    /// The lookup's limits, as the quota service takes them (one type).
    fn of(key: &KeyInfo) -> AccountLimits {
        AccountLimits {
            key: key.key_limits,
            tenant: key.tenant_limits,
        }
    }
}

impl Principal {
    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models.is_empty() || self.allowed_models.iter().any(|allowed| allowed == model)
    }

    fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= crate::unix_ms())
    }
}

struct Cached {
    principal: Option<Principal>,
    fetched: Instant,
}

/// Entries kept before expired ones are swept.
const MAX_CACHED: usize = 100_000;

/// The edge's key authenticator: bootstrap keys, then the accounts database
/// through the billing service, with the cache described above.
pub struct Keys {
    bootstrap: HashMap<String, Principal>,
    accounts: Option<AccountsClient<Channel>>,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    ttl: Duration,
    negative_ttl: Duration,
    /// Billing outages are logged once a minute, not per request.
    outage_log: OutageLog,
}

impl Keys {
    /// `keys` are the bootstrap keys (at least 16 characters, each once);
    /// `accounts` the billing service, if any; `ttl` and `negative_ttl` how
    /// long a found and an unknown key are cached.
    pub fn new(
        keys: &[ApiKeyConfig],
        accounts: Option<AccountsClient<Channel>>,
        ttl: Duration,
        negative_ttl: Duration,
    ) -> anyhow::Result<Keys> {
        let mut bootstrap = HashMap::new();
        for (position, key) in keys.iter().enumerate() {
            anyhow::ensure!(
                key.key.len() >= 16,
                "api key {position} (tenant {}) is shorter than 16 characters",
                key.tenant
            );
            let principal = Principal {
                tenant: key.tenant.clone(),
                key_id: key
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("config-{}-{position}", key.tenant)),
                allowed_models: Arc::from([]),
                expires_at: None,
                limits: AccountLimits::default(),
            };
            anyhow::ensure!(
                bootstrap.insert(key.key.clone(), principal).is_none(),
                "api key {position} is configured twice"
            );
        }
        Ok(Keys {
            bootstrap,
            accounts,
            cache: Mutex::new(HashMap::new()),
            ttl,
            negative_ttl,
            outage_log: OutageLog::new(Duration::from_secs(60)),
        })
    }

    /// Who the `Authorization: Bearer` key in `headers` belongs to; an
    /// OpenAI-style error for a missing, unknown, revoked or expired key, or
    /// when the billing service cannot be asked about an uncached one.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let Some(key) = bearer(headers) else {
            return Err(ApiError::new(
                ErrorCode::InvalidApiKey,
                "You didn't provide an API key. Provide it in the Authorization header (Authorization: Bearer YOUR_KEY).",
            ));
        };
        if let Some(principal) = self.bootstrap.get(key) {
            return Ok(principal.clone());
        }
        let incorrect = || ApiError::new(ErrorCode::InvalidApiKey, "Incorrect API key provided.");
        // A mistyped key fails its checksum: no lookup needed.
        let Some(accounts) = &self.accounts else {
            return Err(incorrect());
        };
        if !llmgw_apikey::is_well_formed(key) {
            return Err(incorrect());
        }
        let digest = llmgw_apikey::digest(key);
        let stale = match self.cached(&digest) {
            Some((principal, true)) => {
                return principal.filter(|p| !p.expired()).ok_or_else(incorrect);
            }
            Some((principal, false)) => principal,
            None => None,
        };
        let request = LookupKeyRequest {
            key_digest: digest.to_vec().into(),
        };
        let answer =
            tokio::time::timeout(Duration::from_secs(1), accounts.clone().lookup_key(request))
                .await;
        match answer {
            Ok(Ok(answer)) => {
                if let Some(outage) = self.outage_log.recovered() {
                    tracing::info!(
                        failures = outage.failures,
                        outage_secs = outage.lasted.as_secs(),
                        "billing reachable again: API keys are checked again"
                    );
                }
                let answer = answer.into_inner();
                let principal = answer.key.filter(|_| answer.found).map(|key| Principal {
                    limits: AccountLimits::of(&key),
                    tenant: key.tenant,
                    key_id: key.key_id,
                    allowed_models: key.allowed_models.into(),
                    expires_at: (key.expires_at_unix_ms > 0).then_some(key.expires_at_unix_ms),
                });
                self.remember(digest, principal.clone());
                principal.filter(|p| !p.expired()).ok_or_else(incorrect)
            }
            Ok(Err(status)) => self.billing_down(stale, &status.to_string()),
            Err(_) => self.billing_down(stale, "timed out"),
        }
    }

    /// A cached answer, and whether it is still fresh.
    fn cached(&self, digest: &[u8; 32]) -> Option<(Option<Principal>, bool)> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(digest)?;
        let ttl = if entry.principal.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        Some((entry.principal.clone(), entry.fetched.elapsed() < ttl))
    }

    fn remember(&self, digest: [u8; 32], principal: Option<Principal>) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= MAX_CACHED {
            let (ttl, negative_ttl) = (self.ttl, self.negative_ttl);
            cache.retain(|_, entry| {
                let ttl = if entry.principal.is_some() {
                    ttl
                } else {
                    negative_ttl
                };
                entry.fetched.elapsed() < ttl
            });
        }
        cache.insert(
            digest,
            Cached {
                principal,
                fetched: Instant::now(),
            },
        );
    }

    /// Billing is unreachable: a key we knew keeps working; others get 503.
    fn billing_down(&self, stale: Option<Principal>, error: &str) -> Result<Principal, ApiError> {
        if let Some(failures) = self.outage_log.failed() {
            tracing::warn!(
                error,
                failures,
                "billing unreachable: serving cached keys, unknown keys get 503 (logged once a minute)"
            );
        }
        match stale.filter(|principal| !principal.expired()) {
            Some(principal) => Ok(principal),
            None => Err(ApiError::new(
                ErrorCode::Unavailable,
                "API keys cannot be checked right now; retry the request",
            )),
        }
    }
}

/// The key of `Authorization: Bearer`, else of `x-api-key` (how the
/// Anthropic SDKs send it).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let from_authorization = || {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        let key = key.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
    };
    from_authorization().or_else(|| {
        let key = headers.get("x-api-key")?.to_str().ok()?.trim();
        (!key.is_empty()).then_some(key)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_limits_map_to_quota_scopes() {
        let mut key = KeyInfo {
            key_id: "k".into(),
            tenant: "t".into(),
            ..KeyInfo::default()
        };
        assert_eq!(AccountLimits::of(&key), AccountLimits::default());
        key.key_limits = Some(Limits {
            requests_per_minute: Some(2),
            concurrent: Some(0),
            ..Limits::default()
        });
        key.tenant_limits = Some(Limits {
            monthly_budget_nano_usd: Some(0),
            ..Limits::default()
        });
        let limits = AccountLimits::of(&key);
        assert_eq!(
            limits.key,
            Some(Limits {
                requests_per_minute: Some(2),
                concurrent: Some(0),
                ..Limits::default()
            })
        );
        // A budget of 0 is a budget (nothing may be spent), not "none".
        assert_eq!(
            limits.tenant,
            Some(Limits {
                monthly_budget_nano_usd: Some(0),
                ..Limits::default()
            })
        );
    }
}
