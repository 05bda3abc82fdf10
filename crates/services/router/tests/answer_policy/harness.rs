//! A real router (port 0) in front of the mock upstream (port 0), with the
//! fake billing receiving its usage and audit events; calls go through the
//! router's gRPC `Chat`, as the edge makes them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use llmgw_grpc::Channel;
use llmgw_proto::router_v1::router_client::RouterClient;
use llmgw_proto::router_v1::{
    Billed, ChatEvent, ChatInput, ChatRequest, Done, Envelope, chat_event::Event, chat_input::Input,
};
use llmgw_router::{Config, ModelConfig, Provider};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::fake_billing::{self, Recorded};

/// The tenant the test policy applies to; any other has none.
pub const TENANT: &str = "acme";
pub const UNPOLICED: &str = "free-for-all";
pub const POLICY: &str = "answers";

pub struct Router {
    pub address: SocketAddr,
    pub mock: SocketAddr,
    pub billing: Arc<Recorded>,
    client: RouterClient<Channel>,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
    _mock_stop: oneshot::Sender<()>,
}

/// Everything the router answered to one call.
#[derive(Debug, Default)]
pub struct Answer {
    pub request_id: String,
    pub chunks: Vec<Bytes>,
    pub completion: Option<Bytes>,
    pub done: Option<Done>,
    pub error: Option<llmgw_proto::error_v1::Error>,
    pub billed: Billed,
}

impl Answer {
    pub fn parsed(&self) -> Vec<Value> {
        self.chunks
            .iter()
            .map(|chunk| serde_json::from_slice(chunk).expect("chunk is JSON"))
            .collect()
    }

