//! Shared helpers: the mock served by `run` on a real socket, and SSE parsing.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use llmgw_mock_upstream::{Config, WORDS, run};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct Server {
    pub base: String,
    pub client: reqwest::Client,
    pub stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(config, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            stop: Some(stop),
            task,
        }
    }

    pub fn chat(&self, body: Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}/v1/chat/completions", self.base))
            .json(&body)
    }

    pub async fn stats(&self) -> Value {
        let response = self.client.get(format!("{}/stats", self.base)).send().await;
        response.expect("stats").json().await.expect("stats json")
    }

    /// Polls `/stats` until `key` reads `want`, for up to 2 s.
    pub async fn wait_stat(&self, key: &str, want: u64) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let stats = self.stats().await;
            if stats[key] == json!(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{key} never reached {want}: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn hello(extra: Value) -> Value {
    let mut body = json!({
        "model": "mock",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello!"}
        ]
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// The answer to [`hello`] with `n` chunks.
pub fn hello_text(n: usize) -> String {
    let seed = "Hello!".bytes().map(usize::from).sum::<usize>() % WORDS.len();
    (0..n)
        .map(|i| format!("{} ", WORDS[(seed + i) % WORDS.len()]))
        .collect()
}

/// Splits an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.strip_prefix("data: ").expect("data event").to_owned())
        .collect()
}

pub fn parse(data: &[String]) -> Vec<Value> {
    data.iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data).expect("chunk json"))
        .collect()
}
