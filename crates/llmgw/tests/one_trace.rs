//! One chat request through `llmgw all` is ONE trace: the edge's, the
//! quota service's (Acquire and Settle), the router's and billing's
//! (LookupKey) spans all share the caller's trace id, each with the right
//! parent, without any service joining the trace by hand. Its own test
//! binary: the tracing subscriber it installs is process-global.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use llmgw_router::{ModelConfig, Provider};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt as _;

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
/// The caller's trace context.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
/// Generous: the test checks outcome and order, not speed.
const DEADLINE: Duration = Duration::from_secs(20);

/// Keeps every finished span (the in-process stand-in for a collector).
#[derive(Debug, Clone, Default)]
struct Exported(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Exported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.spans().extend(batch);
        Ok(())
    }
}

impl Exported {
    fn spans(&self) -> std::sync::MutexGuard<'_, Vec<SpanData>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn install_tracing() -> Exported {
    let exported = Exported::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exported.clone())
        .build();
    // What `llmgw_telemetry::init` does when an OTLP endpoint is set.
    llmgw_telemetry::propagate_trace_context();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("llmgw")));
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
    exported
}

async fn start_mock(stop: &CancellationToken) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
    let address = listener.local_addr().expect("mock address");
    tokio::spawn(llmgw_mock_upstream::run(
        llmgw_mock_upstream::Config::default(),
        listener,
        stop.clone().cancelled_owned(),
    ));
    address
}

fn config(mock: SocketAddr) -> llmgw::GatewayConfig {
    let dir = std::env::temp_dir().join(format!("llmgw-one-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).expect("token file");
    let mut config = llmgw::GatewayConfig::default();
    let any_port = "127.0.0.1:0".parse().expect("address");
    config.router.listen = any_port;
    config.router.models = vec![ModelConfig {
        alias: "mock".to_owned(),
        provider: Some(Provider::Openai),
        base_url: Some(format!("http://{mock}/v1")),
        upstream_model: Some("mock-upstream-model".to_owned()),
        input_price_per_mtok: Some("0.15".to_owned()),
        output_price_per_mtok: Some("0.60".to_owned()),
        ..ModelConfig::default()
    }];
    config.edge.listen = any_port;
    config.quota.listen = any_port;
    // In memory: the trace, not Redis, is under test.
    config.quota.redis_url = None;
    // A limit, so the edge asks the quota service (Acquire, then Settle).
    config.quota.limits.default_key.requests_per_minute = Some(1_000);
    config.billing.listen = any_port;
    config.billing.admin_listen = any_port;
    config.billing.database_url = None;
    config.billing.data_dir = dir.clone();
    config.billing.admin_token_file = Some(dir.join("admin-token"));
    config
}

/// A key from the accounts database: the edge must ask billing for it.
async fn database_key(client: &reqwest::Client, admin: SocketAddr) -> String {
    let admin = format!("http://{admin}/admin/v1");
    let created = client
        .post(format!("{admin}/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "acme"}))
        .send()
        .await
        .expect("admin API reachable");
    assert_eq!(created.status(), 201);
    let key: Value = client
        .post(format!("{admin}/tenants/acme/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .expect("admin API reachable")
        .json()
        .await
        .expect("key JSON");
    key["secret"].as_str().expect("secret").to_owned()
}

/// The one span of the trace named `name` whose `rpc` attribute (if any
/// given) is `rpc`.
fn find<'a>(spans: &'a [SpanData], name: &str, rpc: Option<&str>) -> &'a SpanData {
    let found: Vec<&SpanData> = spans
        .iter()
        .filter(|span| span.name == name)
        .filter(|span| {
            rpc.is_none_or(|rpc| {
                span.attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "rpc" && kv.value.as_str() == rpc)
            })
        })
        .collect();
    let names: Vec<_> = spans.iter().map(|span| span.name.as_ref()).collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} {rpc:?} span expected in the trace; it has {names:?}"
    );
    found[0]
}

fn assert_child(child: &SpanData, parent: &SpanData) {
    assert_eq!(
        child.parent_span_id,
        parent.span_context.span_id(),
        "{} is not a child of {}",
        child.name,
        parent.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_every_service() {
    let exported = install_tracing();
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let mock = start_mock(&stop).await;
    let (addresses, services) = llmgw::start_all(config(mock), stop.clone())
        .await
        .expect("gateway starts");
    let services = tokio::spawn(services.wait(Duration::from_secs(5)));
    let client = reqwest::Client::new();
    let admin = addresses.billing.expect("billing started").1;
    let key = database_key(&client, admin).await;
    let edge = format!("http://{}", addresses.edge);
    tokio::time::timeout(DEADLINE, async {
        while client
            .get(format!("{edge}/readyz"))
            .send()
            .await
            .map_or(true, |response| response.status() != 200)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("gateway ready");

    let response = tokio::time::timeout(
        DEADLINE,
        client
            .post(format!("{edge}/v1/chat/completions"))
            .bearer_auth(&key)
            .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01"))
            .json(&json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}))
            .send(),
    )
    .await
    .expect("chat timed out")
    .expect("edge reachable");
    assert_eq!(response.status(), 200);
    let _ = response.bytes().await;

    // The Settle leaves after the answer: wait for its span.
    let trace_id = TraceId::from_hex(TRACE_ID).expect("trace id");
    let trace = tokio::time::timeout(DEADLINE, async {
        loop {
            let trace: Vec<SpanData> = exported
                .spans()
                .iter()
                .filter(|span| span.span_context.trace_id() == trace_id)
                .cloned()
                .collect();
            let settled = trace.iter().any(|span| span.name == "quota.settle");
            let edge_done = trace.iter().any(|span| span.name == "http.server");
            if settled && edge_done {
                return trace;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let names: Vec<String> = exported
            .spans()
            .iter()
            .map(|span| format!("{} {}", span.name, span.span_context.trace_id()))
            .collect();
        panic!("the trace never got its quota.settle and http.server spans: {names:?}")
    });

    // Edge: the HTTP server span continues the caller's trace.
    let http = find(&trace, "http.server", None);
    assert_eq!(
        http.parent_span_id,
        SpanId::from_hex(CALLER_SPAN_ID).expect("span id")
    );
    let chat = find(&trace, "edge.chat", None);
    assert_child(chat, http);
    // Billing, quota and router: each call's server span is a child of the
    // edge's request span, and the handler's span a child of that.
    for (rpc, handler) in [
        ("/llmgw.billing.v1.Accounts/LookupKey", "billing.lookup_key"),
        ("/llmgw.quota.v1.Quota/Acquire", "quota.acquire"),
        ("/llmgw.quota.v1.Quota/Settle", "quota.settle"),
        ("/llmgw.router.v1.Router/Chat", "router.chat"),
    ] {
        let server = find(&trace, "grpc.server", Some(rpc));
        assert_child(server, chat);
        assert_child(find(&trace, handler, None), server);
    }

    stop.cancel();
    tokio::time::timeout(DEADLINE, services)
        .await
        .expect("services stop")
        .expect("services task")
        .expect("services ran");
}
