//! The `llmgw.billing.v1.Audit` gRPC service: the edge and the routers
//! deliver content-policy hits here from their spools, in batches, possibly
//! more than once. Status codes as for `Ledger` (see `ledger.rs`):
//! `INVALID_ARGUMENT` means the batch can never be recorded as it is (the
//! spool sets it aside), `UNAVAILABLE` that nothing was recorded and the
//! same batch should be sent again.

use std::sync::Arc;

use llmgw_proto::ErrorCode;
use llmgw_proto::billing_v1::audit_server::Audit;
use llmgw_proto::billing_v1::{RecordAuditRequest, RecordAuditResponse};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

pub struct AuditService {
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
}

#[tonic::async_trait]
impl Audit for AuditService {
    async fn record_audit(
        &self,
        request: Request<RecordAuditRequest>,
    ) -> Result<Response<RecordAuditResponse>, Status> {
        let span = tracing::info_span!(
            "billing.record_audit",
            events = tracing::field::Empty,
            inserted = tracing::field::Empty,
            duplicates = tracing::field::Empty,
        );
        async move {
            let events = request.into_inner().events;
            let span = tracing::Span::current();
            span.record("events", events.len());
            match self.store.record_audit(&events).await {
                Ok(recorded) => {
                    span.record("inserted", recorded.inserted);
                    span.record("duplicates", recorded.duplicates);
                    self.metrics.audit_batch(
                        "ok",
                        u64::from(recorded.inserted),
                        u64::from(recorded.duplicates),
                    );
                    Ok(Response::new(RecordAuditResponse {
                        inserted: recorded.inserted,
                        duplicates: recorded.duplicates,
                    }))
                }
                Err(StoreError::Invalid(message)) => {
                    self.metrics.audit_batch("invalid", 0, 0);
                    // The message names ids and fields, never an excerpt.
                    tracing::warn!(error = %message, "audit batch refused");
                    Err(ErrorCode::InvalidRequest.status(message))
                }
                Err(error) => {
                    self.metrics.audit_batch("error", 0, 0);
                    tracing::warn!(error = %error, "audit batch not recorded");
                    Err(ErrorCode::Unavailable
                        .status("the billing database is unavailable; retry later"))
                }
            }
        }
        .instrument(span)
        .await
    }
}
