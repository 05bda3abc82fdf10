//! What a client (or an attacker) sees of each limit, over real sockets.
//! Real waits are unavoidable here (hyper's timers); every wait has a
//! generous deadline and no test asserts an upper time bound tighter than
//! that.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::routing::{get, post};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::*;

/// Far above any time the tests wait for (a busy machine included).
const DEADLINE: Duration = Duration::from_secs(30);

struct Server {
    address: SocketAddr,
    stopping: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(router: Router, limits: HttpLimits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let stopping = CancellationToken::new();
    let task = tokio::spawn({
        let stopping = stopping.clone();
        async move { serve(listener, router, &limits, stopping).await }
    });
    Server {
        address,
        stopping,
        task,
    }
}

fn hello() -> Router {
    Router::new().route("/", get(|| async { "hello" }))
}

/// Reads until the server closes the connection (or `DEADLINE`).
async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server did not close within {DEADLINE:?}");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Reads one response whose body ends with `end`.
async fn read_response(tcp: &mut TcpStream, end: &str) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&answer).ends_with(end) {
            let n = tcp.read(&mut buffer).await.expect("read");
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await
    .expect("a response in time");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_70_kb_header_gets_431_with_the_openai_error_body() {
    let server = start(hello(), HttpLimits::default()).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connect");
    let big = "a".repeat(70_000);
    let request = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let answer = read_to_close(&mut tcp).await;
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).expect("a body");
    let body: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "headers_too_large");
    assert_eq!(body["error"]["param"], serde_json::Value::Null);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("32768")),
        "{body}"
    );
}

