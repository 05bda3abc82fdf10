//! A real three-master Redis Cluster from the machine's own `redis-server`,
//! on ports chosen at random, stopped (and its files removed) when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisCluster {
    pub ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
    dir: PathBuf,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("llmgw-cluster-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port_pair()).collect();
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            ports: ports.clone(),
            dir,
        };
        for index in 0..ports.len() {
            let node = cluster.spawn(index);
            cluster.nodes.push(Some(node));
        }
        for &port in &ports {
            wait_until(Duration::from_secs(30), || {
                cli(port, &["PING"]).contains("PONG")
            });
        }
        let mut create = Command::new("redis-cli");
        create.args(["--cluster", "create"]);
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let output = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster.wait_ok();
        cluster
    }

    /// `redis+cluster://` naming every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// Until every node reports `cluster_state:ok`.
    pub fn wait_ok(&self) {
        for &port in &self.ports {
            wait_until(Duration::from_secs(60), || {
                cli(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
        }
    }

    /// Kills a master with SIGKILL: its slots have no replica to fail over to.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut node) = self.nodes[index].take() {
            let _ = node.kill();
            let _ = node.wait();
        }
    }

    /// Starts a killed node again on its port with its `nodes.conf`: it
    /// rejoins with its slots.
    pub fn restart(&mut self, index: usize) {
        assert!(self.nodes[index].is_none(), "node {index} is running");
        let node = self.spawn(index);
        self.nodes[index] = Some(node);
        self.wait_ok();
    }

    /// Which node serves `tenant`'s hash slot (every key of its requests).
    pub fn owner_of(&self, tenant: &str) -> usize {
        self.ports
            .iter()
            .position(|&port| {
                !cli(port, &["EXISTS", &format!("owner-{{{tenant}}}")]).contains("MOVED")
            })
            .expect("some node serves every slot")
    }

    /// Keys under `prefix` on every master.
    pub fn key_count(&self, prefix: &str) -> usize {
        self.ports
            .iter()
            .map(|&port| {
                cli(port, &["--scan", "--pattern", &format!("{prefix}*")])
                    .lines()
                    .filter(|line| !line.is_empty())
                    .count()
            })
            .sum()
    }

    fn spawn(&self, index: usize) -> Child {
        let port = self.ports[index];
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
            .args(["--cluster-node-timeout", "1000"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default()
}

fn wait_until(within: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < within,
            "Redis Cluster not ready within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free port whose cluster bus port (port + 10000) is free too.
fn free_port_pair() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port <= 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}
