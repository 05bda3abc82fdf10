//! The `llmgw` binary's library: configuration loading and wiring the
//! services together. `llmgw all` runs every service in one process; they
//! still talk gRPC to each other through the same clients, servers and
//! layers as in a distributed deployment, over an in-process transport
//! (`inproc://` addresses, no sockets) instead of loopback TCP. Each service
//! also listens on its TCP port, for `/metrics` and outside callers.

pub mod admin_cli;
pub mod config;
pub mod demo;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use llmgw_grpc::{InProcessListener, Listener};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::GatewayConfig;

/// Addresses of a running all-in-one gateway.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub edge: SocketAddr,
    pub router: SocketAddr,
    /// The quota service, unless the edge was pointed at one elsewhere.
    pub quota: Option<SocketAddr>,
    /// The billing service (gRPC) and its admin API, when started here.
    pub billing: Option<(SocketAddr, SocketAddr)>,
    /// The in-process mock upstream, in demo mode.
    pub mock: Option<SocketAddr>,
}

/// Every service of one process; `wait` returns when all have stopped.
pub struct Services {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    stop: CancellationToken,
}

impl Services {
    /// Runs until every service has stopped. The first service to fail stops
    /// the others. After `stop` is cancelled, services get `grace` to drain.
    pub async fn wait(mut self, grace: Duration) -> anyhow::Result<()> {
        let mut failure = None;
        loop {
            let next = tokio::select! {
                next = self.tasks.join_next() => next,
                () = async { self.stop.cancelled().await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(services = self.tasks.len(), "services did not stop within the grace period; aborting them");
                    self.tasks.abort_all();
                    break;
                }
            };
            let Some(joined) = next else { break };
            let (name, result) = joined.context("a service task panicked")?;
            if let Err(error) = result {
                tracing::error!(
                    service = name,
                    error = format!("{error:#}"),
                    "service failed"
                );
                failure.get_or_insert(error.context(format!("{name} failed")));
            }
            // One service ending (failed or not) ends the process.
            self.stop.cancel();
        }
        failure.map_or(Ok(()), Err)
    }
}

async fn bind(address: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} for the {what}"))
}

