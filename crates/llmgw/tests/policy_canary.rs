//! Canary: a secret in a prompt that a policy flags, blocks or redacts never
//! appears in the gateway's logs (every level down to TRACE, span fields
//! included), its exported spans (span events included), its spools, or its
//! database (SQLite file, Postgres tables). Only the provider may see it, and
//! only when the policy lets the prompt through. Its own test binary: the
//! tracing subscriber it installs is process-global.

#![allow(clippy::unwrap_used, clippy::expect_used)] // panicking is how tests fail

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use llmgw_router::{ModelConfig, Provider};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use serde_json::json;
use sqlx::Row as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;

const KEY: &str = "sk-llmgw-canary-0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
/// Generous: these tests check where text goes, not speed.
const DEADLINE: Duration = Duration::from_secs(30);

/// Every finished span (the in-process stand-in for a collector).
#[derive(Debug, Clone, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Exported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch);
        Ok(())
    }
}

/// Every log line, as JSON with the fields of the line and of its spans.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Captured {
    logs: Logs,
    spans: Exported,
}

impl Captured {
    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.logs.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    fn spans(&self) -> String {
        format!(
            "{:?}",
            self.spans.0.lock().unwrap_or_else(PoisonError::into_inner)
        )
    }
}

/// TRACE for everything but the mock upstream (the provider, which sees
/// what the policy lets through).
fn capture() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured {
            logs: Logs::default(),
            spans: Exported::default(),
        };
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(captured.spans.clone())
            .build();
        llmgw_telemetry::propagate_trace_context();
        let filter = Targets::new()
            .with_default(LevelFilter::TRACE)
            .with_target("llmgw_mock_upstream", LevelFilter::OFF);
        let writer = captured.logs.clone();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(move || writer.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("llmgw")))
            .with(filter);
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber per binary");
        captured
    })
}

async fn start_mock(stop: &CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(llmgw_mock_upstream::run(
        llmgw_mock_upstream::Config::default(),
        listener,
        stop.clone().cancelled_owned(),
    ));
    address
}

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "llmgw-canary-{label}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| now.as_nanos())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    dir
}

fn config(mock: SocketAddr, dir: &Path, database_url: Option<String>) -> llmgw::GatewayConfig {
    let mut config = llmgw::GatewayConfig::default();
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    config.router.listen = any_port;
    config.router.models = vec![ModelConfig {
        alias: "mock".to_owned(),
        provider: Some(Provider::Openai),
        base_url: Some(format!("http://{mock}/v1")),
        upstream_model: Some("mock-upstream-model".to_owned()),
        ..ModelConfig::default()
    }];
    config.router.usage.flush_interval_ms = 5;
    config.edge.listen = any_port;
    config.edge.audit.flush_interval_ms = 5;
    config.edge.api_keys = vec![llmgw_edge::ApiKeyConfig {
        key: KEY.to_owned(),
        tenant: "acme".to_owned(),
        name: Some("canary-test".to_owned()),
    }];
    config.quota.listen = any_port;
    config.quota.limits.default_key.requests_per_minute = Some(1_000);
    config.billing.listen = any_port;
    config.billing.admin_listen = any_port;
    config.billing.database_url = database_url;
    config.billing.data_dir = dir.to_path_buf();
    config.billing.admin_token_file = Some(dir.join("admin-token"));
    config.policy = serde_json::from_value(json!({
        "default": "standard",
        "policies": {"standard": {"rules": [
            {"id": "canary", "kind": "words", "terms": ["canary-"], "action": "flag"},
            {"id": "banned-words", "kind": "words", "terms": ["forbidden-term"], "action": "block"},
            {"id": "confidential", "kind": "words", "terms": ["Project Falcon"], "action": "redact"}
        ]}}
    }))
    .unwrap();
    config
}

