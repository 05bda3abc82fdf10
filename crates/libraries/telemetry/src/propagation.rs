//! W3C trace context (`traceparent`/`tracestate`) in and out of header maps,
//! in one of two modes, chosen once per process:
//!
//! - **pass-through** (the default: no exporter): a caller's context is
//!   kept, as it arrived, on the server span of the request
//!   ([`crate::passthrough`]) and written unchanged into every call made
//!   under that span. No trace or span ids are generated, so the cost is
//!   one header check per hop; the gateway is transparent to the caller's
//!   trace, and requests without a `traceparent` cost one atomic load per
//!   outgoing call.
//! - **full** (an exporter is installed, [`propagate_trace_context`]): the
//!   caller's context becomes the parent of our spans and each call carries
//!   the context of the span it is made from, so the gateway's spans join
//!   the caller's trace.
//!
//! Services do not call these by hand on their own hops: the layers in
//! `trace_layers` do, on every gRPC call and every edge request. The router
//! injects by hand only into its upstream HTTP calls.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::passthrough;

pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const TRACESTATE: &str = "tracestate";

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

/// A stored `traceparent` read back as a context (span links).
struct TraceparentExtractor<'a>(&'a str);

impl Extractor for TraceparentExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Set once spans are exported (full mode); pass-through until then.
static FULL: AtomicBool = AtomicBool::new(false);

/// Propagates W3C trace context in full mode from now on: installs the
/// `traceparent` propagator and makes every hop carry the context of our own
/// spans. `init` calls it when spans are exported; a test installing its
/// own exporter calls it too.
pub fn propagate_trace_context() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    FULL.store(true, Ordering::Relaxed);
}

/// Whether our spans are exported (full mode), rather than a caller's
/// context passed through.
pub fn exporting_spans() -> bool {
    FULL.load(Ordering::Relaxed)
}

/// Writes the trace context of the current span into `headers`: in full
/// mode the span's own, in pass-through mode the caller's context the
/// request arrived with (nothing if it came without one).
pub fn inject_context(headers: &mut HeaderMap) {
    if exporting_spans() {
        let context = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(headers));
        });
    } else {
        passthrough::inject(&tracing::Span::current(), headers);
    }
}

/// A trace context carried in a message rather than in a call's headers:
/// one call of a long-lived stream carries many requests' messages, each
/// with its own context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageTrace {
    pub traceparent: String,
    pub tracestate: String,
}

impl MessageTrace {
    /// What a call made from the current span would carry in its headers
    /// (see [`inject_context`]); empty when it would carry nothing.
    pub fn current() -> MessageTrace {
        let mut headers = HeaderMap::new();
        inject_context(&mut headers);
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map_or_else(String::new, str::to_owned)
        };
        MessageTrace {
            traceparent: text(TRACEPARENT),
            tracestate: text(TRACESTATE),
        }
    }
}

/// The `traceparent` that calls made under `span` carry (see
/// [`inject_context`]), for records that outlive the request and must be
/// linked to it later (usage events); `None` when there is none.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !exporting_spans() {
        return passthrough::traceparent(span);
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Adds a span link from `span` to the span that `traceparent` names (as
/// [`traceparent_of`] wrote it). Only spans that are exported have links:
/// without an exporter this does nothing, and costs nothing.
pub fn add_link(span: &tracing::Span, traceparent: &str) {
    if !exporting_spans() || traceparent.is_empty() {
        return;
    }
    let context = TraceContextPropagator::new().extract(&TraceparentExtractor(traceparent));
    let linked = context.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// Reads a caller's trace context from `headers` (full mode).
pub(crate) fn extract_context(headers: &HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    })
}
