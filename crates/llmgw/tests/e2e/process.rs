//! The real `llmgw` binary, run as child processes the way an operator runs
//! it: demo mode with no configuration, graceful shutdown on SIGTERM, edge
//! and router as separate processes, W3C trace context reaching the
//! provider, and the official OpenAI Python SDK as the client.
//!
//! Every child is killed when its guard drops (also when a test panics), and
//! every wait is bounded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use crate::harness::{self, KEY};

const LLMGW: &str = env!("CARGO_BIN_EXE_llmgw");
/// Starting a process and loading the catalog takes well under this.
const STARTUP: Duration = Duration::from_secs(30);
/// Any single HTTP exchange that is not a deliberately slow stream.
const CALL: Duration = Duration::from_secs(15);
/// The incoming W3C trace context of the propagation test.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN_ID: &str = "b7ad6b7169203331";
/// The `telemetry` section of most tests: logs only.
const LOGS: &str = "log_level: info, log_format: json";

/// Environment that would change what the child does behind the test's back.
const FOREIGN_ENV: [&str; 5] = [
    "LLMGW_CONFIG",
    "OPENAI_API_KEY",
    "DEEPSEEK_API_KEY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "RUST_LOG",
];

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_mode_serves_the_mock_model_with_the_dev_key() {
    let [edge_port, router_port] = free_ports();
    let mut gateway = Proc::spawn(
        "llmgw all (demo)",
        LLMGW,
        &["all"],
        &[
            ("LLMGW_EDGE__LISTEN", format!("127.0.0.1:{edge_port}")),
            ("LLMGW_ROUTER__LISTEN", format!("127.0.0.1:{router_port}")),
        ],
    );
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    wait_ready(edge, &mut [&mut gateway]).await;

    let hint = format!("curl http://{edge}/v1/chat/completions");
    let bearer = format!("Authorization: Bearer {}", llmgw::demo::DEV_KEY);
    assert_eq!(llmgw::demo::DEV_KEY, "sk-llmgw-dev-0000000000000000");
    gateway
        .stdout_until(Duration::from_secs(5), |out| {
            out.contains(&hint) && out.contains(&bearer)
        })
        .await
        .unwrap_or_else(|out| {
            panic!("stdout lacks the curl hint `{hint}` with `{bearer}`:\n{out}")
        });

    let client = client();
    let response = timeout(
        CALL,
        client
            .post(format!("http://{edge}/v1/chat/completions"))
            .bearer_auth(llmgw::demo::DEV_KEY)
            .json(&json!({"model": "demo", "messages": [{"role": "user", "content": "Hello!"}]}))
            .send(),
    )
    .await
    .expect("demo chat call timed out")
    .expect("edge reachable");
    assert_eq!(response.status(), 200, "demo chat call");
    let completion: Value = response.json().await.expect("completion JSON");
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    let content = completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!content.trim().is_empty(), "no content: {completion}");
    assert!(
        completion["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0,
        "no usage: {completion}"
    );

    let models: Value = timeout(
        CALL,
        client
            .get(format!("http://{edge}/v1/models"))
            .bearer_auth(llmgw::demo::DEV_KEY)
            .send(),
    )
    .await
    .expect("model list timed out")
    .expect("edge reachable")
    .json()
    .await
    .expect("model list JSON");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|model| model["id"].as_str())
        .collect();
    assert!(ids.contains(&"demo"), "models: {models}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_streams_then_exits() {
    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    let drain_secs = 5;
    let mut gateway = AllInOne::start(mock, drain_secs, LOGS).await;

    let mut sse = gateway
        .open_stream(json!({
            "model": "mock",
            "stream": true,
            "messages": [{"role": "user", "content": "Count slowly"}],
            "mock": {"chunks": 10, "chunk_delay_ms": 200},
        }))
        .await;
    let first = timeout(CALL, sse.next_data())
        .await
        .expect("first event timed out")
        .expect("a first event");
    let signalled = Instant::now();
    gateway.proc.sigterm();
    let reader = tokio::spawn(async move {
        let mut events = vec![first];
        while let Some(event) = sse.next_data().await {
            events.push(event);
        }
        events
    });

    let refused = stops_taking_requests(gateway.edge, Duration::from_secs(drain_secs)).await;
    assert!(
        refused.is_ok(),
        "the edge still took new requests after SIGTERM: {refused:?}\n{}",
        gateway.proc.output()
    );

    let events = timeout(Duration::from_secs(drain_secs + 5), reader)
        .await
        .expect("the open stream did not finish")
        .expect("stream reader");
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "the stream did not complete: {events:#?}\n{}",
        gateway.proc.output()
    );
    let chunks = harness::chunks(&events);
    for chunk in &chunks {
        assert!(chunk.get("error").is_none(), "error event: {chunk}");
    }
    let contents: Vec<&str> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .filter(|content| !content.is_empty())
        .collect();
    assert_eq!(contents.len(), 10, "content chunks: {contents:?}");

    let status = gateway
        .proc
        .wait_exit_by(signalled + Duration::from_secs(drain_secs + 3))
        .await;
    assert!(
        status.success(),
        "llmgw exited with {status}:\n{}",
        gateway.proc.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_still_open_at_the_drain_deadline() {
    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    let drain_secs = 1;
    let mut gateway = AllInOne::start(mock, drain_secs, LOGS).await;

    let mut sse = gateway
        .open_stream(json!({
            "model": "mock",
            "stream": true,
            "messages": [{"role": "user", "content": "Count very slowly"}],
            "mock": {"chunks": 50, "chunk_delay_ms": 200},
        }))
        .await;
    let first = timeout(CALL, sse.next_data())
        .await
        .expect("first event timed out")
        .expect("a first event");
    let signalled = Instant::now();
    gateway.proc.sigterm();

    // Unhindered, the stream would run for 10 s more.
    let mut events = vec![first];
    timeout(Duration::from_secs(15), async {
        while let Some(event) = sse.next_data().await {
            events.push(event);
        }
    })
    .await
    .expect("the stream was not ended");

    assert!(
        !events.iter().any(|event| event == "[DONE]"),
        "a stream still open at the drain deadline completed: {events:#?}"
    );
    let last: Value = serde_json::from_str(events.last().expect("events")).expect("last event");
    assert_eq!(
        last["error"]["code"], "service_unavailable",
        "the last event is not the shutdown error: {events:#?}"
    );
    assert!(
        last["error"]["message"].is_string(),
        "error without message: {last}"
    );
    assert!(
        events.len() < 50,
        "the whole answer came through: {} events",
        events.len()
    );

    // The edge's drain, its 2 s to write final events, the process's grace.
    let status = gateway
        .proc
        .wait_exit_by(signalled + Duration::from_secs(drain_secs + 2 + 5 + 3))
        .await;
    assert!(
        status.success(),
        "llmgw exited with {status}:\n{}",
        gateway.proc.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_processes_edge_and_router() {
    let [edge_port, router_port, mock_port] = free_ports();
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    let router = SocketAddr::from(([127, 0, 0, 1], router_port));
    let mock = SocketAddr::from(([127, 0, 0, 1], mock_port));

    let mut mock_proc = Proc::spawn(
        "llmgw mock-upstream",
        LLMGW,
        &["mock-upstream", "--listen", &mock.to_string()],
        &[],
    );
    let mock_stats = format!("http://{mock}/stats");
    wait_http_ok(&mock_stats, &mut [&mut mock_proc]).await;

    let dir = TempDir::new("split");
    let config = dir.write("llmgw.yaml", &gateway_yaml(edge, router, mock, 5, LOGS));
    let config = config.to_str().expect("UTF-8 path");
    let mut router_proc = Proc::spawn("llmgw router", LLMGW, &["router", "--config", config], &[]);
    let mut edge_proc = Proc::spawn("llmgw edge", LLMGW, &["edge", "--config", config], &[]);
    wait_ready(
        edge,
        &mut [&mut edge_proc, &mut router_proc, &mut mock_proc],
    )
    .await;

    let client = client();
    let prompt = json!([{"role": "user", "content": "Which process am I talking to?"}]);
    let response = timeout(
        CALL,
        client
            .post(format!("http://{edge}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&json!({"model": "mock", "messages": prompt}))
            .send(),
    )
    .await
    .expect("JSON call timed out")
    .expect("edge reachable");
    assert_eq!(response.status(), 200);
    let completion: Value = response.json().await.expect("completion JSON");
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    let content = completion["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned();
    assert!(!content.is_empty(), "{completion}");
    assert!(completion["usage"]["total_tokens"].as_u64().unwrap_or(0) > 0);

    let mut sse = open_stream(
        &client,
        edge,
        json!({"model": "mock", "stream": true, "messages": prompt}),
    )
    .await;
    let mut events = Vec::new();
    timeout(CALL, async {
        while let Some(event) = sse.next_data().await {
            events.push(event);
        }
    })
    .await
    .expect("stream timed out");
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:#?}"
    );
    assert_eq!(
        harness::content_of(&harness::chunks(&events)),
        content,
        "streamed and JSON answers differ"
    );

    let stats: Value = timeout(CALL, client.get(&mock_stats).send())
        .await
        .expect("stats timed out")
        .expect("mock reachable")
        .json()
        .await
        .expect("stats JSON");
    assert_eq!(stats["requests_total"], 2, "{stats}");

    // Each process stops cleanly on SIGTERM, front to back.
    for proc in [&mut edge_proc, &mut router_proc, &mut mock_proc] {
        proc.sigterm();
        let status = proc.wait_exit_by(Instant::now() + CALL).await;
        assert!(
            status.success(),
            "{} exited with {status}:\n{}",
            proc.name,
            proc.output()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_reaches_the_upstream() {
    assert_trace_context_reaches_the_upstream("info").await;
}

/// Quieter logs must not switch tracing off: the log level filters logs,
/// not the request spans that carry the trace context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_reaches_the_upstream_with_quiet_logs() {
    assert_trace_context_reaches_the_upstream("warn").await;
}

/// Sends a request carrying a `traceparent` through `llmgw all` (logging at
/// `log_level`, exporting spans) and checks what the upstream received.
async fn assert_trace_context_reaches_the_upstream(log_level: &str) {
    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    // Nothing listens there: export fails in the background, which is fine;
    // an exporter being configured is what turns trace context on.
    let [collector] = free_ports();
    let collector = format!("http://127.0.0.1:{collector}");
    let telemetry =
        format!("log_level: {log_level}, log_format: json, otlp_endpoint: \"{collector}\"");
    let gateway = AllInOne::start(mock, 5, &telemetry).await;

    let incoming = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let response = timeout(
        CALL,
        client()
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("traceparent", &incoming)
            .json(&harness::request("mock"))
            .send(),
    )
    .await
    .expect("chat call timed out")
    .expect("edge reachable");
    assert_eq!(response.status(), 200);

    let stats: Value = timeout(CALL, client().get(format!("http://{mock}/stats")).send())
        .await
        .expect("stats timed out")
        .expect("mock reachable")
        .json()
        .await
        .expect("stats JSON");
    let headers = &stats["last_request"]["headers"];
    let Some(upstream) = headers["traceparent"].as_str() else {
        panic!(
            "the upstream request carries no traceparent (sent {incoming}); headers: {headers:#}\n{}",
            gateway.proc.output()
        );
    };
    let fields: Vec<&str> = upstream.split('-').collect();
    assert_eq!(fields.len(), 4, "malformed traceparent {upstream:?}");
    assert_eq!(fields[0], "00", "version of {upstream:?}");
    assert_eq!(
        fields[1], TRACE_ID,
        "the upstream call is not in the caller's trace: {upstream:?}"
    );
    let span_id = fields[2];
    assert!(
        span_id.len() == 16
            && span_id.bytes().all(|b| b.is_ascii_hexdigit())
            && span_id != "0000000000000000",
        "invalid parent span id in {upstream:?}"
    );
    assert_ne!(
        span_id, PARENT_SPAN_ID,
        "the gateway forwarded the caller's span instead of its own: {upstream:?}"
    );
    assert_eq!(fields[3], "01", "the sampled flag was lost: {upstream:?}");

    if log_level == "warn" {
        // ...and the logs stay as quiet as asked.
        let output = gateway.proc.output();
        assert!(
            !output.contains(r#""level":"INFO""#),
            "info logs at log_level warn:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_streaming_json_and_errors() {
    let python = sdk_python().await;

    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    let gateway = AllInOne::start(mock, 5, LOGS).await;

    let script = sdk_dir().join("openai_sdk.py");
    let mut command = Command::new(&python);
    command
        .arg(&script)
        .env("OPENAI_BASE_URL", gateway.url("/v1"))
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_MODEL", "mock")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost");
    for name in [
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_LOG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    let (status, output) = run_bounded(command, Duration::from_secs(120))
        .await
        .unwrap_or_else(|output| panic!("openai_sdk.py did not finish in time:\n{output}"));
    println!("openai_sdk.py ({status}):\n{output}");
    assert!(
        status.success(),
        "openai_sdk.py failed ({status}):\n{output}\n--- gateway ---\n{}",
        gateway.proc.output()
    );
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A child process, SIGKILLed when dropped. Its stdout and stderr are
/// collected (interleaved by line) for failure messages; stdout alone too.
struct Proc {
    name: String,
    pid: u32,
    child: Child,
    output: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl Proc {
    fn spawn(name: &str, program: &str, args: &[&str], env: &[(&str, String)]) -> Proc {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("LLMGW_") {
                command.env_remove(var);
            }
        }
        for var in FOREIGN_ENV {
            command.env_remove(var);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name} ({program}): {error}"));
        let pid = child.id().expect("a running child has a pid");
        let output = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        tokio::spawn(collect(
            child.stdout.take().expect("piped stdout"),
            vec![output.clone(), stdout.clone()],
        ));
        tokio::spawn(collect(
            child.stderr.take().expect("piped stderr"),
            vec![output.clone()],
        ));
        Proc {
            name: name.to_owned(),
            pid,
            child,
            output,
            stdout,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- output of {} (pid {}) ---\n{}",
            self.name,
            self.pid,
            self.output
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_str()
        )
    }

    /// Waits until `check` holds on stdout so far; `Err(output)` if it does
    /// not within `within`.
    async fn stdout_until(
        &self,
        within: Duration,
        check: impl Fn(&str) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if check(
                self.stdout
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_str(),
            ) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.output());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Panics (with the output) if the process has already exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited early with {status}\n{}",
                self.name,
                self.output()
            );
        }
    }

    async fn wait_exit_by(&mut self, deadline: Instant) -> ExitStatus {
        match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(status) => status.expect("wait for the child"),
            Err(_) => panic!("{} did not exit in time\n{}", self.name, self.output()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL; harmless when the process has already exited.
        let _ = self.child.start_kill();
    }
}

/// Appends each line of `pipe` to every one of `sinks`.
async fn collect(pipe: impl AsyncRead + Unpin, sinks: Vec<Arc<Mutex<String>>>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        for sink in &sinks {
            let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
            sink.push_str(&line);
            sink.push('\n');
        }
    }
}

/// Runs `command` to completion within `within`: its status and combined
/// output, or `Err(output so far)` after killing it.
async fn run_bounded(command: Command, within: Duration) -> Result<(ExitStatus, String), String> {
    let mut command = command;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot start {:?}: {error}", command.as_std().get_program()))?;
    let output = Arc::new(Mutex::new(String::new()));
    let out = tokio::spawn(collect(
        child.stdout.take().expect("piped stdout"),
        vec![output.clone()],
    ));
    let err = tokio::spawn(collect(
        child.stderr.take().expect("piped stderr"),
        vec![output.clone()],
    ));
    let text = |output: &Mutex<String>| {
        output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    };
    match timeout(within, child.wait()).await {
        Ok(status) => {
            let status = status.expect("wait for the child");
            // The pipes close at exit; a grandchild holding them open must
            // not hang the test.
            let _ = timeout(Duration::from_secs(5), async {
                let _ = out.await;
                let _ = err.await;
            })
            .await;
            Ok((status, text(&output)))
        }
        Err(_) => {
            let _ = child.start_kill();
            Err(text(&output))
        }
    }
}

/// `llmgw all` with a config file: one model, `mock`, served by `mock`.
struct AllInOne {
    proc: Proc,
    edge: SocketAddr,
    client: reqwest::Client,
    _dir: TempDir,
}

impl AllInOne {
    async fn start(mock: SocketAddr, drain_secs: u64, telemetry: &str) -> AllInOne {
        let [edge_port, router_port] = free_ports();
        let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
        let router = SocketAddr::from(([127, 0, 0, 1], router_port));
        let dir = TempDir::new("all");
        let config = dir.write(
            "llmgw.yaml",
            &gateway_yaml(edge, router, mock, drain_secs, telemetry),
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

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.edge)
    }

    async fn open_stream(&self, body: Value) -> Sse {
        open_stream(&self.client, self.edge, body).await
    }
}

fn gateway_yaml(
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
           timeouts: {{first_byte_ms: 2000, idle_ms: 2000}}\n"
    )
}

/// Waits for `GET /readyz` to answer 200, failing fast if a process dies.
async fn wait_ready(edge: SocketAddr, procs: &mut [&mut Proc]) {
    wait_http_ok(&format!("http://{edge}/readyz"), procs).await;
}

async fn wait_http_ok(url: &str, procs: &mut [&mut Proc]) {
    let client = client();
    let deadline = Instant::now() + STARTUP;
    loop {
        for proc in procs.iter_mut() {
            proc.assert_running();
        }
        if let Ok(Ok(response)) = timeout(Duration::from_secs(2), client.get(url).send()).await
            && response.status() == 200
        {
            return;
        }
        if Instant::now() >= deadline {
            let outputs: Vec<String> = procs.iter().map(|proc| proc.output()).collect();
            panic!("{url} never answered 200\n{}", outputs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the edge with fresh connections until one is refused or `/readyz`
/// is not 200. `Err` describes the last answer if that never happens.
async fn stops_taking_requests(edge: SocketAddr, within: Duration) -> Result<String, String> {
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .expect("HTTP client");
    let deadline = Instant::now() + within;
    loop {
        let last = match fresh.get(format!("http://{edge}/readyz")).send().await {
            Err(error) => return Ok(format!("refused: {error}")),
            Ok(response) if response.status() != 200 => {
                return Ok(format!("/readyz answered {}", response.status()));
            }
            Ok(response) => format!("/readyz answered {}", response.status()),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// Free loopback ports, distinct from each other. (Another process may take
/// one before the child binds it; unlikely enough for tests.)
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local address").port())
}

// ---------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------

async fn open_stream(client: &reqwest::Client, edge: SocketAddr, body: Value) -> Sse {
    let response = timeout(
        CALL,
        client
            .post(format!("http://{edge}/v1/chat/completions"))
            .bearer_auth(KEY)
            .json(&body)
            .send(),
    )
    .await
    .expect("stream headers timed out")
    .expect("edge reachable");
    assert_eq!(response.status(), 200, "streaming call");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "content-type {content_type:?}"
    );
    Sse {
        body: Box::pin(
            response
                .bytes_stream()
                .map(|bytes| bytes.map(|bytes| bytes.to_vec())),
        ),
        buffer: String::new(),
        ready: VecDeque::new(),
    }
}

/// Reads an SSE body event by event, as a client would.
struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
    ready: VecDeque<String>,
}

impl Sse {
    /// The next `data:` payload; `None` once the body ends (or breaks).
    async fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(data) = self.ready.pop_front() {
                return Some(data);
            }
            let Some(Ok(bytes)) = self.body.next().await else {
                return None;
            };
            self.buffer.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                for line in frame.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        self.ready.push_back(data.to_owned());
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Files and the Python SDK
// ---------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "llmgw-e2e-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

/// A virtualenv with `tests/sdk/requirements.txt` installed (created once,
/// under the target dir); returns its Python.
async fn sdk_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sdk-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        // Built aside and renamed, so an interrupted run leaves no half venv.
        let staging = venv.with_file_name(format!("sdk-venv.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let mut create = Command::new("python3");
        create.arg("-m").arg("venv").arg(&staging);
        let (status, output) = run_bounded(create, Duration::from_secs(120))
            .await
            .unwrap_or_else(|output| panic!("python3 -m venv did not finish:\n{output}"));
        assert!(
            status.success(),
            "cannot create a virtualenv with `python3 -m venv` (this test needs Python 3 \
             with the venv module): {status}\n{output}"
        );
        if std::fs::rename(&staging, &venv).is_err() {
            // Someone else made it meanwhile.
            let _ = std::fs::remove_dir_all(&staging);
        }
        assert!(
            python.exists(),
            "no {} after creating the venv",
            python.display()
        );
    }
    let requirements = sdk_dir().join("requirements.txt");
    let mut install = Command::new(&python);
    install
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "-q",
            "-r",
        ])
        .arg(&requirements);
    let (status, output) = run_bounded(install, Duration::from_secs(600))
        .await
        .unwrap_or_else(|output| {
            panic!(
                "pip install -r {} did not finish in 10 minutes (is PyPI reachable?):\n{output}",
                requirements.display()
            )
        });
    assert!(
        status.success(),
        "pip could not install {} into {} (is PyPI reachable?): {status}\n{output}",
        requirements.display(),
        venv.display()
    );
    python
}
