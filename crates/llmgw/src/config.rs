//! The one place configuration is loaded. Secrets are never in the file:
//! model API keys are named by environment variable (`api_key_env`).
//!
//! Layers, each overriding the ones before it:
//!
//! 1. built-in defaults (every section's `Default`, which reads nothing);
//! 2. the YAML file (`--config` / `LLMGW_CONFIG`), if any;
//! 3. the well-known variables other tools share, when set and not empty:
//!    `DATABASE_URL` → `billing.database_url`, `REDIS_URL` →
//!    `quota.redis_url`, `OTEL_EXPORTER_OTLP_ENDPOINT` →
//!    `telemetry.otlp_endpoint` (a platform sets them per environment; one
//!    file then serves every environment);
//! 4. `LLMGW_<SECTION>__<KEY>` overrides: `LLMGW_EDGE__LISTEN=0.0.0.0:9090`
//!    sets `edge.listen`, `LLMGW_BILLING__DATABASE_URL` beats `DATABASE_URL`.
//!
//! The result is then validated as a whole: a bad configuration fails with
//! every problem listed, before any service starts.

mod problems;
#[cfg(test)]
mod tests;

use std::path::Path;

use figment::Figment;
use figment::providers::{Format as _, Serialized, Yaml};
use figment::value::Value;
use serde::{Deserialize, Serialize};

pub use problems::{InvalidConfig, Scope};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub telemetry: llmgw_telemetry::Config,
    pub edge: llmgw_edge::Config,
    pub router: llmgw_router::Config,
    pub quota: llmgw_quota::Config,
    pub billing: llmgw_billing::Config,
    pub mock_upstream: llmgw_mock_upstream::Config,
    /// Content policies: the default for tenants without one of their own,
    /// the policies and word lists. Edge, router and billing each get a copy
    /// ([`share_policy`](Self::share_policy)); billing serves it, with what
    /// the admin API added, to every replica.
    pub policy: llmgw_policy::PolicySource,
}

/// Layer 3: variable → setting.
const WELL_KNOWN_ENV: [(&str, &str); 3] = [
    ("DATABASE_URL", "billing.database_url"),
    ("REDIS_URL", "quota.redis_url"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
];

/// Layer 4's prefix; `__` separates a section from its key.
const OVERRIDE_PREFIX: &str = "LLMGW_";

/// `LLMGW_CONFIG` names the file; `LLMGW_ADMIN_TOKEN` / `LLMGW_ADMIN_URL`
/// belong to the admin commands: none of them is a setting.
const NOT_SETTINGS: [&str; 3] = ["config", "admin_token", "admin_url"];

/// Nothing: every section has defaults. Figment needs a base to merge onto.
#[derive(Serialize)]
struct Empty {}

impl GatewayConfig {
    /// Loads the configuration from `path` and this process's environment
    /// and validates it for the services `scope` runs.
    pub fn load(path: Option<&Path>, scope: Scope) -> anyhow::Result<GatewayConfig> {
        // Variables that are not UTF-8 cannot be settings; skip, not panic.
        let env: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Ok(GatewayConfig::load_from(path, &env, scope)?)
    }

    /// `load` with the environment given: what tests call.
    pub fn load_from(
        path: Option<&Path>,
        env: &[(String, String)],
        scope: Scope,
    ) -> Result<GatewayConfig, InvalidConfig> {
        let source = match path {
            Some(path) => format!("the configuration in {}", path.display()),
            None => "the configuration in LLMGW_* environment variables".to_owned(),
        };
        let invalid = |problems| InvalidConfig {
            source: source.clone(),
            problems,
        };
        if let Some(path) = path
            && let Err(error) = std::fs::metadata(path)
        {
            return Err(invalid(vec![format!(
                "config file {}: {error}",
                path.display()
            )]));
        }
        let mut config: GatewayConfig = layers(path, env)
            .extract()
            .map_err(|error| invalid(error.into_iter().map(|error| error.to_string()).collect()))?;
        let is_set = |name: &str| {
            env.iter()
                .any(|(key, value)| key == name && !value.is_empty())
        };
        config.share_policy();
        let problems = config.problems(scope, &is_set);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(invalid(problems))
        }
    }
}

impl GatewayConfig {
    /// Copies the top-level `policy:` section into the edge, router and
    /// billing sections (their `policy` fields are never read from the file).
    /// Loading does it; `start_all` and `start_one` do it again, so a
    /// configuration built in code needs only `policy` set.
    pub fn share_policy(&mut self) {
        self.edge.policy.clone_from(&self.policy);
        self.router.policy.clone_from(&self.policy);
        self.billing.policy.clone_from(&self.policy);
    }
}

/// The four layers, lowest first.
fn layers(path: Option<&Path>, env: &[(String, String)]) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(Empty {}));
    if let Some(path) = path {
        figment = figment.merge(Yaml::file_exact(path));
    }
    for (name, setting) in WELL_KNOWN_ENV {
        if let Some((_, value)) = env
            .iter()
            .find(|(key, value)| key == name && !value.is_empty())
        {
            figment = figment.merge(Serialized::default(setting, value));
        }
    }
    for (key, value) in env {
        if let Some(setting) = override_setting(key) {
            // As figment's own `Env` provider does: "5" is a number,
            // "true" a boolean, "[a, b]" a list, anything else a string.
            let value: Value = value.parse().unwrap_or_else(|never| match never {});
            figment = figment.merge(Serialized::default(&setting, value));
        }
    }
    figment
}

/// `LLMGW_EDGE__LISTEN` → `edge.listen` (the prefix in any case, as before);
/// `None` for other variables and for those naming no setting.
fn override_setting(key: &str) -> Option<String> {
    let prefix = key.get(..OVERRIDE_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(OVERRIDE_PREFIX) {
        return None;
    }
    let setting = key[OVERRIDE_PREFIX.len()..]
        .trim()
        .to_ascii_lowercase()
        .replace("__", ".");
    if NOT_SETTINGS.contains(&setting.as_str()) || setting.split('.').any(str::is_empty) {
        return None;
    }
    Some(setting)
}
