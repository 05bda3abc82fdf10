//! The relay's side of the content policy on answers: which policy applies,
//! what a scanned chunk turns into, the audit event of every hit, and the
//! end of an answer a `block` rule cut (see `output_scan` for the scan).

use std::sync::Arc;

use bytes::Bytes;
use llmgw_audit::{AuditContext, AuditEvents};
use llmgw_policy::{Direction, Policy};
use llmgw_proto::router_v1::chat_event::Event;
use serde_json::json;

use super::Relay;
use super::output_scan::{CONTENT_FILTER, OutputScan, Verdict};
use crate::State;
use crate::provider::ProviderError;
use crate::provider::chat_chunk::ChunkView;

/// The policy that applies to `tenant`'s answers, if any rule of it does.
pub(crate) fn for_tenant(state: &State, tenant: &str) -> Option<Arc<Policy>> {
    let policies = state.policies.current();
    policies
        .for_tenant(tenant)
        .filter(|policy| policy.checks(Direction::Output))
        .cloned()
}

impl Relay {
    /// A fresh scan for a new upstream attempt (hits are numbered per
    /// attempt in the audit trail).
    pub(super) fn begin_scan(&mut self) {
        self.output = self.policy.clone().map(OutputScan::new);
        self.outbox.clear();
        self.audit = self.policy.as_ref().map(|policy| {
            AuditEvents::new(AuditContext {
                request_id: self.envelope.request_id.clone(),
                attempt: self.attempts,
                tenant: self.envelope.tenant.clone(),
                key_id: self.envelope.key_id.clone(),
                model: self.envelope.model.clone(),
                policy: policy.name().to_owned(),
            })
        });
    }

    /// Scans a streamed chunk: true to forward it as it is; otherwise what
    /// replaces it waits in the outbox.
    pub(super) fn scan_chunk(
        &mut self,
        chunk: &Bytes,
        view: &ChunkView<'_>,
    ) -> Result<bool, ProviderError> {
        let Some(scan) = &mut self.output else {
            return Ok(true);
        };
        let verdict = scan.chunk(chunk, view)?;
        self.after_scan();
        match verdict {
            Verdict::Pass => Ok(true),
            Verdict::Replace(chunks) => {
                self.outbox.extend(chunks);
                Ok(false)
            }
        }
    }

    /// The stream ended without a finish reason: queues what the scanners
    /// still hold. True if that cut the answer.
    pub(super) fn release_held_back(&mut self, id: &str, created: u64, model: &str) -> bool {
        let Some(scan) = &mut self.output else {
            return false;
        };
        let chunks = scan.finish_all(id, created, model);
        self.outbox.extend(chunks);
        self.after_scan();
        self.output.as_ref().is_some_and(OutputScan::blocked)
    }

    /// Scans a whole (non-streaming) answer.
    pub(super) fn scan_completion(&mut self, completion: Bytes) -> Result<Bytes, ProviderError> {
        let Some(scan) = &mut self.output else {
            return Ok(completion);
        };
        let completion = scan.completion(completion)?;
        self.after_scan();
        Ok(completion)
    }

    /// Audits the hits of the last scan; a cut sets the finish reason.
    fn after_scan(&mut self) {
        let Some(scan) = &mut self.output else {
            return;
        };
        let found = scan.take_found();
        if scan.blocked() {
            self.tally.finish_reason = Some(CONTENT_FILTER.to_owned());
        }
        if found.is_empty() {
            return;
        }
        let Some(events) = &mut self.audit else {
            return;
        };
        for found in &found {
            events.add(
                Direction::Output,
                &found.location(),
                std::slice::from_ref(&found.hit),
            );
        }
        // Counted, logged (ids only) and spooled for billing.
        self.state.audit.record(events.take());
    }

    /// A streamed answer the policy cut still ends as every stream does:
    /// with the usage chunk when the client asked for it (the upstream's
    /// own never came), here the attempt's billed usage.
    pub(super) fn cut_usage_chunk(&self, last: &Event) -> Option<Bytes> {
        let Event::Done(done) = last else {
            return None;
        };
        if !(self.envelope.stream
            && self.envelope.include_usage
            && done.finish_reason == CONTENT_FILTER)
        {
            return None;
        }
        let usage = done.usage.unwrap_or_default();
        let (id, created, model) = self.tally.first.clone().unwrap_or_default();
        let chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        });
        Some(Bytes::from(chunk.to_string()))
    }
}
