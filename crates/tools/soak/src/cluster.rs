//! The system under soak: its own redis-server on a free port, its own
//! Postgres database, the mock upstream, and the gateway as four `llmgw`
//! processes (billing, quota, router, edge) sharing one config file; each
//! can be killed and started again on the same ports and files.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::time::Instant;

/// The keys of the soak: (secret, tenant), two per tenant.
pub const KEYS: [(&str, &str); 6] = [
    ("sk-llmgw-soak-alpha-000000000001", "alpha"),
    ("sk-llmgw-soak-alpha-000000000002", "alpha"),
    ("sk-llmgw-soak-bravo-000000000001", "bravo"),
    ("sk-llmgw-soak-bravo-000000000002", "bravo"),
    ("sk-llmgw-soak-charlie-00000000001", "charlie"),
    ("sk-llmgw-soak-charlie-00000000002", "charlie"),
];

/// Redis keys of this run start with this (plus the run's port).
pub const KEY_PREFIX: &str = "llmgw-soak";

/// How long a process may take to come up (a fresh Postgres schema, a
/// cold BPE load): generous, it is a soak.
const STARTUP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Billing,
    Quota,
    Router,
    Edge,
    Mock,
    Redis,
}

impl Service {
    pub const GATEWAY: [Service; 4] = [
        Service::Edge,
        Service::Router,
        Service::Billing,
        Service::Quota,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Billing => "billing",
            Service::Quota => "quota",
            Service::Router => "router",
            Service::Edge => "edge",
            Service::Mock => "mock-upstream",
            Service::Redis => "redis",
        }
    }
}

/// The ports every incarnation of a service listens on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub edge: u16,
    pub router: u16,
    pub quota: u16,
    pub billing: u16,
    pub admin: u16,
    pub mock: u16,
    pub redis: u16,
}

pub struct Cluster {
    pub ports: Ports,
    pub dir: PathBuf,
    llmgw: PathBuf,
    config: PathBuf,
    database_url: String,
    children: Vec<(Service, Child)>,
}

