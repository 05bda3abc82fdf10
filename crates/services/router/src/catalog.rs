//! The model catalog: aliases clients use, each served by one or more
//! deployments, with fallbacks. Built once at start; API keys are read from
//! the environment then, so a missing key fails the start, not a request.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use llmgw_proto::router_v1::{Api, Model, Usage};

use crate::balance::{self, Candidate, LatencyEwma, Strategy};
use crate::breaker::{Breaker, BreakerConfig};
use crate::config::{
    ClientApi, DEFAULT_FALLBACK_ON, DeploymentConfig, FallbackOn, ModelConfig, Provider, Timeouts,
};
use crate::metrics::Metrics;

/// One upstream endpoint serving one model, with its own health.
pub struct Deployment {
    pub provider: Provider,
    /// The endpoint URL, parsed once (not per request).
    pub chat_url: reqwest::Url,
    /// OpenAI-compatible deployments: `{base_url}/embeddings`.
    pub embeddings_url: Option<reqwest::Url>,
    /// Anthropic deployments: `{base_url}/messages/count_tokens`.
    pub count_tokens_url: Option<reqwest::Url>,
    pub upstream_model: String,
    /// `"{alias}#{index}:{provider}/{upstream_model}"`: unique, for logs,
    /// metrics and usage records.
    pub name: String,
    pub weight: u32,
    pub priority: u32,
    pub timeouts: Timeouts,
    pub breaker: Breaker,
    pub latency: LatencyEwma,
    api_key: Option<String>,
}

impl Deployment {
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }
}

/// An alias and everything needed to serve it.
pub struct Route {
    pub alias: String,
    pub deployments: Vec<Arc<Deployment>>,
    pub strategy: Strategy,
    pub fallbacks: Vec<String>,
    pub fallback_on: Vec<FallbackOn>,
    pub model: Model,
    /// `model`'s prices, parsed once: what usage events are charged at.
    pub prices: Prices,
    /// The client APIs the alias serves.
    pub apis: Vec<ClientApi>,
}

/// Nano-USD (1e-9 USD) per million tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prices {
    pub input_nano_per_mtok: u64,
    pub output_nano_per_mtok: u64,
    /// Prompt tokens read from the provider's cache; `None`: input price.
    pub cache_read_nano_per_mtok: Option<u64>,
    /// Prompt tokens written to the provider's cache; `None`: input price.
    pub cache_write_nano_per_mtok: Option<u64>,
}

impl Prices {
    /// Prompt tokens at the input price plus completion tokens at the
    /// output price, each rounded up to a whole nano-USD; reasoning tokens
    /// are part of the completion.
    pub fn cost_nano_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        llmgw_usd::cost_nano_usd(prompt_tokens, self.input_nano_per_mtok).saturating_add(
            llmgw_usd::cost_nano_usd(completion_tokens, self.output_nano_per_mtok),
        )
    }

    /// What `usage` costs. Of the prompt, cache reads (`cached_tokens`) and
    /// cache writes (`cache_creation_tokens`) are charged at their cache
    /// prices where the catalog gives them, the rest at the input price;
    /// each of the (up to four) products is rounded up to a whole nano-USD.
    /// Without cache prices this is exactly [`Self::cost_nano_usd`].
    pub fn cost_of(&self, usage: &Usage) -> u64 {
        let prompt = usage.prompt_tokens;
        let read = usage.cached_tokens.min(prompt);
        let write = usage.cache_creation_tokens.min(prompt - read);
        let mut at_input = prompt - read - write;
        let mut cost = 0u64;
        for (tokens, price) in [
            (read, self.cache_read_nano_per_mtok),
            (write, self.cache_write_nano_per_mtok),
        ] {
            match price {
                Some(price) => {
                    cost = cost.saturating_add(llmgw_usd::cost_nano_usd(tokens, price));
                }
                None => at_input += tokens,
            }
        }
        cost.saturating_add(self.cost_nano_usd(at_input, usage.completion_tokens))
    }
}

/// Every alias the router serves, each with its deployments.
#[derive(Default)]
pub struct Catalog {
    by_alias: HashMap<String, Arc<Route>>,
}

/// What deployments take from the router-wide configuration.
pub struct Defaults<'a> {
    pub timeouts: Timeouts,
    pub breaker: &'a BreakerConfig,
    pub metrics: &'a Metrics,
}

