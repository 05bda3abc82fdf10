//! First-run defaults: with no models and no keys configured, `llmgw all`
//! serves a clearly labelled demo model backed by an in-process mock
//! upstream, plus real providers whose API keys are in the environment.

use std::net::SocketAddr;

use llmgw_edge::ApiKeyConfig;
use llmgw_router::{ClientApi, ModelConfig, Provider};

/// The development key accepted in demo mode only.
pub const DEV_KEY: &str = "sk-llmgw-dev-0000000000000000";
pub const DEMO_MODEL: &str = "demo";

/// Real models offered when their provider's key is in the environment:
/// (env var, base URL, model, USD per million input / output tokens). Prices
/// are list prices when this was written; configure your own for billing.
const PROVIDER_MODELS: [(&str, &str, &str, &str, &str); 5] = [
    (
        "OPENAI_API_KEY",
        "https://api.openai.com/v1",
        "gpt-4o-mini",
        "0.15",
        "0.60",
    ),
    (
        "OPENAI_API_KEY",
        "https://api.openai.com/v1",
        "gpt-4o",
        "2.50",
        "10.00",
    ),
    (
        "OPENAI_API_KEY",
        "https://api.openai.com/v1",
        "gpt-4.1-mini",
        "0.40",
        "1.60",
    ),
    (
        "DEEPSEEK_API_KEY",
        "https://api.deepseek.com/v1",
        "deepseek-chat",
        "0.28",
        "0.42",
    ),
    (
        "DEEPSEEK_API_KEY",
        "https://api.deepseek.com/v1",
        "deepseek-reasoner",
        "0.28",
        "0.42",
    ),
];

pub fn demo_model(mock: SocketAddr) -> ModelConfig {
    ModelConfig {
        alias: DEMO_MODEL.to_owned(),
        provider: Some(Provider::Openai),
        base_url: Some(format!("http://{mock}/v1")),
        upstream_model: Some("mock".to_owned()),
        max_prompt_chars: 100_000,
        max_output_tokens: 4_096,
        owned_by: Some("llmgw-demo (mock upstream, not a real model)".to_owned()),
        // The mock answers all three, so the demo shows each.
        apis: Some(vec![
            ClientApi::Chat,
            ClientApi::Messages,
            ClientApi::Embeddings,
        ]),
        ..ModelConfig::default()
    }
}

/// Real provider models available through keys found in the environment.
pub fn provider_models() -> Vec<ModelConfig> {
    PROVIDER_MODELS
        .iter()
        .filter(|(env, ..)| std::env::var(env).is_ok_and(|key| !key.is_empty()))
        .map(|(env, base_url, model, input, output)| ModelConfig {
            alias: (*model).to_owned(),
            provider: Some(Provider::Openai),
            base_url: Some((*base_url).to_owned()),
            upstream_model: Some((*model).to_owned()),
            api_key_env: Some((*env).to_owned()),
            input_price_per_mtok: Some((*input).to_owned()),
            output_price_per_mtok: Some((*output).to_owned()),
            ..ModelConfig::default()
        })
        .collect()
}

pub fn dev_key() -> ApiKeyConfig {
    ApiKeyConfig {
        key: DEV_KEY.to_owned(),
        tenant: "demo".to_owned(),
        name: Some("dev".to_owned()),
    }
}
