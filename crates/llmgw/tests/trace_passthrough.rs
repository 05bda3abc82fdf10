//! Without an OTLP endpoint (the production subscriber, at quiet logs), a
//! caller's `traceparent` and `tracestate` cross `llmgw all` unchanged: the
//! edge's calls to billing (LookupKey), quota (Acquire, Settle) and the
//! router (Chat) carry it, and the upstream receives exactly what the client
//! sent. A request without one gets none: nothing is generated. Its own
//! test binary: the tracing subscriber is process-global.

// Each test binary uses part of it.
#[allow(dead_code)]
mod in_process_gateway;

use std::sync::{Arc, Mutex, PoisonError};

use in_process_gateway::Gateway;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::FilterFn;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACESTATE: &str = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";

/// The handler spans whose calls must have carried the context in.
const HANDLERS: [(&str, &str); 4] = [
    ("billing.lookup_key", "/llmgw.billing.v1.Accounts/LookupKey"),
    ("quota.acquire", "/llmgw.quota.v1.Quota/Acquire"),
    ("quota.settle", "/llmgw.quota.v1.Quota/Settle"),
    ("router.chat", "/llmgw.router.v1.Router/Chat"),
];

/// A handler span, and the `rpc` of the `grpc.server` span it runs in.
/// That span exists only when the call carried a valid `traceparent`, and
/// without an exporter, the only one a service can send is the one it
/// received.
type HandlerSpan = (String, Option<String>);

/// Every handler span opened.
#[derive(Debug, Clone, Default)]
struct Handled(Arc<Mutex<Vec<HandlerSpan>>>);

impl Handled {
    fn seen(&self) -> Vec<HandlerSpan> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The `rpc` field of a `grpc.server` span.
struct Rpc(String);

impl Visit for Rpc {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "rpc" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S> Layer<S> for Handled
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let Some(span) = context.span(id) else {
            return;
        };
        if span.name() == "grpc.server" {
            let mut rpc = Rpc(String::new());
            attributes.record(&mut rpc);
            span.extensions_mut().insert(rpc);
            return;
        }
        let rpc = span
            .scope()
            .skip(1)
            .find(|ancestor| ancestor.name() == "grpc.server")
            .and_then(|server| server.extensions().get::<Rpc>().map(|rpc| rpc.0.clone()));
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((span.name().to_owned(), rpc));
    }
}

fn install_tracing() -> Handled {
    let handled = Handled::default();
    // Only these spans, so the edge's spans (which carry the context) exist
    // only because the subscriber keeps request spans at quiet logs.
    let watched = handled.clone().with_filter(FilterFn::new(|metadata| {
        metadata.is_span()
            && (metadata.name() == "grpc.server"
                || HANDLERS.iter().any(|(name, _)| *name == metadata.name()))
    }));
    let config = llmgw_telemetry::Config {
        log_level: "warn".to_owned(),
        ..llmgw_telemetry::Config::default()
    };
    std::mem::forget(llmgw_telemetry::init_with(&config, "llmgw", watched).expect("subscriber"));
    assert!(!llmgw_telemetry::exporting_spans());
    handled
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_context_crosses_every_hop_unchanged_without_an_exporter() {
    let handled = install_tracing();
    let gateway = Gateway::start("trace-passthrough").await;

    gateway
        .chat(
            "hi",
            &[("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)],
        )
        .await;
    let upstream = gateway.upstream_headers().await;
    assert_eq!(
        upstream["traceparent"], TRACEPARENT,
        "headers: {upstream:#}"
    );
    assert_eq!(upstream["tracestate"], TRACESTATE, "headers: {upstream:#}");

    // Without a context: none is made up. (The key is cached by now: this
    // request asks billing nothing.)
    gateway.chat("hi again", &[]).await;
    let upstream = gateway.upstream_headers().await;
    assert!(
        upstream.get("traceparent").is_none(),
        "headers: {upstream:#}"
    );
    assert!(
        upstream.get("tracestate").is_none(),
        "headers: {upstream:#}"
    );
    // The Settles leave after the answers: stopping waits for them.
    gateway.stop().await;

    let all = handled.seen();
    for (handler, rpc) in HANDLERS {
        assert!(
            all.iter()
                .any(|(name, server)| name == handler && server.as_deref() == Some(rpc)),
            "{handler} did not run in a call carrying the trace context: {all:?}"
        );
    }
}
