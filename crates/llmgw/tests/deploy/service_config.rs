//! What one service's configuration says about its wiring: the addresses it
//! calls, the ports it listens on, the files it reads and the spool
//! directories it writes. The compose and Kubernetes checks hold the deployment to these.

use std::path::{Component, Path, PathBuf};

use llmgw::GatewayConfig;

/// The processes of a deployment, by the `llmgw` subcommand they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Edge,
    Router,
    Quota,
    Billing,
    Migrate,
    MockUpstream,
}

impl Role {
    /// The role of `llmgw <subcommand> ...`.
    pub fn of_command(args: &[String]) -> Option<Role> {
        match args
            .iter()
            .map(String::as_str)
            .find(|arg| !arg.starts_with('-'))?
        {
            "edge" => Some(Role::Edge),
            "router" => Some(Role::Router),
            "quota" => Some(Role::Quota),
            "billing" => Some(Role::Billing),
            "migrate" => Some(Role::Migrate),
            "mock-upstream" => Some(Role::MockUpstream),
            _ => None,
        }
    }

    /// Serves the standard gRPC health protocol on its listen port.
    pub fn speaks_grpc(self) -> bool {
        matches!(self, Role::Router | Role::Quota | Role::Billing)
    }

    /// Runs until stopped (not a one-shot step).
    pub fn serves(self) -> bool {
        self != Role::Migrate
    }
}

/// The ports a role listens on, the first being its main one (`/metrics`
/// too); `--listen` of the mock upstream comes from its command line.
pub fn listen_ports(config: &GatewayConfig, role: Role, args: &[String]) -> Vec<u16> {
    match role {
        Role::Edge => vec![config.edge.listen.port()],
        Role::Router => vec![config.router.listen.port()],
        Role::Quota => vec![config.quota.listen.port()],
        Role::Billing => vec![
            config.billing.listen.port(),
            config.billing.admin_listen.port(),
        ],
        Role::Migrate => Vec::new(),
        Role::MockUpstream => {
            let at = args
                .iter()
                .position(|arg| arg == "--listen")
                .expect("--listen");
            let address: std::net::SocketAddr = args[at + 1].parse().expect("--listen ADDRESS");
            vec![address.port()]
        }
    }
}

/// The addresses a service listens on that others reach (must not be
/// loopback in a container or pod).
pub fn listen_addresses(
    config: &GatewayConfig,
    role: Role,
) -> Vec<(&'static str, std::net::SocketAddr)> {
    match role {
        Role::Edge => vec![("edge.listen", config.edge.listen)],
        Role::Router => vec![("router.listen", config.router.listen)],
        Role::Quota => vec![("quota.listen", config.quota.listen)],
        Role::Billing => vec![
            ("billing.listen", config.billing.listen),
            ("billing.admin_listen", config.billing.admin_listen),
        ],
        Role::Migrate | Role::MockUpstream => Vec::new(),
    }
}

/// Every address `role` calls, with the setting that names it.
pub fn calls(config: &GatewayConfig, role: Role) -> Vec<(String, String)> {
    let mut calls: Vec<(String, String)> = Vec::new();
    let mut push = |setting: &str, url: Option<&String>| {
        if let Some(url) = url.filter(|url| !url.is_empty()) {
            calls.push((setting.to_owned(), url.clone()));
        }
    };
    match role {
        Role::Edge => {
            push("edge.router_url", Some(&config.edge.router_url));
            push("edge.quota_url", config.edge.quota_url.as_ref());
            push("edge.billing_url", config.edge.billing_url.as_ref());
        }
        Role::Router => {
            push("router.billing_url", config.router.billing_url.as_ref());
            for model in &config.router.models {
                for deployment in model.deployment_list().expect("valid models") {
                    push(
                        &format!("router.models[{}].base_url", model.alias),
                        Some(&deployment.base_url),
                    );
                }
            }
        }
        Role::Quota => {
            push("quota.billing_url", config.quota.billing_url.as_ref());
            push("quota.redis_url", config.quota.redis_url.as_ref());
        }
        Role::Billing | Role::Migrate => {
            push("billing.database_url", config.billing.database_url.as_ref());
        }
        Role::MockUpstream => {}
    }
    if role != Role::MockUpstream {
        push(
            "telemetry.otlp_endpoint",
            config.telemetry.otlp_endpoint.as_ref(),
        );
    }
    calls
}

