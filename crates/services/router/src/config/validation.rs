//! Every problem of a router configuration at once, so an operator fixes a
//! file in one round instead of one start per mistake. Each problem names
//! its setting relative to the `router:` section (`models[2].fallbacks`).

use std::collections::HashSet;

use super::{ClientApi, Config, ModelConfig, Provider, Timeouts};

impl Config {
    /// What is wrong with this configuration on its own (no environment or
    /// file is read): empty or duplicate aliases, fallbacks to unknown
    /// models, deployments without a provider or with a bad `base_url`, bad
    /// price strings, zero timeouts, sizes and intervals.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let aliases: HashSet<&str> = self.models.iter().map(|m| m.alias.as_str()).collect();
        let mut seen = HashSet::new();
        for (index, model) in self.models.iter().enumerate() {
            let at = format!("models[{index}]");
            if model.alias.is_empty() {
                problems.push(format!("{at}.alias: must not be empty"));
            } else if !seen.insert(model.alias.as_str()) {
                problems.push(format!("{at}.alias: {:?} is configured twice", model.alias));
            }
            model_problems(model, index, &aliases, &mut problems);
        }
        timeout_problems(&self.timeouts, "timeouts", &mut problems);
        let retries = &self.retries;
        if retries.max_backoff_ms < retries.initial_backoff_ms {
            problems.push(format!(
                "retries.max_backoff_ms: {} is below initial_backoff_ms ({})",
                retries.max_backoff_ms, retries.initial_backoff_ms
            ));
        }
        let breaker = &self.breaker;
        if !(breaker.failure_rate > 0.0 && breaker.failure_rate <= 1.0) {
            problems.push(format!(
                "breaker.failure_rate: {} is not in (0, 1]",
                breaker.failure_rate
            ));
        }
        if breaker.window_secs == 0 {
            problems.push("breaker.window_secs: must be above 0".to_owned());
        }
        let usage = &self.usage;
        for (key, value) in [
            ("usage.max_bytes", usage.max_bytes),
            ("usage.segment_bytes", usage.segment_bytes),
            ("usage.flush_interval_ms", usage.flush_interval_ms),
            ("usage.batch_size", usage.batch_size as u64),
        ] {
            if value == 0 {
                problems.push(format!("{key}: must be above 0"));
            }
        }
        if usage.segment_bytes > usage.max_bytes {
            problems.push(format!(
                "usage.segment_bytes: {} exceeds max_bytes ({})",
                usage.segment_bytes, usage.max_bytes
            ));
        }
        problems.extend(
            self.audit
                .validate()
                .into_iter()
                .map(|problem| format!("audit.{problem}")),
        );
        problems
    }

    /// Provider key variables (`api_key_env`) that `is_set` says are unset
    /// or empty: the router would refuse to start without them.
    pub fn missing_key_vars(&self, is_set: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        for (index, model) in self.models.iter().enumerate() {
            // A model without a valid deployment list is reported by `validate`.
            let Ok(deployments) = model.deployment_list() else {
                continue;
            };
            for (number, deployment) in deployments.iter().enumerate() {
                if let Some(var) = &deployment.api_key_env
                    && !is_set(var)
                {
                    problems.push(format!(
                        "{}.api_key_env: environment variable {var} (provider key of model {:?}) is not set",
                        deployment_key(model, index, number),
                        model.alias
                    ));
                }
            }
        }
        problems
    }
}

/// `models[1]` for an inline deployment, `models[1].deployments[0]` otherwise.
fn deployment_key(model: &ModelConfig, index: usize, number: usize) -> String {
    if model.deployments.is_empty() {
        format!("models[{index}]")
    } else {
        format!("models[{index}].deployments[{number}]")
    }
}

fn model_problems(
    model: &ModelConfig,
    index: usize,
    aliases: &HashSet<&str>,
    problems: &mut Vec<String>,
) {
    let at = format!("models[{index}]");
    match model.deployment_list() {
        Err(problem) => problems.push(format!("{at}: {problem}")),
        Ok(deployments) => {
            for (number, deployment) in deployments.iter().enumerate() {
                let key = deployment_key(model, index, number);
                if let Err(problem) = deployment.chat_url() {
                    problems.push(format!("{key}.base_url: {problem}"));
                }
                if let Some(timeouts) = &deployment.timeouts {
                    timeout_problems(timeouts, &format!("{key}.timeouts"), problems);
                }
            }
        }
    }
    for (key, price) in [
        ("input_price_per_mtok", Some(model.input_price())),
        ("output_price_per_mtok", Some(model.output_price())),
        (
            "cache_read_price_per_mtok",
            model.cache_read_price_per_mtok.as_deref(),
        ),
        (
            "cache_write_price_per_mtok",
            model.cache_write_price_per_mtok.as_deref(),
        ),
    ] {
        if let Some(price) = price
            && let Err(problem) = llmgw_usd::parse_usd(price)
        {
            problems.push(format!("{at}.{key}: {price:?}: {problem}"));
        }
    }
    api_problems(model, &at, problems);
    for fallback in &model.fallbacks {
        if fallback == &model.alias {
            problems.push(format!("{at}.fallbacks: {fallback:?} is the model itself"));
        } else if !aliases.contains(fallback.as_str()) {
            problems.push(format!(
                "{at}.fallbacks: {fallback:?} is not a configured model"
            ));
        }
    }
}

