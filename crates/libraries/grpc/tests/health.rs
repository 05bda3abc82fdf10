//! Every server started by `llmgw_grpc::serve` answers the standard gRPC
//! health protocol over TCP and in process: SERVING while it serves,
//! NOT_SERVING as soon as shutdown begins (while open calls still drain),
//! and watch streams end so the drain is not held up by them.

mod support;

use std::sync::Arc;

use futures_util::StreamExt as _;
use llmgw_grpc::{InProcessListener, Listener, ServingStatus};
use llmgw_proto::billing_v1::accounts_client::AccountsClient;
use llmgw_proto::billing_v1::accounts_server::{Accounts, AccountsServer};
use llmgw_proto::billing_v1::{LookupKeyRequest, LookupKeyResponse};
use support::within;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tonic::service::Routes;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Answers once `release` is notified, so a call can be kept open across
/// the start of a shutdown.
struct Slow {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

#[tonic::async_trait]
impl Accounts for Slow {
    async fn lookup_key(
        &self,
        _request: tonic::Request<LookupKeyRequest>,
    ) -> Result<tonic::Response<LookupKeyResponse>, tonic::Status> {
        self.entered.notify_one();
        self.release.notified().await;
        Ok(tonic::Response::new(LookupKeyResponse::default()))
    }
}

type WatchStream = tonic::Streaming<tonic_health::pb::HealthCheckResponse>;

async fn watch(url: &str) -> WatchStream {
    let channel = llmgw_grpc::channel(url).expect("channel");
    within(
        "watch",
        HealthClient::new(channel).watch(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .expect("watch answered")
    .into_inner()
}

async fn next_status(stream: &mut WatchStream) -> Option<ServingStatus> {
    within("next watch status", stream.next())
        .await
        .map(|status| status.expect("status").status())
}

#[tokio::test]
async fn health_is_serving_then_not_serving_from_the_start_of_the_drain() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let tcp_url = format!("http://{}", tcp.local_addr().expect("address"));
    let in_process = InProcessListener::bind("health");
    let in_process_url = in_process.url();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(llmgw_grpc::serve(
        Routes::new(AccountsServer::new(Slow {
            entered: entered.clone(),
            release: release.clone(),
        })),
        || "# EOF\n".to_owned(),
        Listener::new(tcp, Some(in_process)),
        async {
            let _ = stopped.await;
        },
    ));

    for url in [&tcp_url, &in_process_url] {
        let status = within("check", llmgw_grpc::check_health(url)).await;
        assert_eq!(
            status.expect("health answers"),
            ServingStatus::Serving,
            "{url}"
        );
    }
    let mut watchers = [watch(&tcp_url).await, watch(&in_process_url).await];
    for watcher in &mut watchers {
        assert_eq!(next_status(watcher).await, Some(ServingStatus::Serving));
    }

    // A call in progress keeps the server draining after the shutdown.
    let mut client = AccountsClient::new(llmgw_grpc::channel(&tcp_url).expect("channel"));
    let call = tokio::spawn(async move { client.lookup_key(LookupKeyRequest::default()).await });
    within("the call reaches its handler", entered.notified()).await;
    let _ = stop.send(());

    for watcher in &mut watchers {
        assert_eq!(
            next_status(watcher).await,
            Some(ServingStatus::NotServing),
            "NOT_SERVING as soon as shutdown begins"
        );
        assert_eq!(next_status(watcher).await, None, "then the stream ends");
    }
    assert!(!server.is_finished(), "the open call is still draining");
    release.notify_one();
    within("the drained call", call)
        .await
        .expect("call task")
        .expect("the open call completes during the drain");
    within("the server stops", server)
        .await
        .expect("server task")
        .expect("server ran");

    for url in [&tcp_url, &in_process_url] {
        let checked = within("check after stop", llmgw_grpc::check_health(url)).await;
        assert!(checked.is_err(), "a stopped server answers no health check");
    }
}

#[tokio::test]
async fn a_health_check_of_nothing_fails_with_the_reason() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", tcp.local_addr().expect("address"));
    drop(tcp);
    let error = within("check", llmgw_grpc::check_health(&url))
        .await
        .expect_err("nothing listens");
    let message = format!("{error:#}");
    assert!(message.contains(&url), "{message}");
    assert!(message.contains("Unavailable"), "{message}");
}
