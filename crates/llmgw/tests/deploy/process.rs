//! llmgw processes as a deployment runs them: the built binary with a given
//! command line, environment, working directory and (when the test runs as
//! root) user id; killed when dropped, their output kept for failure
//! messages.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout};

pub const LLMGW: &str = env!("CARGO_BIN_EXE_llmgw");

/// Bounds the wait for a process to serve; starting takes well under it.
pub const STARTUP: Duration = Duration::from_secs(60);
/// Bounds one HTTP exchange or one short command.
pub const CALL: Duration = Duration::from_secs(20);

/// Variables of the test's own environment that would change what a child
/// does behind the test's back (a child otherwise inherits the rest).
const FOREIGN_ENV: [&str; 7] = [
    "DATABASE_URL",
    "REDIS_URL",
    "LLMGW_CONFIG",
    "OPENAI_API_KEY",
    "DEEPSEEK_API_KEY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "RUST_LOG",
];

/// How to start one process.
pub struct Launch<'a> {
    pub name: &'a str,
    pub program: &'a Path,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Start from an empty environment (a container's), not the test's.
    pub clear_env: bool,
    pub cwd: Option<PathBuf>,
    /// `(uid, gid)` to run as; only possible as root.
    pub user: Option<(u32, u32)>,
}

impl<'a> Launch<'a> {
    pub fn llmgw(name: &'a str, args: &[&str]) -> Launch<'a> {
        Launch {
            name,
            program: Path::new(LLMGW),
            args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            env: Vec::new(),
            clear_env: false,
            cwd: None,
            user: None,
        }
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Launch<'a> {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(self.program);
        command.args(&self.args);
        if self.clear_env {
            command.env_clear();
        } else {
            for (var, _) in std::env::vars_os() {
                if var.to_string_lossy().starts_with("LLMGW_") {
                    command.env_remove(var);
                }
            }
            for var in FOREIGN_ENV {
                command.env_remove(var);
            }
        }
        command.envs(self.env.iter().map(|(key, value)| (key, value)));
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    pub fn spawn(&self) -> Proc {
        let mut child = self
            .command()
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.name));
        let output = Arc::new(Mutex::new(String::new()));
        tokio::spawn(collect(
            child.stdout.take().expect("stdout"),
            output.clone(),
        ));
        tokio::spawn(collect(
            child.stderr.take().expect("stderr"),
            output.clone(),
        ));
        Proc {
            name: self.name.to_owned(),
            child,
            output,
        }
    }

    /// Runs to completion within `CALL`, stdout and stderr apart (a CLI's
    /// answer is on stdout).
    pub async fn output(&self) -> std::process::Output {
        timeout(CALL, self.command().output())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish", self.name))
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", self.name))
    }

    /// Runs to completion within `CALL`: the exit status and the output.
    pub async fn run(&self) -> (ExitStatus, String) {
        let mut proc = self.spawn();
        let status = match timeout(CALL, proc.child.wait()).await {
            Ok(status) => status.expect("wait for the child"),
            Err(_) => panic!("{} did not finish\n{}", self.name, proc.output()),
        };
        // The pipes close at exit; give the readers a moment to drain them.
        tokio::time::sleep(Duration::from_millis(50)).await;
        (status, proc.output())
    }
}

/// A running child, SIGKILLed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Proc {
    pub fn output(&self) -> String {
        let output = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        format!("--- output of {} ---\n{}", self.name, output.as_str())
    }

    /// `docker stop` / Kubernetes: SIGTERM, then the exit status, waited for
    /// up to `within`.
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let pid = self.child.id().expect("a running child has a pid");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        match timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for the child"),
            Err(_) => panic!(
                "{} did not stop within {within:?}\n{}",
                self.name,
                self.output()
            ),
        }
    }

    /// Panics, with its output, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}\n{}", self.name, self.output());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn collect(pipe: impl AsyncRead + Unpin, sink: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut sink = sink.lock().unwrap_or_else(PoisonError::into_inner);
        sink.push_str(&line);
        sink.push('\n');
    }
}

/// Waits until `url` answers 200, failing at once if a process dies.
pub async fn wait_http_ok(url: &str, procs: &mut [&mut Proc]) {
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

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL)
        .build()
        .expect("HTTP client")
}

/// Free ports on every interface, distinct from each other. (Another
/// process may take one before the child binds it; unlikely enough.)
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("0.0.0.0:0").expect("bind a free port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local address").port())
}

/// Whether this test runs as root (and so may start children as another
/// user). `/proc/self` belongs to the process's effective user.
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(label: &str) -> ScratchDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "llmgw-deploy-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a scratch dir");
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
