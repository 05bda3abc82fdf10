//! What trace-context propagation costs one service hop:
//! `cargo bench -p llmgw-telemetry --bench propagation`.
//!
//! A hop: the server layer (`ExtractTraceContext`) around a handler that
//! opens its request span and makes three outgoing calls (each an
//! `inject_context` into fresh headers), as the edge does (LookupKey,
//! Acquire, Chat). Each set-up runs in its own process (the subscriber and
//! the propagation mode are process-global), at log levels `info` (the
//! default) and `warn`:
//!
//! - `before`: the subscriber as it was before pass-through existed (logs
//!   only; at `warn` the request spans were not even created);
//! - `passthrough`: `llmgw_telemetry::init` without an exporter;
//! - `full`: spans exported (an OpenTelemetry layer and a batch processor
//!   whose exporter drops them), as with an OTLP endpoint.

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::process::Command;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request};
use llmgw_telemetry::{ExtractTraceContextLayer, ServerKind};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tower_layer::Layer as _;
use tracing::Instrument as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

const HOPS: u32 = 100_000;
const RUNS: usize = 15;
const SETUPS: [&str; 3] = ["before", "passthrough", "full"];
const LEVELS: [&str; 2] = ["info", "warn"];

#[derive(Debug)]
struct DropSpans;

impl SpanExporter for DropSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        black_box(batch);
        Ok(())
    }
}

fn install(setup: &str, level: &str) -> Option<SdkTracerProvider> {
    match setup {
        "passthrough" => {
            let config = llmgw_telemetry::Config {
                log_level: level.to_owned(),
                ..llmgw_telemetry::Config::default()
            };
            std::mem::forget(llmgw_telemetry::init(&config, "bench").expect("subscriber"));
            None
        }
        "before" => {
            tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_filter(tracing_subscriber::EnvFilter::new(level)),
                )
                .init();
            None
        }
        _ => {
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(DropSpans)
                .build();
            llmgw_telemetry::propagate_trace_context();
            tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_filter(tracing_subscriber::EnvFilter::new(level)),
                )
                .with(
                    tracing_opentelemetry::layer()
                        .with_tracer(provider.tracer("bench"))
                        .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
                )
                .init();
            Some(provider)
        }
    }
}

/// The service the layer wraps (boxed future: the same cost in every set-up).
#[derive(Clone)]
struct Handler;

impl tower_service::Service<Request<()>> for Handler {
    type Response = usize;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<usize, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        Box::pin(handle(request))
    }
}

/// The handler of one request: its span, and three outgoing calls.
async fn handle(_request: Request<()>) -> Result<usize, Infallible> {
    let span = tracing::info_span!("handler", request_id = "req_0123456789");
    async {
        let mut carried = 0;
        for _ in 0..3 {
            // What a gRPC call's headers hold anyway.
            let mut headers = HeaderMap::with_capacity(8);
            headers.insert("content-type", HeaderValue::from_static("application/grpc"));
            headers.insert("te", HeaderValue::from_static("trailers"));
            headers.insert("grpc-timeout", HeaderValue::from_static("250m"));
            llmgw_telemetry::inject_context(&mut headers);
            carried += headers.len() - 3;
        }
        Ok(black_box(carried))
    }
    .instrument(span)
    .await
}

/// Polls a future that never waits to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the hop waited"),
    }
}

/// Nanoseconds per hop, best of `RUNS`, and the headers one hop sends on.
fn measure(with_traceparent: bool) -> (f64, usize) {
    let mut service = ExtractTraceContextLayer::new(ServerKind::Grpc).layer(Handler);
    let mut headers = HeaderMap::new();
    if with_traceparent {
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
    }
    let mut hop = || {
        let mut request = Request::new(());
        *request.headers_mut() = headers.clone();
        ready(tower_service::Service::call(&mut service, request)).unwrap_or_default()
    };
    let carried = hop() / 3;
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let start = Instant::now();
        for _ in 0..HOPS {
            black_box(hop());
        }
        best = best.min(start.elapsed());
    }
    (best.as_nanos() as f64 / f64::from(HOPS), carried)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--setup") {
        let (setup, level) = (&args[at + 1], &args[at + 2]);
        let provider = install(setup, level);
        for with_traceparent in [false, true] {
            let (ns, carried) = measure(with_traceparent);
            println!(
                "{setup:<12} {level:<5} {:<18} {ns:>8.0} ns/hop   headers sent per call: {carried}",
                if with_traceparent {
                    "with traceparent"
                } else {
                    "no traceparent"
                }
            );
        }
        drop(provider);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!("one hop = server layer + request span + 3 outgoing calls; best of {RUNS} x {HOPS}");
    for level in LEVELS {
        for setup in SETUPS {
            let status = Command::new(&exe)
                .args(["--setup", setup, level])
                .status()
                .expect("run a set-up");
            assert!(status.success(), "{setup} {level} failed");
        }
    }
}
