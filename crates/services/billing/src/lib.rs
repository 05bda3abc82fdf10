//! The billing service: tenants, API keys and the usage ledger in Postgres or
//! SQLite. Two listeners, kept apart on purpose:
//!
//! - gRPC (`listen`): `llmgw.billing.v1.Accounts/LookupKey` for the edge,
//!   `llmgw.billing.v1.Ledger` (usage events from the routers, month-to-date
//!   spend), `llmgw.billing.v1.Audit` (content-policy hits from the edge and
//!   the routers), `llmgw.billing.v1.Policies` (the content policies every
//!   replica polls), and `GET /metrics` over HTTP/1 on the same port;
//! - the admin HTTP API (`admin_listen`, loopback by default): tenants,
//!   keys, usage reports, the audit trails, policies, word lists and admin
//!   credentials, every route behind an admin credential with a role; and
//!   the console (`/ui/`), a web page on that same API. Neither is ever
//!   served on the gRPC port, so exposing the edge-facing port exposes
//!   neither.

mod accounts;
mod admin;
mod audit;
mod config;
mod console;
mod ledger;
mod metrics;
mod policies;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use llmgw_proto::billing_v1::accounts_server::AccountsServer;
use llmgw_proto::billing_v1::audit_server::AuditServer;
use llmgw_proto::billing_v1::ledger_server::LedgerServer;
use llmgw_proto::billing_v1::policies_server::PoliciesServer;
use sqlx::Connection as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

pub use admin::{AdminBody, check_admin_body};
pub use config::Config;
pub use console::ConsoleConfig;

use crate::accounts::AccountsService;
use crate::admin::AdminState;
use crate::audit::AuditService;
use crate::ledger::LedgerService;
use crate::metrics::Metrics;
use crate::policies::PoliciesService;
use crate::store::Store;

/// How long start-up waits for the database. A database that is down must
/// fail the start with a clear message, not hang the deployment.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest RecordUsage or RecordAudit request accepted.
const LEDGER_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Serves gRPC on `grpc` and the admin API on `admin` until `shutdown`
/// resolves. Fails before serving when the database is unreachable, the
/// migrations fail, or the admin token is unreadable or too short.
pub async fn run(
    config: Config,
    grpc: impl Into<llmgw_grpc::Listener>,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let grpc = grpc.into();
    let admin_token = config::load_admin_token(&config)?;
    let database_url = config.resolve_database_url()?;
    let store = connect(&database_url)
        .await?
        .with_policy_defaults(Arc::new(config.policy.clone()));
    if config.migrate_on_start {
        store
            .migrate()
            .await
            .context("migrating the billing database")?;
    }
    if admin_token.is_none() {
        tracing::warn!(
            env = %config.admin_token_env,
            "no admin token configured: the admin API answers 503 until one is set"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let grpc_address = grpc.local_addr()?;
    let admin_address = admin.local_addr()?;
    tracing::info!(
        %grpc_address,
        %admin_address,
        backend = store.backend(),
        database = %config::redact_url(&database_url),
        "billing listening"
    );

    if config.console.enabled {
        tracing::info!(
            url = %format!("http://{admin_address}/ui/"),
            "console on the admin listener"
        );
    }

    // One shutdown signal, two servers: the watch channel fans it out.
    let (stop, stopped) = watch::channel(false);
    let signal = move |mut stopped: watch::Receiver<bool>| async move {
        // A dropped sender also ends the wait: nobody can stop us any more.
        let _ = stopped.wait_for(|stopped| *stopped).await;
    };

    let routes = Routes::new(AccountsServer::new(AccountsService {
        store: store.clone(),
        metrics: metrics.clone(),
    }))
    .add_service(
        // A batch of 10 000 events (the most RecordUsage takes) is a few
        // MB; the default 4 MiB limit would refuse the largest ones.
        LedgerServer::new(LedgerService {
            store: store.clone(),
            metrics: metrics.clone(),
        })
        .max_decoding_message_size(LEDGER_MAX_MESSAGE_BYTES),
    )
    .add_service(
        AuditServer::new(AuditService {
            store: store.clone(),
            metrics: metrics.clone(),
        })
        .max_decoding_message_size(LEDGER_MAX_MESSAGE_BYTES),
    )
    .add_service(PoliciesServer::new(PoliciesService::new(
        store.clone(),
        metrics.clone(),
    )?));
    let render = {
        let metrics = metrics.clone();
        move || metrics.render()
    };
    let mut routes = routes;
    accounts::answer_404_to_plain_http(&mut routes);
    let grpc_server = llmgw_grpc::serve(routes, render, grpc, signal(stopped.clone()));

    let app = admin::router(AdminState {
        store,
        token: admin_token,
        token_env: config.admin_token_env.clone(),
        metrics,
        console: config.console.clone(),
    });
    // The admin listener's connection limits; the peer address (for the
    // admin trail) comes with each request as `ConnectInfo`.
    let admin_stopping = tokio_util::sync::CancellationToken::new();
    tokio::spawn({
        let admin_stopping = admin_stopping.clone();
        let stopped = signal(stopped);
        async move {
            stopped.await;
            admin_stopping.cancel();
        }
    });
    let admin_limits = config.admin_http.clone();
    let admin_server = llmgw_http_serve::serve(admin, app, &admin_limits, admin_stopping);

    let stopper = async move {
        shutdown.await;
        let _ = stop.send(true);
        Ok::<(), anyhow::Error>(())
    };
    tokio::try_join!(
        stopper,
        async { grpc_server.await.context("billing gRPC server failed") },
        async { admin_server.await.context("billing admin server failed") },
    )?;
    Ok(())
}

/// Applies the migrations to `database_url` and returns (`llmgw migrate`).
pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    let store = connect(database_url).await?;
    store
        .migrate()
        .await
        .context("migrating the billing database")?;
    tracing::info!(
        backend = store.backend(),
        database = %config::redact_url(database_url),
        "billing database migrated"
    );
    Ok(())
}

/// Connects and checks the database answers, so a database that is down
/// fails here with its address (password redacted) rather than on the first
/// request.
async fn connect(database_url: &str) -> anyhow::Result<Store> {
    let shown = config::redact_url(database_url);
    let attempt = async {
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            // One plain connection first: the pool retries a refused
            // connection until its acquire timeout and then reports only
            // that; this reports the cause ("connection refused") at once.
            let probe = sqlx::PgConnection::connect(database_url).await?;
            let _ = probe.close().await;
        }
        let store = Store::connect(database_url).await?;
        store.ping().await?;
        Ok::<Store, store::StoreError>(store)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(store)) => Ok(store),
        Ok(Err(error)) => {
            Err(error).with_context(|| format!("cannot reach the billing database {shown}"))
        }
        Err(_) => anyhow::bail!(
            "cannot reach the billing database {shown}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ),
    }
}
