#![allow(clippy::unwrap_used)] // panicking is how tests fail

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::Role;

static NEXT_FILE: AtomicU32 = AtomicU32::new(0);

/// A config file of its own for each test (tests run in parallel).
fn file(yaml: &str) -> PathBuf {
    let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("llmgw-config-{}-{n}.yaml", std::process::id()));
    std::fs::write(&path, yaml).unwrap();
    path
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

/// The commented example operators copy must stay loadable: every section
/// denies unknown fields, so a renamed setting breaks it.
#[test]
fn the_deploy_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/llmgw.example.yaml");
    let config = GatewayConfig::load_from(Some(&path), &[], Scope::One(Role::Router)).unwrap();
    assert!(!config.router.models.is_empty());
    assert_eq!(config.quota.budget_sync_secs, 60);
    assert!(config.router.usage.spool_dir.is_some());
}

/// One start shows the operator everything to fix, not one thing per try.
#[test]
fn a_bad_config_lists_every_problem() {
    let path = file(
        r#"
edge:
  listen: 127.0.0.1:7000
  router_url: "not a url"
  max_body_bytes: 0
  api_keys:
    - {key: "sk-short", tenant: acme}
router:
  listen: 127.0.0.1:7000
  models:
    - {alias: chat, provider: openai, base_url: "http://up/v1", upstream_model: m, fallbacks: [nope]}
    - {alias: chat, provider: openai, base_url: "ftp://up", upstream_model: m}
    - {alias: priced, provider: openai, base_url: "http://up/v1", upstream_model: m, input_price_per_mtok: "1,50"}
    - {alias: keyed, provider: anthropic, base_url: "https://api.anthropic.com/v1", upstream_model: c, api_key_env: TEST_UNSET_PROVIDER_KEY}
quota:
  redis_url: "http://not-redis"
  limits:
    tenants: {acme: {monthly_budget_usd: "-5"}}
    models: {gtp-4o: {tokens_per_minute: 10}}
billing:
  database_url: "mysql://db/llmgw"
telemetry:
  log_level: "llmgw=verbose"
"#,
    );
    let error = GatewayConfig::load_from(Some(&path), &[], Scope::All).unwrap_err();
    let expected = [
        "edge.router_url: \"not a url\"",
        "edge.max_body_bytes: must be above 0",
        "edge.api_keys[0].key: shorter than 16 characters (tenant \"acme\")",
        "router.models[0].fallbacks: \"nope\" is not a configured model",
        "router.models[1].alias: \"chat\" is configured twice",
        "router.models[1].base_url: base_url \"ftp://up\" must start with http:// or https://",
        "router.models[2].input_price_per_mtok: \"1,50\"",
        "router.models[3].api_key_env: environment variable TEST_UNSET_PROVIDER_KEY",
        "quota.redis_url: \"http://not-redis\"",
        "quota.limits.tenants.\"acme\".monthly_budget_usd: \"-5\"",
        "quota.limits.models.\"gtp-4o\": not a model in router.models",
        "billing.database_url: \"mysql://db/llmgw\"",
        "telemetry.log_level: \"llmgw=verbose\"",
        "router.listen: 127.0.0.1:7000 conflicts with edge.listen (127.0.0.1:7000)",
    ];
    for want in expected {
        assert!(
            error
                .problems
                .iter()
                .any(|problem| problem.starts_with(want)),
            "missing {want:?} in\n{error}"
        );
    }
    assert_eq!(error.problems.len(), expected.len(), "{error}");
    let shown = error.to_string();
    assert!(
        !shown.contains("sk-short"),
        "a key reached the message: {shown}"
    );
    assert!(shown.starts_with(&format!(
        "the configuration in {} has 14 problems:\n  - ",
        path.display()
    )));
    let _ = std::fs::remove_file(&path);
}

