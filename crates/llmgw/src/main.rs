//! `llmgw`: an OpenAI-compatible LLM gateway. Thin: parse the command line,
//! load the configuration, start the services, wait for a signal.

mod probe;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use llmgw::config::Scope;
use llmgw::{GatewayConfig, Role, demo};
use tokio_util::sync::CancellationToken;

/// jemalloc, not glibc's malloc. Under load the gateway's tasks allocate
/// on one worker thread and free on another (a body read by the server
/// task, dropped by the handler; a usage event made by the relay, freed by
/// the spool), and glibc then takes the owning arena's lock on every such
/// free: `perf` showed its lock waits and slow paths (`_int_malloc`,
/// `malloc_consolidate`, `__lll_lock_wake_private`) at ~20% of the samples.
/// Measured with the two builds alternating on one machine (`llmgw all`,
/// in-memory quota, c=16 JSON, 3 x 3 runs): 98 against 134 µs of CPU per
/// request, 41-45 against 34-36 MB resident after 90,000 requests.
/// mimalloc (the system's, preloaded) gained less and took more memory.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(
    name = "llmgw",
    version,
    about = "An OpenAI-compatible LLM gateway: one API for every model provider, with keys, quotas and usage billing.",
    long_about = "An OpenAI-compatible LLM gateway.\n\n\
        Clients call POST /v1/chat/completions as they would call OpenAI. The gateway authenticates them, \
        routes to the configured model providers and streams the answer back.\n\n\
        With no configuration, `llmgw` (same as `llmgw all`) serves a demo model backed by a built-in mock \
        provider and prints a curl command to try it. Set OPENAI_API_KEY or DEEPSEEK_API_KEY to add those \
        providers' models. Configuration: a YAML file (--config or LLMGW_CONFIG), overridable with \
        LLMGW_<SECTION>__<KEY> environment variables, e.g. LLMGW_EDGE__LISTEN=0.0.0.0:9000."
)]
struct Cli {
    /// YAML configuration file.
    #[arg(long, short, env = "LLMGW_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every service in one process (the default): edge, router, quota,
    /// billing (unless edge.billing_url names one elsewhere) and, with no
    /// models configured, a demo mock provider.
    All,
    /// The public OpenAI-compatible HTTP API (edge.listen); needs a router.
    Edge,
    /// The router gRPC service (router.listen): model catalog and providers.
    Router,
    /// The quota gRPC service (quota.listen): rate limits and budgets, in
    /// Redis when REDIS_URL (or quota.redis_url) is set, else in memory.
    Quota,
    /// The billing service: API keys and tenants (billing.listen, gRPC) and
    /// the admin API (billing.admin_listen). Postgres with DATABASE_URL,
    /// else SQLite under billing.data_dir.
    Billing,
    /// Apply database migrations (DATABASE_URL or the SQLite default) and exit.
    Migrate,
    /// Manage tenants through the admin API (needs LLMGW_ADMIN_TOKEN).
    Tenants {
        #[command(flatten)]
        admin: llmgw::admin_cli::AdminArgs,
        #[command(subcommand)]
        command: llmgw::admin_cli::TenantsCommand,
    },
    /// Manage API keys through the admin API (needs LLMGW_ADMIN_TOKEN).
    Keys {
        #[command(flatten)]
        admin: llmgw::admin_cli::AdminArgs,
        #[command(subcommand)]
        command: llmgw::admin_cli::KeysCommand,
    },
    /// Usage report from the ledger: requests, tokens and cost per tenant,
    /// key, model, provider, day or month (needs LLMGW_ADMIN_TOKEN).
    Usage {
        #[command(flatten)]
        admin: llmgw::admin_cli::AdminArgs,
        #[command(flatten)]
        usage: llmgw::admin_cli::UsageArgs,
    },
    /// The audit trail: content-policy hits (filters, paging, --csv), or
    /// `audit admin` for the admin-action trail (needs LLMGW_ADMIN_TOKEN).
    Audit {
        #[command(flatten)]
        admin: llmgw::admin_cli::AdminArgs,
        #[command(flatten)]
        filters: Box<llmgw::admin_cli::AuditFilters>,
        #[command(subcommand)]
        trail: Option<llmgw::admin_cli::AuditCommand>,
    },
    /// Manage content policies through the admin API (needs LLMGW_ADMIN_TOKEN).
    Policies {
        #[command(flatten)]
        admin: llmgw::admin_cli::AdminArgs,
        #[command(subcommand)]
        command: llmgw::admin_cli::PoliciesCommand,
    },
    /// Manage the word lists policies use (needs LLMGW_ADMIN_TOKEN).
    WordLists {
        #[command(flatten)]
        admin: llmgw::admin_cli::AdminArgs,
        #[command(subcommand)]
        command: llmgw::admin_cli::WordListsCommand,
    },
    /// Manage admin credentials with roles (admin, finance, auditor) for
    /// the admin API and the console at http://ADMIN_LISTEN/ui/ (needs
    /// LLMGW_ADMIN_TOKEN, or an admin credential of role admin).
    Admins {
        #[command(flatten)]
        admin: llmgw::admin_cli::AdminArgs,
        #[command(subcommand)]
        command: llmgw::admin_cli::AdminsCommand,
    },
    /// Health check of a running service, for container healthchecks: exit
    /// 0 if healthy, 1 (and the reason on stderr) if not. grpc://HOST:PORT:
    /// the standard gRPC health check, healthy if SERVING.
    /// http://HOST:PORT/PATH: a GET, healthy on 2xx. Reads no configuration.
    Probe(probe::ProbeArgs),
    /// A fake OpenAI-compatible provider for tests, benchmarks and demos.
    MockUpstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::All);
    // Before any configuration or logging: a probe needs neither, and must
    // not fail because of either.
    if let Command::Probe(args) = &command {
        if let Err(reason) = probe::run(args).await {
            eprintln!("llmgw probe: {reason}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let scope = match &command {
        Command::All => Scope::All,
        Command::Edge => Scope::One(Role::Edge),
        Command::Router => Scope::One(Role::Router),
        Command::Quota => Scope::One(Role::Quota),
        Command::Billing => Scope::One(Role::Billing),
        Command::MockUpstream { .. } => Scope::One(Role::MockUpstream),
        Command::Migrate
        | Command::Tenants { .. }
        | Command::Keys { .. }
        | Command::Usage { .. }
        | Command::Audit { .. }
        | Command::Policies { .. }
        | Command::WordLists { .. }
        | Command::Admins { .. }
        | Command::Probe(_) => Scope::NoService,
    };
    let config = GatewayConfig::load(cli.config.as_deref(), scope)?;
    // Admin commands print tables or JSON on stdout: no log lines among them.
    match command {
        Command::Tenants { admin, command } => {
            return llmgw::admin_cli::tenants(&admin, command).await;
        }
        Command::Keys { admin, command } => return llmgw::admin_cli::keys(&admin, command).await,
        Command::Usage { admin, usage } => return llmgw::admin_cli::usage(&admin, usage).await,
        Command::Audit {
            admin,
            filters,
            trail,
        } => return llmgw::admin_cli::audit(&admin, *filters, trail).await,
        Command::Policies { admin, command } => {
            return llmgw::admin_cli::policies(&admin, command).await;
        }
        Command::WordLists { admin, command } => {
            return llmgw::admin_cli::word_lists(&admin, command).await;
        }
        Command::Admins { admin, command } => {
            return llmgw::admin_cli::admins(&admin, command).await;
        }
        _ => {}
    }
    let service_name = match &command {
        Command::All => "llmgw",
        Command::Edge => "llmgw-edge",
        Command::Router => "llmgw-router",
        Command::Quota => "llmgw-quota",
        Command::Billing => "llmgw-billing",
        Command::Migrate => "llmgw-migrate",
        Command::Tenants { .. }
        | Command::Keys { .. }
        | Command::Usage { .. }
        | Command::Audit { .. }
        | Command::Policies { .. }
        | Command::WordLists { .. }
        | Command::Admins { .. }
        | Command::Probe(_) => "llmgw-cli",
        Command::MockUpstream { .. } => "llmgw-mock-upstream",
    };
    let _telemetry = llmgw_telemetry::init(&config.telemetry, service_name)?;
    // Streams get the edge's drain time; a little more for everything else.
    let grace = Duration::from_secs(config.edge.drain_timeout_secs + 5);
    let stop = CancellationToken::new();
    llmgw::cancel_on_signal(stop.clone())?;

    let services = match command {
        Command::All => {
            let demo_mode = config.router.models.is_empty();
            let dev_key = config.edge.api_keys.is_empty();
            let (addresses, services) = llmgw::start_all(config, stop).await?;
            if demo_mode {
                print_demo(addresses.edge, dev_key);
            }
            services
        }
        Command::Edge => {
            let listen = config.edge.listen;
            llmgw::start_one(Role::Edge, config, listen, stop).await?.1
        }
        Command::Router => {
            let listen = config.router.listen;
            llmgw::start_one(Role::Router, config, listen, stop)
                .await?
                .1
        }
        Command::Billing => {
            let listen = config.billing.listen;
            llmgw::start_one(Role::Billing, config, listen, stop)
                .await?
                .1
        }
        Command::Migrate => {
            return llmgw_billing::migrate(&config.billing.resolve_database_url()?).await;
        }
        Command::Tenants { .. }
        | Command::Keys { .. }
        | Command::Usage { .. }
        | Command::Audit { .. }
        | Command::Policies { .. }
        | Command::WordLists { .. }
        | Command::Admins { .. }
        | Command::Probe(_) => {
            return Ok(());
        }
        Command::Quota => {
            let listen = config.quota.listen;
            llmgw::start_one(Role::Quota, config, listen, stop).await?.1
        }
        Command::MockUpstream { listen } => {
            llmgw::start_one(Role::MockUpstream, config, listen, stop)
                .await?
                .1
        }
    };
    services.wait(grace).await
}

fn print_demo(edge: SocketAddr, dev_key: bool) {
    let key = if dev_key {
        demo::DEV_KEY
    } else {
        "<one of your configured keys>"
    };
    println!(
        "\nllmgw is running in demo mode: model `{model}` is a built-in mock, not a real model.\n\
         Try it:\n\n  curl http://{edge}/v1/chat/completions \\\n    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}]}}'\n\n\
         Add \"stream\": true for server-sent events. Set OPENAI_API_KEY or DEEPSEEK_API_KEY for real models.\n",
        model = demo::DEMO_MODEL,
    );
}
