//! W3C trace context (`traceparent`/`tracestate`) in and out of header maps.
//! Services do not call these by hand on their own hops: the layers in
//! `trace_layers` do, on every gRPC call and every edge request. The router
//! injects by hand only into its upstream HTTP calls.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(key), HeaderValue::try_from(value)) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// Set once trace context is propagated (an exporter is installed). Until
/// then injecting would only ask the subscriber for a context nobody reads,
/// on every outgoing call.
static PROPAGATING: AtomicBool = AtomicBool::new(false);

/// Propagates W3C trace context from now on: installs the `traceparent`
/// propagator and turns on injection. `init` calls it when spans are
/// exported; a test installing its own exporter calls it too.
pub fn propagate_trace_context() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    PROPAGATING.store(true, Ordering::Relaxed);
}

/// Writes the current span's trace context into `headers` (nothing when
/// tracing export is off).
pub fn inject_context(headers: &mut HeaderMap) {
    if !PROPAGATING.load(Ordering::Relaxed) {
        return;
    }
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Reads a caller's trace context from `headers`.
pub(crate) fn extract_context(headers: &HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}
