//! What the production subscriber enables without an exporter, at quiet
//! logs: the request spans (a caller's trace context rides on them to the
//! calls the request makes), and nothing else the log level leaves out. Its own test binary: the subscriber is process-global.

use std::convert::Infallible;
use std::future::Ready;
use std::task::{Context, Poll};

use llmgw_telemetry::{ExtractTraceContextLayer, ServerKind};
use tower_layer::Layer as _;
use tower_service::Service;

/// Opens a request span and says whether it was created.
#[derive(Clone)]
struct Handler;

impl Service<http::Request<()>> for Handler {
    type Response = bool;
    type Error = Infallible;
    type Future = Ready<Result<bool, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        std::future::ready(Ok(!tracing::info_span!("request").is_disabled()))
    }
}

/// Whether the handler's request span exists, for a request with or
/// without a `traceparent`.
fn request_span_created(traceparent: bool) -> bool {
    let mut service = ExtractTraceContextLayer::new(ServerKind::Http).layer(Handler);
    let mut request = http::Request::new(());
    if traceparent {
        request.headers_mut().insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
    }
    let future = service.call(request);
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::noop();
    match future.as_mut().poll(&mut Context::from_waker(waker)) {
        Poll::Ready(Ok(created)) => created,
        Poll::Ready(Err(never)) => match never {},
        Poll::Pending => panic!("the handler answers at once"),
    }
}

#[test]
fn quiet_logs_keep_request_spans_and_nothing_more() {
    let config = llmgw_telemetry::Config {
        log_level: "warn".to_owned(),
        ..llmgw_telemetry::Config::default()
    };
    let _guard = llmgw_telemetry::init(&config, "test").expect("subscriber");
    assert!(!llmgw_telemetry::exporting_spans());
    for traceparent in [true, false] {
        assert!(
            request_span_created(traceparent),
            "request spans exist at any log level (traceparent: {traceparent})"
        );
    }
    assert!(tracing::debug_span!("detail").is_disabled());
    assert!(
        !tracing::enabled!(tracing::Level::INFO),
        "info events stay off"
    );
    assert!(tracing::enabled!(tracing::Level::WARN));
}
