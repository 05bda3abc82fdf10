//! Delivering spooled audit events to billing's `Audit.RecordAudit`: how
//! billing's answers map to "retry" or "invalid", and how an event is named
//! in the spool's log lines (ids only, never text).

use llmgw_grpc::Channel;
use llmgw_proto::billing_v1::audit_client::AuditClient;
use llmgw_proto::billing_v1::{AuditEvent, RecordAuditRequest};
use llmgw_spool::{DELIVERY_TIMEOUT, Delivery, DeliveryError};
use tonic::Code;

/// Delivers audit batches to billing, one `RecordAudit` call each. Billing
/// records a batch all or nothing and dedupes on (request id, attempt,
/// sequence).
pub struct AuditDelivery {
    client: AuditClient<Channel>,
}

impl AuditDelivery {
    /// `channel` should be lazily connected (`llmgw_grpc::channel`) so that
    /// the owner starts while billing is down.
    pub fn new(channel: Channel) -> AuditDelivery {
        AuditDelivery {
            client: AuditClient::new(channel),
        }
    }
}

impl Delivery for AuditDelivery {
    type Event = AuditEvent;

    async fn deliver(&self, batch: &[AuditEvent]) -> Result<(), DeliveryError> {
        let mut request = tonic::Request::new(RecordAuditRequest {
            events: batch.to_vec(),
        });
        // Tells billing the deadline the spool enforces on its side.
        request.set_timeout(DELIVERY_TIMEOUT);
        match self.client.clone().record_audit(request).await {
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

    /// Ids only: the excerpt and the match hash stay out of log lines.
    fn span(event: &AuditEvent) -> tracing::Span {
        tracing::error_span!(
            "audit_event",
            request_id = %event.request_id,
            attempt = event.attempt,
            sequence = event.sequence,
            tenant = %event.tenant,
            key_id = %event.key_id,
            policy = %event.policy,
            rule_id = %event.rule_id,
            action = %event.action,
            direction = %event.direction,
        )
    }

    fn occurred_at_ms(event: &AuditEvent) -> Option<i64> {
        (event.occurred_at_ms > 0).then_some(event.occurred_at_ms)
    }
}
