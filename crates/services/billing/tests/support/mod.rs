//! Shared by the billing service tests: a fresh database per test (Postgres
//! or SQLite), the real service started on port 0 by `llmgw_billing::run`,
//! and small clients for the admin API (reqwest) and LookupKey (tonic).

#![allow(dead_code)] // Each test binary uses a different part.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use llmgw_billing::Config;
use llmgw_proto::billing_v1::accounts_client::AccountsClient;
use llmgw_proto::billing_v1::audit_client::AuditClient;
use llmgw_proto::billing_v1::policies_client::PoliciesClient;
use llmgw_proto::billing_v1::{GetPoliciesRequest, GetPoliciesResponse, KeyInfo, LookupKeyRequest};
use llmgw_testdb::TestDatabase;
use reqwest::Method;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub const TOKEN: &str = "test-admin-token-0123456789";

/// Runs one async test body on both backends: `on_both_backends!(a, b);`
/// makes `postgres::a`, `sqlite::a`, ... calling `a(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A fresh database, dropped (Postgres, by the shared fixture) or deleted
/// (SQLite) when this is dropped, even when the test failed. Also a
/// scratch directory for the admin token file.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pub postgres: Option<TestDatabase>,
    pub dir: PathBuf,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = std::env::temp_dir().join(format!("llmgw-billing-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        match backend {
            Backend::Postgres => {
                let database = TestDatabase::create("billing_service").await.unwrap();
                TestDb {
                    url: database.url().to_owned(),
                    backend,
                    postgres: Some(database),
                    dir,
                }
            }
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.join("billing.db").display()),
                backend,
                postgres: None,
                dir,
            },
        }
    }

    /// Drops the Postgres database now, terminating the service's sessions:
    /// the database is gone from under a running service.
    pub async fn drop_postgres_database(&self) {
        let database = self.postgres.as_ref().unwrap();
        database.drop_database().await.unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The service under test; stops when dropped (before its database goes).
pub struct Service {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
    pub admin: SocketAddr,
    pub grpc: SocketAddr,
    pub http: reqwest::Client,
    pub db: TestDb,
}

/// A config for `db` with the admin token in a file (tests must not set
/// environment variables: `set_var` is unsafe in edition 2024).
pub fn config(db: &TestDb) -> Config {
    let token_file = db.dir.join("admin-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    Config {
        database_url: Some(db.url.clone()),
        data_dir: db.dir.clone(),
        // A variable nobody sets, so the file is the only token source.
        admin_token_env: "LLMGW_BILLING_TEST_UNSET_TOKEN".to_owned(),
        admin_token_file: Some(token_file),
        ..Config::default()
    }
}

pub async fn start(backend: Backend) -> Service {
    let db = TestDb::new(backend).await;
    let config = config(&db);
    start_with(db, config).await
}

pub async fn start_with(db: TestDb, config: Config) -> Service {
    let (grpc, admin) = listeners().await;
    let grpc_address = grpc.local_addr().unwrap();
    let admin_address = admin.local_addr().unwrap();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(llmgw_billing::run(config, grpc, admin, async move {
        let _ = stopped.await;
    }));
    let service = Service {
        shutdown: Some(shutdown),
        task,
        admin: admin_address,
        grpc: grpc_address,
        http: reqwest::Client::new(),
        db,
    };
    service.wait_until_serving().await;
    service
}

pub async fn listeners() -> (TcpListener, TcpListener) {
    (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// An answer of the admin API: status, body as JSON (Null if not JSON) and
/// as text (to grep for secrets).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// `error.param` of an error answer.
    pub fn param(&self) -> Option<&str> {
        self.json["error"]["param"].as_str()
    }

    /// An error answer with this status, in OpenAI's shape (exactly
    /// `message`, `type`, `param`, `code`), with the `type` and `code` the
    /// gateway uses for that status everywhere.
    pub fn assert_error(&self, status: u16, param: Option<&str>) {
        assert_eq!(self.status, status, "{self:?}");
        let error = self.json["error"]
            .as_object()
            .unwrap_or_else(|| panic!("not an error body: {self:?}"));
        let mut fields: Vec<&str> = error.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["code", "message", "param", "type"], "{self:?}");
        assert!(error["message"].is_string(), "{self:?}");
        let (kind, code) = match status {
            400 | 404 | 405 => ("invalid_request_error", None),
            401 => ("invalid_request_error", Some("invalid_admin_token")),
            403 => ("invalid_request_error", Some("forbidden")),
            409 => ("invalid_request_error", Some("conflict")),
            500 => ("server_error", Some("internal_error")),
            503 => ("server_error", Some("service_unavailable")),
            other => panic!("no error shape known for {other}"),
        };
        assert_eq!(error["type"], kind, "{self:?}");
        assert_eq!(error["code"].as_str(), code, "{self:?}");
        assert_eq!(self.param(), param, "{self:?}");
    }
}

impl Service {
    /// Until the admin API answers (start-up connects and migrates first).
    async fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                !self.task.is_finished(),
                "the billing service stopped during start-up"
            );
            if let Ok(response) = self
                .http
                .get(self.url("/admin/v1/tenants"))
                .bearer_auth(TOKEN)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && response.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "billing did not start in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// A request with the admin token and a raw body.
    pub async fn raw(&self, method: Method, path: &str, body: Option<&str>) -> Answer {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        answer(request.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.raw(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.raw(Method::POST, path, Some(&body.to_string())).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.raw(Method::PATCH, path, Some(&body.to_string())).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.raw(Method::PUT, path, Some(&body.to_string())).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.raw(Method::DELETE, path, None).await
    }

    /// Creates a tenant, asserting 201; gives its JSON.
    pub async fn tenant(&self, name: &str) -> Value {
        let created = self
            .post("/admin/v1/tenants", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        created.json
    }

    /// Creates a key under `tenant` (id or name), asserting 201; gives
    /// `{"key": {...}, "secret": "..."}`.
    pub async fn key(&self, tenant: &str, name: &str) -> Value {
        let created = self
            .post(
                &format!("/admin/v1/tenants/{tenant}/keys"),
                serde_json::json!({ "name": name }),
            )
            .await;
        assert_eq!(created.status, 201, "{created:?}");
        created.json
    }

    pub async fn audit(&self) -> AuditClient<Channel> {
        AuditClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    pub async fn policies(&self) -> PoliciesClient<Channel> {
        PoliciesClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// `Policies.GetPolicies` as a replica polls it.
    pub async fn get_policies(&self, known_etag: &str) -> GetPoliciesResponse {
        self.policies()
            .await
            .get_policies(GetPoliciesRequest {
                known_etag: known_etag.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn accounts(&self) -> AccountsClient<Channel> {
        AccountsClient::connect(format!("http://{}", self.grpc))
            .await
            .unwrap()
    }

    /// LookupKey for a key's text, as the edge does it.
    pub async fn lookup(&self, secret: &str) -> Result<Option<KeyInfo>, tonic::Status> {
        let response = self
            .accounts()
            .await
            .lookup_key(LookupKeyRequest {
                key_digest: llmgw_apikey::digest(secret).to_vec().into(),
            })
            .await?
            .into_inner();
        assert_eq!(response.found, response.key.is_some());
        Ok(response.key)
    }

    /// `GET /metrics` on the gRPC port.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.grpc))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the service and gives what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("billing did not stop within 10 s")
            .unwrap()
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        json,
        text,
        headers,
    }
}

pub fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}
