//! The public listener's connection limits, as a client (or an attacker)
//! meets them through the real gateway: oversize headers, slow-loris,
//! idle keep-alive connections. Real waits are unavoidable (hyper's
//! timers): the configured timeouts are 1 s and every wait has a generous
//! deadline; no test bounds how quickly the close comes.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{Gateway, KEY, error_of};

/// Far above the 1 s timeouts configured, on a busy machine included.
const DEADLINE: Duration = Duration::from_secs(30);

/// Reads until the gateway closes the connection; panics past `DEADLINE`.
async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_70_kb_header_gets_431_with_the_openai_error_body() {
    let gateway = Gateway::start().await;
    let response = gateway
        .client
        .get(gateway.url("/v1/models"))
        .bearer_auth(KEY)
        .header("x-padding", "a".repeat(70_000))
        .send()
        .await
        .expect("an answer");
    let (status, error) = error_of(response).await;
    assert_eq!(status, 431);
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "headers_too_large");
    assert_eq!(error["param"], serde_json::Value::Null);
    // The same key with ordinary headers still works.
    let models = gateway
        .client
        .get(gateway.url("/v1/models"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("an answer");
    assert_eq!(models.status(), 200);
}

#[tokio::test]
async fn the_billing_admin_listener_refuses_a_70_kb_header_too() {
    let gateway = Gateway::start().await;
    let admin = gateway.admin.expect("billing started");
    let response = gateway
        .client
        .get(format!("http://{admin}/admin/v1/tenants"))
        .header("x-padding", "a".repeat(70_000))
        .send()
        .await
        .expect("an answer");
    let (status, error) = error_of(response).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (431, Some("headers_too_large"))
    );
}

#[tokio::test]
async fn a_slow_loris_client_is_disconnected() {
    let gateway = Gateway::start_with(|config| {
        config.edge.http.header_read_timeout_secs = 1;
    })
    .await;
    let mut tcp = TcpStream::connect(gateway.edge).await.expect("connect");
    // Half a request header, then silence.
    tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer sk-")
        .await
        .expect("write");
    let answer = read_to_close(&mut tcp).await;
    assert!(!answer.contains(" 200 "), "{answer}");
    // The gateway itself is fine.
    let health = gateway.client.get(gateway.url("/healthz")).send().await;
    assert_eq!(health.expect("healthz").status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let gateway = Gateway::start_with(|config| {
        config.edge.http.idle_timeout_secs = 1;
        // Longer than the test: the close comes from the idle timeout.
        config.edge.http.header_read_timeout_secs = 300;
    })
    .await;
    let mut tcp = TcpStream::connect(gateway.edge).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&answer).ends_with("ok") {
            let n = tcp.read(&mut buffer).await.expect("read");
            assert!(n > 0, "closed before answering");
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("answered");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // Kept alive after the answer, then closed with nothing more sent.
    assert_eq!(read_to_close(&mut tcp).await, "");
}

#[tokio::test]
async fn http2_clients_are_held_to_max_concurrent_streams() {
    let gateway = Gateway::start_with(|config| {
        config.edge.http.h2_max_concurrent_streams = 3;
    })
    .await;
    let tcp = TcpStream::connect(gateway.edge).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp)
        .await
        .expect("HTTP/2 prior knowledge");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let healthz = || {
        http::Request::get(gateway.url("/healthz"))
            .body(())
            .expect("request")
    };
    // One request first: after it the client has the edge's SETTINGS (a
    // client opening streams before they arrive has the extras refused).
    let (first, _) = client.send_request(healthz(), true).expect("send");
    let first = tokio::time::timeout(DEADLINE, first)
        .await
        .expect("in time");
    assert_eq!(first.expect("a response").status(), 200);
    // Ten requests at once on one connection: all answered, the client
    // having been told to keep at most three open.
    let mut answers = Vec::new();
    for _ in 0..10 {
        client = client.ready().await.expect("ready");
        let (answer, _) = client.send_request(healthz(), true).expect("send");
        answers.push(answer);
    }
    for answer in answers {
        let answer = tokio::time::timeout(DEADLINE, answer)
            .await
            .expect("answered in time")
            .expect("a response");
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(client.current_max_send_streams(), 3);
}