/// Files the role reads at start, with the setting that names them.
pub fn files_read(config: &GatewayConfig, role: Role) -> Vec<(&'static str, PathBuf)> {
    let mut files = Vec::new();
    if matches!(role, Role::Billing | Role::Migrate)
        && let Some(path) = &config.billing.database_password_file
    {
        files.push(("billing.database_password_file", path.clone()));
    }
    if role == Role::Billing
        && let Some(path) = &config.billing.admin_token_file
    {
        files.push(("billing.admin_token_file", path.clone()));
    }
    files
}

/// A durable spool a service opens: a directory it writes and locks (one
/// process per directory).
#[derive(Debug, Clone)]
pub struct Spool {
    /// The setting that names it.
    pub setting: &'static str,
    /// As configured, or the service's default when unset; a relative path
    /// is the process's working directory's.
    pub dir: PathBuf,
    /// The most it holds on disk: `max_bytes` of unacknowledged events plus
    /// the delivered head of its oldest segment file.
    pub disk_bytes: u64,
}

/// The spools `role` opens at start. Without a `billing_url` it opens none
/// (nothing is recorded then). The defaults are the services' own
/// (`llmgw_edge::run`, `llmgw_router::run`): a standalone service resolves
/// them against its working directory; `llmgw all` places them under
/// `billing.data_dir` instead (not a role here).
pub fn spools(config: &GatewayConfig, role: Role) -> Vec<Spool> {
    let spool = |setting, dir: &Option<PathBuf>, default: &str, max: u64, segment: u64| Spool {
        setting,
        dir: dir.clone().unwrap_or_else(|| PathBuf::from(default)),
        disk_bytes: max + segment,
    };
    match role {
        Role::Edge if config.edge.billing_url.is_some() => {
            let audit = &config.edge.audit;
            vec![spool(
                "edge.audit.spool_dir",
                &audit.spool_dir,
                "./data/audit-spool/edge",
                audit.max_bytes,
                audit.segment_bytes,
            )]
        }
        Role::Router if config.router.billing_url.is_some() => {
            let (usage, audit) = (&config.router.usage, &config.router.audit);
            vec![
                spool(
                    "router.usage.spool_dir",
                    &usage.spool_dir,
                    "./data/spool",
                    usage.max_bytes,
                    usage.segment_bytes,
                ),
                spool(
                    "router.audit.spool_dir",
                    &audit.spool_dir,
                    "./data/audit-spool/router",
                    audit.max_bytes,
                    audit.segment_bytes,
                ),
            ]
        }
        _ => Vec::new(),
    }
}

/// `path` as a process in `workdir` opens it, `.` and `..` resolved.
pub fn absolute(workdir: &Path, path: &Path) -> PathBuf {
    let mut resolved = PathBuf::new();
    for component in workdir.join(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            other => resolved.push(other),
        }
    }
    resolved
}

/// Whether two spool directories collide: the same directory, or one
/// inside the other (a spool's directory scan and lock are its own).
pub fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The provider key variables the router's models name.
pub fn provider_key_vars(config: &GatewayConfig) -> Vec<String> {
    config
        .router
        .models
        .iter()
        .flat_map(|model| model.deployment_list().expect("valid models"))
        .filter_map(|deployment| deployment.api_key_env)
        .collect()
}

/// Whether `host` names this machine (in a container: the container).
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `host` is outside the deployment (a provider's, a managed
/// service's): a DNS name with a dot that is not a Kubernetes service name.
pub fn is_external(host: &str) -> bool {
    host.contains('.') && !host.ends_with(".svc") && !host.contains(".svc.") && !is_loopback(host)
}
