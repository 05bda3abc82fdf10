//! Validation of the whole configuration: each section's own checks
//! (`Config::validate` in every service crate, relative to its section), the
//! checks across sections only the binary can make (URLs, listen addresses
//! shared in one process, limits for models nobody serves), and, for the
//! services this process runs, what they read at start (provider key
//! variables, the admin token).

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;

use super::GatewayConfig;
use crate::Role;

/// Which services this process runs: the environment and files they read at
/// start are checked only for them (an edge needs no provider keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `llmgw all`: edge and router, plus quota and billing unless the edge
    /// is pointed at ones elsewhere (as `start_all` decides).
    All,
    One(Role),
    /// Admin commands and `migrate`: the configuration itself only.
    NoService,
}

/// A configuration that cannot run, with every problem found.
#[derive(Debug)]
pub struct InvalidConfig {
    /// Where the configuration came from, for the first line.
    pub source: String,
    /// One line each, naming the setting: `router.models[1].fallbacks: ...`.
    pub problems: Vec<String>,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let plural = if count == 1 { "" } else { "s" };
        write!(f, "{} has {count} problem{plural}:", self.source)?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidConfig {}

impl GatewayConfig {
    /// Every problem, each naming its setting. `is_set` says whether an
    /// environment variable is set and not empty.
    pub fn problems(&self, scope: Scope, is_set: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut problems = Vec::new();
        let sections = [
            ("telemetry", self.telemetry.validate()),
            ("edge", self.edge.validate()),
            ("router", self.router.validate()),
            ("quota", self.quota.validate()),
            ("billing", self.billing.validate()),
        ];
        for (section, found) in sections {
            problems.extend(
                found
                    .into_iter()
                    .map(|problem| format!("{section}.{problem}")),
            );
        }
        self.url_problems(&mut problems);
        policy_problems(&self.policy, &mut problems);
        if !(1..=10).contains(&self.router.policy_refresh_secs) {
            problems.push("router.policy_refresh_secs: must be 1 to 10".to_owned());
        }
        self.limited_model_problems(&mut problems);
        let services = self.services(scope);
        if services.contains(&Role::Router) {
            problems.extend(
                self.router
                    .missing_key_vars(is_set)
                    .into_iter()
                    .map(|problem| format!("router.{problem}")),
            );
        }
        if services.contains(&Role::Billing)
            && let Some(problem) = self.billing.admin_token_problem()
        {
            problems.push(format!("billing: {problem}"));
        }
        listen_conflicts(&self.listeners(&services), &mut problems);
        problems
    }

    /// The services `scope` starts, as `start_all` / `start_one` do.
    fn services(&self, scope: Scope) -> Vec<Role> {
        match scope {
            Scope::NoService => Vec::new(),
            Scope::One(role) => vec![role],
            Scope::All => {
                let mut services = vec![Role::Edge, Role::Router];
                if self.edge.quota_url.is_none() {
                    services.push(Role::Quota);
                }
                if self.edge.billing_url.is_none() {
                    services.push(Role::Billing);
                }
                services
            }
        }
    }

    /// The sockets one process binds for `services`.
    fn listeners(&self, services: &[Role]) -> Vec<(&'static str, SocketAddr)> {
        let mut listeners = Vec::new();
        for role in services {
            match role {
                Role::Edge => listeners.push(("edge.listen", self.edge.listen)),
                Role::Router => listeners.push(("router.listen", self.router.listen)),
                Role::Quota => listeners.push(("quota.listen", self.quota.listen)),
                Role::Billing => {
                    listeners.push(("billing.listen", self.billing.listen));
                    listeners.push(("billing.admin_listen", self.billing.admin_listen));
                }
                // Given on the command line, not in the configuration.
                Role::MockUpstream => {}
            }
        }
        listeners
    }

    fn url_problems(&self, problems: &mut Vec<String>) {
        let urls = [
            ("edge.router_url", Some(&self.edge.router_url)),
            ("edge.quota_url", self.edge.quota_url.as_ref()),
            ("edge.billing_url", self.edge.billing_url.as_ref()),
            ("router.billing_url", self.router.billing_url.as_ref()),
            ("quota.billing_url", self.quota.billing_url.as_ref()),
            (
                "telemetry.otlp_endpoint",
                self.telemetry.otlp_endpoint.as_ref(),
            ),
        ];
        for (key, url) in urls {
            if let Some(url) = url
                && let Err(problem) = http_url(url)
            {
                problems.push(format!("{key}: {url:?} {problem}"));
            }
        }
    }

    /// Per-model limits for a model the router does not serve are a typo
    /// that would leave the real model unlimited. Without models (demo mode,
    /// or a file for the quota service alone) there is nothing to hold them to.
    fn limited_model_problems(&self, problems: &mut Vec<String>) {
        if self.router.models.is_empty() {
            return;
        }
        let aliases: HashSet<&str> = self
            .router
            .models
            .iter()
            .map(|model| model.alias.as_str())
            .collect();
        for alias in self.quota.limits.models.keys() {
            if !aliases.contains(alias.as_str()) {
                problems.push(format!(
                    "quota.limits.models.{alias:?}: not a model in router.models"
                ));
            }
        }
    }
}

/// The `policy:` section compiled as the services will compile it, every
/// policy on its own so that each broken one is reported.
fn policy_problems(source: &llmgw_policy::PolicySource, problems: &mut Vec<String>) {
    for (name, spec) in &source.policies {
        if let Err(error) = llmgw_policy::Policy::compile(name, spec, &source.word_lists, b"") {
            problems.push(format!("policy.policies.{name:?}: {error}"));
        }
    }
    if !source.default.is_empty() && !source.policies.contains_key(&source.default) {
        problems.push(format!(
            "policy.default: {:?} is not a policy in policy.policies",
            source.default
        ));
    }
    for (tenant, name) in &source.tenants {
        if !source.policies.contains_key(name) {
            problems.push(format!(
                "policy.tenants.{tenant:?}: {name:?} is not a policy in policy.policies"
            ));
        }
    }
}

/// A gRPC or OTLP endpoint: `http(s)://host[:port]`.
fn http_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| format!("is not a URL: {error}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must start with http:// or https://".to_owned());
    }
    if parsed.host().is_none() {
        return Err("has no host".to_owned());
    }
    Ok(())
}

/// Two listeners of one process on one port: the second bind would fail.
/// Port 0 (any free port) never conflicts.
fn listen_conflicts(listeners: &[(&str, SocketAddr)], problems: &mut Vec<String>) {
    for (index, (key, address)) in listeners.iter().enumerate() {
        let earlier = listeners[..index].iter().find(|(_, other)| {
            address.port() != 0
                && other.port() == address.port()
                && (other.ip() == address.ip()
                    || other.ip().is_unspecified()
                    || address.ip().is_unspecified())
        });
        if let Some((other_key, other)) = earlier {
            problems.push(format!(
                "{key}: {address} conflicts with {other_key} ({other}) in one process"
            ));
        }
    }
}
