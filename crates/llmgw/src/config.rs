//! The one configuration file (`--config` / `LLMGW_CONFIG`, YAML) with
//! environment overrides: `LLMGW_EDGE__LISTEN=0.0.0.0:9090` sets
//! `edge.listen`. Secrets are never in the file: model API keys are named by
//! environment variable (`api_key_env`).

use std::path::Path;

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Yaml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub telemetry: llmgw_telemetry::Config,
    pub edge: llmgw_edge::Config,
    pub router: llmgw_router::Config,
    pub quota: llmgw_quota::Config,
    pub billing: llmgw_billing::Config,
    pub mock_upstream: llmgw_mock_upstream::Config,
}

/// Nothing: every section has defaults. Figment needs a base to merge onto.
#[derive(Serialize)]
struct Empty {}

impl GatewayConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<GatewayConfig> {
        let mut figment = Figment::from(Serialized::defaults(Empty {}));
        if let Some(path) = path {
            anyhow::ensure!(path.exists(), "config file {} not found", path.display());
            figment = figment.merge(Yaml::file_exact(path));
        }
        // LLMGW_CONFIG names the file; LLMGW_ADMIN_TOKEN / LLMGW_ADMIN_URL
        // belong to the admin commands: none of them is a config key.
        figment
            .merge(Env::prefixed("LLMGW_").split("__").ignore(&[
                "config",
                "admin_token",
                "admin_url",
            ]))
            .extract()
            .with_context(|| match path {
                Some(path) => format!("invalid configuration in {}", path.display()),
                None => "invalid configuration in LLMGW_* environment variables".to_owned(),
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    /// The commented example operators copy must stay loadable: every
    /// section denies unknown fields, so a renamed setting breaks it.
    #[test]
    fn the_deploy_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/llmgw.example.yaml");
        let config: GatewayConfig = Figment::from(Serialized::defaults(Empty {}))
            .merge(Yaml::file_exact(&path))
            .extract()
            .unwrap();
        assert!(!config.router.models.is_empty());
        assert_eq!(config.quota.budget_sync_secs, 60);
        assert!(config.router.usage.spool_dir.is_some());
    }
}
