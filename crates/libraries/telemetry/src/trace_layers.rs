//! W3C trace context carried across every hop without per-call code: a
//! client layer that writes the current span's context into each outgoing
//! request, and a server layer that reads the caller's context and makes it
//! the parent of everything the handler does. The gRPC plumbing
//! (`llmgw-grpc`) and the edge's HTTP router both use them.

use std::task::{Context, Poll};

use opentelemetry::trace::TraceContextExt as _;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument as _;
use tracing::instrument::Instrumented;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::passthrough;
use crate::propagation::{
    TRACEPARENT, TRACESTATE, exporting_spans, extract_context, inject_context,
};

#[derive(Debug, Clone)]
pub struct InjectTraceContext<S> {
    inner: S,
}

impl<S> InjectTraceContext<S> {
    pub fn new(inner: S) -> InjectTraceContext<S> {
        InjectTraceContext { inner }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<http::Request<B>> for InjectTraceContext<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> S::Future {
        // `call` runs in the caller's task, under the caller's span.
        inject_context(request.headers_mut());
        self.inner.call(request)
    }
}

/// Which kind of server a span stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// A gRPC call: span `grpc.server`, field `rpc` (`/package.Service/Method`).
    Grpc,
    /// An HTTP request: span `http.server`, fields `method` and `path`.
    Http,
}

/// Server side: a request that carries a caller's trace context is handled
/// inside a server span, so every call the handler makes carries that trace
/// on. With spans exported, the span's parent is the caller's context and
/// every span the handler opens joins the caller's trace; without, the span
/// keeps the context as it arrived, for the handler's calls to pass on
/// unchanged. A request without one gets no span at all: it would cost CPU
/// on every request for nobody.
#[derive(Debug, Clone, Copy)]
pub struct ExtractTraceContextLayer {
    kind: ServerKind,
}

impl ExtractTraceContextLayer {
    pub fn new(kind: ServerKind) -> ExtractTraceContextLayer {
        ExtractTraceContextLayer { kind }
    }
}

impl<S> Layer<S> for ExtractTraceContextLayer {
    type Service = ExtractTraceContext<S>;

    fn layer(&self, inner: S) -> ExtractTraceContext<S> {
        ExtractTraceContext {
            inner,
            kind: self.kind,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExtractTraceContext<S> {
    inner: S,
    kind: ServerKind,
}

impl<S, B> Service<http::Request<B>> for ExtractTraceContext<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = server_span(self.kind, &request);
        // The inner service may do work in `call` already (tonic's routes
        // do): it belongs to the span too.
        let future = span.in_scope(|| self.inner.call(request));
        future.instrument(span)
    }
}

fn server_span<B>(kind: ServerKind, request: &http::Request<B>) -> tracing::Span {
    joined_span(request.headers(), || new_server_span(kind, request))
}

/// The server span of one message of a long-lived stream (see
/// [`crate::MessageTrace`]): what [`ExtractTraceContextLayer`] does for a
/// call, done for a message carrying its own request's trace context.
pub fn message_span(rpc: &'static str, trace: &crate::MessageTrace) -> tracing::Span {
    if trace.traceparent.is_empty() {
        return tracing::Span::none();
    }
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        (TRACEPARENT, &trace.traceparent),
        (TRACESTATE, &trace.tracestate),
    ] {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    joined_span(&headers, || tracing::info_span!("grpc.server", rpc))
}

/// A span made by `make`, joined to the trace context in `headers`; none
/// without one.
fn joined_span(headers: &http::HeaderMap, make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if !headers.contains_key(TRACEPARENT) {
        return tracing::Span::none();
    }
    if exporting_spans() {
        let parent = extract_context(headers);
        if !parent.span().span_context().is_valid() {
            return tracing::Span::none();
        }
        let span = make();
        // Fails only when no OpenTelemetry layer is installed: nothing to join.
        let _ = span.set_parent(parent);
        span
    } else {
        let Some(incoming) = passthrough::Incoming::from_headers(headers) else {
            return tracing::Span::none();
        };
        let span = make();
        passthrough::attach(&span, incoming);
        span
    }
}

fn new_server_span<B>(kind: ServerKind, request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    match kind {
        ServerKind::Grpc => tracing::info_span!("grpc.server", rpc = path),
        ServerKind::Http => {
            tracing::info_span!("http.server", method = %request.method(), path)
        }
    }
}
