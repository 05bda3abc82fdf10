//! Child processes and what tests need around them: the kill-on-drop guard
//! `Proc` with its collected output, bounded runs, temp dirs, free ports,
//! waiting for readiness, and an HTTP client with a server-sent-events reader.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout};

use crate::harness::KEY;

/// Starting a process and loading the catalog takes well under this.
const STARTUP: Duration = Duration::from_secs(30);
/// Any single HTTP exchange that is not a deliberately slow stream.
pub(super) const CALL: Duration = Duration::from_secs(15);

/// Environment that would change what the child does behind the test's back.
static NEXT_DATA_DIR: AtomicU32 = AtomicU32::new(0);

const FOREIGN_ENV: [&str; 6] = [
    "DATABASE_URL",
    "LLMGW_CONFIG",
    "OPENAI_API_KEY",
    "DEEPSEEK_API_KEY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "RUST_LOG",
];

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A child process, SIGKILLed when dropped. Its stdout and stderr are
/// collected (interleaved by line) for failure messages; stdout alone too.
pub(super) struct Proc {
    pub(super) name: String,
    data_dir: PathBuf,
    pid: u32,
    child: Child,
    output: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

impl Proc {
    pub(super) fn spawn(name: &str, program: &str, args: &[&str], env: &[(&str, String)]) -> Proc {
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
        // The billing and quota services `llmgw all` starts: any free ports
        // and a scratch SQLite directory, so parallel tests never collide
        // and nothing is written to the working tree.
        let data_dir = std::env::temp_dir().join(format!(
            "llmgw-e2e-billing-{}-{name}-{}",
            std::process::id(),
            NEXT_DATA_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        command
            .env("LLMGW_BILLING__LISTEN", "127.0.0.1:0")
            .env("LLMGW_BILLING__ADMIN_LISTEN", "127.0.0.1:0")
            .env("LLMGW_BILLING__DATA_DIR", &data_dir)
            .env("LLMGW_QUOTA__LISTEN", "127.0.0.1:0");
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
            data_dir,
            pid,
            child,
            output,
            stdout,
        }
    }

    /// Billing's SQLite ledger, when this process runs billing without
    /// `DATABASE_URL`.
    pub(super) fn ledger_path(&self) -> PathBuf {
        self.data_dir.join("llmgw.db")
    }

    pub(super) fn output(&self) -> String {
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
    pub(super) async fn stdout_until(
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

    pub(super) fn sigterm(&self) {
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

    pub(super) async fn wait_exit_by(&mut self, deadline: Instant) -> ExitStatus {
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
pub(crate) async fn run_bounded(
    command: Command,
    within: Duration,
) -> Result<(ExitStatus, String), String> {
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

/// Waits for `GET /readyz` to answer 200, failing fast if a process dies.
pub(super) async fn wait_ready(edge: SocketAddr, procs: &mut [&mut Proc]) {
    wait_http_ok(&format!("http://{edge}/readyz"), procs).await;
}

pub(super) async fn wait_http_ok(url: &str, procs: &mut [&mut Proc]) {
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
pub(super) async fn stops_taking_requests(
    edge: SocketAddr,
    within: Duration,
) -> Result<String, String> {
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

pub(super) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// Free loopback ports, distinct from each other. (Another process may take
/// one before the child binds it; unlikely enough for tests.)
pub(super) fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local address").port())
}

// ---------------------------------------------------------------------------
// Server-sent events
// ---------------------------------------------------------------------------

pub(super) async fn open_stream(client: &reqwest::Client, edge: SocketAddr, body: Value) -> Sse {
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
pub(super) struct Sse {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
    ready: VecDeque<String>,
}

impl Sse {
    /// The next `data:` payload; `None` once the body ends (or breaks).
    pub(super) async fn next_data(&mut self) -> Option<String> {
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
// Files
// ---------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(label: &str) -> TempDir {
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

    pub(super) fn write(&self, name: &str, contents: &str) -> PathBuf {
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