    /// The streamed content of choice 0.
    pub fn content(&self) -> String {
        self.parsed()
            .iter()
            .filter_map(|chunk| {
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Finish reasons in the order the chunks carried them.
    pub fn finish_reasons(&self) -> Vec<String> {
        self.parsed()
            .iter()
            .flat_map(|chunk| chunk["choices"].as_array().cloned().unwrap_or_default())
            .filter_map(|choice| choice["finish_reason"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn completion_json(&self) -> Value {
        serde_json::from_slice(self.completion.as_ref().expect("a completion")).expect("JSON")
    }
}

/// `policy`: the `policy:` section's `policies.answers.rules`.
pub fn policy(rules: Value) -> llmgw_policy::PolicySource {
    serde_json::from_value(json!({
        "policies": { POLICY: { "rules": rules } },
        "tenants": { TENANT: POLICY },
    }))
    .expect("policy source")
}

pub fn words(id: &str, action: &str, terms: &[&str]) -> Value {
    json!({"id": id, "kind": "words", "direction": "output", "action": action, "terms": terms})
}

fn model(alias: &str, provider: Provider, base_url: &str, upstream_model: &str) -> ModelConfig {
    ModelConfig {
        alias: alias.to_owned(),
        provider: Some(provider),
        base_url: Some(base_url.to_owned()),
        upstream_model: Some(upstream_model.to_owned()),
        input_price_per_mtok: Some("1".to_owned()),
        output_price_per_mtok: Some("2".to_owned()),
        ..ModelConfig::default()
    }
}

/// Under the target directory's scratch space (removed by `cargo clean`).
fn scratch_dir(what: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "answer-policy-{what}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ))
}

impl Router {
    /// Models: `chat` (OpenAI protocol), `claude` (Anthropic), and
    /// `claude-stalls` (Anthropic; the mock stalls halfway through).
    pub async fn start(
        mock: llmgw_mock_upstream::Config,
        source: llmgw_policy::PolicySource,
    ) -> Router {
        Router::start_with(mock, source, |_| {}).await
    }

    /// [`Router::start`] with the router's config adjusted by `adjust`.
    pub async fn start_with(
        mock: llmgw_mock_upstream::Config,
        source: llmgw_policy::PolicySource,
        adjust: impl FnOnce(&mut Config),
    ) -> Router {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let mock_address = listener.local_addr().expect("mock address");
        let (mock_stop, mock_stopped) = oneshot::channel::<()>();
        tokio::spawn(llmgw_mock_upstream::run(mock, listener, async {
            let _ = mock_stopped.await;
        }));
        let (billing_address, billing) = fake_billing::start().await;

        let base = format!("http://{mock_address}/v1");
        let mut config = Config {
            models: vec![
                model("chat", Provider::Openai, &base, "mock"),
                model("claude", Provider::Anthropic, &base, "claude-mock"),
                model(
                    "claude-stalls",
                    Provider::Anthropic,
                    &base,
                    "mock-fault-stall-mid-stream",
                ),
            ],
            billing_url: Some(format!("http://{billing_address}")),
            policy: source,
            ..Config::default()
        };
        config.usage.spool_dir = Some(scratch_dir("usage"));
        config.usage.flush_interval_ms = 2;
        config.audit.spool_dir = Some(scratch_dir("audit"));
        config.audit.flush_interval_ms = 2;
        adjust(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
        let address = listener.local_addr().expect("router address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(llmgw_router::run(config, listener, async {
            let _ = stopped.await;
        }));
        let channel = llmgw_grpc::channel(&format!("http://{address}")).expect("channel");
        Router {
            address,
            mock: mock_address,
            billing,
            client: RouterClient::new(channel),
            http: reqwest::Client::new(),
            _stop: stop,
            _mock_stop: mock_stop,
        }
    }

    /// One call by `tenant`; `body` is the OpenAI request (its `stream`
    /// and `stream_options.include_usage` go into the envelope too).
    pub async fn chat(&self, tenant: &str, body: Value) -> Answer {
        let request_id = format!("req_{:016x}", fastrand::u64(..));
        let envelope = Envelope {
            request_id: request_id.clone(),
            tenant: tenant.to_owned(),
            key_id: "key_test".to_owned(),
            model: body["model"].as_str().expect("model").to_owned(),
            stream: body["stream"].as_bool().unwrap_or(false),
            deadline_unix_ms: 0,
            include_usage: body["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            ..Envelope::default()
        };
        let request = ChatInput {
            input: Some(Input::Request(ChatRequest {
                envelope: Some(envelope),
                openai_request: Bytes::from(body.to_string()),
            })),
        };
        // The input side stays open, as the edge's does.
        let inputs = futures_util::stream::iter([request]).chain(futures_util::stream::pending());
        let mut events = self
            .client
            .clone()
            .chat(inputs)
            .await
            .expect("router answers")
            .into_inner();
        let mut answer = Answer {
            request_id,
            ..Answer::default()
        };
        let wait = Duration::from_secs(30);
        while let Some(ChatEvent { billed, event }) = tokio::time::timeout(wait, events.message())
            .await
            .expect("the router keeps answering")
            .expect("a well-formed stream")
        {
            if let Some(billed) = billed {
                answer.billed = billed;
            }
            match event.expect("an event") {
                Event::Chunk(chunk) => answer.chunks.push(chunk),
                Event::Completion(completion) => answer.completion = Some(completion),
                Event::Done(done) => {
                    answer.done = Some(done);
                    break;
                }
                Event::Error(error) => {
                    answer.error = Some(error);
                    break;
                }
            }
        }
        answer
    }

    /// The router's `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.address))
            .send()
            .await
            .expect("router reachable")
            .text()
            .await
            .expect("metrics text")
    }

    /// The mock's stats once `check` holds (or after a generous bound).
    pub async fn mock_stats_until(&self, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stats: Value = self
                .http
                .get(format!("http://{}/stats", self.mock))
                .send()
                .await
                .expect("mock reachable")
                .json()
                .await
                .expect("stats");
            if check(&stats) || tokio::time::Instant::now() >= deadline {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A user message and the mock's answer settings.
pub fn request(model: &str, stream: bool, mock: Value) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "Tell me something."}],
        "max_tokens": 200,
        "mock": mock,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}