/// Environment and files are checked only for the services that read them:
/// an edge needs no provider keys, and separate processes may share ports.
#[test]
fn start_time_checks_follow_the_services_run() {
    let path = file(
        r#"
edge: {listen: 127.0.0.1:7000}
router:
  listen: 127.0.0.1:7000
  models:
    - {alias: keyed, provider: openai, base_url: "http://up/v1", upstream_model: m, api_key_env: TEST_PROVIDER_KEY}
"#,
    );
    let edge = GatewayConfig::load_from(Some(&path), &[], Scope::One(Role::Edge));
    assert!(edge.is_ok());
    let router = GatewayConfig::load_from(Some(&path), &[], Scope::One(Role::Router)).unwrap_err();
    assert_eq!(router.problems.len(), 1, "{router}");
    let with_key = env(&[("TEST_PROVIDER_KEY", "sk-test")]);
    assert!(GatewayConfig::load_from(Some(&path), &with_key, Scope::One(Role::Router)).is_ok());
    let empty_key = env(&[("TEST_PROVIDER_KEY", "")]);
    assert!(GatewayConfig::load_from(Some(&path), &empty_key, Scope::One(Role::Router)).is_err());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_missing_file_is_one_problem() {
    let path = std::env::temp_dir().join("llmgw-config-does-not-exist.yaml");
    let error = GatewayConfig::load_from(Some(&path), &[], Scope::NoService).unwrap_err();
    assert_eq!(error.problems.len(), 1);
    assert!(error.problems[0].starts_with("config file "), "{error}");
}

/// defaults < file < DATABASE_URL & co. < LLMGW_SECTION__KEY.
#[test]
fn environment_precedence() {
    let path = file(
        r#"
billing: {database_url: "sqlite://from-file.db"}
quota: {redis_url: "redis://from-file:6379", key_prefix: from-file}
edge: {max_body_bytes: 1000}
"#,
    );
    let load = |vars: &[(&str, &str)]| {
        GatewayConfig::load_from(Some(&path), &env(vars), Scope::NoService).unwrap()
    };

    let config = load(&[]);
    assert_eq!(
        config.billing.database_url.as_deref(),
        Some("sqlite://from-file.db")
    );
    assert_eq!(
        config.quota.redis_url.as_deref(),
        Some("redis://from-file:6379")
    );
    assert_eq!(config.telemetry.otlp_endpoint, None);

    let config = load(&[
        ("DATABASE_URL", "postgres://env/llmgw"),
        ("REDIS_URL", "redis://env:6379"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
    ]);
    assert_eq!(
        config.billing.database_url.as_deref(),
        Some("postgres://env/llmgw")
    );
    assert_eq!(config.quota.redis_url.as_deref(), Some("redis://env:6379"));
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://collector:4317")
    );

    // Empty counts as unset.
    let config = load(&[("DATABASE_URL", "")]);
    assert_eq!(
        config.billing.database_url.as_deref(),
        Some("sqlite://from-file.db")
    );

    let config = load(&[
        ("DATABASE_URL", "postgres://env/llmgw"),
        ("LLMGW_BILLING__DATABASE_URL", "postgres://override/llmgw"),
        ("LLMGW_QUOTA__KEY_PREFIX", "from-env"),
        ("LLMGW_EDGE__MAX_BODY_BYTES", "2048"),
        // The file name and the admin commands' variables are no settings.
        ("LLMGW_CONFIG", "/elsewhere.yaml"),
        ("LLMGW_ADMIN_TOKEN", "0123456789abcdef"),
    ]);
    assert_eq!(
        config.billing.database_url.as_deref(),
        Some("postgres://override/llmgw")
    );
    assert_eq!(config.quota.key_prefix, "from-env");
    assert_eq!(config.edge.max_body_bytes, 2048);

    // Without a file the defaults are the base, and they read nothing.
    let config = GatewayConfig::load_from(None, &[], Scope::NoService).unwrap();
    assert_eq!(config.billing.database_url, None);
    assert_eq!(config.quota.redis_url, None);
    let config = GatewayConfig::load_from(
        None,
        &env(&[("REDIS_URL", "redis://r:1")]),
        Scope::NoService,
    )
    .unwrap();
    assert_eq!(config.quota.redis_url.as_deref(), Some("redis://r:1"));
    let _ = std::fs::remove_file(&path);
}

/// A typo in an override is an unknown key like a typo in the file.
#[test]
fn an_unknown_override_is_a_problem() {
    let vars = env(&[("LLMGW_EDGE__LISTN", "0.0.0.0:1")]);
    let error = GatewayConfig::load_from(None, &vars, Scope::NoService).unwrap_err();
    assert!(error.to_string().contains("listn"), "{error}");
}

/// The commented policy example at the end of the deploy example, once
/// uncommented, is a valid `policy:` section.
#[test]
fn the_deploy_policy_example_loads_when_uncommented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/llmgw.example.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("\n# policy:").expect("the policy example") + 1;
    let uncommented: String = text[start..]
        .lines()
        .take_while(|line| line.starts_with("# "))
        .map(|line| format!("{}\n", &line[2..]))
        .collect();
    let example = file(&format!("{text}\n{uncommented}"));
    let config = GatewayConfig::load_from(Some(&example), &[], Scope::One(Role::Edge)).unwrap();
    assert_eq!(config.policy.default, "standard");
    assert!(config.policy.policies["standard"].rules.len() >= 5);
    let _ = std::fs::remove_file(&example);
}

