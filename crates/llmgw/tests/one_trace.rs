//! One chat request through `llmgw all`, exported by the real OTLP exporter
//! (`llmgw_telemetry::init` with an endpoint) to an in-process collector (a
//! tonic server implementing the OpenTelemetry collector's TraceService), is
//! ONE trace: the edge's spans, the quota service's (Acquire and Settle),
//! billing's key lookup, the router's and its upstream call all share the
//! caller's trace id, each with the right parent, without any service
//! joining the trace by hand; the upstream receives the context of the
//! attempt's span. The router's delivery of the request's usage event is a
//! trace of its own, linked to the request's span, with billing's
//! RecordUsage under it. No exported name, attribute or event contains the
//! API key or the prompt. Its own test binary: the tracing subscriber is
//! process-global.

// Each test binary uses part of it.
#[allow(dead_code)]
mod in_process_gateway;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use in_process_gateway::{DEADLINE, Gateway};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

/// The caller's trace context.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "congo=t61rcWkgMzE";
/// Must appear in no exported span.
const PROMPT_CANARY: &str = "canary-prompt-5f1e2d3c4b5a";

/// Everything the exporter sent.
#[derive(Debug, Clone, Default)]
struct Collector(Arc<Mutex<Vec<ExportTraceServiceRequest>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.requests().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    fn requests(&self) -> std::sync::MutexGuard<'_, Vec<ExportTraceServiceRequest>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every span received, in a form the assertions read.
    fn spans(&self) -> Vec<Span> {
        let requests = self.requests();
        let spans = requests
            .iter()
            .flat_map(|request| &request.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| &scope.spans);
        spans
            .map(|span| Span {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name.clone(),
                attributes: span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let value = match kv.value.as_ref().and_then(|value| value.value.as_ref()) {
                            Some(AnyValue::StringValue(text)) => text.clone(),
                            other => format!("{other:?}"),
                        };
                        (kv.key.clone(), value)
                    })
                    .collect(),
                links: span
                    .links
                    .iter()
                    .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                    .collect(),
            })
            .collect()
    }
}

/// An exported span, ids in lowercase hex.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: HashMap<String, String>,
    /// (trace id, span id) of each linked span.
    links: Vec<(String, String)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn start_collector(stop: &CancellationToken) -> (Collector, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind collector");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let collector = Collector::default();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    (collector, url)
}

/// The one span named `name` (with `rpc` as its `rpc` attribute, if given).
fn find<'a>(spans: &'a [Span], name: &str, rpc: Option<&str>) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|span| span.name == name)
        .filter(|span| {
            rpc.is_none_or(|rpc| span.attributes.get("rpc").map(String::as_str) == Some(rpc))
        })
        .collect();
    let names: Vec<_> = spans.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} {rpc:?} span expected; there are {names:?}"
    );
    found[0]
}

fn assert_child(child: &Span, parent: &Span) {
    assert_eq!(
        (&child.trace_id, &child.parent_span_id),
        (&parent.trace_id, &parent.span_id),
        "{} is not a child of {}",
        child.name,
        parent.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_every_service_exported_over_otlp() {
    let stop_collector = CancellationToken::new();
    let _stop_collector = stop_collector.clone().drop_guard();
    let (collector, endpoint) = start_collector(&stop_collector).await;
    let telemetry = llmgw_telemetry::Config {
        log_level: "warn".to_owned(),
        otlp_endpoint: Some(endpoint),
        ..llmgw_telemetry::Config::default()
    };
    let exporter = llmgw_telemetry::init(&telemetry, "llmgw").expect("telemetry");

    let gateway = Gateway::start("one-trace").await;
    let key = gateway.key.clone();
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN_ID}-01");
    gateway
        .chat(
            &format!("Summarise {PROMPT_CANARY} please"),
            &[("traceparent", &traceparent), ("tracestate", TRACESTATE)],
        )
        .await;
    let upstream = gateway.upstream_headers().await;
    // The Settle leaves after the answer and the usage event is delivered
    // in the background: stopping waits for both, then the exporter's
    // shutdown sends every span (it blocks: not on a runtime worker).
    gateway.stop().await;
    tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || drop(exporter)),
    )
    .await
    .expect("exporter flush timed out")
    .expect("exporter flush");
    let spans = collector.spans();
    let trace: Vec<Span> = spans
        .iter()
        .filter(|span| span.trace_id == TRACE_ID)
        .cloned()
        .collect();

    // Edge: the HTTP server span continues the caller's trace.
    let http = find(&trace, "http.server", None);
    assert_eq!(http.parent_span_id, CALLER_SPAN_ID);
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
    // The upstream call: the attempt's span, whose context the provider got.
    let router_chat = find(&trace, "router.chat", None);
    let attempt = find(&trace, "router.attempt", None);
    assert_child(attempt, router_chat);
    assert_eq!(
        upstream["traceparent"],
        format!("00-{TRACE_ID}-{}-01", attempt.span_id),
        "the upstream call carries the attempt's context"
    );
    assert_eq!(upstream["tracestate"], TRACESTATE);
    // One trace: none of the request's spans went elsewhere.
    for name in [
        "edge.chat",
        "router.chat",
        "router.attempt",
        "quota.acquire",
    ] {
        let elsewhere: Vec<&Span> = spans
            .iter()
            .filter(|span| span.name == name && span.trace_id != TRACE_ID)
            .collect();
        assert!(
            elsewhere.is_empty(),
            "{name} outside the trace: {elsewhere:?}"
        );
    }

    // The usage delivery: its own trace, linked to the request's span;
    // billing's RecordUsage under it.
    let request_span = (TRACE_ID.to_owned(), router_chat.span_id.clone());
    let deliveries: Vec<&Span> = spans
        .iter()
        .filter(|span| span.name == "router.deliver_usage" && span.links.contains(&request_span))
        .collect();
    assert!(
        !deliveries.is_empty(),
        "no usage delivery links to the request's span: {:?}",
        spans
            .iter()
            .filter(|span| span.name == "router.deliver_usage")
            .collect::<Vec<_>>()
    );
    for delivery in deliveries {
        assert_ne!(
            delivery.trace_id, TRACE_ID,
            "a delivery is a trace of its own"
        );
        assert!(
            delivery.parent_span_id.is_empty(),
            "a delivery is a root span"
        );
        let in_delivery: Vec<Span> = spans
            .iter()
            .filter(|span| span.trace_id == delivery.trace_id)
            .cloned()
            .collect();
        let server = find(
            &in_delivery,
            "grpc.server",
            Some("/llmgw.billing.v1.Ledger/RecordUsage"),
        );
        assert_child(server, delivery);
        assert_child(find(&in_delivery, "billing.record_usage", None), server);
    }

    // Nothing exported names the key or the prompt: not a span name, an
    // attribute, an event or a resource attribute (searched in the raw
    // protobuf of every export).
    let requests = collector.requests();
    let contains = |raw: &[u8], text: &str| {
        raw.windows(text.len())
            .any(|window| window == text.as_bytes())
    };
    assert!(
        requests
            .iter()
            .any(|request| contains(&request.encode_to_vec(), "/llmgw.router.v1.Router/Chat")),
        "attribute values are searched"
    );
    for request in requests.iter() {
        let raw = request.encode_to_vec();
        for (secret, what) in [(key.as_str(), "API key"), (PROMPT_CANARY, "prompt")] {
            assert!(
                !contains(&raw, secret),
                "an exported span contains the {what}: {request:?}"
            );
        }
    }
}