/// Prompts carrying `secret`: flagged (forwarded), blocked, redacted
/// (forwarded), streamed, in tool-call arguments.
async fn send_canaries(client: &reqwest::Client, edge: SocketAddr, secret: &str) {
    let canary = format!("canary-{secret}");
    let bodies = [
        (
            json!({"model": "mock", "messages": [{"role": "user", "content": format!("build {canary}")}]}),
            200,
        ),
        (
            json!({"model": "mock", "stream": true, "messages": [{"role": "user", "content": format!("stream {canary}")}]}),
            200,
        ),
        (
            json!({"model": "mock", "messages": [{"role": "user", "content": format!("forbidden-term {canary}")}]}),
            400,
        ),
        (
            json!({"model": "mock", "messages": [{"role": "user", "content": format!("Project Falcon {canary}")}]}),
            200,
        ),
        (
            json!({"model": "mock", "messages": [
                {"role": "user", "content": "look it up"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": format!("{{\"q\":\"{canary}\"}}")}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"}
            ]}),
            200,
        ),
    ];
    for (body, status) in bodies {
        let response = client
            .post(format!("http://{edge}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect("edge reachable");
        assert_eq!(response.status(), status);
        let text = response.text().await.unwrap();
        assert!(
            !text.contains(secret) || status == 200,
            "the error echoed it: {text}"
        );
    }
}

/// The edge's metric `name` (first sample) once it reaches `at_least`.
async fn wait_metric(client: &reqwest::Client, edge: SocketAddr, name: &str, at_least: f64) {
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let text = client
                .get(format!("http://{edge}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let value = text
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse::<f64>().ok());
            if value.is_some_and(|value| value >= at_least) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(found.is_ok(), "{name} never reached {at_least}");
}

/// Every file under `dir`, as bytes, with its path.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path, bytes));
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Runs the gateway, sends the canaries, waits for audit and usage to be
/// delivered, stops it; then checks every place text could end up.
async fn canary_stays_out(label: &str, database_url: Option<String>) {
    let captured = capture();
    let secret = format!("Zq81{label}xP0vLm{}", std::process::id());
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let mock = start_mock(&stop).await;
    let dir = scratch(label);
    let (addresses, services) =
        llmgw::start_all(config(mock, &dir, database_url.clone()), stop.clone())
            .await
            .expect("gateway starts");
    let services = tokio::spawn(services.wait(Duration::from_secs(10)));
    let client = reqwest::Client::new();
    tokio::time::timeout(DEADLINE, async {
        while client
            .get(format!("http://{}/readyz", addresses.edge))
            .send()
            .await
            .map_or(true, |response| response.status() != 200)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("gateway ready");

    send_canaries(&client, addresses.edge, &secret).await;
    // Every hit (5 canary flags, a block, a redaction) is in billing's
    // database before we look.
    wait_metric(
        &client,
        addresses.edge,
        "llmgw_edge_audit_delivered_total",
        7.0,
    )
    .await;

    stop.cancel();
    tokio::time::timeout(DEADLINE, services)
        .await
        .expect("services stop")
        .expect("services task")
        .expect("services ran");

    let logs = captured.logs();
    assert!(logs.contains("content policy hit"), "the hits were logged");
    assert!(!logs.contains(&secret), "the secret is in the logs");
    let spans = captured.spans();
    assert!(spans.contains("edge.chat"), "spans were exported");
    assert!(
        !spans.contains(&secret),
        "the secret is in an exported span"
    );
    let written = files(&dir);
    assert!(
        written
            .iter()
            .any(|(path, _)| path.starts_with(dir.join("audit-spool"))),
        "the edge's audit spool is under billing.data_dir: {:?}",
        written.iter().map(|(path, _)| path).collect::<Vec<_>>()
    );
    for (path, bytes) in &written {
        assert!(
            !contains(bytes, &secret),
            "the secret is in {}",
            path.display()
        );
    }
    if let Some(url) = database_url {
        assert_postgres_clean(&url, &secret).await;
    } else {
        // The audit events are in the database (its file or its WAL).
        assert!(
            written.iter().any(|(path, bytes)| {
                path.file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with("llmgw.db"))
                    && contains(bytes, "banned-words")
            }),
            "no audit event in the SQLite database"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every row of every table of the database, as text.
async fn assert_postgres_clean(url: &str, secret: &str) {
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get::<String, _>(0))
    .collect();
    assert!(!tables.is_empty());
    let mut audited = false;
    for table in tables {
        // The names come from the catalog, quoted by format('%I').
        let rows: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT string_agg(t::text, E'\\n') FROM {table} t"
        )))
        .fetch_one(&mut connection)
        .await
        .unwrap();
        let rows = rows.unwrap_or_default();
        assert!(!rows.contains(secret), "the secret is in table {table}");
        audited |= table.contains("audit_events") && rows.contains("banned-words");
    }
    assert!(audited, "no audit event in the database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_in_prompts_stays_out_of_logs_spans_spools_and_sqlite() {
    canary_stays_out("sqlite", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_in_prompts_stays_out_of_logs_spans_spools_and_postgres() {
    let database = llmgw_testdb::TestDatabase::create("e2e_policy_canary")
        .await
        .expect("postgres reachable");
    canary_stays_out("postgres", Some(database.url().to_owned())).await;
}
