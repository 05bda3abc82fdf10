//! Shared by the quota integration tests: start the real service on port 0,
//! talk to it with the generated client, and a TCP proxy that can make Redis
//! hang.

#![allow(dead_code)] // Each test binary uses a different part.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use llmgw_proto::quota_v1::quota_client::QuotaClient;
use llmgw_proto::quota_v1::{AcquireRequest, AcquireResponse, SettleRequest, Subject};
use llmgw_quota::{Config, LimitsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tonic::transport::Channel;

pub mod cluster;

pub const REDIS: &str = "redis://127.0.0.1:6379";
/// A key every test config has, with a limit no test reaches: acquiring on
/// it touches Redis, which tells whether Redis is in use.
pub const PROBE_KEY: &str = "probe";

/// Runs until dropped.
pub struct Service {
    pub address: SocketAddr,
    pub client: QuotaClient<Channel>,
    _shutdown: oneshot::Sender<()>,
}

/// A config on `redis_url` with its own key prefix, so tests never share
/// counters (unless they copy the config). Redis gets seconds to answer:
/// these tests check what Redis decides, and a busy machine must not push
/// decisions onto the local fallback (`redis_down.rs` sets the production
/// bound back: the fallback is what it tests).
pub fn config(redis_url: &str) -> Config {
    let mut config = Config {
        redis_url: Some(redis_url.to_owned()),
        key_prefix: format!("llmgw-test-{}", uuid::Uuid::new_v4()),
        redis_timeout_ms: 5_000,
        ..Config::default()
    };
    config.limits.keys.insert(
        PROBE_KEY.to_owned(),
        LimitsConfig {
            requests_per_minute: Some(1_000_000),
            ..LimitsConfig::default()
        },
    );
    config
}

pub fn rpm(limit: u64) -> LimitsConfig {
    LimitsConfig {
        requests_per_minute: Some(limit),
        ..LimitsConfig::default()
    }
}

pub async fn start(config: Config) -> Service {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let result = llmgw_quota::run(config, listener, async move {
            let _ = stopped.await;
        })
        .await;
        if let Err(error) = result {
            panic!("quota service failed: {error:#}");
        }
    });
    let client = QuotaClient::connect(format!("http://{address}"))
        .await
        .unwrap();
    Service {
        address,
        client,
        _shutdown: shutdown,
    }
}

pub fn subject(tenant: &str, key_id: &str, model: &str) -> Option<Subject> {
    Some(Subject {
        tenant: tenant.to_owned(),
        key_id: key_id.to_owned(),
        model: model.to_owned(),
    })
}

pub fn request(tenant: &str, key_id: &str) -> AcquireRequest {
    AcquireRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        subject: subject(tenant, key_id, "demo"),
        tokens: 100,
        cost_nano_usd: 1_000,
        key_limits: None,
        tenant_limits: None,
    }
}

pub async fn acquire(
    client: &mut QuotaClient<Channel>,
    request: AcquireRequest,
) -> AcquireResponse {
    client.acquire(request).await.unwrap().into_inner()
}

/// Settles `request` as if the call used exactly its estimate.
pub async fn settle(client: &mut QuotaClient<Channel>, request: &AcquireRequest, degraded: bool) {
    client
        .settle(SettleRequest {
            request_id: request.request_id.clone(),
            subject: request.subject.clone(),
            reserved_tokens: request.tokens,
            actual_tokens: request.tokens,
            reserved_cost_nano_usd: request.cost_nano_usd,
            actual_cost_nano_usd: request.cost_nano_usd,
            degraded,
            key_limits: request.key_limits,
            tenant_limits: request.tenant_limits,
        })
        .await
        .unwrap();
}

/// Waits until decisions come from Redis again (not degraded).
pub async fn wait_for_redis(client: &mut QuotaClient<Channel>, within: Duration) {
    let start = Instant::now();
    loop {
        let answer = acquire(client, request("probe-tenant", PROBE_KEY)).await;
        if !answer.degraded {
            return;
        }
        assert!(start.elapsed() < within, "still degraded after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Forward,
    /// Stop forwarding without closing anything: the server seems to hang.
    Hang,
    /// Close every connection and every new one: the server seems down.
    Down,
    /// Forward, each read 40 ms late: slow, but answering (far slower than
    /// loopback, far within `redis_timeout_ms`).
    Slow,
}

/// A TCP proxy to `upstream` whose [`Mode`] tests switch.
pub struct Proxy {
    pub address: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Forward);
        let switch = mode.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if *switch.borrow() == Mode::Down {
                    continue; // Dropped: closed at once.
                }
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (inbound_read, inbound_write) = inbound.into_split();
                let (outbound_read, outbound_write) = outbound.into_split();
                tokio::spawn(pipe(inbound_read, outbound_write, switch.subscribe()));
                tokio::spawn(pipe(outbound_read, inbound_write, switch.subscribe()));
            }
        });
        Proxy { address, mode }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if !forwarding(&mut mode).await {
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            },
            _ = mode.wait_for(|mode| *mode == Mode::Down) => return,
        };
        if *mode.borrow() == Mode::Slow {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        // Bytes read just before a hang are held until it ends.
        if !forwarding(&mut mode).await || to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// Waits out a hang; false when the connection must close.
async fn forwarding(mode: &mut watch::Receiver<Mode>) -> bool {
    match mode.wait_for(|mode| *mode != Mode::Hang).await {
        Ok(mode) => matches!(*mode, Mode::Forward | Mode::Slow),
        Err(_) => false,
    }
}

/// `GET path` over plain HTTP/1.1; returns the whole response.
/// One replica's local fallback answers like Redis would: the answers alone
/// do not show Redis was used. This does: no decision was degraded, and the
/// counters are in Redis under the config's prefix.
pub async fn assert_decided_on_redis(service: &Service, prefix: &str) {
    let metrics = http_get(service.address, "/metrics").await;
    let decisions = |degraded: &str| -> u64 {
        metrics
            .lines()
            .filter(|line| line.starts_with("llmgw_quota_decisions_total{"))
            .filter(|line| line.contains(&format!("degraded=\"{degraded}\"")))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert!(decisions("false") > 0, "no decision:\n{metrics}");
    assert_eq!(decisions("true"), 0, "decided without Redis:\n{metrics}");
    let mut redis = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "no counter under {prefix} in Redis");
}

pub async fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