/// One `policy:` section for the whole gateway: each service gets a copy.
#[test]
fn the_policy_section_reaches_edge_router_and_billing() {
    let path = file(
        r#"
policy:
  default: standard
  word_lists: {confidential: ["Project Falcon"]}
  policies:
    standard:
      rules:
        - {id: confidential-terms, kind: words, word_lists: [confidential], action: block}
edge: {policy_refresh_secs: 2}
"#,
    );
    let config = GatewayConfig::load_from(Some(&path), &[], Scope::NoService).unwrap();
    assert_eq!(config.edge.policy, config.policy);
    assert_eq!(config.router.policy, config.policy);
    assert_eq!(config.billing.policy, config.policy);
    assert_eq!(
        config.edge.policy.word_lists["confidential"],
        ["Project Falcon"]
    );
    assert_eq!(config.edge.policy_refresh_secs, 2);
    assert_eq!(config.router.policy_refresh_secs, 5);
    let _ = std::fs::remove_file(&path);
}

/// Every broken policy is listed, with the refresh intervals out of range.
#[test]
fn a_bad_policy_section_lists_every_problem() {
    let path = file(
        r#"
policy:
  default: missing
  tenants: {acme: also-missing}
  policies:
    one:
      rules:
        - {id: words-a, kind: words, word_lists: [nope], action: block}
    two:
      rules:
        - {id: words-b, kind: words, word_lists: [nada], action: flag}
edge: {policy_refresh_secs: 0}
router: {policy_refresh_secs: 30}
"#,
    );
    let error = GatewayConfig::load_from(Some(&path), &[], Scope::NoService).unwrap_err();
    let expected = [
        "policy.policies.\"one\": policy \"one\", rule \"words-a\"",
        "policy.policies.\"two\": policy \"two\", rule \"words-b\"",
        "policy.default: \"missing\" is not a policy",
        "policy.tenants.\"acme\": \"also-missing\" is not a policy",
        "edge.policy_refresh_secs: must be 1 to 10",
        "router.policy_refresh_secs: must be 1 to 10",
    ];
    for want in expected {
        assert!(
            error.problems.iter().any(|p| p.starts_with(want)),
            "missing {want:?} in\n{error}"
        );
    }
    assert_eq!(error.problems.len(), expected.len(), "{error}");
    let _ = std::fs::remove_file(&path);
}
