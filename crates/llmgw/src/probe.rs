//! `llmgw probe URL`: the container healthcheck (the image has no curl, and
//! needs none). Exit status 0 when healthy, 1 otherwise with one line on
//! stderr saying why. No logging and no configuration: it runs beside a
//! service, every few seconds, with whatever environment the container has.
//!
//! - `grpc://HOST:PORT`: a `grpc.health.v1.Health/Check` of the whole server
//!   (service `""`); healthy only if it answers SERVING (every llmgw gRPC
//!   service serves it: router, quota, billing).
//! - `http://HOST:PORT/PATH` (or `https://`): a GET; healthy only on 2xx
//!   (the edge's `/readyz`, `/healthz`). Redirects are not followed and proxy
//!   settings are ignored: the probe asks the service itself.

use std::time::Duration;

use anyhow::Context as _;
use llmgw_grpc::ServingStatus;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// `grpc://HOST:PORT` (gRPC health check, healthy if SERVING) or
    /// `http://HOST:PORT/PATH` (GET, healthy on 2xx).
    url: String,
    /// Unhealthy if no answer within this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// `Err(reason)`: unhealthy, and why, in one line.
pub async fn run(args: &ProbeArgs) -> Result<(), String> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let url = args.url.as_str();
    let checked = tokio::time::timeout(timeout, probe(url))
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {} ms", args.timeout_ms)));
    checked.map_err(|error| format!("{url}: {error:#}").replace(['\n', '\r'], " "))
}

/// Unbounded here: `run`'s timeout is the one deadline, for both kinds.
async fn probe(url: &str) -> anyhow::Result<()> {
    if let Some(address) = url.strip_prefix("grpc://") {
        anyhow::ensure!(
            !address.is_empty() && !address.contains('/'),
            "expected grpc://HOST:PORT"
        );
        match llmgw_grpc::check_health(&format!("http://{address}")).await? {
            ServingStatus::Serving => Ok(()),
            status => anyhow::bail!("{}", status.as_str_name()),
        }
    } else if url.starts_with("http://") || url.starts_with("https://") {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .context("building the HTTP client")?;
        let response = client.get(url).send().await.context("GET failed")?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "answered {status}");
        Ok(())
    } else {
        anyhow::bail!("expected grpc://HOST:PORT or http://HOST:PORT/PATH")
    }
}
