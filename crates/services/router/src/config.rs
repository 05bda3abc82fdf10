//! Router configuration: where to listen, the model catalog, upstream timeouts.
//! `Config::validate` lists every problem at once; the catalog is built from
//! the same rules (`ModelConfig::deployment_list`, `DeploymentConfig::chat_url`).

mod validation;

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

pub use crate::balance::Strategy;
pub use crate::breaker::BreakerConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address (used by the binary; `run` takes a bound
    /// listener). `GET /metrics` is served on the same port over HTTP/1.
    pub listen: SocketAddr,
    pub models: Vec<ModelConfig>,
    pub timeouts: Timeouts,
    pub retries: Retries,
    pub breaker: BreakerConfig,
    /// The billing service's gRPC URL, where usage events are delivered.
    /// Without it the router records no usage (and says so at start).
    pub billing_url: Option<String>,
    pub usage: UsageConfig,
    /// Filled from the top-level `policy:` section.
    #[serde(skip)]
    pub policy: llmgw_policy::PolicySource,
    /// How often billing is asked for policy changes (1..=10 s).
    pub policy_refresh_secs: u64,
    /// The durable spool the audit events of answers (policy hits) wait in
    /// until billing has them. `llmgw all` defaults `spool_dir` to
    /// `{billing.data_dir}/audit-spool/router`.
    pub audit: llmgw_audit::AuditSpoolConfig,
}

/// The durable spool usage events wait in until billing has them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// One directory per router process (it is locked); `llmgw all`
    /// defaults it to `{billing.data_dir}/spool`.
    pub spool_dir: Option<PathBuf>,
    /// Bound on unacknowledged events on disk. When full, the router
    /// refuses new calls (503) rather than serve calls it cannot bill.
    pub max_bytes: u64,
    pub segment_bytes: u64,
    /// Group commit: events written within this interval share one fsync.
    pub flush_interval_ms: u64,
    /// Events per delivery to billing.
    pub batch_size: usize,
    /// At shutdown, how long to keep delivering; the rest stays on disk.
    pub drain_timeout_secs: u64,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            spool_dir: None,
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            flush_interval_ms: 20,
            batch_size: 500,
            drain_timeout_secs: 5,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            models: Vec::new(),
            timeouts: Timeouts::default(),
            retries: Retries::default(),
            breaker: BreakerConfig::default(),
            billing_url: None,
            usage: UsageConfig::default(),
            policy: llmgw_policy::PolicySource::default(),
            policy_refresh_secs: 5,
            audit: llmgw_audit::AuditSpoolConfig::default(),
        }
    }
}

/// Upstream timeouts. A healthy stream is never cut: only silence is.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// TCP + TLS connect.
    pub connect_ms: u64,
    /// From sending the request to the response headers (and, for
    /// non-streaming calls, to the whole body).
    pub first_byte_ms: u64,
    /// Longest silence between two streamed chunks.
    pub idle_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 5_000,
            first_byte_ms: 120_000,
            idle_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Any OpenAI-compatible chat completions API: OpenAI, DeepSeek, Qwen
    /// (compatible mode), vLLM, Ollama, the mock upstream.
    Openai,
    /// Anthropic's Messages API; requests and answers are translated.
    Anthropic,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
        }
    }
}

/// A client API an alias serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientApi {
    /// OpenAI chat completions (`POST /v1/chat/completions`).
    Chat,
    /// Anthropic Messages (`POST /v1/messages`): passed through to
    /// Anthropic deployments, translated for OpenAI-compatible ones.
    Messages,
    /// OpenAI embeddings (`POST /v1/embeddings`): OpenAI-compatible
    /// deployments only.
    Embeddings,
}

impl ClientApi {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientApi::Chat => "chat",
            ClientApi::Messages => "messages",
            ClientApi::Embeddings => "embeddings",
        }
    }
}

/// What an alias serves when it does not say: the two conversational APIs,
/// which every chat model answers (translated where needed).
pub const DEFAULT_APIS: [ClientApi; 2] = [ClientApi::Chat, ClientApi::Messages];

/// Errors after which a model's fallback chain is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackOn {
    /// The provider answered 429.
    RateLimited,
    /// 5xx, refused connections, invalid answers, every breaker open.
    Unavailable,
    /// No answer in time.
    Timeout,
    /// The prompt is too long for this model (a bigger one may take it).
    ContextLength,
}

/// Retries of one model alias, before the first byte reaches the client.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retries {
    /// Attempts after the first, per alias (the fallback gets its own).
    pub max_retries: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A provider's `Retry-After` is honoured up to this; longer waits move
    /// on to the next deployment or the fallback instead.
    pub max_retry_after_ms: u64,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            max_retries: 2,
            initial_backoff_ms: 100,
            max_backoff_ms: 2_000,
            max_retry_after_ms: 5_000,
        }
    }
}