impl Catalog {
    /// Builds every route; reads each deployment's `api_key_env` now, so a
    /// missing key fails here. Registers a breaker-state gauge per
    /// deployment in `defaults.metrics`.
    pub fn from_config(models: &[ModelConfig], defaults: &Defaults<'_>) -> anyhow::Result<Catalog> {
        let mut by_alias = HashMap::new();
        for model in models {
            let route = Route::from_config(model, defaults)
                .with_context(|| format!("model {:?}", model.alias))?;
            if by_alias
                .insert(model.alias.clone(), Arc::new(route))
                .is_some()
            {
                bail!("model alias {:?} is configured twice", model.alias);
            }
        }
        for route in by_alias.values() {
            for fallback in &route.fallbacks {
                if !by_alias.contains_key(fallback) || fallback == &route.alias {
                    bail!(
                        "model {:?}: fallback {fallback:?} is not another configured model",
                        route.alias
                    );
                }
            }
        }
        Ok(Catalog { by_alias })
    }

    /// The route of `alias`, if it is configured.
    pub fn resolve(&self, alias: &str) -> Option<&Arc<Route>> {
        self.by_alias.get(alias)
    }

    /// The route of `alias` if it serves `api`.
    pub fn resolve_for(&self, alias: &str, api: ClientApi) -> Option<&Arc<Route>> {
        self.resolve(alias).filter(|route| route.serves(api))
    }

    /// Every alias, sorted, for `ListModels`.
    pub fn models(&self) -> Vec<Model> {
        let mut models: Vec<Model> = self
            .by_alias
            .values()
            .map(|route| route.model.clone())
            .collect();
        models.sort_by(|a, b| a.alias.cmp(&b.alias));
        models
    }
}

impl Route {
    /// The order in which one request tries this route's deployments:
    /// by priority, then per the route's strategy (see [`balance::order`]).
    /// Breakers are not consulted here: the caller skips open ones as it
    /// goes, so a deployment that closes meanwhile is not missed.
    pub fn deployment_order(&self, rng: &mut fastrand::Rng) -> Vec<usize> {
        let candidates: Vec<Candidate<'_>> = self
            .deployments
            .iter()
            .map(|deployment| Candidate {
                weight: deployment.weight,
                priority: deployment.priority,
                latency: &deployment.latency,
            })
            .collect();
        balance::order(self.strategy, &candidates, rng)
    }

    pub fn serves(&self, api: ClientApi) -> bool {
        self.apis.contains(&api)
    }

