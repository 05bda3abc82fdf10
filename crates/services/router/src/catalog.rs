//! The model catalog: aliases clients use, each served by one or more
//! deployments, with fallbacks. Built once at start; API keys are read from
//! the environment then, so a missing key fails the start, not a request.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use llmgw_proto::router_v1::Model;

use crate::balance::{self, Candidate, LatencyEwma, Strategy};
use crate::breaker::{Breaker, BreakerConfig};
use crate::config::{
    DEFAULT_FALLBACK_ON, DeploymentConfig, FallbackOn, ModelConfig, Provider, Timeouts,
};
use crate::metrics::Metrics;

/// One upstream endpoint serving one model, with its own health.
pub struct Deployment {
    pub provider: Provider,
    /// The endpoint URL, parsed once (not per request).
    pub chat_url: reqwest::Url,
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
}

/// Nano-USD (1e-9 USD) per million tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prices {
    pub input_nano_per_mtok: u64,
    pub output_nano_per_mtok: u64,
}

impl Prices {
    /// Prompt tokens at the input price plus completion tokens at the
    /// output price, each rounded up to a whole nano-USD. Cached prompt
    /// tokens are charged at the input price (provider cache discounts are
    /// not modelled); reasoning tokens are part of the completion.
    pub fn cost_nano_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        llmgw_usd::cost_nano_usd(prompt_tokens, self.input_nano_per_mtok).saturating_add(
            llmgw_usd::cost_nano_usd(completion_tokens, self.output_nano_per_mtok),
        )
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

    fn from_config(config: &ModelConfig, defaults: &Defaults<'_>) -> anyhow::Result<Route> {
        if config.alias.is_empty() {
            bail!("alias must not be empty");
        }
        let deployments = config.deployment_list().map_err(anyhow::Error::msg)?;
        let input_price = config.input_price().to_owned();
        let output_price = config.output_price().to_owned();
        let prices = Prices {
            input_nano_per_mtok: llmgw_usd::parse_usd(&input_price).map_err(anyhow::Error::msg)?,
            output_nano_per_mtok: llmgw_usd::parse_usd(&output_price)
                .map_err(anyhow::Error::msg)?,
        };
        let deployments = deployments
            .iter()
            .enumerate()
            .map(|(index, deployment)| {
                Deployment::from_config(&config.alias, index, deployment, defaults)
                    .with_context(|| format!("deployment {index}"))
                    .map(Arc::new)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
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
            },
            prices,
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
