//! The usage spool: every usage event the relay emits goes through the
//! durable spool (`llmgw-spool`) to billing's `Ledger.RecordUsage`, so a
//! billing outage or a router restart loses no billable usage and never
//! slows a request. What is usage-specific lives here: the delivery (and how
//! billing's answers map to "retry" or "invalid"), and how an event is named
//! in log lines.

use llmgw_grpc::Channel;
use llmgw_proto::billing_v1::ledger_client::LedgerClient;
use llmgw_proto::billing_v1::{RecordUsageRequest, UsageEvent};
use llmgw_spool::{DELIVERY_TIMEOUT, Delivery, DeliveryError};
use tonic::Code;

/// Where the relay sends usage events. Cheap to clone.
pub type UsageSink = llmgw_spool::Sink<UsageEvent>;

/// Delivers usage batches to billing, one `RecordUsage` call each. Billing
/// records a batch all or nothing and dedupes on (request id, attempt).
pub struct LedgerDelivery {
    client: LedgerClient<Channel>,
}

impl LedgerDelivery {
    /// `channel` should be lazily connected (`Endpoint::connect_lazy`) so
    /// that a router starts while billing is down.
    pub fn new(channel: Channel) -> LedgerDelivery {
        LedgerDelivery {
            client: LedgerClient::new(channel),
        }
    }
}

impl Delivery for LedgerDelivery {
    type Event = UsageEvent;

    async fn deliver(&self, batch: &[UsageEvent]) -> Result<(), DeliveryError> {
        let mut request = tonic::Request::new(RecordUsageRequest {
            events: batch.to_vec(),
        });
        // Tells billing the deadline the spool enforces on its side.
        request.set_timeout(DELIVERY_TIMEOUT);
        match self.client.clone().record_usage(request).await {
            Ok(_) => Ok(()),
            // Billing validates every event: a malformed one refuses the
            // batch, and would again on every retry.
            Err(status) if status.code() == Code::InvalidArgument => {
                Err(DeliveryError::Invalid(status.message().to_owned()))
            }
            // Billing or its database unreachable, or a timeout: nothing was
            // recorded, the same batch is sent again later.
            Err(status) => Err(DeliveryError::RetryLater(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }

    fn span(event: &UsageEvent) -> tracing::Span {
        tracing::error_span!(
            "usage_event",
            request_id = %event.request_id,
            attempt = event.attempt,
            tenant = %event.tenant,
            key_id = %event.key_id,
            model = %event.model,
            cost_nano_usd = event.cost_nano_usd,
        )
    }

    fn occurred_at_ms(event: &UsageEvent) -> Option<i64> {
        [event.ended_at_ms, event.started_at_ms]
            .into_iter()
            .find(|&ms| ms > 0)
    }
}