    fn from_config(config: &ModelConfig, defaults: &Defaults<'_>) -> anyhow::Result<Route> {
        if config.alias.is_empty() {
            bail!("alias must not be empty");
        }
        let deployments = config.deployment_list().map_err(anyhow::Error::msg)?;
        let input_price = config.input_price().to_owned();
        let output_price = config.output_price().to_owned();
        let optional = |price: &Option<String>| {
            price
                .as_deref()
                .map(llmgw_usd::parse_usd)
                .transpose()
                .map_err(anyhow::Error::msg)
        };
        let prices = Prices {
            input_nano_per_mtok: llmgw_usd::parse_usd(&input_price).map_err(anyhow::Error::msg)?,
            output_nano_per_mtok: llmgw_usd::parse_usd(&output_price)
                .map_err(anyhow::Error::msg)?,
            cache_read_nano_per_mtok: optional(&config.cache_read_price_per_mtok)?,
            cache_write_nano_per_mtok: optional(&config.cache_write_price_per_mtok)?,
        };
        let apis = config.api_list();
        if apis.is_empty() {
            bail!("apis must name at least one API");
        }
        let deployments = deployments
            .iter()
            .enumerate()
            .map(|(index, deployment)| {
                Deployment::from_config(&config.alias, index, deployment, defaults)
                    .with_context(|| format!("deployment {index}"))
                    .map(Arc::new)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if apis.contains(&ClientApi::Embeddings)
            && deployments.iter().any(|d| d.embeddings_url.is_none())
        {
            bail!("embeddings needs OpenAI-compatible deployments");
        }
        let owned_by = config
            .owned_by
            .clone()
            .unwrap_or_else(|| deployments[0].provider.as_str().to_owned());
        Ok(Route {
            alias: config.alias.clone(),
            deployments,
            strategy: config.strategy,
            fallbacks: config.fallbacks.clone(),
            fallback_on: config
                .fallback_on
                .clone()
                .unwrap_or_else(|| DEFAULT_FALLBACK_ON.to_vec()),
            model: Model {
                alias: config.alias.clone(),
                owned_by,
                max_prompt_chars: config.max_prompt_chars,
                max_output_tokens: config.max_output_tokens,
                input_price_per_mtok: input_price,
                output_price_per_mtok: output_price,
                apis: apis.iter().map(|api| api_proto(*api).into()).collect(),
                cache_read_price_per_mtok: config
                    .cache_read_price_per_mtok
                    .clone()
                    .unwrap_or_default(),
                cache_write_price_per_mtok: config
                    .cache_write_price_per_mtok
                    .clone()
                    .unwrap_or_default(),
            },
            prices,
            apis,
        })
    }
}

impl Deployment {
    fn from_config(
        alias: &str,
        index: usize,
        config: &DeploymentConfig,
        defaults: &Defaults<'_>,
    ) -> anyhow::Result<Deployment> {
        let chat_url = config.chat_url().map_err(anyhow::Error::msg)?;
        let (embeddings_url, count_tokens_url) = match config.provider {
            Provider::Openai => (Some(config.url("embeddings")), None),
            Provider::Anthropic => (None, Some(config.url("messages/count_tokens"))),
        };
        let embeddings_url = embeddings_url.transpose().map_err(anyhow::Error::msg)?;
        let count_tokens_url = count_tokens_url.transpose().map_err(anyhow::Error::msg)?;
        let api_key = match &config.api_key_env {
            None => None,
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|key| !key.is_empty())
                    .with_context(|| format!("environment variable {var} is not set"))?,
            ),
        };
        let name = format!(
            "{alias}#{index}:{}/{}",
            config.provider.as_str(),
            config.upstream_model
        );
        let gauge = defaults.metrics.breaker_gauge(alias, &name);
        Ok(Deployment {
            provider: config.provider,
            chat_url,
            embeddings_url,
            count_tokens_url,
            upstream_model: config.upstream_model.clone(),
            breaker: Breaker::new(name.clone(), defaults.breaker.clone(), gauge),
            name,
            weight: config.weight,
            priority: config.priority,
            timeouts: config.timeouts.unwrap_or(defaults.timeouts),
            latency: LatencyEwma::new(),
            api_key,
        })
    }
}

/// The wire enum of a configured API.
pub fn api_proto(api: ClientApi) -> Api {
    match api {
        ClientApi::Chat => Api::Chat,
        ClientApi::Messages => Api::Messages,
        ClientApi::Embeddings => Api::Embeddings,
    }
}

/// The configured API of a wire value (`API_UNSPECIFIED`: chat, what edges
/// older than the field send).
pub fn api_of(api: Api) -> ClientApi {
    match api {
        Api::Unspecified | Api::Chat => ClientApi::Chat,
        Api::Messages => ClientApi::Messages,
        Api::Embeddings => ClientApi::Embeddings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_tokens_cost_their_prices_or_the_input_price() {
        let usage = Usage {
            prompt_tokens: 1_000_000 + 2_000_000 + 3_000_000,
            cached_tokens: 2_000_000,
            cache_creation_tokens: 3_000_000,
            completion_tokens: 1_000_000,
            ..Usage::default()
        };
        let mut prices = Prices {
            input_nano_per_mtok: 3_000_000_000,
            output_nano_per_mtok: 15_000_000_000,
            ..Prices::default()
        };
        // No cache prices: every prompt token at the input price, exactly
        // as before cache prices existed.
        assert_eq!(
            prices.cost_of(&usage),
            prices.cost_nano_usd(6_000_000, 1_000_000)
        );
        prices.cache_read_nano_per_mtok = Some(300_000_000);
        prices.cache_write_nano_per_mtok = Some(3_750_000_000);
        assert_eq!(
            prices.cost_of(&usage),
            3_000_000_000 + 2 * 300_000_000 + 3 * 3_750_000_000 + 15_000_000_000
        );
        // Counts that do not add up (more cached than prompt) never bill
        // more prompt tokens than there were.
        let odd = Usage {
            prompt_tokens: 10,
            cached_tokens: 50,
            cache_creation_tokens: 50,
            ..Usage::default()
        };
        assert_eq!(
            prices.cost_of(&odd),
            llmgw_usd::cost_nano_usd(10, 300_000_000)
        );
    }
}
