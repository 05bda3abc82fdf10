//! `llmgw probe URL`, the container healthcheck, run as the binary against
//! real services on port 0: exit 0 and silence when healthy, exit 1 and one
//! line on stderr when not; no configuration read, no logs written.

// Each test binary uses part of it.
#[allow(dead_code)]
mod in_process_gateway;

use std::net::SocketAddr;
use std::process::Output;

use in_process_gateway::{DEADLINE, Gateway};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

/// Runs `llmgw probe` with `args`, in an environment that would break any
/// configuration loading or flood stderr with logs if the probe did either.
async fn probe(args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmgw"))
        .arg("probe")
        .args(args)
        .env("LLMGW_CONFIG", "/nonexistent/llmgw.yaml")
        .env("LLMGW_EDGE__LISTEN", "not an address")
        .env("RUST_LOG", "trace")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(DEADLINE, output)
        .await
        .expect("probe timed out")
        .expect("probe runs")
}

fn assert_healthy(url: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{url}: {:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{url}: silent"
    );
}

/// Exit 1 and exactly one line on stderr, naming the URL and containing
/// `reason`.
fn assert_unhealthy(url: &str, output: &Output, reason: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{url}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{url}: one line: {stderr:?}");
    assert!(
        stderr.starts_with(&format!("llmgw probe: {url}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(reason),
        "{url}: {reason:?} not in {stderr:?}"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_running_service_probes_healthy() {
    let gateway = Gateway::start("probe-healthy").await;
    let addresses = gateway.addresses;
    let grpc = [
        addresses.router,
        addresses.quota.expect("quota started"),
        addresses.billing.expect("billing started").0,
    ];
    for address in grpc {
        let url = format!("grpc://{address}");
        assert_healthy(&url, &probe(&[&url]).await);
    }
    for path in ["/readyz", "/healthz"] {
        let url = format!("{}{path}", gateway.edge);
        assert_healthy(&url, &probe(&[&url, "--timeout-ms", "5000"]).await);
    }
    gateway.stop().await;
}

/// A gRPC health service that reports NOT_SERVING (tonic-health's own).
async fn not_serving(stop: &CancellationToken) -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_or_absent_services_fail_with_one_line() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let gateway = Gateway::start("probe-unhealthy").await;

    let url = format!("grpc://{}", not_serving(&stop).await);
    assert_unhealthy(&url, &probe(&[&url]).await, "NOT_SERVING");

    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed_address = closed.local_addr().expect("address");
    drop(closed);
    let url = format!("grpc://{closed_address}");
    assert_unhealthy(&url, &probe(&[&url]).await, "Unavailable");
    let url = format!("http://{closed_address}/readyz");
    assert_unhealthy(&url, &probe(&[&url]).await, "GET failed");

    let url = format!("{}/no-such-path", gateway.edge);
    assert_unhealthy(&url, &probe(&[&url]).await, "answered 404");
    // The edge speaks HTTP, not gRPC.
    let url = format!("grpc://{}", gateway.addresses.edge);
    assert_unhealthy(&url, &probe(&[&url]).await, "health check of");

    // Accepts connections, never answers: the timeout decides.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/readyz", silent.local_addr().expect("address"));
    assert_unhealthy(
        &url,
        &probe(&[&url, "--timeout-ms", "200"]).await,
        "within 200 ms",
    );
    drop(silent);

    assert_unhealthy("ftp://x", &probe(&["ftp://x"]).await, "expected grpc://");
    gateway.stop().await;
}
