//! The edge's copy of the router's model catalog: which aliases exist and
//! their limits, so bad requests are refused here without a router call.
//! Re-read periodically; a failed refresh keeps the last good copy.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use llmgw_grpc::Channel;
use llmgw_proto::router_v1::router_client::RouterClient;
use llmgw_proto::router_v1::{ListModelsRequest, Model};
use llmgw_telemetry::OutageLog;
use tokio_util::sync::CancellationToken;

pub type Models = Arc<HashMap<String, Model>>;

/// A router outage is logged when it starts, then at most this often.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Catalog {
    /// `None` until the first successful read: the edge is not ready then.
    models: RwLock<Option<Models>>,
}

impl Catalog {
    pub fn current(&self) -> Option<Models> {
        self.models.read().ok().and_then(|models| models.clone())
    }

    fn replace(&self, list: Vec<Model>) {
        let models = list
            .into_iter()
            .map(|model| (model.alias.clone(), model))
            .collect();
        if let Ok(mut slot) = self.models.write() {
            *slot = Some(Arc::new(models));
        }
    }

    /// Keeps the catalog fresh until `stop`: quickly (every 200 ms) until the
    /// first read succeeds, then every `every`.
    pub async fn refresh_loop(
        self: Arc<Self>,
        mut router: RouterClient<Channel>,
        every: Duration,
        stop: CancellationToken,
    ) {
        // Not once per attempt: every 200 ms while the catalog is missing.
        let outage_log = OutageLog::new(OUTAGE_LOG_EVERY);
        loop {
            let wait = match router.list_models(ListModelsRequest {}).await {
                Ok(response) => {
                    let models = response.into_inner().models;
                    let recovered = outage_log.recovered();
                    if self.current().is_none() || recovered.is_some() {
                        tracing::info!(
                            models = models.len(),
                            failures = recovered.map(|outage| outage.failures),
                            "model catalog loaded from the router"
                        );
                    }
                    self.replace(models);
                    every
                }
                Err(status) => {
                    if let Some(failures) = outage_log.failed() {
                        tracing::warn!(grpc_code = ?status.code(), error = %status.message(), failures, "cannot read the model catalog from the router; keeping the last copy");
                    }
                    if self.current().is_none() {
                        Duration::from_millis(200)
                    } else {
                        every
                    }
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}