/// One model alias clients may ask for. Either give one deployment inline
/// (`provider`, `base_url`, `upstream_model`, `api_key_env`) or several
/// under `deployments`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub alias: String,
    pub provider: Option<Provider>,
    pub base_url: Option<String>,
    pub upstream_model: Option<String>,
    pub api_key_env: Option<String>,
    pub deployments: Vec<DeploymentConfig>,
    /// How to choose among deployments of the same priority.
    pub strategy: Strategy,
    /// Aliases tried in order when this one fails with an error in
    /// `fallback_on` (after its own retries).
    pub fallbacks: Vec<String>,
    pub fallback_on: Option<Vec<FallbackOn>>,
    /// Longest prompt accepted, in characters; 0 = no limit.
    pub max_prompt_chars: u64,
    /// Largest `max_tokens` accepted; 0 = no limit.
    pub max_output_tokens: u64,
    /// USD per million input tokens, as a decimal string (default "0").
    pub input_price_per_mtok: Option<String>,
    /// USD per million output tokens, as a decimal string (default "0").
    pub output_price_per_mtok: Option<String>,
    /// USD per million prompt tokens read from the provider's prompt cache
    /// (default: the input price).
    pub cache_read_price_per_mtok: Option<String>,
    /// USD per million prompt tokens written to the provider's prompt cache
    /// (default: the input price).
    pub cache_write_price_per_mtok: Option<String>,
    /// The client APIs this alias serves (default: chat and messages;
    /// embeddings must be asked for, and only OpenAI-compatible
    /// deployments serve it).
    pub apis: Option<Vec<ClientApi>>,
    pub owned_by: Option<String>,
}

impl ModelConfig {
    /// The inline deployment (`provider`, `base_url`, ...) or the list; not
    /// both, not neither.
    pub fn deployment_list(&self) -> Result<Vec<DeploymentConfig>, String> {
        let inline =
            self.provider.is_some() || self.base_url.is_some() || self.upstream_model.is_some();
        match (inline, self.deployments.is_empty()) {
            (true, true) => Ok(vec![DeploymentConfig {
                provider: self.provider.ok_or("provider is missing")?,
                base_url: self.base_url.clone().ok_or("base_url is missing")?,
                upstream_model: self
                    .upstream_model
                    .clone()
                    .ok_or("upstream_model is missing")?,
                api_key_env: self.api_key_env.clone(),
                weight: 1,
                priority: 0,
                timeouts: None,
            }]),
            (false, false) => Ok(self.deployments.clone()),
            (true, false) => Err(
                "give either provider/base_url/upstream_model or deployments, not both".to_owned(),
            ),
            (false, true) => Err(
                "no deployment: give provider, base_url and upstream_model, or deployments"
                    .to_owned(),
            ),
        }
    }

    /// USD per million input tokens as configured ("0" when unset).
    pub fn input_price(&self) -> &str {
        self.input_price_per_mtok.as_deref().unwrap_or("0")
    }

    /// USD per million output tokens as configured ("0" when unset).
    pub fn output_price(&self) -> &str {
        self.output_price_per_mtok.as_deref().unwrap_or("0")
    }

    /// The APIs the alias serves, each once.
    pub fn api_list(&self) -> Vec<ClientApi> {
        let mut apis = Vec::new();
        for api in self.apis.as_deref().unwrap_or(&DEFAULT_APIS) {
            if !apis.contains(api) {
                apis.push(*api);
            }
        }
        apis
    }
}

/// Fallback triggers when a model names none.
pub const DEFAULT_FALLBACK_ON: [FallbackOn; 3] = [
    FallbackOn::RateLimited,
    FallbackOn::Unavailable,
    FallbackOn::Timeout,
];

/// One upstream endpoint serving a model. Several API keys for one provider
/// are simply several deployments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub provider: Provider,
    /// e.g. `https://api.openai.com/v1`; `/chat/completions` (OpenAI) or
    /// `/messages` (Anthropic) is appended.
    pub base_url: String,
    pub upstream_model: String,
    /// Name of the environment variable holding the provider API key. Keys
    /// never live in the config file.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Share of traffic among deployments of the same priority.
    #[serde(default = "one")]
    pub weight: u32,
    /// Lower first; a higher value is used only when every lower one failed
    /// or has its breaker open.
    #[serde(default)]
    pub priority: u32,
    /// Overrides of the router-wide timeouts for this deployment.
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
}

impl DeploymentConfig {
    /// The endpoint every chat and messages call goes to: `base_url` plus
    /// the provider's path.
    pub fn chat_url(&self) -> Result<reqwest::Url, String> {
        let path = match self.provider {
            Provider::Openai => "chat/completions",
            Provider::Anthropic => "messages",
        };
        self.url(path)
    }

    /// `base_url` plus `path` (`embeddings`, `messages/count_tokens`).
    pub fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        let base = self.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!(
                "base_url {:?} must start with http:// or https://",
                self.base_url
            ));
        }
        reqwest::Url::parse(&format!("{base}/{path}"))
            .map_err(|error| format!("base_url {:?} is not a valid URL: {error}", self.base_url))
    }
}

fn one() -> u32 {
    1
}
