//! `Quota.Session`: Acquires and Settles over one long-lived stream decide
//! exactly as unary calls do, answers come back by id, a bad call is
//! answered without ending the session, and shutdown ends every session
//! once what it read is answered (the server's graceful shutdown would
//! otherwise wait on it forever).

#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use llmgw_proto::quota_v1::quota_client::QuotaClient;
use llmgw_proto::quota_v1::{
    AcquireRequest, SessionAnswer, SessionCall, SettleRequest, TracedSettle,
};
use llmgw_quota::LimitsConfig;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::Streaming;

fn call(id: u64, acquire: AcquireRequest) -> SessionCall {
    SessionCall {
        id,
        acquire: Some(acquire),
        ..SessionCall::default()
    }
}

fn settle_of(request: &AcquireRequest) -> TracedSettle {
    TracedSettle {
        settle: Some(SettleRequest {
            request_id: request.request_id.clone(),
            subject: request.subject.clone(),
            reserved_tokens: request.tokens,
            actual_tokens: request.tokens,
            reserved_cost_nano_usd: request.cost_nano_usd,
            actual_cost_nano_usd: request.cost_nano_usd,
            ..SettleRequest::default()
        }),
        trace: None,
    }
}

async fn open(
    client: &mut QuotaClient<tonic::transport::Channel>,
) -> (mpsc::UnboundedSender<SessionCall>, Streaming<SessionAnswer>) {
    let (calls, outgoing) = mpsc::unbounded_channel();
    let stream = futures_util::stream::unfold(outgoing, |mut outgoing| async move {
        outgoing.recv().await.map(|call| (call, outgoing))
    });
    let answers = client.session(stream).await.unwrap().into_inner();
    (calls, answers)
}

async fn next(answers: &mut Streaming<SessionAnswer>) -> SessionAnswer {
    tokio::time::timeout(Duration::from_secs(30), answers.message())
        .await
        .expect("an answer within 30 s")
        .unwrap()
        .expect("the session is open")
}

#[tokio::test]
async fn a_session_decides_exactly_and_answers_every_call_by_id() {
    let mut config = config(REDIS);
    config.limits.keys.insert(
        "five".to_owned(),
        LimitsConfig {
            concurrent: Some(5),
            ..LimitsConfig::default()
        },
    );
    let service = start(config).await;
    let (calls, mut answers) = open(&mut service.client.clone()).await;

    // 20 at once on one stream: exactly 5 hold a slot, whatever the order.
    let requests: Vec<AcquireRequest> = (0..20).map(|_| request("t", "five")).collect();
    for (id, request) in (1..).zip(&requests) {
        calls.send(call(id, request.clone())).unwrap();
    }
    let mut seen = HashSet::new();
    let mut granted = Vec::new();
    for _ in 0..20 {
        let answer = next(&mut answers).await;
        assert!(seen.insert(answer.id), "answered twice: {}", answer.id);
        let decision = answer.acquire.expect("a decision");
        assert!(!decision.degraded, "decided without Redis");
        if decision.allowed {
            granted.push(requests[usize::try_from(answer.id).unwrap() - 1].clone());
        }
    }
    assert_eq!(seen, (1..=20).collect::<HashSet<u64>>());
    assert_eq!(granted.len(), 5);

    // A bad call gets its error, and the session goes on.
    let mut bad = request("", "five");
    bad.subject.as_mut().unwrap().tenant.clear();
    calls.send(call(100, bad)).unwrap();
    let answer = next(&mut answers).await;
    assert_eq!(answer.id, 100);
    assert!(answer.acquire.is_none());
    assert_eq!(answer.code, tonic::Code::InvalidArgument as i32);
    assert!(answer.message.contains("tenant"), "{}", answer.message);

    // The five settles in one message free the five slots.
    calls
        .send(SessionCall {
            settles: granted.iter().map(settle_of).collect(),
            ..SessionCall::default()
        })
        .unwrap();
    // Settles are not answered: wait until a new Acquire is granted.
    let start = Instant::now();
    for id in 200.. {
        calls.send(call(id, request("t", "five"))).unwrap();
        if next(&mut answers).await.acquire.unwrap().allowed {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "slots never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shutdown_ends_sessions_once_what_they_read_is_answered() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(llmgw_quota::run(config(REDIS), listener, async move {
        let _ = stopped.await;
    }));
    let mut client = QuotaClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    let (calls, mut answers) = open(&mut client).await;
    calls.send(call(1, request("t", PROBE_KEY))).unwrap();
    assert_eq!(next(&mut answers).await.id, 1);

    shutdown.send(()).unwrap();
    // The stream ends (cleanly: the edge sends unread calls elsewhere) and
    // the server stops, although the client keeps its side open.
    let end = tokio::time::timeout(Duration::from_secs(30), answers.message())
        .await
        .expect("the session ends within 30 s");
    assert!(matches!(end, Ok(None)), "{end:?}");
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server stops within 30 s")
        .unwrap()
        .unwrap();
    drop(calls);
}