/// An alias must serve some API, and embeddings only from deployments
/// that have an embeddings endpoint (OpenAI-compatible ones).
fn api_problems(model: &ModelConfig, at: &str, problems: &mut Vec<String>) {
    if model.apis.as_ref().is_some_and(Vec::is_empty) {
        problems.push(format!(
            "{at}.apis: must name at least one of chat, messages, embeddings"
        ));
    }
    if !model.api_list().contains(&ClientApi::Embeddings) {
        return;
    }
    let Ok(deployments) = model.deployment_list() else {
        return;
    };
    if deployments
        .iter()
        .any(|deployment| deployment.provider != Provider::Openai)
    {
        problems.push(format!(
            "{at}.apis: embeddings needs OpenAI-compatible deployments (Anthropic has no embeddings API)"
        ));
    }
}

fn timeout_problems(timeouts: &Timeouts, at: &str, problems: &mut Vec<String>) {
    for (key, value) in [
        ("connect_ms", timeouts.connect_ms),
        ("first_byte_ms", timeouts.first_byte_ms),
        ("idle_ms", timeouts.idle_ms),
    ] {
        if value == 0 {
            problems.push(format!(
                "{at}.{key}: must be above 0 (every call would time out)"
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    #[test]
    fn zero_sizes_and_timeouts_are_listed() {
        assert!(Config::default().validate().is_empty());
        let mut config = Config::default();
        config.timeouts.idle_ms = 0;
        config.usage.batch_size = 0;
        config.usage.segment_bytes = 2 << 30;
        config.breaker.failure_rate = 1.5;
        config.models = vec![ModelConfig {
            alias: "m".to_owned(),
            deployments: vec![super::super::DeploymentConfig {
                provider: super::super::Provider::Openai,
                base_url: "http://up/v1".to_owned(),
                upstream_model: "u".to_owned(),
                api_key_env: Some("K".to_owned()),
                weight: 1,
                priority: 0,
                timeouts: Some(Timeouts {
                    connect_ms: 0,
                    ..Timeouts::default()
                }),
            }],
            ..ModelConfig::default()
        }];
        assert_eq!(
            config.validate(),
            [
                "models[0].deployments[0].timeouts.connect_ms: must be above 0 (every call would time out)",
                "timeouts.idle_ms: must be above 0 (every call would time out)",
                "breaker.failure_rate: 1.5 is not in (0, 1]",
                "usage.batch_size: must be above 0",
                "usage.segment_bytes: 2147483648 exceeds max_bytes (1073741824)",
            ]
        );
        assert_eq!(
            config.missing_key_vars(&|_| false),
            [
                "models[0].deployments[0].api_key_env: environment variable K (provider key of model \"m\") is not set"
            ]
        );
        assert!(config.missing_key_vars(&|var| var == "K").is_empty());
    }

    #[test]
    fn apis_and_cache_prices_are_checked() {
        let mut config = Config {
            models: Vec::new(),
            ..Config::default()
        };
        config.models.push(ModelConfig {
            alias: "claude".to_owned(),
            provider: Some(Provider::Anthropic),
            base_url: Some("https://api.anthropic.com/v1".to_owned()),
            upstream_model: Some("claude-sonnet-4-5".to_owned()),
            apis: Some(vec![ClientApi::Messages, ClientApi::Embeddings]),
            cache_read_price_per_mtok: Some("0.30".to_owned()),
            cache_write_price_per_mtok: Some("three".to_owned()),
            ..ModelConfig::default()
        });
        let problems = config.validate();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("models[0].cache_write_price_per_mtok: \"three\""),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("models[0].apis: embeddings needs OpenAI-compatible"),
            "{problems:?}"
        );
        config.models[0].apis = Some(Vec::new());
        config.models[0].cache_write_price_per_mtok = None;
        assert_eq!(
            config.validate(),
            ["models[0].apis: must name at least one of chat, messages, embeddings"]
        );
        assert_eq!(
            ModelConfig::default().api_list(),
            [ClientApi::Chat, ClientApi::Messages]
        );
    }
}
