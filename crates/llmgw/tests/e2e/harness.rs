//! Spawns a gateway (edge + router) in-process against a mock upstream, and
//! talks to it like a client would.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use llmgw::GatewayConfig;
use llmgw_edge::ApiKeyConfig;
use llmgw_router::{DeploymentConfig, ModelConfig, Provider};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const KEY: &str = "sk-llmgw-test-0123456789abcdef";
pub const OTHER_TENANT_KEY: &str = "sk-llmgw-test-fedcba9876543210";

pub struct Gateway {
    pub edge: SocketAddr,
    pub router: SocketAddr,
    pub quota: Option<SocketAddr>,
    /// The billing service's admin API (when this gateway started one).
    pub admin: Option<SocketAddr>,
    pub mock: SocketAddr,
    pub client: reqwest::Client,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn model(alias: &str, base_url: String, upstream_model: &str) -> ModelConfig {
    ModelConfig {
        alias: alias.to_owned(),
        provider: Some(Provider::Openai),
        base_url: Some(base_url),
        upstream_model: Some(upstream_model.to_owned()),
        input_price_per_mtok: Some("0.15".to_owned()),
        output_price_per_mtok: Some("0.60".to_owned()),
        ..ModelConfig::default()
    }
}

/// A deployment of the mock upstream (`base_url` like `http://host:port/v1`).
pub fn deployment(provider: Provider, base_url: &str, upstream_model: &str) -> DeploymentConfig {
    DeploymentConfig {
        provider,
        base_url: base_url.to_owned(),
        upstream_model: upstream_model.to_owned(),
        api_key_env: None,
        weight: 1,
        priority: 0,
        timeouts: None,
    }
}

/// The default test setup: model `mock` (limits: 1000 prompt chars, 256
/// output tokens), `reasoner` (DeepSeek-style reasoning), `dead` (nothing
/// listens there).
pub async fn config(mock: SocketAddr) -> GatewayConfig {
    let base = format!("http://{mock}/v1");
    let mut limited = model("mock", base.clone(), "mock-upstream-model");
    limited.max_prompt_chars = 1_000;
    limited.max_output_tokens = 256;
    // A port that was just free: connections to it are refused.
    let dead = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead_url = format!("http://{}/v1", dead.local_addr().expect("addr"));
    drop(dead);

    let mut config = GatewayConfig::default();
    config.router.listen = "127.0.0.1:0".parse().expect("addr");
    config.router.models = vec![
        limited,
        model("reasoner", base, "mock-reasoner"),
        model("dead", dead_url, "mock"),
    ];
    // Short enough that the fault tests (which wait for them) stay quick,
    // long enough that a healthy in-process mock on a busy machine never
    // meets them.
    config.router.timeouts.first_byte_ms = 3_000;
    config.router.timeouts.idle_ms = 3_000;
    config.edge.listen = "127.0.0.1:0".parse().expect("addr");
    config.quota.listen = "127.0.0.1:0".parse().expect("addr");
    // Billing on SQLite in a scratch directory (never the working tree).
    config.billing.listen = "127.0.0.1:0".parse().expect("addr");
    config.billing.admin_listen = "127.0.0.1:0".parse().expect("addr");
    config.billing.data_dir = crate::accounts::scratch_dir("gateway");
    config.edge.drain_timeout_secs = 5;
    config.edge.max_body_bytes = 64 * 1024;
    config.edge.api_keys = vec![
        ApiKeyConfig {
            key: KEY.to_owned(),
            tenant: "team-a".to_owned(),
            name: Some("test-key".to_owned()),
        },
        ApiKeyConfig {
            key: OTHER_TENANT_KEY.to_owned(),
            tenant: "team-b".to_owned(),
            name: None,
        },
    ];
    config
}

pub async fn start_mock(
    config: llmgw_mock_upstream::Config,
    stop: &CancellationToken,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
    let address = listener.local_addr().expect("mock addr");
    tokio::spawn(llmgw_mock_upstream::run(
        config,
        listener,
        stop.clone().cancelled_owned(),
    ));
    address
}

impl Gateway {
    pub async fn start() -> Gateway {
        Gateway::start_with(|_| {}).await
    }

    /// Starts a mock upstream and a gateway whose config `adjust` may change.
    pub async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Gateway {
        let stop = CancellationToken::new();
        let mock = start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
        let mut config = config(mock).await;
        adjust(&mut config);
        let grace = Duration::from_secs(config.edge.drain_timeout_secs + 5);
        let (addresses, services) = llmgw::start_all(config, stop.clone())
            .await
            .expect("gateway starts");
        let task = tokio::spawn(services.wait(grace));
        let gateway = Gateway {
            edge: addresses.edge,
            router: addresses.router,
            quota: addresses.quota,
            admin: addresses.billing.map(|(_, admin)| admin),
            mock,
            client: reqwest::Client::new(),
            stop,
            task: Some(task),
        };
        gateway.wait_ready().await;
        gateway
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge)
    }

    async fn wait_ready(&self) {
        // A generous deadline (60 s), not a bound: ready is what matters.
        for _ in 0..1_200 {
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway never became ready");
    }

    /// Begins shutdown; `stopped` waits for it to finish.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        let task = self.task.take().expect("not yet stopped");
        task.await.expect("services task")
    }

    pub async fn chat_raw(
        &self,
        key: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("edge reachable")
    }

    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.chat_raw(Some(KEY), body.to_string()).await
    }

    /// The edge's `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("reachable")
            .text()
            .await
            .expect("text")
    }

    /// A streaming call, read to the end: the `data:` payloads in order.
    pub async fn stream(&self, body: Value) -> (u16, Vec<String>) {
        let response = self.chat(body).await;
        let status = response.status().as_u16();
        let mut events = Vec::new();
        let mut stream = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(bytes) = stream.next().await {
            let Ok(bytes) = bytes else { break };
            buffer.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                for line in frame.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        events.push(data.to_owned());
                    }
                }
            }
        }
        (status, events)
    }

    pub async fn mock_stats(&self) -> Value {
        mock_stats(&self.client, self.mock).await
    }

    pub async fn router_metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.router))
            .send()
            .await
            .expect("router reachable")
            .text()
            .await
            .expect("metrics text")
    }

    /// Polls the mock until `check` holds on its stats, for up to `within`.
    pub async fn mock_stats_until(
        &self,
        within: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let stats = self.mock_stats().await;
            if check(&stats) || tokio::time::Instant::now() >= deadline {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn mock_stats(client: &reqwest::Client, mock: SocketAddr) -> Value {
    client
        .get(format!("http://{mock}/stats"))
        .send()
        .await
        .expect("mock reachable")
        .json()
        .await
        .expect("stats JSON")
}

/// A minimal valid request for `model`.
pub fn request(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]})
}

/// The parsed error body of a failed response, with its status.
pub async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("error body is JSON");
    let error = body.get("error").cloned().expect("OpenAI error shape");
    for field in ["message", "type", "param", "code"] {
        assert!(
            error.get(field).is_some(),
            "error body lacks {field}: {body}"
        );
    }
    (status, error)
}

/// The content text of a list of SSE payloads, and the parsed chunks.
pub fn chunks(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).expect("chunk is JSON"))
        .collect()
}

pub fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// A service's `/metrics` page.
pub async fn metrics_of(service: &SocketAddr) -> String {
    reqwest::get(format!("http://{service}/metrics"))
        .await
        .expect("metrics reachable")
        .text()
        .await
        .expect("metrics text")
}
