//! The gateway the console tests drive: every service in one process
//! (`llmgw::start_all`), billing on a fresh Postgres database with ledger
//! fixtures, a mock upstream, and the `llmgw` CLI as an operator runs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use llmgw::GatewayConfig;
use llmgw_proto::billing_v1::UsageEvent;
use llmgw_proto::billing_v1::ledger_client::LedgerClient;
use llmgw_router::{ModelConfig, Provider};
use llmgw_testdb::TestDatabase;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "console-test-admin-token-0123456789";
const DEADLINE: Duration = Duration::from_secs(30);

pub struct Gateway {
    pub edge: SocketAddr,
    pub admin: SocketAddr,
    pub billing_grpc: SocketAddr,
    pub database: TestDatabase,
    pub dir: PathBuf,
    pub http: reqwest::Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Gateway {
    pub async fn start() -> Gateway {
        let database = TestDatabase::create("console")
            .await
            .expect("test database");
        let dir = std::env::temp_dir().join(format!("llmgw-console-{}", uuid()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).expect("token file");
        let stop = CancellationToken::new();
        let mock = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let mock_address = mock.local_addr().expect("mock address");
        tokio::spawn(llmgw_mock_upstream::run(
            llmgw_mock_upstream::Config::default(),
            mock,
            stop.clone().cancelled_owned(),
        ));
        let mut config = GatewayConfig::default();
        config.router.models = vec![ModelConfig {
            alias: "mock".to_owned(),
            provider: Some(Provider::Openai),
            base_url: Some(format!("http://{mock_address}/v1")),
            upstream_model: Some("mock-upstream-model".to_owned()),
            input_price_per_mtok: Some("0.15".to_owned()),
            output_price_per_mtok: Some("0.60".to_owned()),
            ..ModelConfig::default()
        }];
        for listen in [
            &mut config.edge.listen,
            &mut config.router.listen,
            &mut config.quota.listen,
            &mut config.billing.listen,
            &mut config.billing.admin_listen,
        ] {
            *listen = "127.0.0.1:0".parse().expect("address");
        }
        config.billing.database_url = Some(database.url().to_owned());
        config.billing.data_dir = dir.clone();
        config.billing.admin_token_env = "LLMGW_CONSOLE_TEST_UNSET_TOKEN".to_owned();
        config.billing.admin_token_file = Some(dir.join("admin-token"));
        // A revoked key is refused within a second rather than 30 s.
        config.edge.auth_cache_ttl_secs = 1;
        config.edge.auth_negative_ttl_secs = 1;
        config.edge.drain_timeout_secs = 2;
        let (addresses, services) = llmgw::start_all(config, stop.clone())
            .await
            .expect("gateway starts");
        let task = tokio::spawn(services.wait(Duration::from_secs(10)));
        let (billing_grpc, admin) = addresses.billing.expect("billing started");
        let gateway = Gateway {
            edge: addresses.edge,
            admin,
            billing_grpc,
            database,
            dir,
            http: reqwest::Client::new(),
            stop,
            task,
        };
        gateway.wait_ready().await;
        gateway
    }

    async fn wait_ready(&self) {
        let ready = async {
            loop {
                let edge = self
                    .http
                    .get(format!("http://{}/readyz", self.edge))
                    .send()
                    .await;
                let admin = self
                    .http
                    .get(self.admin_url("/admin/v1/tenants"))
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await;
                if edge.is_ok_and(|answer| answer.status() == 200)
                    && admin.is_ok_and(|answer| answer.status() == 200)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(DEADLINE, ready)
            .await
            .expect("gateway ready in 30 s");
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// An admin API call with the admin token; (status, JSON).
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("admin API reachable");
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// Records usage events as the routers do (`Ledger.RecordUsage`).
    pub async fn record(&self, events: Vec<UsageEvent>) {
        let mut ledger = LedgerClient::connect(format!("http://{}", self.billing_grpc))
            .await
            .expect("billing gRPC");
        ledger
            .record_usage(llmgw_proto::billing_v1::RecordUsageRequest { events })
            .await
            .expect("usage recorded");
    }

    /// A chat completion with `key`; the HTTP status.
    pub async fn chat(&self, key: &str) -> u16 {
        let answer = self
            .http
            .post(format!("http://{}/v1/chat/completions", self.edge))
            .bearer_auth(key)
            .json(&json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}]}))
            .timeout(DEADLINE)
            .send()
            .await
            .expect("edge reachable");
        answer.status().as_u16()
    }

    /// Runs `llmgw ARGS` against this gateway's admin API; its stdout.
    pub async fn cli(&self, args: &[&str]) -> String {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_llmgw"))
            .args(args)
            .current_dir(&self.dir)
            .env("LLMGW_ADMIN_URL", format!("http://{}", self.admin))
            .env("LLMGW_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("LLMGW_CONFIG")
            .env("RUST_BACKTRACE", "0")
            .output()
            .await
            .expect("llmgw runs");
        assert!(
            output.status.success(),
            "llmgw {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs SQL on billing's database, as an operator would.
    pub async fn sql(&self, statement: &'static str) {
        let pool = self.database.pool().await.expect("pool");
        sqlx::query(statement).execute(&pool).await.expect("SQL");
        pool.close().await;
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(DEADLINE, self.task).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn uuid() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default()
    )
}
