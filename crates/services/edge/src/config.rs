//! Edge configuration.

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Public HTTP listen address (used by the binary; `run` takes a bound
    /// listener).
    pub listen: SocketAddr,
    /// The router's gRPC address.
    pub router_url: String,
    /// The quota service's gRPC address; unset = no limits are enforced.
    pub quota_url: Option<String>,
    /// How long a quota decision may take before `on_quota_unreachable`
    /// applies. The quota service bounds its own Redis calls much tighter
    /// (25 ms); this guards against the quota service itself being down.
    pub quota_timeout_ms: u64,
    pub on_quota_unreachable: crate::quota::Unreachable,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// The public listener's connection limits: header size (431) and read
    /// timeout, idle keep-alive timeout, HTTP/2 streams per connection, open
    /// connections (`llmgw_http_serve::HttpLimits`).
    pub http: llmgw_http_serve::HttpLimits,
    /// Deepest nesting of arrays and objects a JSON body may have; deeper
    /// ones get 400 before they are parsed.
    pub max_json_depth: usize,
    /// Most messages one chat or Messages request may carry (400, `param`
    /// `messages`).
    pub max_messages: usize,
    /// Most content parts one message may carry (400, `param` naming the
    /// message's `content`).
    pub max_content_parts: usize,
    /// Failed authentications from one client address before its requests
    /// get 429 without a key lookup (`crate::auth_throttle`).
    pub auth_throttle: crate::auth_throttle::AuthThrottleConfig,
    /// Admission limit: API requests in flight at once (from arrival to the
    /// last byte of the answer; a stream holds its place until it ends).
    /// Past it, requests get 503 `overloaded` with `Retry-After` at once,
    /// before their body is read. Size it to the streams a replica should
    /// carry; the mock-upstream overload bench on 2 cores uses 64.
    pub max_in_flight: usize,
    /// How long one chat call may take end to end (sent to the router as the
    /// call's deadline).
    pub request_timeout_secs: u64,
    /// On shutdown, how long open streams get to finish before they are
    /// ended with an error event.
    pub drain_timeout_secs: u64,
    /// While a stream waits for its first token (or any silence), an SSE
    /// comment (`: keep-alive`) every this many seconds keeps load balancers
    /// with idle timeouts from dropping the connection. 0 = never.
    pub sse_keepalive_secs: u64,
    /// How often the model catalog (aliases and limits) is re-read from the
    /// router.
    pub catalog_refresh_secs: u64,
    /// The billing service's gRPC address, for API keys from the accounts
    /// database; unset = bootstrap keys only.
    pub billing_url: Option<String>,
    /// How long a database key's lookup is cached: a revoked key stops
    /// working within this.
    pub auth_cache_ttl_secs: u64,
    /// How long an unknown key is remembered as unknown.
    pub auth_negative_ttl_secs: u64,
    /// Bootstrap API keys. The accounts database replaces these in
    /// production; they stay useful for development and break-glass access.
    pub api_keys: Vec<ApiKeyConfig>,
    /// Filled from the top-level `policy:` section.
    #[serde(skip)]
    pub policy: llmgw_policy::PolicySource,
    /// How often billing (`billing_url`) is asked for policy changes
    /// (1..=10 s: a change is in force everywhere within 10 s).
    pub policy_refresh_secs: u64,
    /// The durable spool audit events of prompts wait in until billing has
    /// them. `llmgw all` defaults `spool_dir` to
    /// `{billing.data_dir}/audit-spool/edge`.
    pub audit: llmgw_audit::AuditSpoolConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            router_url: "http://127.0.0.1:8081".to_owned(),
            quota_url: None,
            quota_timeout_ms: 250,
            on_quota_unreachable: crate::quota::Unreachable::Open,
            max_body_bytes: 4 * 1024 * 1024,
            http: llmgw_http_serve::HttpLimits::default(),
            max_json_depth: 64,
            max_messages: 2048,
            max_content_parts: 256,
            auth_throttle: crate::auth_throttle::AuthThrottleConfig::default(),
            max_in_flight: 4096,
            request_timeout_secs: 600,
            drain_timeout_secs: 30,
            sse_keepalive_secs: 10,
            catalog_refresh_secs: 10,
            billing_url: None,
            auth_cache_ttl_secs: 30,
            auth_negative_ttl_secs: 5,
            api_keys: Vec::new(),
            policy: llmgw_policy::PolicySource::default(),
            policy_refresh_secs: 5,
            audit: llmgw_audit::AuditSpoolConfig::default(),
        }
    }
}

/// As `auth::Keys` requires of bootstrap keys: shorter ones are guessable.
const MIN_API_KEY_BYTES: usize = 16;

impl Config {
    /// What is wrong with this section on its own, every problem at once,
    /// each naming its setting relative to `edge:`. URLs are checked by the
    /// binary, with every other section's.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_in_flight", self.max_in_flight as u64),
            ("request_timeout_secs", self.request_timeout_secs),
            ("quota_timeout_ms", self.quota_timeout_ms),
            ("max_json_depth", self.max_json_depth as u64),
            ("max_messages", self.max_messages as u64),
            ("max_content_parts", self.max_content_parts as u64),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be above 0"));
            }
        }
        if !(1..=10).contains(&self.policy_refresh_secs) {
            problems.push("policy_refresh_secs: must be 1 to 10".to_owned());
        }
        problems.extend(
            self.http
                .validate()
                .into_iter()
                .map(|problem| format!("http.{problem}")),
        );
        problems.extend(
            self.auth_throttle
                .validate()
                .into_iter()
                .map(|problem| format!("auth_throttle.{problem}")),
        );
        problems.extend(
            self.audit
                .validate()
                .into_iter()
                .map(|problem| format!("audit.{problem}")),
        );
        let mut keys = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for (index, api_key) in self.api_keys.iter().enumerate() {
            let at = format!("api_keys[{index}]");
            if api_key.key.len() < MIN_API_KEY_BYTES {
                // Never the key itself: problems are printed.
                problems.push(format!(
                    "{at}.key: shorter than {MIN_API_KEY_BYTES} characters (tenant {:?})",
                    api_key.tenant
                ));
            } else if !keys.insert(api_key.key.as_str()) {
                problems.push(format!("{at}.key: the same key is configured twice"));
            }
            if api_key.tenant.trim().is_empty() {
                problems.push(format!("{at}.tenant: must not be empty"));
            }
            if let Some(name) = &api_key.name
                && !names.insert(name.as_str())
            {
                problems.push(format!("{at}.name: {name:?} is used twice"));
            }
        }
        problems
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub key: String,
    pub tenant: String,
    /// A name for the key in logs and usage records (the key itself never
    /// appears there). Defaults to `config-<tenant>-<position>`.
    #[serde(default)]
    pub name: Option<String>,
}

/// Never prints the key.
impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("key", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .finish()
    }
}
