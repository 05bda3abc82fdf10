//! The `llmgw.billing.v1.Ledger` gRPC service: the routers deliver usage
//! events here from their spools, in batches, possibly more than once.
//!
//! Status codes are what the sender acts on: `InvalidRequest`
//! (`INVALID_ARGUMENT`) means the batch can never be recorded as it is
//! (retrying will not help); `Unavailable` (`UNAVAILABLE`) means nothing was
//! recorded and the same batch should be sent again later, which is always
//! safe.

use std::sync::Arc;
use std::time::Instant;

use llmgw_proto::ErrorCode;
use llmgw_proto::billing_v1::ledger_server::Ledger;
use llmgw_proto::billing_v1::{
    KeySpend, MonthToDateSpendRequest, MonthToDateSpendResponse, RecordUsageRequest,
    RecordUsageResponse, TenantSpend,
};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

pub struct LedgerService {
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
}

#[tonic::async_trait]
impl Ledger for LedgerService {
    async fn record_usage(
        &self,
        request: Request<RecordUsageRequest>,
    ) -> Result<Response<RecordUsageResponse>, Status> {
        let span = tracing::info_span!(
            "billing.record_usage",
            events = tracing::field::Empty,
            inserted = tracing::field::Empty,
            duplicates = tracing::field::Empty,
        );
        async move {
            let events = request.into_inner().events;
            let span = tracing::Span::current();
            span.record("events", events.len());
            let started = Instant::now();
            let result = self.store.record_usage(&events).await;
            let seconds = started.elapsed().as_secs_f64();
            match result {
                Ok(recorded) => {
                    span.record("inserted", recorded.inserted);
                    span.record("duplicates", recorded.duplicates);
                    self.metrics.ledger_batch(
                        "ok",
                        u64::from(recorded.inserted),
                        u64::from(recorded.duplicates),
                        seconds,
                    );
                    Ok(Response::new(RecordUsageResponse {
                        inserted: recorded.inserted,
                        duplicates: recorded.duplicates,
                    }))
                }
                Err(StoreError::Invalid(message)) => {
                    self.metrics.ledger_batch("invalid", 0, 0, seconds);
                    tracing::warn!(error = %message, "usage batch refused");
                    Err(ErrorCode::InvalidRequest.status(message))
                }
                Err(error) => {
                    self.metrics.ledger_batch("error", 0, 0, seconds);
                    tracing::warn!(error = %error, "usage batch not recorded");
                    Err(unavailable())
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn month_to_date_spend(
        &self,
        request: Request<MonthToDateSpendRequest>,
    ) -> Result<Response<MonthToDateSpendResponse>, Status> {
        let span = tracing::info_span!("billing.month_to_date_spend");
        async move {
            let tenant = request.into_inner().tenant;
            let tenant = (!tenant.is_empty()).then_some(tenant.as_str());
            let spend = self
                .store
                .month_to_date_spend(tenant)
                .await
                .map_err(|error| {
                    tracing::warn!(error = %error, "month-to-date spend failed");
                    unavailable()
                })?;
            Ok(Response::new(MonthToDateSpendResponse {
                month: spend.month.to_string(),
                tenants: spend
                    .tenants
                    .into_iter()
                    .map(|spend| TenantSpend {
                        tenant: spend.tenant,
                        cost_nano_usd: spend.cost_nano_usd,
                    })
                    .collect(),
                keys: spend
                    .keys
                    .into_iter()
                    .map(|spend| KeySpend {
                        tenant: spend.tenant,
                        key_id: spend.key_id,
                        cost_nano_usd: spend.cost_nano_usd,
                    })
                    .collect(),
            }))
        }
        .instrument(span)
        .await
    }
}

/// Driver messages can carry host names and SQL: they go to the log, the
/// caller gets this.
fn unavailable() -> Status {
    ErrorCode::Unavailable.status("the billing database is unavailable; retry later")
}
