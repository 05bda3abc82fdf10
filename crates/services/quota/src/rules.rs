//! The limit tables, checked once at start, and the buckets they give a
//! request.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use llmgw_limiter::{Bucket, Limits, Scope};

use crate::config::{LimitTables, LimitsConfig};

/// Whose limits a request counts against.
pub(crate) struct Subject<'a> {
    pub tenant: &'a str,
    pub key_id: &'a str,
    pub model: &'a str,
    /// Limits the request carries (from the accounts database).
    pub overrides: Overrides,
}

/// Limits carried by a request, per scope: each set field replaces the
/// config's limit of that kind for that scope; unset fields leave the
/// config's in force.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overrides {
    pub key: Limits,
    pub tenant: Limits,
}

pub(crate) struct Rules {
    default_key: Limits,
    default_tenant: Limits,
    keys: HashMap<String, Limits>,
    tenants: HashMap<String, Limits>,
    models: HashMap<String, Limits>,
}

impl Rules {
    /// No config entry limits anything: only a request's own limits can.
    pub fn limit_nobody(&self) -> bool {
        let none = Limits::default();
        self.default_key == none
            && self.default_tenant == none
            && self.keys.values().all(|limits| *limits == none)
            && self.tenants.values().all(|limits| *limits == none)
            && self.models.values().all(|limits| *limits == none)
    }

    /// Fails on the first invalid entry, naming it, so a typo in a budget
    /// stops the service at start instead of silently meaning "no budget".
    pub fn from_config(tables: &LimitTables) -> anyhow::Result<Rules> {
        Ok(Rules {
            default_key: limits(&tables.default_key)
                .context("quota.limits.default_key.monthly_budget_usd")?,
            default_tenant: limits(&tables.default_tenant)
                .context("quota.limits.default_tenant.monthly_budget_usd")?,
            keys: table(&tables.keys, "keys")?,
            tenants: table(&tables.tenants, "tenants")?,
            models: table(&tables.models, "models")?,
        })
    }

    /// The buckets `subject` is checked against: its key, its tenant, its
    /// key's use of the model, each only if it has a limit. Per scope and
    /// kind, a limit the request carries beats the config's entry for that
    /// key or tenant, which beats the config's default.
    pub fn buckets(&self, subject: &Subject<'_>) -> Vec<Bucket> {
        let mut buckets = Vec::with_capacity(3);
        let key = self.keys.get(subject.key_id).unwrap_or(&self.default_key);
        let key = overlay(&subject.overrides.key, key);
        push(&mut buckets, Scope::Key, subject.key_id.to_owned(), &key);
        let tenant = (self.tenants.get(subject.tenant)).unwrap_or(&self.default_tenant);
        let tenant = overlay(&subject.overrides.tenant, tenant);
        push(
            &mut buckets,
            Scope::Tenant,
            subject.tenant.to_owned(),
            &tenant,
        );
        if let Some(model) = self.models.get(subject.model) {
            let id = format!("{}/{}", subject.key_id, subject.model);
            push(&mut buckets, Scope::KeyModel, id, model);
        }
        buckets
    }
}

/// `over`'s limits where set, `base`'s elsewhere.
fn overlay(over: &Limits, base: &Limits) -> Limits {
    Limits {
        requests_per_minute: over.requests_per_minute.or(base.requests_per_minute),
        tokens_per_minute: over.tokens_per_minute.or(base.tokens_per_minute),
        tokens_per_day: over.tokens_per_day.or(base.tokens_per_day),
        concurrent: over.concurrent.or(base.concurrent),
        monthly_budget_nano_usd: over
            .monthly_budget_nano_usd
            .or(base.monthly_budget_nano_usd),
    }
}

fn push(buckets: &mut Vec<Bucket>, scope: Scope, id: String, limits: &Limits) {
    if !limits.is_empty() {
        buckets.push(Bucket {
            scope,
            id,
            limits: *limits,
        });
    }
}

