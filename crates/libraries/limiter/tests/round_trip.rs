//! Each acquire and settle is exactly one command to Redis: the store talks
//! through a proxy that counts the commands it forwards (MONITOR or INFO
//! commandstats would also count the other tests running in parallel).
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use llmgw_limiter::{Limits, RedisStore, Scope};
use redis::aio::ConnectionManager;
use support::{bucket, request, settle_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts a TCP proxy to the test Redis; returns its URL and the count of
/// commands clients sent through it.
async fn counting_proxy() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    let commands = Arc::new(AtomicU64::new(0));
    let counter = commands.clone();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect("127.0.0.1:6379").await.unwrap();
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
            });
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut chunk = [0u8; 16 * 1024];
                loop {
                    let n = match client_rx.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&chunk[..n]);
                    while let Some(len) = command_len(&pending) {
                        counter.fetch_add(1, Ordering::SeqCst);
                        pending.drain(..len);
                    }
                    if server_tx.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, commands)
}

/// The length of the first complete RESP command (`*N` array of bulk
/// strings, which is all redis-rs sends) in `buf`, if it is complete.
fn command_len(buf: &[u8]) -> Option<usize> {
    fn line(buf: &[u8], at: usize, marker: u8) -> Option<(usize, usize)> {
        if *buf.get(at)? != marker {
            panic!("unexpected RESP byte at {at}");
        }
        let end = at + buf[at..].windows(2).position(|w| w == b"\r\n")?;
        let value = std::str::from_utf8(&buf[at + 1..end])
            .unwrap()
            .parse()
            .unwrap();
        Some((value, end + 2))
    }
    let (items, mut at) = line(buf, 0, b'*')?;
    for _ in 0..items {
        let (len, start) = line(buf, at, b'$')?;
        at = start + len + 2;
        if at > buf.len() {
            return None;
        }
    }
    Some(at)
}

/// One limit of every kind, none of which the tests reach.
fn every_limit() -> Limits {
    Limits {
        requests_per_minute: Some(100),
        tokens_per_minute: Some(100_000),
        tokens_per_day: Some(1_000_000),
        concurrent: Some(10),
        monthly_budget_nano_usd: Some(1_000_000_000),
    }
}

#[tokio::test]
async fn acquire_and_settle_are_one_command_each() {
    let (url, commands) = counting_proxy().await;
    let client = redis::Client::open(url).unwrap();
    let connection = ConnectionManager::new(client).await.unwrap();
    let store = RedisStore::new(connection, format!("test-{}", uuid::Uuid::new_v4()));
    let limits = every_limit();
    let buckets = [
        bucket(Scope::Key, "k1", limits),
        bucket(Scope::KeyModel, "k1/m", limits),
        bucket(Scope::Tenant, "acme", limits),
    ];
    // The first call may have to load the script (NOSCRIPT → SCRIPT LOAD →
    // EVALSHA) if no test loaded it since Redis started.
    let warm_up = request(&buckets, 10, 10);
    store.acquire(&warm_up).await.unwrap();
    store.settle(&settle_of(&warm_up, 5, 5)).await.unwrap();

    for _ in 0..5 {
        let request = request(&buckets, 1000, 1000);
        let before = commands.load(Ordering::SeqCst);
        assert!(store.acquire(&request).await.unwrap().allowed);
        assert_eq!(commands.load(Ordering::SeqCst) - before, 1);
        let before = commands.load(Ordering::SeqCst);
        store.settle(&settle_of(&request, 500, 500)).await.unwrap();
        assert_eq!(commands.load(Ordering::SeqCst) - before, 1);
    }
    // No limits: no command at all.
    let before = commands.load(Ordering::SeqCst);
    let free = request(&[bucket(Scope::Key, "k2", Limits::default())], 1, 1);
    assert!(store.acquire(&free).await.unwrap().allowed);
    assert_eq!(commands.load(Ordering::SeqCst), before);
}

/// Every key the scripts write expires: namespaced keys never pile up in
/// Redis. Repeated acquires and settles (which take the paths that skip
/// re-setting an expiry) leave every key with a TTL, calendar counters
/// expiring after their window ends.
#[tokio::test]
async fn every_key_written_expires() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let mut connection = support::connection().await;
    let store = RedisStore::new(connection.clone(), prefix.clone());
    let limits = every_limit();
    let buckets = [
        bucket(Scope::Key, "k1", limits),
        bucket(Scope::Tenant, "acme", limits),
    ];
    for _ in 0..3 {
        let request = request(&buckets, 1000, 1000);
        assert!(store.acquire(&request).await.unwrap().allowed);
        store
            .settle(&settle_of(&request, 1500, 1500))
            .await
            .unwrap();
    }
    let held = request(&buckets, 10, 10);
    assert!(store.acquire(&held).await.unwrap().allowed);

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    // 5 counters per bucket and 3 "settled" markers.
    assert_eq!(keys.len(), 13, "{keys:?}");
    let (_, month_end_ms) = llmgw_limiter::Month::current().range_ms();
    for key in keys {
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(ttl_ms > 0, "{key} has no expiry ({ttl_ms})");
        if key.ends_with(":budget") {
            let expires_at: i64 = redis::cmd("PEXPIRETIME")
                .arg(&key)
                .query_async(&mut connection)
                .await
                .unwrap();
            assert!(
                expires_at > month_end_ms,
                "{key} expires before its month ends"
            );
        }
    }
}
