//! `llmgw all` in the test process, for the trace tests: every service
//! (edge, router, quota with a limit so Acquire and Settle happen, billing on
//! SQLite), a mock upstream, and an API key from the accounts database so
//! the edge asks billing for it.

use std::net::SocketAddr;
use std::time::Duration;

use llmgw_router::{ModelConfig, Provider};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";
/// Generous: bounds waits, never decides a pass.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Gateway {
    pub edge: String,
    /// Every service's TCP address.
    pub addresses: llmgw::Addresses,
    mock: SocketAddr,
    /// The accounts-database key the requests use.
    pub key: String,
    client: reqwest::Client,
    stop: CancellationToken,
    services: JoinHandle<anyhow::Result<()>>,
}

fn config(mock: SocketAddr, name: &str) -> llmgw::GatewayConfig {
    let dir = std::env::temp_dir().join(format!("llmgw-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).expect("token file");
    let mut config = llmgw::GatewayConfig::default();
    let any_port = "127.0.0.1:0".parse().expect("address");
    config.router.listen = any_port;
    config.router.models = vec![ModelConfig {
        alias: "mock".to_owned(),
        provider: Some(Provider::Openai),
        base_url: Some(format!("http://{mock}/v1")),
        upstream_model: Some("mock-upstream-model".to_owned()),
        input_price_per_mtok: Some("0.15".to_owned()),
        output_price_per_mtok: Some("0.60".to_owned()),
        ..ModelConfig::default()
    }];
    config.edge.listen = any_port;
    config.quota.listen = any_port;
    // In memory: the trace, not Redis, is under test.
    config.quota.redis_url = None;
    // A limit, so the edge asks the quota service (Acquire, then Settle).
    config.quota.limits.default_key.requests_per_minute = Some(1_000);
    config.billing.listen = any_port;
    config.billing.admin_listen = any_port;
    config.billing.database_url = None;
    config.billing.data_dir = dir.clone();
    config.billing.admin_token_file = Some(dir.join("admin-token"));
    config
}

/// A key from the accounts database: the edge must ask billing for it.
async fn database_key(client: &reqwest::Client, admin: SocketAddr) -> String {
    let admin = format!("http://{admin}/admin/v1");
    let created = client
        .post(format!("{admin}/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "acme"}))
        .send()
        .await
        .expect("admin API reachable");
    assert_eq!(created.status(), 201);
    let key: Value = client
        .post(format!("{admin}/tenants/acme/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .expect("admin API reachable")
        .json()
        .await
        .expect("key JSON");
    key["secret"].as_str().expect("secret").to_owned()
}

impl Gateway {
    /// Starts everything and waits until the edge is ready. `name` keeps
    /// the test's scratch directory apart.
    pub async fn start(name: &str) -> Gateway {
        let stop = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let mock = listener.local_addr().expect("mock address");
        tokio::spawn(llmgw_mock_upstream::run(
            llmgw_mock_upstream::Config::default(),
            listener,
            stop.clone().cancelled_owned(),
        ));
        let (addresses, services) = llmgw::start_all(config(mock, name), stop.clone())
            .await
            .expect("gateway starts");
        let services = tokio::spawn(services.wait(Duration::from_secs(5)));
        let client = reqwest::Client::new();
        let admin = addresses.billing.expect("billing started").1;
        let key = database_key(&client, admin).await;
        let edge = format!("http://{}", addresses.edge);
        tokio::time::timeout(DEADLINE, async {
            while client
                .get(format!("{edge}/readyz"))
                .send()
                .await
                .map_or(true, |response| response.status() != 200)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("gateway ready");
        Gateway {
            edge,
            addresses,
            mock,
            key,
            client,
            stop,
            services,
        }
    }

    /// One non-streaming chat completion with `prompt` and the extra
    /// `headers`; asserts it succeeded.
    pub async fn chat(&self, prompt: &str, headers: &[(&str, &str)]) {
        let mut request = self
            .client
            .post(format!("{}/v1/chat/completions", self.edge))
            .bearer_auth(&self.key)
            .json(&json!({"model": "mock", "messages": [{"role": "user", "content": prompt}]}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = tokio::time::timeout(DEADLINE, request.send())
            .await
            .expect("chat timed out")
            .expect("edge reachable");
        assert_eq!(response.status(), 200);
        let _ = response.bytes().await;
    }

    /// The headers of the last request the upstream received.
    pub async fn upstream_headers(&self) -> Value {
        let stats: Value = tokio::time::timeout(
            DEADLINE,
            self.client
                .get(format!("http://{}/stats", self.mock))
                .send(),
        )
        .await
        .expect("stats timed out")
        .expect("mock reachable")
        .json()
        .await
        .expect("stats JSON");
        stats["last_request"]["headers"].clone()
    }

    /// Stops every service (the router's spool delivers what it holds to
    /// billing first) and waits until they have.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(DEADLINE, self.services)
            .await
            .expect("services stop")
            .expect("services task")
            .expect("services ran");
    }
}
