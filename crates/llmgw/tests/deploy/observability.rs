//! The dashboards and alert rules ask for metrics the services export
//! (scraped from a running gateway, not copied from the sources), the
//! dashboards are well-formed Grafana JSON, and the observability profile
//! of the compose file scrapes every service.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::compose::Compose;
use crate::files::{host_port, repo, scalar, seq, text, yaml};
use crate::process::{Launch, client, free_ports, wait_http_ok};

/// Sample names each metric family produces (OpenMetrics).
fn sample_names(name: &str, kind: &str) -> Vec<String> {
    match kind {
        "counter" => vec![format!("{name}_total"), format!("{name}_created")],
        "histogram" => ["_bucket", "_sum", "_count", "_created"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .collect(),
        "info" => vec![format!("{name}_info")],
        _ => vec![name.to_owned()],
    }
}

/// Every sample name a `/metrics` page declares, with the label names its
/// samples carry (empty while a family has no sample yet).
fn exported(page: &str, into: &mut BTreeMap<String, BTreeSet<String>>) {
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().expect("name"), parts.next().expect("type"));
            for sample in sample_names(name, kind) {
                into.entry(sample).or_default();
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = into.entry(line[..name_end].to_owned()).or_default();
            if let Some(body) = line[name_end..].strip_prefix('{') {
                let body = &body[..body.rfind('}').expect("closing brace")];
                for pair in body.split(',').filter(|pair| !pair.is_empty()) {
                    labels.insert(pair.split('=').next().expect("label").trim().to_owned());
                }
            }
        }
    }
}

/// Every PromQL expression of the alert rules and the dashboards, with
/// where it is.
fn expressions() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let rules = yaml(&repo().join("deploy/prometheus/alerts.yaml"));
    for group in seq(&rules, "groups") {
        for rule in seq(group, "rules") {
            found.push((
                format!("alert {}", text(rule, "alert")),
                text(rule, "expr").to_owned(),
            ));
        }
    }
    for (file, dashboard) in dashboards() {
        for panel in dashboard["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("expr").to_owned();
                found.push((format!("{file} panel {:?}", panel["title"]), expr));
            }
        }
    }
    found
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("deploy/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dashboards")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read");
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            (
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                value,
            )
        })
        .collect()
}