fn table(
    entries: &BTreeMap<String, LimitsConfig>,
    name: &str,
) -> anyhow::Result<HashMap<String, Limits>> {
    entries
        .iter()
        .map(|(id, config)| {
            let limits = limits(config)
                .with_context(|| format!("quota.limits.{name}.{id:?}.monthly_budget_usd"))?;
            Ok((id.clone(), limits))
        })
        .collect()
}

fn limits(config: &LimitsConfig) -> anyhow::Result<Limits> {
    let monthly_budget_nano_usd = match &config.monthly_budget_usd {
        Some(text) => Some(llmgw_usd::parse_budget(text).map_err(anyhow::Error::msg)?),
        None => None,
    };
    Ok(Limits {
        requests_per_minute: config.requests_per_minute,
        tokens_per_minute: config.tokens_per_minute,
        tokens_per_day: config.tokens_per_day,
        concurrent: config.concurrent,
        monthly_budget_nano_usd,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // panicking is how tests fail
mod tests {
    use super::*;

    fn entry(rpm: Option<u64>, budget: Option<&str>) -> LimitsConfig {
        LimitsConfig {
            requests_per_minute: rpm,
            monthly_budget_usd: budget.map(str::to_owned),
            ..LimitsConfig::default()
        }
    }

    fn subject<'a>(tenant: &'a str, key_id: &'a str, model: &'a str) -> Subject<'a> {
        Subject {
            tenant,
            key_id,
            model,
            overrides: Overrides::default(),
        }
    }

    #[test]
    fn no_limits_no_buckets() {
        let rules = Rules::from_config(&LimitTables::default()).unwrap();
        assert!(rules.buckets(&subject("t", "k", "m")).is_empty());
    }

    #[test]
    fn entries_replace_defaults_and_models_are_per_key() {
        let mut tables = LimitTables {
            default_key: LimitsConfig {
                requests_per_minute: Some(600),
                concurrent: Some(20),
                ..LimitsConfig::default()
            },
            default_tenant: entry(None, Some("500")),
            ..LimitTables::default()
        };
        tables.keys.insert("vip".into(), entry(Some(6000), None));
        tables.keys.insert("free".into(), LimitsConfig::default());
        tables
            .tenants
            .insert("acme".into(), entry(None, Some("12.50")));
        tables.models.insert("gpt".into(), entry(Some(5), None));
        let rules = Rules::from_config(&tables).unwrap();

        let buckets = rules.buckets(&subject("acme", "vip", "gpt"));
        assert_eq!(buckets.len(), 3);
        assert!(matches!(buckets[0].scope, Scope::Key));
        assert_eq!(buckets[0].id, "vip");
        // Replaced, not merged: the default's concurrency does not apply.
        assert_eq!(buckets[0].limits.requests_per_minute, Some(6000));
        assert_eq!(buckets[0].limits.concurrent, None);
        assert!(matches!(buckets[1].scope, Scope::Tenant));
        assert_eq!(
            buckets[1].limits.monthly_budget_nano_usd,
            Some(12_500_000_000)
        );
        assert!(matches!(buckets[2].scope, Scope::KeyModel));
        assert_eq!(buckets[2].id, "vip/gpt");

        // An empty entry means "no key limits" for that key.
        let buckets = rules.buckets(&subject("other", "free", "m"));
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].id, "other");
        assert_eq!(
            buckets[0].limits.monthly_budget_nano_usd,
            Some(500_000_000_000)
        );
    }

    fn with(mut subject: Subject<'_>, key: Limits, tenant: Limits) -> Subject<'_> {
        subject.overrides = Overrides { key, tenant };
        subject
    }

    fn rpm(limit: u64) -> Limits {
        Limits {
            requests_per_minute: Some(limit),
            ..Limits::default()
        }
    }

    fn budget(nano_usd: u64) -> Limits {
        Limits {
            monthly_budget_nano_usd: Some(nano_usd),
            ..Limits::default()
        }
    }

    #[test]
    fn overrides_beat_the_config_kind_by_kind() {
        let mut tables = LimitTables {
            default_key: LimitsConfig {
                requests_per_minute: Some(600),
                concurrent: Some(20),
                ..LimitsConfig::default()
            },
            default_tenant: entry(None, Some("500")),
            ..LimitTables::default()
        };
        tables.keys.insert("vip".into(), entry(Some(6000), None));
        tables
            .tenants
            .insert("acme".into(), entry(Some(100), Some("12.50")));
        tables.models.insert("gpt".into(), entry(Some(5), None));
        let rules = Rules::from_config(&tables).unwrap();

        // The override's requests/min wins; the default's concurrency,
        // which the override does not set, still applies.
        let buckets = rules.buckets(&with(subject("other", "k", "m"), rpm(2), Limits::default()));
        assert_eq!(buckets.len(), 2);
        assert!(matches!(buckets[0].scope, Scope::Key));
        assert_eq!(
            buckets[0].limits,
            Limits {
                requests_per_minute: Some(2),
                concurrent: Some(20),
                ..Limits::default()
            }
        );
        // No tenant override: the config's default tenant budget.
        assert_eq!(buckets[1].limits, budget(500_000_000_000));

        // Over a specific entry, likewise: the entry (which replaced the
        // default, so no concurrency) plus what the override sets.
        let tpm = Limits {
            tokens_per_minute: Some(1_000),
            ..Limits::default()
        };
        let buckets = rules.buckets(&with(subject("acme", "vip", "gpt"), tpm, budget(7)));
        assert_eq!(buckets.len(), 3);
        assert_eq!(
            buckets[0].limits,
            Limits {
                requests_per_minute: Some(6000),
                tokens_per_minute: Some(1_000),
                ..Limits::default()
            }
        );
        // The tenant's budget comes from the request, its requests/min from
        // the config's entry.
        assert!(matches!(buckets[1].scope, Scope::Tenant));
        assert_eq!(
            buckets[1].limits,
            Limits {
                requests_per_minute: Some(100),
                monthly_budget_nano_usd: Some(7),
                ..Limits::default()
            }
        );
        // The key × model bucket only ever comes from the config.
        assert!(matches!(buckets[2].scope, Scope::KeyModel));
        assert_eq!(buckets[2].limits, rpm(5));
    }

    #[test]
    fn overrides_alone_make_buckets_and_zero_is_a_limit() {
        let rules = Rules::from_config(&LimitTables::default()).unwrap();
        assert!(
            rules
                .buckets(&with(
                    subject("t", "k", "m"),
                    Limits::default(),
                    Limits::default()
                ))
                .is_empty()
        );
        let buckets = rules.buckets(&with(subject("t", "k", "m"), rpm(0), budget(0)));
        assert_eq!(buckets.len(), 2);
        assert_eq!((buckets[0].id.as_str(), buckets[0].limits), ("k", rpm(0)));
        assert_eq!(
            (buckets[1].id.as_str(), buckets[1].limits),
            ("t", budget(0))
        );
        // A tenant budget and nothing else: only a tenant bucket.
        let buckets = rules.buckets(&with(
            subject("t", "k", "m"),
            Limits::default(),
            budget(1_000),
        ));
        assert_eq!(buckets.len(), 1);
        assert!(matches!(buckets[0].scope, Scope::Tenant));
        assert_eq!(buckets[0].limits, budget(1_000));
    }

    #[test]
    fn bad_budget_names_the_entry() {
        let mut tables = LimitTables::default();
        tables
            .tenants
            .insert("acme".into(), entry(None, Some("12,5")));
        let error = Rules::from_config(&tables).err().unwrap();
        let message = format!("{error:#}");
        assert!(
            message.contains("tenants.\"acme\".monthly_budget_usd"),
            "{message}"
        );
        assert!(message.contains("\"12,5\""), "{message}");

        let budget = |amount| LimitTables {
            default_key: entry(None, Some(amount)),
            ..LimitTables::default()
        };
        assert!(Rules::from_config(&budget("9007199.254740993")).is_err());
        assert!(Rules::from_config(&budget("9007199.254740992")).is_ok());
    }
}
