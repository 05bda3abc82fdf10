//! Slow readers: many clients read long streams a few bytes at a time. The
//! gateway must not buffer what they have not read: backpressure reaches
//! the upstream connection, so the mock's writes stall once the socket
//! buffers and the gateway's bounded queues are full.
//!
//! The measure is deterministic, not a timing: the mock records what it
//! handed to its HTTP server per request (`mock.tag`), the clients count
//! what they read; once the mock's writes have stalled, what it is ahead
//! by (the lead) is either queued in kernel sockets on the two TCP hops
//! (read with `ss`; loopback autotuning lets these grow to megabytes, so a
//! stream's length alone proves nothing) or held by the gateway, which
//! may hold at most a generous per-stream allowance derived from its
//! buffer sizes.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::child::client;
use super::gateway::{AllInOne, LOGS};
use crate::harness::{self, KEY};

const CLIENTS: usize = 50;
/// Events per stream: about 3 MB, beyond what the gateway may hold.
const CHUNKS: u64 = 20_000;
/// Events each client reads before it stops reading (keeping the
/// connection open).
const READ_EVENTS: u64 = 200;
/// Bytes per read, and the client's receive buffer (the kernel doubles it).
const READ_BYTES: usize = 16;
const CLIENT_RCVBUF: u32 = 4096;
/// What the gateway may hold per stream in its own memory, generously:
/// the HTTP/2 stream window between edge and router (64 KiB by default),
/// HTTP/2's and HTTP/1's write buffers (about 400 KiB each at most), and
/// the relay's and the edge's one-event queues. A gateway that buffered
/// without bound would hold the whole 3 MB stream of each slow client.
const GATEWAY_PER_STREAM: u64 = 1 << 20;
/// Generous: the machine may be busy; only the outcome is asserted.
const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_are_not_buffered_by_the_gateway() {
    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    // Fifty streams start at once on a busy machine: the upstream's first
    // byte and its pauses may be slow; only backpressure is under test.
    let gateway = AllInOne::start_adjusted(mock, 5, LOGS, |yaml| {
        yaml.replace(
            "first_byte_ms: 2000, idle_ms: 2000",
            "first_byte_ms: 120000, idle_ms: 120000",
        )
    })
    .await;
    let edge = gateway.edge;

    let readers: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(slow_reader(edge, format!("slow-{i}"))))
        .collect();
    let mut read = Vec::new();
    for reader in readers {
        let (tag, events, connection) = timeout(DEADLINE, reader)
            .await
            .expect("a slow reader never got its events")
            .expect("reader task");
        read.push((tag, events, connection));
    }

    // The clients have stopped reading. Wait for the mock's writes to stall:
    // the same production in two readings a second apart.
    let mut last = productions(mock).await;
    let stalled = timeout(DEADLINE, async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = productions(mock).await;
            if now == last {
                return now;
            }
            last = now;
        }
    })
    .await
    .expect("the upstream never stalled: the gateway keeps reading what clients do not");

    // What is ahead of the clients sits in kernel socket queues (on the
    // mock -> router and edge -> client hops; with loopback autotuning these
    // can hold megabytes), or in the gateway's memory: the rest.
    let queued = kernel_queued(&[mock.port(), edge.port()]);
    let mut lead = 0u64;
    for (tag, events_read, _) in &read {
        let produced = &stalled[tag];
        let events = produced["events"].as_u64().expect("events");
        let bytes = produced["bytes"].as_u64().expect("bytes");
        lead += events.saturating_sub(*events_read) * bytes / events.max(1);
    }
    let held = lead.saturating_sub(queued);
    let allowance = CLIENTS as u64 * GATEWAY_PER_STREAM;
    eprintln!(
        "slow readers: the mock is {lead} bytes ahead of {CLIENTS} clients \
         ({} per stream); {queued} bytes queued in kernel sockets; \
         {held} held by the gateway (allowance {allowance})",
        lead / CLIENTS as u64
    );
    assert!(
        held <= allowance,
        "the gateway holds {held} bytes its {CLIENTS} slow clients have not read \
         (mock ahead by {lead}, kernel queues {queued}); allowance {allowance}"
    );
    drop(read);
}

/// Opens a stream with a small receive buffer, reads `READ_EVENTS` events
/// a few bytes at a time, then stops reading; returns the connection open.
async fn slow_reader(edge: SocketAddr, tag: String) -> (String, u64, tokio::net::TcpStream) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(CLIENT_RCVBUF)
        .expect("SO_RCVBUF");
    let mut stream = socket.connect(edge).await.expect("connect to the edge");
    let mut head = Vec::new();
    let body = json!({
        "model": "mock", "stream": true,
        "messages": [{"role": "user", "content": "A very long story, please"}],
        "mock": {"chunks": CHUNKS, "tag": tag},
    })
    .to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {edge}\r\nauthorization: Bearer {KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut events = 0u64;
    let mut previous = 0u8;
    let mut buffer = [0u8; READ_BYTES];
    while events < READ_EVENTS {
        let n = stream.read(&mut buffer).await.expect("read");
        assert!(n > 0, "{tag}: the stream ended after {events} events");
        if head.len() < 12 {
            head.extend_from_slice(&buffer[..n]);
            assert!(
                head.len() < 12 || head.starts_with(b"HTTP/1.1 200"),
                "{tag}: {}",
                String::from_utf8_lossy(&head)
            );
        }
        for &byte in &buffer[..n] {
            // Events end with a blank line; the HTTP head uses CRLF.
            if byte == b'\n' && previous == b'\n' {
                events += 1;
            }
            previous = byte;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (tag, events, stream)
}

async fn productions(mock: SocketAddr) -> Value {
    client()
        .get(format!("http://{mock}/stats/requests"))
        .send()
        .await
        .expect("mock reachable")
        .json()
        .await
        .expect("productions JSON")
}

/// Bytes waiting in the receive and send queues (`Recv-Q`, `Send-Q` of
/// `ss`) of every TCP connection to or from `ports`.
fn kernel_queued(ports: &[u16]) -> u64 {
    let filter: Vec<String> = ports
        .iter()
        .map(|port| format!("sport = :{port} or dport = :{port}"))
        .collect();
    let output = std::process::Command::new("ss")
        .args(["-tn", "state", "established"])
        .arg(format!("( {} )", filter.join(" or ")))
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut columns = line.split_whitespace();
            let recv: u64 = columns.next()?.parse().ok()?;
            let send: u64 = columns.next()?.parse().ok()?;
            Some(recv + send)
        })
        .sum()
}
