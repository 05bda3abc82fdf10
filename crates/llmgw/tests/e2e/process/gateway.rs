//! `llmgw all` started from a config file, as most process tests need it.

use std::net::SocketAddr;

use serde_json::Value;

use super::child::{Proc, Sse, TempDir, client, free_ports, open_stream, wait_ready};
use crate::harness::KEY;

pub(super) const LLMGW: &str = env!("CARGO_BIN_EXE_llmgw");
/// The `telemetry` section of most tests: logs only.
pub(super) const LOGS: &str = "log_level: info, log_format: json";

/// `llmgw all` with a config file: one model, `mock`, served by `mock`.
pub(super) struct AllInOne {
    pub(super) proc: Proc,
    pub(super) edge: SocketAddr,
    client: reqwest::Client,
    _dir: TempDir,
}

impl AllInOne {
    pub(super) async fn start(mock: SocketAddr, drain_secs: u64, telemetry: &str) -> AllInOne {
        AllInOne::start_adjusted(mock, drain_secs, telemetry, |yaml| yaml).await
    }

    /// [`AllInOne::start`] with the config file's text passed through `adjust`.
    pub(super) async fn start_adjusted(
        mock: SocketAddr,
        drain_secs: u64,
        telemetry: &str,
        adjust: impl FnOnce(String) -> String,
    ) -> AllInOne {
        let [edge_port, router_port] = free_ports();
        let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
        let router = SocketAddr::from(([127, 0, 0, 1], router_port));
        let dir = TempDir::new("all");
        let config = dir.write(
            "llmgw.yaml",
            &adjust(gateway_yaml(edge, router, mock, drain_secs, telemetry)),
        );
        let config = config.to_str().expect("UTF-8 path");
        let mut proc = Proc::spawn("llmgw all", LLMGW, &["all", "--config", config], &[]);
        wait_ready(edge, &mut [&mut proc]).await;
        AllInOne {
            proc,
            edge,
            client: client(),
            _dir: dir,
        }
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge)
    }

    pub(super) async fn open_stream(&self, body: Value) -> Sse {
        open_stream(&self.client, self.edge, body).await
    }
}

/// The config of these tests. Retries and circuit breakers are off: the
/// tests provoke upstream faults on purpose and check each one's own answer
/// (routing has its own tests in `routing.rs`).
pub(super) fn gateway_yaml(
    edge: SocketAddr,
    router: SocketAddr,
    mock: SocketAddr,
    drain_secs: u64,
    telemetry: &str,
) -> String {
    format!(
        "telemetry: {{{telemetry}}}\n\
         edge:\n  \
           listen: \"{edge}\"\n  \
           router_url: \"http://{router}\"\n  \
           drain_timeout_secs: {drain_secs}\n  \
           api_keys:\n    \
             - {{key: \"{KEY}\", tenant: \"team-a\", name: \"process-test\"}}\n\
         router:\n  \
           listen: \"{router}\"\n  \
           models:\n    \
             - {{alias: mock, provider: openai, base_url: \"http://{mock}/v1\", upstream_model: mock}}\n  \
           timeouts: {{first_byte_ms: 2000, idle_ms: 2000}}\n  \
           retries: {{max_retries: 0}}\n  \
           breaker: {{consecutive_failures: 0, min_requests: 4294967295}}\n"
    )
}
