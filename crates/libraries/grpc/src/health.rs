//! The standard gRPC health protocol (`grpc.health.v1.Health`, from
//! `tonic-health`) on every server, so anything can probe any llmgw service
//! the same way: Kubernetes `grpc:` probes, `llmgw probe grpc://...` (the
//! container healthcheck), load balancers that watch.
//!
//! The server as a whole (service `""`) is SERVING from the moment
//! [`crate::serve`] runs, which each service calls once its start-up work
//! (database, migrations, catalog, spool) is done, and NOT_SERVING from the
//! moment shutdown begins. A `Watch` stream gets that NOT_SERVING and then
//! ends, so watchers learn of the drain and the server's graceful shutdown
//! does not wait for streams that would otherwise never finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// What a health check answers (`SERVING`, `NOT_SERVING`, ...).
pub use tonic_health::pb::health_check_response::ServingStatus;

/// The name of the whole server in the health protocol.
const SERVER: &str = "";

/// The server's side of its health: what `serve` reports.
pub(crate) struct ServerHealth {
    reporter: HealthReporter,
    stopping: Arc<AtomicBool>,
}

impl ServerHealth {
    /// NOT_SERVING until [`Self::serving`].
    pub(crate) async fn new() -> (ServerHealth, HealthServer<DrainingHealth>) {
        let reporter = HealthReporter::new();
        reporter
            .set_service_status(SERVER, tonic_health::ServingStatus::NotServing)
            .await;
        let stopping = Arc::new(AtomicBool::new(false));
        let service = DrainingHealth {
            inner: HealthService::from_health_reporter(reporter.clone()),
            stopping: stopping.clone(),
        };
        let health = ServerHealth { reporter, stopping };
        (health, HealthServer::new(service))
    }

    pub(crate) async fn serving(&self) {
        self.reporter
            .set_service_status(SERVER, tonic_health::ServingStatus::Serving)
            .await;
    }

    /// Shutdown began: NOT_SERVING, and watch streams end.
    pub(crate) async fn stopping(&self) {
        // First the flag, then the status: a stream that sees the new
        // status also sees the flag, and ends after delivering it.
        self.stopping.store(true, Ordering::Relaxed);
        self.reporter
            .set_service_status(SERVER, tonic_health::ServingStatus::NotServing)
            .await;
    }
}

/// `tonic-health`'s service, with watch streams that end at shutdown.
pub(crate) struct DrainingHealth {
    inner: HealthService,
    stopping: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = BoxStream<'static, Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let statuses = self.inner.watch(request).await?.into_inner();
        let stopping = self.stopping.clone();
        // Ends right after delivering the NOT_SERVING of a shutdown,
        // without waiting for a next status that will never come.
        let statuses = futures_util::stream::unfold(
            (statuses, stopping, false),
            |(mut statuses, stopping, ended)| async move {
                if ended {
                    return None;
                }
                let status = statuses.next().await?;
                let not_serving = matches!(
                    &status,
                    Ok(response) if response.status() == ServingStatus::NotServing
                );
                let ended = not_serving && stopping.load(Ordering::Relaxed);
                Some((status, (statuses, stopping, ended)))
            },
        );
        Ok(Response::new(statuses.boxed()))
    }
}

/// Asks the server at `url` (`http://host:port` or `inproc://name`, as for
/// [`crate::channel`]) how it is, as a whole (service `""`). Errors: a
/// malformed URL, or the call failing (refused, timed out, not a gRPC
/// server). Bound the wait with a timeout: a server that accepts and never
/// answers would keep this waiting.
pub async fn check_health(url: &str) -> anyhow::Result<ServingStatus> {
    let channel = crate::channel(url)?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: SERVER.to_owned(),
        })
        .await
        .map_err(|status| anyhow::anyhow!("{:?}: {}", status.code(), status.message()))
        .with_context(|| format!("health check of {url}"))?;
    Ok(response.into_inner().status())
}
