//! A call through `llmgw_grpc::channel` to a server started by
//! `llmgw_grpc::serve` works, and carries the caller's trace context into
//! the handler's spans, over TCP and in process alike. Its own test binary:
//! the tracing subscriber is process-global.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use llmgw_grpc::{InProcessListener, Listener};
use llmgw_proto::billing_v1::accounts_client::AccountsClient;
use llmgw_proto::billing_v1::accounts_server::{Accounts, AccountsServer};
use llmgw_proto::billing_v1::{KeyInfo, LookupKeyRequest, LookupKeyResponse};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tokio::net::TcpListener;
use tonic::service::Routes;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Keeps every finished span.
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

impl Exported {
    fn named(&self, name: &str) -> Vec<SpanData> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|span| span.name == name)
            .cloned()
            .collect()
    }
}

fn exported() -> &'static Exported {
    static EXPORTED: OnceLock<Exported> = OnceLock::new();
    EXPORTED.get_or_init(|| {
        let exported = Exported::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        llmgw_telemetry::propagate_trace_context();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::set_global_default(subscriber)
            .expect("one subscriber per test binary");
        exported
    })
}

/// Answers with the trace id its handler span is in, and the `traceparent`
/// it received.
struct Echo;

#[tonic::async_trait]
impl Accounts for Echo {
    async fn lookup_key(
        &self,
        request: tonic::Request<LookupKeyRequest>,
    ) -> Result<tonic::Response<LookupKeyResponse>, tonic::Status> {
        let traceparent = request
            .metadata()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let span = tracing::info_span!("test.handler");
        let trace_id = span.context().span().span_context().trace_id().to_string();
        Ok(tonic::Response::new(LookupKeyResponse {
            found: true,
            key: Some(KeyInfo {
                key_id: trace_id,
                name: traceparent,
                ..KeyInfo::default()
            }),
        }))
    }
}

async fn assert_call_carries_trace_context(in_process: bool) {
    let exported = exported();
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tcp_url = format!("http://{}", tcp.local_addr().expect("address"));
    let (listener, url) = if in_process {
        let in_process = InProcessListener::bind("accounts");
        let url = in_process.url();
        (Listener::new(tcp, Some(in_process)), url)
    } else {
        (Listener::from(tcp), tcp_url.clone())
    };
    let stop = stop_signal();
    let server = tokio::spawn(llmgw_grpc::serve(
        Routes::new(AccountsServer::new(Echo)),
        || "# EOF\n".to_owned(),
        listener,
        stop.1,
    ));
    let mut client = AccountsClient::new(llmgw_grpc::channel(&url).expect("channel"));

    let caller = tracing::info_span!("test.caller", in_process);
    let caller_trace = caller.context().span().span_context().trace_id();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        async { client.lookup_key(LookupKeyRequest::default()).await }.instrument(caller.clone()),
    )
    .await
    .expect("call timed out")
    .expect("call answered")
    .into_inner();
    drop(caller);
    let key = answer.key.expect("key");
    assert!(
        key.name.contains(&caller_trace.to_string()),
        "traceparent {:?} is not the caller's trace {caller_trace}",
        key.name
    );
    assert_eq!(
        key.key_id,
        caller_trace.to_string(),
        "the handler's span is not in the caller's trace"
    );
    // The handler's span is a child of the server span, itself a child of
    // the caller's span.
    let caller = exported
        .named("test.caller")
        .into_iter()
        .find(|span| span.span_context.trace_id() == caller_trace)
        .expect("caller span exported");
    let server_span = exported
        .named("grpc.server")
        .into_iter()
        .find(|span| span.span_context.trace_id() == caller_trace)
        .expect("grpc.server span exported");
    assert_eq!(server_span.parent_span_id, caller.span_context.span_id());
    let handler = exported
        .named("test.handler")
        .into_iter()
        .find(|span| span.span_context.trace_id() == caller_trace)
        .expect("handler span exported");
    assert_eq!(handler.parent_span_id, server_span.span_context.span_id());

    // The TCP port serves /metrics either way.
    let metrics = get_metrics(&tcp_url).await;
    assert!(metrics.contains("# EOF"), "metrics: {metrics}");

    let _ = stop.0.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops")
        .expect("server task")
        .expect("server ran");
    if in_process {
        // A stopped server's address refuses new connections.
        let mut late = AccountsClient::new(llmgw_grpc::channel(&url).expect("channel"));
        let refused = late
            .lookup_key(LookupKeyRequest::default())
            .await
            .expect_err("nobody serves the address any more");
        assert_eq!(refused.code(), tonic::Code::Unavailable);
    }
}

fn stop_signal() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()>,
) {
    let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
    (sender, async move {
        let _ = receiver.await;
    })
}

/// `GET /metrics` over plain HTTP/1 on the server's TCP port.
async fn get_metrics(base: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("metrics timed out")
    .expect("read");
    response
}

#[tokio::test]
async fn a_call_over_tcp_carries_trace_context() {
    assert_call_carries_trace_context(false).await;
}

#[tokio::test]
async fn a_call_in_process_carries_trace_context() {
    assert_call_carries_trace_context(true).await;
}