#[tokio::test]
async fn a_header_over_the_hard_limit_gets_hyper_s_bare_431_and_a_close() {
    let server = start(hello(), HttpLimits::default()).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connect");
    // Over 4 × 32 KiB: hyper's buffer fills before the header ends.
    let big = "a".repeat(200_000);
    let request = format!("GET / HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    // The server may close before it has read everything: ignore that.
    let _ = tcp.write_all(request.as_bytes()).await;
    let answer = read_to_close(&mut tcp).await;
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\n"), "no body: {answer}");
}

#[tokio::test]
async fn a_header_under_the_limit_is_served() {
    let server = start(hello(), HttpLimits::default()).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connect");
    let header = "a".repeat(30_000);
    let request =
        format!("GET / HTTP/1.1\r\nhost: x\r\nx-ok: {header}\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let answer = read_to_close(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
}

#[tokio::test]
async fn a_slow_loris_client_is_disconnected() {
    let limits = HttpLimits {
        header_read_timeout_secs: 1,
        ..HttpLimits::default()
    };
    let server = start(hello(), limits).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connect");
    // Half a header, then nothing more.
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaa")
        .await
        .expect("write");
    let answer = read_to_close(&mut tcp).await;
    // Closed without an answer: nothing was ever requested.
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let limits = HttpLimits {
        idle_timeout_secs: 1,
        header_read_timeout_secs: 300,
        ..HttpLimits::default()
    };
    let server = start(hello(), limits).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let first = read_response(&mut tcp, "hello").await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    // Kept alive, then closed once idle: EOF with nothing more.
    assert_eq!(read_to_close(&mut tcp).await, "");
}

/// hyper runs its header clock while a keep-alive connection waits for the
/// next request, so the shorter of the two timeouts closes an idle HTTP/1
/// connection (as documented on `header_read_timeout_secs`).
#[tokio::test]
async fn an_idle_http1_connection_is_closed_by_a_shorter_header_read_timeout() {
    let limits = HttpLimits {
        idle_timeout_secs: 300,
        header_read_timeout_secs: 1,
        ..HttpLimits::default()
    };
    let server = start(hello(), limits).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    read_response(&mut tcp, "hello").await;
    assert_eq!(read_to_close(&mut tcp).await, "");
}

#[tokio::test]
async fn a_connection_that_never_sends_is_closed_when_idle() {
    let limits = HttpLimits {
        idle_timeout_secs: 1,
        header_read_timeout_secs: 300,
        ..HttpLimits::default()
    };
    let server = start(hello(), limits).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connect");
    assert_eq!(read_to_close(&mut tcp).await, "");
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    let limits = HttpLimits {
        max_connections: 1,
        ..HttpLimits::default()
    };
    let server = start(hello(), limits).await;
    let mut first = TcpStream::connect(server.address).await.expect("connect");
    first
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    read_response(&mut first, "hello").await;

    let answered = Arc::new(AtomicBool::new(false));
    let second = tokio::spawn({
        let answered = answered.clone();
        let address = server.address;
        async move {
            let mut tcp = TcpStream::connect(address).await.expect("connect");
            tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .await
                .expect("write");
            let answer = read_to_close(&mut tcp).await;
            answered.store(true, Ordering::SeqCst);
            answer
        }
    });
    // While the first connection is open, the second is not served (this
    // can only fail if the cap is broken, never from a slow machine).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!answered.load(Ordering::SeqCst), "served past the cap");
    drop(first);
    let answer = tokio::time::timeout(DEADLINE, second)
        .await
        .expect("served once a place freed")
        .expect("task");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
}

#[tokio::test]
async fn http2_streams_past_the_limit_wait_for_a_free_one() {
    // Each request holds its stream until the test releases it.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let most_open = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let router = Router::new().route(
        "/hold",
        post({
            let (gate, open, most_open, done) =
                (gate.clone(), open.clone(), most_open.clone(), done.clone());
            move || async move {
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                most_open.fetch_max(now, Ordering::SeqCst);
                gate.acquire().await.expect("gate").forget();
                open.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                "released"
            }
        }),
    );
    let limits = HttpLimits {
        h2_max_concurrent_streams: 2,
        ..HttpLimits::default()
    };
    let server = start(router, limits).await;
    let tcp = TcpStream::connect(server.address).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let hold = || {
        http::Request::post(format!("http://{}/hold", server.address))
            .body(())
            .expect("request")
    };
    // One request first, so the client has the server's SETTINGS (a client
    // that opens streams before they arrive gets the extra ones refused).
    gate.add_permits(1);
    let (warm_up, _) = client.send_request(hold(), true).expect("send");
    let warm_up = tokio::time::timeout(DEADLINE, warm_up)
        .await
        .expect("in time");
    assert_eq!(warm_up.expect("response").status(), 200);
    let mut responses = Vec::new();
    for _ in 0..5 {
        client = client.ready().await.expect("ready");
        let (response, _) = client.send_request(hold(), true).expect("send");
        responses.push(tokio::spawn(response));
    }
    let until = |count: &Arc<AtomicUsize>, at_least: usize| {
        let count = count.clone();
        async move {
            let reached = async {
                while count.load(Ordering::SeqCst) < at_least {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::time::timeout(DEADLINE, reached)
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "never reached {at_least}, at {}",
                        count.load(Ordering::SeqCst)
                    )
                });
        }
    };
    until(&open, 2).await;
    // The server announced its limit, and the client keeps to it.
    assert_eq!(client.current_max_send_streams(), 2);
    // One request released at a time: the queued ones follow, never more
    // than two at once.
    for released in 1..=5 {
        gate.add_permits(1);
        until(&done, 1 + released).await;
    }
    for response in responses {
        let response = tokio::time::timeout(DEADLINE, response)
            .await
            .expect("answered")
            .expect("task")
            .expect("response");
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        most_open.load(Ordering::SeqCst),
        2,
        "streams past the limit"
    );
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_and_refuses_new_connections() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let router = Router::new().route(
        "/slow",
        get({
            let gate = gate.clone();
            move || async move {
                gate.notified().await;
                "finished"
            }
        }),
    );
    let server = start(router, HttpLimits::default()).await;
    let mut tcp = TcpStream::connect(server.address).await.expect("connect");
    tcp.write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stopping.cancel();
    // The listener closes: a new connection is refused.
    let refused = async {
        while TcpStream::connect(server.address).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(DEADLINE, refused)
        .await
        .expect("the listener closed");
    gate.notify_one();
    // The request in flight is answered, then the connection closes.
    let answer = read_to_close(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("finished"), "{answer}");
    tokio::time::timeout(DEADLINE, server.task)
        .await
        .expect("serve returns once drained")
        .expect("task")
        .expect("served");
}

#[test]
fn header_section_bytes_counts_what_http1_sends() {
    let request = http::Request::get("/v1/models")
        .header("host", "x")
        .body(())
        .expect("request");
    // "GET /v1/models HTTP/1.1\r\n" + "host: x\r\n" + "\r\n"
    assert_eq!(header_section_bytes(&request), 25 + 9 + 2);
}

#[test]
fn limits_validate_names_each_zero_setting() {
    let zero = HttpLimits {
        max_header_bytes: 0,
        header_read_timeout_secs: 0,
        idle_timeout_secs: 0,
        h2_max_concurrent_streams: 0,
        max_connections: 0,
    };
    let problems = zero.validate();
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert!(HttpLimits::default().validate().is_empty());
}

/// HTTP/2 has no header clock: the idle timeout alone closes a connection
/// that has stopped sending requests (GOAWAY, then close).
#[tokio::test]
async fn an_idle_http2_connection_is_closed() {
    let limits = HttpLimits {
        idle_timeout_secs: 1,
        ..HttpLimits::default()
    };
    let server = start(hello(), limits).await;
    let tcp = TcpStream::connect(server.address).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get(format!("http://{}/", server.address))
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let response = tokio::time::timeout(DEADLINE, response)
        .await
        .expect("in time");
    assert_eq!(response.expect("response").status(), 200);
    // The server ends the connection on its own once it is idle.
    let ended = tokio::time::timeout(DEADLINE, connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection stayed open");
}
