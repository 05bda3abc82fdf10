//! Router configuration: where to listen, the model catalog, upstream timeouts.

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address (used by the binary; `run` takes a bound listener).
    pub listen: SocketAddr,
    pub models: Vec<ModelConfig>,
    pub timeouts: Timeouts,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            models: Vec::new(),
            timeouts: Timeouts::default(),
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
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
        }
    }
}

/// One model alias clients may ask for, and the deployment that serves it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub alias: String,
    pub provider: Provider,
    /// e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub upstream_model: String,
    /// Name of the environment variable holding the provider API key. Keys
    /// never live in the config file.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Longest prompt accepted, in characters; 0 = no limit.
    #[serde(default)]
    pub max_prompt_chars: u64,
    /// Largest `max_tokens` accepted; 0 = no limit.
    #[serde(default)]
    pub max_output_tokens: u64,
    /// USD per million input tokens, as a decimal string.
    #[serde(default = "zero_price")]
    pub input_price_per_mtok: String,
    /// USD per million output tokens, as a decimal string.
    #[serde(default = "zero_price")]
    pub output_price_per_mtok: String,
    #[serde(default)]
    pub owned_by: Option<String>,
}

fn zero_price() -> String {
    "0".to_owned()
}
