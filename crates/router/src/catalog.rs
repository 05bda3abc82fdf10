//! The model catalog: aliases clients use, mapped to the deployments that
//! serve them. Built once at start; API keys are read from the environment
//! then, so a missing key fails the start, not a request.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use llmgw_proto::router_v1::Model;

use crate::config::{ModelConfig, Provider};

/// One upstream endpoint serving one model.
#[derive(Debug)]
pub struct Deployment {
    pub alias: String,
    pub provider: Provider,
    /// `{base_url}/chat/completions`, parsed once (not per request).
    pub chat_url: reqwest::Url,
    pub upstream_model: String,
    /// `"{provider}/{upstream_model}"`, the name reported in usage.
    pub name: String,
    api_key: Option<String>,
    pub model: Model,
}

impl Deployment {
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }
}

#[derive(Debug, Default)]
pub struct Catalog {
    by_alias: HashMap<String, Arc<Deployment>>,
}

impl Catalog {
    pub fn from_config(models: &[ModelConfig]) -> anyhow::Result<Catalog> {
        let mut by_alias = HashMap::new();
        for model in models {
            let deployment = Deployment::from_config(model)
                .with_context(|| format!("model {:?}", model.alias))?;
            if by_alias
                .insert(model.alias.clone(), Arc::new(deployment))
                .is_some()
            {
                bail!("model alias {:?} is configured twice", model.alias);
            }
        }
        Ok(Catalog { by_alias })
    }

    pub fn resolve(&self, alias: &str) -> Option<&Arc<Deployment>> {
        self.by_alias.get(alias)
    }

    /// Every alias, sorted, for `ListModels`.
    pub fn models(&self) -> Vec<Model> {
        let mut models: Vec<Model> = self
            .by_alias
            .values()
            .map(|deployment| deployment.model.clone())
            .collect();
        models.sort_by(|a, b| a.alias.cmp(&b.alias));
        models
    }
}

impl Deployment {
    fn from_config(config: &ModelConfig) -> anyhow::Result<Deployment> {
        if config.alias.is_empty() {
            bail!("alias must not be empty");
        }
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("base_url must start with http:// or https://");
        }
        for price in [&config.input_price_per_mtok, &config.output_price_per_mtok] {
            check_decimal(price).with_context(|| format!("price {price:?}"))?;
        }
        let api_key = match &config.api_key_env {
            None => None,
            Some(var) => Some(
                std::env::var(var)
                    .ok()
                    .filter(|key| !key.is_empty())
                    .with_context(|| format!("environment variable {var} is not set"))?,
            ),
        };
        Ok(Deployment {
            alias: config.alias.clone(),
            provider: config.provider,
            chat_url: reqwest::Url::parse(&format!("{base}/chat/completions"))
                .context("base_url is not a valid URL")?,
            upstream_model: config.upstream_model.clone(),
            name: format!("{}/{}", config.provider.as_str(), config.upstream_model),
            api_key,
            model: Model {
                alias: config.alias.clone(),
                owned_by: config
                    .owned_by
                    .clone()
                    .unwrap_or_else(|| config.provider.as_str().to_owned()),
                max_prompt_chars: config.max_prompt_chars,
                max_output_tokens: config.max_output_tokens,
                input_price_per_mtok: config.input_price_per_mtok.clone(),
                output_price_per_mtok: config.output_price_per_mtok.clone(),
            },
        })
    }
}

/// Prices are exact decimals: digits with at most one point, no exponent.
fn check_decimal(text: &str) -> anyhow::Result<()> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if digits(whole) && digits(fraction) {
        Ok(())
    } else {
        bail!("not a non-negative decimal number")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for good in ["0", "2.5", "0.15", "10"] {
            assert!(check_decimal(good).is_ok(), "{good}");
        }
        for bad in ["", "-1", "1e3", "1.", ".5", "abc", "1.2.3"] {
            assert!(check_decimal(bad).is_err(), "{bad}");
        }
    }
}
