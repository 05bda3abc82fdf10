//! W3C trace context (`traceparent`/`tracestate`) in and out of header maps.
//! gRPC metadata is a header map too (`MetadataMap: AsRef<HeaderMap>`), so the
//! same two functions serve the HTTP edge, the gRPC hop and the upstream call.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
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

/// Writes the current span's trace context into `headers` (nothing when
/// tracing export is off).
pub fn inject_context(headers: &mut HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Reads a caller's trace context from `headers`.
pub fn extract_context(headers: &HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}

/// Makes `span` a child of the caller's trace, when the caller sent one.
pub fn set_parent_from(span: &tracing::Span, headers: &HeaderMap) {
    if headers.contains_key("traceparent") {
        // Fails only when no OpenTelemetry layer is installed: nothing to join.
        let _ = span.set_parent(extract_context(headers));
    }
}
