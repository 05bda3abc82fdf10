//! The usage spool: every usage event the relay emits goes through the
//! durable spool (`llmgw-spool`) to billing's `Ledger.RecordUsage`, so a
//! billing outage or a router restart loses no billable usage and never
//! slows a request. What is usage-specific lives here: the delivery (and how
//! billing's answers map to "retry" or "invalid", and its span, linked to
//! the requests whose events it carries), and how an event is named in log
//! lines.

use std::collections::HashSet;

use llmgw_grpc::Channel;
use llmgw_proto::billing_v1::ledger_client::LedgerClient;
use llmgw_proto::billing_v1::{RecordUsageRequest, UsageEvent};
use llmgw_spool::{DELIVERY_TIMEOUT, Delivery, DeliveryError};
use tonic::Code;
use tracing::Instrument as _;

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
        let mut client = self.client.clone();
        let answer = async move { client.record_usage(request).await }
            .instrument(delivery_span(batch))
            .await;
        match answer {
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

/// The span of one delivery: a trace of its own (it carries the events of
/// many requests, long after they ended), with a span link to the request
/// span of each, so a slow or failing delivery leads to the requests whose
/// usage it records. Billing's `RecordUsage` spans are its children. Only
/// built when spans are exported: otherwise nobody would see it.
fn delivery_span(batch: &[UsageEvent]) -> tracing::Span {
    if !llmgw_telemetry::exporting_spans() {
        return tracing::Span::none();
    }
    let span =
        tracing::info_span!(parent: None, "router.deliver_usage", events = batch.len() as u64);
    // Attempts of one request share its span: one link each.
    let mut linked = HashSet::new();
    for event in batch {
        if linked.insert(event.traceparent.as_str()) {
            llmgw_telemetry::add_link(&span, &event.traceparent);
        }
    }
    span
}
