//! Without an exporter (pass-through mode, the production subscriber at
//! quiet logs), a caller's `traceparent` and `tracestate` travel unchanged
//! through a service to the next one it calls, over TCP and in process,
//! spawned tasks included. Its own test binary: the tracing subscriber is
//! process-global.

use std::sync::Once;
use std::time::Duration;

use llmgw_grpc::{InProcessListener, Listener};
use llmgw_proto::billing_v1::accounts_client::AccountsClient;
use llmgw_proto::billing_v1::accounts_server::{Accounts, AccountsServer};
use llmgw_proto::billing_v1::{KeyInfo, LookupKeyRequest, LookupKeyResponse};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tracing::Instrument as _;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
const DEADLINE: Duration = Duration::from_secs(10);

fn install_tracing() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let config = llmgw_telemetry::Config {
            // Quiet logs must not turn propagation off.
            log_level: "warn".to_owned(),
            ..llmgw_telemetry::Config::default()
        };
        std::mem::forget(llmgw_telemetry::init(&config, "test").expect("subscriber"));
    });
    assert!(!llmgw_telemetry::exporting_spans());
}

/// The last service: answers with the trace context it received
/// (`name` = traceparent, `tenant` = tracestate).
struct Echo;

#[tonic::async_trait]
impl Accounts for Echo {
    async fn lookup_key(
        &self,
        request: tonic::Request<LookupKeyRequest>,
    ) -> Result<tonic::Response<LookupKeyResponse>, tonic::Status> {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        Ok(tonic::Response::new(LookupKeyResponse {
            found: true,
            key: Some(KeyInfo {
                name: header("traceparent"),
                tenant: header("tracestate"),
                ..KeyInfo::default()
            }),
        }))
    }
}

/// The service in the middle: calls the next one from a spawned task under
/// a span of its own, as the services do.
struct Relay {
    next: String,
}

#[tonic::async_trait]
impl Accounts for Relay {
    async fn lookup_key(
        &self,
        _request: tonic::Request<LookupKeyRequest>,
    ) -> Result<tonic::Response<LookupKeyResponse>, tonic::Status> {
        let mut next = AccountsClient::new(llmgw_grpc::channel(&self.next).expect("channel"));
        let call = async move { next.lookup_key(LookupKeyRequest::default()).await }
            .instrument(tracing::info_span!("relay.call"));
        tokio::spawn(call)
            .await
            .map_err(|_| tonic::Status::internal("call task"))?
    }
}

/// Starts `service` on a TCP port and an in-process address; returns the
/// URL to reach it by.
async fn start(service: impl Accounts, in_process: bool, stop: &CancellationToken) -> String {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tcp_url = format!("http://{}", tcp.local_addr().expect("address"));
    let in_process_listener = InProcessListener::bind("accounts");
    let in_process_url = in_process_listener.url();
    tokio::spawn(llmgw_grpc::serve(
        Routes::new(AccountsServer::new(service)),
        String::new,
        Listener::new(tcp, Some(in_process_listener)),
        stop.clone().cancelled_owned(),
    ));
    if in_process { in_process_url } else { tcp_url }
}

/// What the last service received when the first was called with
/// `traceparent` and `tracestate` (if any): (traceparent, tracestate).
async fn received(
    in_process: bool,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> (String, String) {
    install_tracing();
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let echo = start(Echo, in_process, &stop).await;
    let relay = start(Relay { next: echo }, in_process, &stop).await;
    let mut request = tonic::Request::new(LookupKeyRequest::default());
    for (name, value) in [("traceparent", traceparent), ("tracestate", tracestate)] {
        if let Some(value) = value {
            request
                .metadata_mut()
                .insert(name, value.parse().expect("metadata value"));
        }
    }
    // The caller's own context, as any client would send it: with no span
    // current, llmgw's channel adds nothing of its own.
    let mut client = AccountsClient::new(llmgw_grpc::channel(&relay).expect("channel"));
    let answer = tokio::time::timeout(DEADLINE, client.lookup_key(request))
        .await
        .expect("call timed out")
        .expect("call answered")
        .into_inner();
    let key = answer.key.expect("key");
    (key.name, key.tenant)
}

#[tokio::test]
async fn a_callers_context_passes_through_a_service_unchanged_over_tcp() {
    let received = received(false, Some(TRACEPARENT), Some(TRACESTATE)).await;
    assert_eq!(received, (TRACEPARENT.to_owned(), TRACESTATE.to_owned()));
}

#[tokio::test]
async fn a_callers_context_passes_through_a_service_unchanged_in_process() {
    let received = received(true, Some(TRACEPARENT), Some(TRACESTATE)).await;
    assert_eq!(received, (TRACEPARENT.to_owned(), TRACESTATE.to_owned()));
}

#[tokio::test]
async fn without_a_valid_context_nothing_is_passed_on() {
    assert_eq!(received(false, None, None).await, Default::default());
    assert_eq!(
        received(false, Some("00-not-a-traceparent"), Some(TRACESTATE)).await,
        Default::default(),
        "a malformed traceparent is dropped, its tracestate with it"
    );
}
