//! The edge's copy of the router's model catalog: which aliases exist and
//! their limits, so bad requests are refused here without a router call.
//! Re-read periodically; a failed refresh keeps the last good copy. Prices
//! are parsed here, once per refresh, for the quota reservation estimate.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use llmgw_grpc::Channel;
use llmgw_proto::router_v1::router_client::RouterClient;
use llmgw_proto::router_v1::{ListModelsRequest, Model};
use llmgw_telemetry::OutageLog;
use tokio_util::sync::CancellationToken;

pub type Models = Arc<HashMap<String, Model>>;

/// A model's prices, in nano-USD per million tokens.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    pub input_nano_per_mtok: u64,
    pub output_nano_per_mtok: u64,
}

impl Prices {
    /// The router validated the prices at start, so an unparsable one
    /// (never expected) counts as free.
    fn of(model: &Model) -> Prices {
        let parse = |text: &str| llmgw_usd::parse_usd(text).unwrap_or(0);
        Prices {
            input_nano_per_mtok: parse(&model.input_price_per_mtok),
            output_nano_per_mtok: parse(&model.output_price_per_mtok),
        }
    }

    pub fn cost_nano_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> u64 {
        llmgw_usd::cost_nano_usd(prompt_tokens, self.input_nano_per_mtok)
            + llmgw_usd::cost_nano_usd(completion_tokens, self.output_nano_per_mtok)
    }
}

/// One read of the router's catalog.
#[derive(Debug)]
struct Snapshot {
    models: Models,
    prices: HashMap<String, Prices>,
}
/// A router outage is logged when it starts, then at most this often.
const OUTAGE_LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct Catalog {
    /// `None` until the first successful read: the edge is not ready then.
    snapshot: RwLock<Option<Arc<Snapshot>>>,
}

impl Catalog {
    pub fn current(&self) -> Option<Models> {
        self.snapshot
            .read()
            .ok()
            .and_then(|snapshot| snapshot.as_ref().map(|snapshot| snapshot.models.clone()))
    }

    /// The prices of `alias` (free if the catalog does not know it).
    pub fn prices(&self, alias: &str) -> Prices {
        self.snapshot
            .read()
            .ok()
            .and_then(|snapshot| snapshot.as_ref()?.prices.get(alias).copied())
            .unwrap_or_default()
    }

    fn replace(&self, list: Vec<Model>) {
        let prices = list
            .iter()
            .map(|model| (model.alias.clone(), Prices::of(model)))
            .collect();
        let models = list
            .into_iter()
            .map(|model| (model.alias.clone(), model))
            .collect();
        let snapshot = Snapshot {
            models: Arc::new(models),
            prices,
        };
        if let Ok(mut slot) = self.snapshot.write() {
            *slot = Some(Arc::new(snapshot));
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
