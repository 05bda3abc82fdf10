//! The edge when the quota service is unreachable or slower than
//! `quota_timeout_ms`: its policy decides the request, and a grant that
//! arrives after the edge stopped waiting is handed back.

use std::net::SocketAddr;
use std::time::Duration;

use llmgw_proto::quota_v1::quota_client::QuotaClient;
use llmgw_proto::quota_v1::{AcquireRequest, Subject};
use tokio_util::sync::CancellationToken;

use crate::harness::request;

#[tokio::test]
async fn an_unreachable_quota_service_follows_the_edge_policy() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let dead_url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    for (policy, status) in [
        (llmgw_edge::QuotaUnreachable::Open, 200),
        (llmgw_edge::QuotaUnreachable::Closed, 503),
    ] {
        let gateway = crate::harness::Gateway::start_with(|config| {
            config.edge.quota_url = Some(dead_url.clone());
            config.edge.quota_timeout_ms = 100;
            config.edge.on_quota_unreachable = policy;
        })
        .await;
        let response = gateway.chat(request("mock")).await;
        assert_eq!(response.status(), status, "{policy:?}");
        let metrics = gateway.metrics().await;
        assert!(
            metrics.contains("llmgw_edge_quota_unreachable_total 1"),
            "{metrics}"
        );
    }
}

/// A quota service slower than `quota_timeout_ms`: the edge serves the
/// request without a lease (policy open), but the Acquire still arrives and
/// is granted. The edge hands that reservation back when the late answer
/// comes, instead of leaving it to hold the key's slot (and budget) until
/// its lease expires.
#[tokio::test]
async fn a_late_quota_grant_is_handed_back() {
    let stop = CancellationToken::new();
    let mut quota_config = llmgw_quota::Config::default();
    quota_config.limits.default_key = llmgw_quota::LimitsConfig {
        concurrent: Some(1),
        ..llmgw_quota::LimitsConfig::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let quota = listener.local_addr().expect("addr");
    tokio::spawn(llmgw_quota::run(
        quota_config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    let slow = slow_link(quota, Duration::from_millis(300), &stop).await;
    let gateway = crate::harness::Gateway::start_with(|config| {
        config.edge.quota_url = Some(format!("http://{slow}"));
        config.edge.quota_timeout_ms = 100;
    })
    .await;
    assert_eq!(gateway.chat(request("mock")).await.status(), 200);

    // The late Acquire reaches the quota service and takes the key's slot...
    let metrics = || crate::harness::metrics_of(&quota);
    let granted = r#"llmgw_quota_decisions_total{outcome="allowed",degraded="false"} 1"#;
    let mut waited = Duration::ZERO;
    while !metrics().await.contains(granted) {
        assert!(waited < Duration::from_secs(10), "{}", metrics().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    // ...and the edge gives it back when the grant reaches it.
    let mut client = QuotaClient::connect(format!("http://{quota}"))
        .await
        .expect("quota");
    let probe = || AcquireRequest {
        request_id: uuid_like(),
        subject: Some(Subject {
            tenant: "team-a".to_owned(),
            key_id: "test-key".to_owned(),
            model: "mock".to_owned(),
        }),
        tokens: 1,
        ..AcquireRequest::default()
    };
    let mut waited = Duration::ZERO;
    loop {
        let answer = client.acquire(probe()).await.expect("acquire").into_inner();
        if answer.allowed {
            break;
        }
        assert!(
            waited < Duration::from_secs(10),
            "the late grant still holds the slot: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    stop.cancel();
}

fn uuid_like() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "probe-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// A TCP link to `to` that holds every chunk for `delay`, each way.
async fn slow_link(to: SocketAddr, delay: Duration, stop: &CancellationToken) -> SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("addr");
    let stop = stop.clone();
    tokio::spawn(async move {
        loop {
            let inbound = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((inbound, _)) => inbound,
                    Err(_) => return,
                },
                () = stop.cancelled() => return,
            };
            let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                continue;
            };
            let (inbound_read, inbound_write) = inbound.into_split();
            let (outbound_read, outbound_write) = outbound.into_split();
            for (mut from, mut into) in [
                (inbound_read, outbound_write),
                (outbound_read, inbound_write),
            ] {
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 16 * 1024];
                    while let Ok(read @ 1..) = from.read(&mut buffer).await {
                        tokio::time::sleep(delay).await;
                        if into.write_all(&buffer[..read]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    address
}
