//! Heap allocations per request on the hot path:
//! `cargo bench -p llmgw --bench allocations`.
//!
//! One process holds the load generator, the mock upstream and `llmgw all`
//! (SQLite ledger, in-memory quota with a key limit, so every request is
//! governed: authenticated, reserved, settled and billed). A counting global
//! allocator sees all of them, so each shape is measured twice, straight to
//! the mock and through the gateway, and the difference is the gateway's
//! own: allocations and bytes per request, JSON and streaming. The counts
//! are exact and repeatable, unlike timings, whatever else the machine does.

use std::alloc::System;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use llmgw::GatewayConfig;
use llmgw_edge::ApiKeyConfig;
use llmgw_router::{ModelConfig, Provider};
use serde_json::json;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEY: &str = "sk-llmgw-bench-0123456789abcdef";
const WARM_UP: usize = 200;
const REQUESTS: usize = 2_000;

#[derive(Clone, Copy, Default)]
struct PerRequest {
    allocations: f64,
    bytes: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    let mock = start_mock(&stop).await?;
    let dir = std::env::temp_dir().join(format!("llmgw-bench-alloc-{}", std::process::id()));
    let (addresses, services) = llmgw::start_all(config(mock, dir.clone()), stop.clone()).await?;
    let client = reqwest::Client::new();
    let direct = format!("http://{mock}/v1/chat/completions");
    let gateway = format!("http://{}/v1/chat/completions", addresses.edge);
    wait_ready(&client, addresses.edge).await?;

    println!("allocations per request (c=1, {REQUESTS} requests, after {WARM_UP} to warm up)");
    println!(
        "{:<10} {:>14} {:>14} {:>16} {:>16}",
        "shape", "mock allocs", "gateway allocs", "mock bytes", "gateway bytes"
    );
    for stream in [false, true] {
        let mock_alone = measure(&client, &direct, stream).await?;
        let through = measure(&client, &gateway, stream).await?;
        println!(
            "{:<10} {:>14.1} {:>14.1} {:>16.0} {:>16.0}",
            if stream { "stream" } else { "json" },
            mock_alone.allocations,
            through.allocations - mock_alone.allocations,
            mock_alone.bytes,
            through.bytes - mock_alone.bytes,
        );
    }
    println!("(gateway = through the gateway minus straight to the mock, same client)");

    stop.cancel();
    services.wait(Duration::from_secs(10)).await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Sequential requests; what the whole process allocated per request.
async fn measure(client: &reqwest::Client, url: &str, stream: bool) -> anyhow::Result<PerRequest> {
    let body = json!({
        "model": "mock",
        "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
        "stream": stream,
    })
    .to_string();
    for _ in 0..WARM_UP {
        send(client, url, &body).await?;
    }
    let region = Region::new(GLOBAL);
    for _ in 0..REQUESTS {
        send(client, url, &body).await?;
    }
    let change = region.change();
    let requests = REQUESTS as f64;
    Ok(PerRequest {
        allocations: (change.allocations + change.reallocations) as f64 / requests,
        bytes: (change.bytes_allocated as f64 + change.bytes_reallocated.max(0) as f64) / requests,
    })
}

async fn send(client: &reqwest::Client, url: &str, body: &str) -> anyhow::Result<()> {
    let response = client
        .post(url)
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    anyhow::ensure!(response.status() == 200, "{url}: {}", response.status());
    let mut bytes = response.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        chunk?;
    }
    Ok(())
}

async fn start_mock(stop: &CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(llmgw_mock_upstream::run(
        llmgw_mock_upstream::Config::default(),
        listener,
        stop.clone().cancelled_owned(),
    ));
    Ok(address)
}

fn config(mock: SocketAddr, dir: std::path::PathBuf) -> GatewayConfig {
    let mut config = GatewayConfig::default();
    config.router.models = vec![ModelConfig {
        alias: "mock".to_owned(),
        provider: Some(Provider::Openai),
        base_url: Some(format!("http://{mock}/v1")),
        upstream_model: Some("mock-upstream-model".to_owned()),
        input_price_per_mtok: Some("0.15".to_owned()),
        output_price_per_mtok: Some("0.60".to_owned()),
        ..ModelConfig::default()
    }];
    let any = "127.0.0.1:0"
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
    config.edge.listen = any;
    config.router.listen = any;
    config.quota.listen = any;
    config.billing.listen = any;
    config.billing.admin_listen = any;
    config.billing.data_dir = dir;
    config.edge.api_keys = vec![ApiKeyConfig {
        key: KEY.to_owned(),
        tenant: "bench".to_owned(),
        name: Some("bench".to_owned()),
    }];
    // Governed: every request reserves and settles a limit.
    config.quota.limits.default_key.requests_per_minute = Some(10_000_000);
    config
}

async fn wait_ready(client: &reqwest::Client, edge: SocketAddr) -> anyhow::Result<()> {
    for _ in 0..200 {
        if let Ok(response) = client.get(format!("http://{edge}/readyz")).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the gateway never became ready")
}