/// Starts router, edge (and, in demo mode, the mock upstream) in this process.
/// Demo mode: no models configured. Then a demo model served by an in-process
/// mock, real providers whose keys are in the environment and, when no API
/// keys are configured, the development key (the edge then listens on
/// loopback only unless `edge.listen` was set explicitly).
pub async fn start_all(
    mut config: GatewayConfig,
    stop: CancellationToken,
) -> anyhow::Result<(Addresses, Services)> {
    config.share_policy();
    let mut tasks = JoinSet::new();
    // Shutdown in dependency order: the services that others call (billing,
    // quota, the demo mock) stop once their callers (edge, router) have
    // drained, so the edge's last settles and the router's last usage
    // events still reach them. The services' grace period bounds it all.
    let backends_stop = CancellationToken::new();
    let (callers_alive, mut callers_gone) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn({
        let backends_stop = backends_stop.clone();
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            // `None` once every caller's sender is dropped.
            let _ = callers_gone.recv().await;
            backends_stop.cancel();
        }
    });
    let mut mock = None;
    if config.router.models.is_empty() {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), "demo mock upstream").await?;
        let address = listener.local_addr()?;
        let shutdown = backends_stop.clone().cancelled_owned();
        let mock_config = config.mock_upstream.clone();
        tasks.spawn(async move {
            (
                "mock-upstream",
                llmgw_mock_upstream::run(mock_config, listener, shutdown).await,
            )
        });
        config.router.models.push(demo::demo_model(address));
        config.router.models.extend(demo::provider_models());
        if config.edge.api_keys.is_empty() {
            config.edge.api_keys.push(demo::dev_key());
            if !config.edge_listen_explicit
                && config.edge.listen == llmgw_edge::Config::default().listen
            {
                config.edge.listen = SocketAddr::from(([127, 0, 0, 1], config.edge.listen.port()));
            }
        }
        mock = Some(address);
    }

    let router_listener = bind(config.router.listen, "router").await?;
    let router = router_listener.local_addr()?;
    // The services started here call each other in process.
    let router_in_process = InProcessListener::bind("router");
    config.edge.router_url = router_in_process.url();
    let router_listener = Listener::new(router_listener, Some(router_in_process));
    // Billing: accounts (API keys) in Postgres with DATABASE_URL, else in a
    // SQLite file under billing.data_dir; migrated at start. Not started when
    // the edge is pointed at a billing service elsewhere.
    let mut billing = None;
    if config.edge.billing_url.is_none() {
        let grpc = bind(config.billing.listen, "billing").await?;
        let admin = bind(config.billing.admin_listen, "billing admin API").await?;
        let addresses = (grpc.local_addr()?, admin.local_addr()?);
        let in_process = InProcessListener::bind("billing");
        config.edge.billing_url = Some(in_process.url());
        let grpc = Listener::new(grpc, Some(in_process));
        let shutdown = backends_stop.clone().cancelled_owned();
        let billing_config = config.billing.clone();
        tasks.spawn(async move {
            (
                "billing",
                llmgw_billing::run(billing_config, grpc, admin, shutdown).await,
            )
        });
        billing = Some(addresses);
    }
    // Usage events go to the billing service the edge asks about keys; the
    // spool sits beside billing's SQLite file unless configured.
    if config.router.billing_url.is_none() {
        config.router.billing_url = config.edge.billing_url.clone();
    }
    if config.router.usage.spool_dir.is_none() {
        config.router.usage.spool_dir = Some(config.billing.data_dir.join("spool"));
    }
    // The edge's audit events (prompts' policy hits) too, in a spool of
    // their own (each spool locks its directory).
    if config.edge.audit.spool_dir.is_none() {
        config.edge.audit.spool_dir =
            Some(config.billing.data_dir.join("audit-spool").join("edge"));
    }
    // The router's audit events (answers' policy hits) in a spool of their
    // own (each spool locks its directory).
    if config.router.audit.spool_dir.is_none() {
        config.router.audit.spool_dir =
            Some(config.billing.data_dir.join("audit-spool").join("router"));
    }
    // The same ledger is the floor of the quota service's monthly budgets
    // (rebuilt from its month-to-date spend if Redis loses the counters).
    if config.quota.billing_url.is_none() {
        config.quota.billing_url = config.edge.billing_url.clone();
    }
    // Limits come from the quota config and, per key and tenant, from the
    // accounts database, which `llmgw all` always has (billing starts above
    // unless edge.billing_url names one elsewhere): so the quota service
    // starts unless edge.quota_url names one elsewhere. While its config
    // limits nobody, the edge skips it for requests carrying no limits.
    let mut quota = None;
    if config.edge.quota_url.is_none() {
        let listener = bind(config.quota.listen, "quota").await?;
        let address = listener.local_addr()?;
        let in_process = InProcessListener::bind("quota");
        config.edge.quota_url = Some(in_process.url());
        let listener = Listener::new(listener, Some(in_process));
        let shutdown = backends_stop.clone().cancelled_owned();
        let quota_config = config.quota.clone();
        tasks.spawn(async move {
            (
                "quota",
                llmgw_quota::run(quota_config, listener, shutdown).await,
            )
        });
        quota = Some(address);
    }
    let edge_listener = bind(config.edge.listen, "edge").await?;
    let edge = edge_listener.local_addr()?;

    let shutdown = stop.clone().cancelled_owned();
    let alive = callers_alive.clone();
    tasks.spawn(async move {
        let result = llmgw_router::run(config.router, router_listener, shutdown).await;
        drop(alive);
        ("router", result)
    });
    let shutdown = stop.clone().cancelled_owned();
    tasks.spawn(async move {
        let result = llmgw_edge::run(config.edge, edge_listener, shutdown).await;
        drop(callers_alive);
        ("edge", result)
    });
    Ok((
        Addresses {
            edge,
            router,
            quota,
            billing,
            mock,
        },
        Services { tasks, stop },
    ))
}

/// A service that can run on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Edge,
    Router,
    Quota,
    Billing,
    MockUpstream,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Edge => "edge",
            Role::Router => "router",
            Role::Quota => "quota",
            Role::Billing => "billing",
            Role::MockUpstream => "mock-upstream",
        }
    }
}

/// Starts a single service on `listen`.
pub async fn start_one(
    role: Role,
    mut config: GatewayConfig,
    listen: SocketAddr,
    stop: CancellationToken,
) -> anyhow::Result<(SocketAddr, Services)> {
    config.share_policy();
    let name = role.name();
    let listener = bind(listen, name).await?;
    let address = listener.local_addr()?;
    let shutdown = stop.clone().cancelled_owned();
    let mut tasks = JoinSet::new();
    match role {
        Role::Edge => tasks
            .spawn(async move { (name, llmgw_edge::run(config.edge, listener, shutdown).await) }),
        Role::Router => tasks.spawn(async move {
            (
                name,
                llmgw_router::run(config.router, listener, shutdown).await,
            )
        }),
        Role::Billing => {
            let admin = bind(config.billing.admin_listen, "billing admin API").await?;
            tasks.spawn(async move {
                (
                    name,
                    llmgw_billing::run(config.billing, listener, admin, shutdown).await,
                )
            })
        }
        Role::Quota => tasks.spawn(async move {
            (
                name,
                llmgw_quota::run(config.quota, listener, shutdown).await,
            )
        }),
        Role::MockUpstream => tasks.spawn(async move {
            (
                name,
                llmgw_mock_upstream::run(config.mock_upstream, listener, shutdown).await,
            )
        }),
    };
    Ok((address, Services { tasks, stop }))
}

/// Cancels `stop` on SIGTERM or SIGINT (Ctrl-C).
pub fn cancel_on_signal(stop: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
        stop.cancel();
    });
    Ok(())
}