impl Cluster {
    pub fn new(llmgw: PathBuf, dir: PathBuf, database_url: String) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let [edge, router, quota, billing, admin, mock, redis] = free_ports()?;
        let ports = Ports {
            edge,
            router,
            quota,
            billing,
            admin,
            mock,
            redis,
        };
        let config = dir.join("llmgw.yaml");
        std::fs::write(&config, config_yaml(&ports, &dir))?;
        Ok(Cluster {
            ports,
            dir,
            llmgw,
            config,
            database_url,
            children: Vec::new(),
        })
    }

    pub fn edge_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.edge)
    }

    pub fn mock_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.mock)
    }

    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports.redis)
    }

    /// Starts everything, backends first.
    pub async fn start_all(&mut self) -> anyhow::Result<()> {
        for service in [
            Service::Redis,
            Service::Mock,
            Service::Billing,
            Service::Quota,
            Service::Router,
            Service::Edge,
        ] {
            self.start(service).await?;
        }
        Ok(())
    }

    /// Starts `service` and waits until it listens.
    pub async fn start(&mut self, service: Service) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", service.name())))?;
        let mut command = match service {
            Service::Redis => {
                let mut command = Command::new("redis-server");
                command
                    .args(["--port", &self.ports.redis.to_string()])
                    .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(&self.dir);
                command
            }
            Service::Mock => {
                let mut command = Command::new(&self.llmgw);
                let listen = format!("127.0.0.1:{}", self.ports.mock);
                command.args(["mock-upstream", "--listen", &listen]);
                command
            }
            gateway => {
                let mut command = Command::new(&self.llmgw);
                command
                    .arg("--config")
                    .arg(&self.config)
                    .arg(gateway.name());
                command
            }
        };
        command
            .env_remove("LLMGW_CONFIG")
            .env_remove("REDIS_URL")
            .env("DATABASE_URL", &self.database_url)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", service.name()))?;
        self.children.push((service, child));
        let port = match service {
            Service::Billing => self.ports.billing,
            Service::Quota => self.ports.quota,
            Service::Router => self.ports.router,
            Service::Edge => self.ports.edge,
            Service::Mock => self.ports.mock,
            Service::Redis => self.ports.redis,
        };
        self.wait_listening(service, port).await
    }

    async fn wait_listening(&mut self, service: Service, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + STARTUP;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if let Some(status) = self
                .child(service)
                .and_then(|child| child.try_wait().ok().flatten())
            {
                bail!(
                    "{} exited at start with {status}; see {}",
                    service.name(),
                    self.dir.join(format!("{}.log", service.name())).display()
                );
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{} did not listen on {address}", service.name());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn child(&mut self, service: Service) -> Option<&mut Child> {
        self.children
            .iter_mut()
            .rev()
            .find(|(which, _)| *which == service)
            .map(|(_, child)| child)
    }

    /// The pid of the running incarnation of `service`.
    pub fn pid(&mut self, service: Service) -> Option<u32> {
        self.child(service).map(|child| child.id())
    }

    /// `kill -9`: no drain, no spool flush beyond what is on disk.
    pub fn kill(&mut self, service: Service) -> anyhow::Result<()> {
        let child = self.child(service).context("not running")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM, then waits for the exit (the drain included).
    pub async fn stop(&mut self, service: Service) -> anyhow::Result<()> {
        let pid = self.pid(service).context("not running")?;
        signal(pid, "-TERM")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let child = self.child(service).context("not running")?;
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                child.kill()?;
                bail!("{} did not stop on SIGTERM", service.name());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every process, front to back, gracefully.
    pub async fn stop_all(&mut self) {
        for service in [
            Service::Edge,
            Service::Router,
            Service::Quota,
            Service::Billing,
            Service::Mock,
            Service::Redis,
        ] {
            if let Err(error) = self.stop(service).await {
                eprintln!("soak: stopping {}: {error:#}", service.name());
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, which: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()?;
    if !status.success() {
        bail!("kill {which} {pid} failed");
    }
    Ok(())
}

fn free_ports<const N: usize>() -> anyhow::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let ports = listeners
        .iter()
        .map(|listener| listener.local_addr().map(|address| address.port()))
        .collect::<Result<Vec<_>, _>>()?;
    ports.try_into().map_err(|_| anyhow::anyhow!("port count"))
}

/// One file for all four processes. Retries are off so each request is one
/// upstream attempt (one mock record, one ledger row); timeouts are short
/// so stalls end as errors; every key is limited (so each request holds a
/// quota concurrency slot) far above what the traffic needs.
fn config_yaml(ports: &Ports, dir: &Path) -> String {
    let keys: String = KEYS
        .iter()
        .enumerate()
        .map(|(i, (key, tenant))| {
            format!("    - {{key: \"{key}\", tenant: \"{tenant}\", name: \"soak-{i}\"}}\n")
        })
        .collect();
    let spool = dir.join("spool");
    let audit_spool = dir.join("audit-spool");
    format!(
        "telemetry: {{log_level: warn, log_format: json}}\n\
         edge:\n  \
           listen: \"127.0.0.1:{edge}\"\n  \
           router_url: \"http://127.0.0.1:{router}\"\n  \
           quota_url: \"http://127.0.0.1:{quota}\"\n  \
           billing_url: \"http://127.0.0.1:{billing}\"\n  \
           drain_timeout_secs: 10\n  \
           max_in_flight: 4096\n  \
           audit: {{spool_dir: \"{edge_audit}\"}}\n  \
           api_keys:\n{keys}\
         router:\n  \
           listen: \"127.0.0.1:{router}\"\n  \
           billing_url: \"http://127.0.0.1:{billing}\"\n  \
           models:\n    \
             - {{alias: mock, provider: openai, base_url: \"http://127.0.0.1:{mock}/v1\", upstream_model: mock}}\n  \
           timeouts: {{first_byte_ms: 3000, idle_ms: 3000}}\n  \
           retries: {{max_retries: 0}}\n  \
           breaker: {{consecutive_failures: 0, min_requests: 4294967295}}\n  \
           usage: {{spool_dir: \"{spool}\"}}\n  \
           audit: {{spool_dir: \"{router_audit}\"}}\n\
         billing:\n  \
           listen: \"127.0.0.1:{billing}\"\n  \
           admin_listen: \"127.0.0.1:{admin}\"\n  \
           data_dir: \"{data}\"\n\
         quota:\n  \
           listen: \"127.0.0.1:{quota}\"\n  \
           redis_url: \"redis://127.0.0.1:{redis}\"\n  \
           key_prefix: \"{KEY_PREFIX}-{redis}\"\n  \
           billing_url: \"http://127.0.0.1:{billing}\"\n  \
           limits:\n    \
             default_key: {{requests_per_minute: 1000000, concurrent: 10000}}\n",
        edge = ports.edge,
        router = ports.router,
        quota = ports.quota,
        billing = ports.billing,
        admin = ports.admin,
        mock = ports.mock,
        redis = ports.redis,
        spool = spool.display(),
        edge_audit = audit_spool.join("edge").display(),
        router_audit = audit_spool.join("router").display(),
        data = dir.join("billing-data").display(),
    )
}