/// `metric{label="x", other=~"y"}` → the metric names and, per name, the
/// labels its selectors and `by (...)`/`without (...)` clauses use.
fn references(expr: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("llmgw_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].to_owned();
        let mut labels = Vec::new();
        if let Some(selector) = tail[end..].strip_prefix('{') {
            let selector = &selector[..selector.find('}').expect("closing brace")];
            for matcher in selector.split(',') {
                let label = matcher.split(['=', '!']).next().unwrap_or_default().trim();
                if !label.is_empty() {
                    labels.push(label.to_owned());
                }
            }
        }
        out.push((name, labels));
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_use_only_exported_metrics() {
    // Every service in one process (each still serves its own /metrics),
    // quota on Redis with limits, and one request through, so every metric
    // family has samples (a family nothing was recorded in is not listed).
    let [edge, router, quota, billing, admin] = free_ports();
    let prefix = format!("llmgw-deploy-metrics-{}", std::process::id());
    let data = crate::process::ScratchDir::new("metrics");
    let mut gateway = Launch::llmgw("llmgw all", &["all"])
        .env("LLMGW_EDGE__LISTEN", format!("127.0.0.1:{edge}"))
        .env("LLMGW_ROUTER__LISTEN", format!("127.0.0.1:{router}"))
        .env("LLMGW_QUOTA__LISTEN", format!("127.0.0.1:{quota}"))
        .env("LLMGW_BILLING__LISTEN", format!("127.0.0.1:{billing}"))
        .env("LLMGW_BILLING__ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
        .env(
            "LLMGW_BILLING__DATA_DIR",
            data.path().to_str().expect("UTF-8"),
        )
        .env(
            "LLMGW_QUOTA__LIMITS__DEFAULT_KEY__REQUESTS_PER_MINUTE",
            "1000",
        )
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("LLMGW_QUOTA__KEY_PREFIX", prefix)
        .env("LLMGW_ADMIN_TOKEN", "deploy-metrics-admin-token-0123456789")
        .spawn();
    wait_http_ok(
        &format!("http://127.0.0.1:{edge}/readyz"),
        &mut [&mut gateway],
    )
    .await;
    let client = client();
    let answer = client
        .post(format!("http://127.0.0.1:{edge}/v1/chat/completions"))
        .bearer_auth(llmgw::demo::DEV_KEY)
        .json(&json!({"model": llmgw::demo::DEMO_MODEL, "stream": true,
            "messages": [{"role": "user", "content": "Hello!"}]}))
        .send()
        .await
        .expect("edge");
    assert_eq!(answer.status(), 200);
    let _ = answer.text().await;
    // An operator's call to the admin API (refused: a wrong token).
    let refused = client
        .get(format!("http://127.0.0.1:{admin}/admin/v1/tenants"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .expect("admin API");
    assert_eq!(refused.status(), 401);
    // The quota service's first budget sync from the ledger runs a moment
    // after its start.
    let deadline = tokio::time::Instant::now() + crate::process::STARTUP;
    loop {
        let page = client
            .get(format!("http://127.0.0.1:{quota}/metrics"))
            .send()
            .await;
        let page = match page {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if page.contains("llmgw_quota_budget_syncs_total") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no budget sync\n{}",
            gateway.output()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut names = BTreeMap::new();
    for port in [edge, router, quota, billing] {
        let page = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .expect("/metrics")
            .text()
            .await
            .expect("text");
        exported(&page, &mut names);
    }
    // Prometheus' own, per scrape target.
    names.insert("up".to_owned(), BTreeSet::new());

    let mut used = 0;
    for (place, expr) in expressions() {
        let references = references(&expr);
        assert!(
            !references.is_empty() || expr.contains("up{"),
            "{place}: {expr} names no llmgw metric"
        );
        for (name, labels) in references {
            let exported_labels = names
                .get(&name)
                .unwrap_or_else(|| panic!("{place}: {name} is not exported (see /metrics)"));
            if !exported_labels.is_empty() {
                for label in labels {
                    assert!(
                        exported_labels.contains(&label),
                        "{place}: {name} has no label {label}"
                    );
                }
            }
            used += 1;
        }
    }
    assert!(used > 30, "{used} references");
}

#[test]
fn dashboards_are_grafana_dashboards() {
    let mut uids = BTreeSet::new();
    let dashboards = dashboards();
    assert!(dashboards.len() >= 3);
    for (file, dashboard) in &dashboards {
        for field in ["uid", "title"] {
            assert!(
                dashboard[field].as_str().is_some_and(|v| !v.is_empty()),
                "{file}: {field}"
            );
        }
        assert!(
            uids.insert(dashboard["uid"].as_str().expect("uid").to_owned()),
            "{file}: uid unique"
        );
        assert!(
            dashboard["schemaVersion"].as_u64().is_some(),
            "{file}: schemaVersion"
        );
        let variables: BTreeSet<String> = dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|variable| variable["name"].as_str().expect("name").to_owned())
            .collect();
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{file}: panels");
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = panel["title"].as_str().unwrap_or_default();
            assert!(
                ids.insert(panel["id"].as_u64().expect("id")),
                "{file}: {title}: id unique"
            );
            let grid = &panel["gridPos"];
            let (x, w) = (
                grid["x"].as_u64().expect("x"),
                grid["w"].as_u64().expect("w"),
            );
            assert!(
                x + w <= 24 && grid["h"].as_u64().is_some() && grid["y"].as_u64().is_some(),
                "{file}: {title}: gridPos"
            );
            if panel["type"] == "row" {
                continue;
            }
            assert!(
                !title.is_empty() && panel["type"].as_str().is_some(),
                "{file}: a titled panel"
            );
            let targets = panel["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{file}: {title}: targets");
            for target in targets {
                assert!(target["refId"].as_str().is_some() && target["expr"].as_str().is_some());
            }
            let text = panel.to_string();
            for variable in ["datasource", "model"] {
                if text.contains(&format!("${variable}"))
                    || text.contains(&format!("${{{variable}}}"))
                {
                    assert!(
                        variables.contains(variable),
                        "{file}: {title}: ${variable} is defined"
                    );
                }
            }
        }
    }
    let rules = yaml(&repo().join("deploy/prometheus/alerts.yaml"));
    let mut alerts = BTreeSet::new();
    for group in seq(&rules, "groups") {
        for rule in seq(group, "rules") {
            let name = text(rule, "alert");
            assert!(
                !text(&rule["labels"], "severity").is_empty(),
                "{name}: severity"
            );
            assert!(
                !text(&rule["annotations"], "summary").is_empty(),
                "{name}: summary"
            );
            alerts.insert(name.to_owned());
        }
    }
    for expected in [
        "LlmgwHighErrorRatio",
        "LlmgwLatencyP99High",
        "LlmgwCircuitBreakerOpen",
        "LlmgwUsageSpoolOld",
        "LlmgwQuotaDegraded",
        "LlmgwBillingIngestFailing",
    ] {
        assert!(alerts.contains(expected), "alert {expected}");
    }
}

#[test]
fn the_observability_profile_scrapes_every_service_and_loads_the_dashboards() {
    let compose = Compose::load();
    let prometheus = yaml(&repo().join("deploy/prometheus/prometheus.yml"));
    let targets: BTreeSet<String> = seq(&prometheus, "scrape_configs")
        .iter()
        .flat_map(|job| seq(job, "static_configs"))
        .flat_map(|config| seq(config, "targets"))
        .map(scalar)
        .collect();
    for service in compose.services() {
        let Some(role) = service.role().filter(|role| role.serves()) else {
            continue;
        };
        if role == crate::service_config::Role::MockUpstream {
            continue;
        }
        let config = service.config(&[]);
        let port = crate::service_config::listen_ports(&config, role, &[])[0];
        assert!(
            targets.contains(&format!("{}:{port}", service.name)),
            "Prometheus scrapes {}",
            service.name
        );
    }
    for rules in seq(&prometheus, "rule_files") {
        assert!(
            repo()
                .join("deploy/prometheus")
                .join(scalar(rules))
                .exists(),
            "rule file {rules:?}"
        );
    }
    let grafana = compose.service("grafana");
    let provider = yaml(&repo().join("deploy/grafana/provisioning/dashboards/llmgw.yaml"));
    let path = text(&seq(&provider, "providers")[0]["options"], "path").to_owned();
    let mounted = grafana
        .mounted_file(&path)
        .expect("the dashboards are mounted where the provider reads");
    assert_eq!(mounted, repo().join("./deploy/grafana/dashboards"));
    let sources = yaml(&repo().join("deploy/grafana/provisioning/datasources/llmgw.yaml"));
    for source in seq(&sources, "datasources") {
        let (host, _) = host_port(text(source, "url"));
        assert!(
            compose
                .services()
                .iter()
                .any(|service| service.name == host),
            "data source {host}"
        );
    }
}
