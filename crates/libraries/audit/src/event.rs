//! Building audit events from policy hits: one event per [`Hit`], numbered
//! within its (request id, attempt), so billing can record each exactly once
//! however often the spool delivers it.

use std::time::{SystemTime, UNIX_EPOCH};

use llmgw_policy::{Direction, Hit};
use llmgw_proto::billing_v1::AuditEvent;

/// The attempt number of hits the edge finds in a prompt. The router numbers
/// its upstream attempts from 1, so the edge's events never collide with
/// the router's for the same request.
pub const EDGE_ATTEMPT: u32 = 0;

/// Who and what the hits of one request (attempt) belong to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditContext {
    /// The edge's request id.
    pub request_id: String,
    /// [`EDGE_ATTEMPT`] for input, the router's attempt (1..) for output.
    pub attempt: u32,
    pub tenant: String,
    pub key_id: String,
    /// The model alias the client asked for.
    pub model: String,
    /// The name of the policy whose rules matched.
    pub policy: String,
}

/// The audit events of one (request id, attempt), numbered 0, 1, 2... in
/// the order the hits are added. Add hits as they are found (a stream's hits
/// arrive chunk by chunk) and [`take`](Self::take) the events to record;
/// numbering carries on across takes.
#[derive(Debug)]
pub struct AuditEvents {
    context: AuditContext,
    next_sequence: u32,
    events: Vec<AuditEvent>,
}

impl AuditEvents {
    pub fn new(context: AuditContext) -> AuditEvents {
        AuditEvents {
            context,
            next_sequence: 0,
            events: Vec::new(),
        }
    }

    pub fn context(&self) -> &AuditContext {
        &self.context
    }

    /// One event per hit in `hits`, found in the text at `location`
    /// (`messages[3].content`, `messages[1].tool_calls[0].function.arguments`,
    /// `choices[0]`) going `direction` (`Input` or `Output`).
    pub fn add(&mut self, direction: Direction, location: &str, hits: &[Hit]) {
        let occurred_at_ms = now_ms();
        for hit in hits {
            let event = self.event(direction, location, hit, occurred_at_ms);
            self.events.push(event);
        }
    }

    /// The events added since the last take, in sequence order.
    pub fn take(&mut self) -> Vec<AuditEvent> {
        std::mem::take(&mut self.events)
    }

    /// Events added and not yet taken.
    pub fn pending(&self) -> usize {
        self.events.len()
    }

    /// The sequence number the next hit gets (= hits added so far).
    pub fn next_sequence(&self) -> u32 {
        self.next_sequence
    }

    fn event(
        &mut self,
        direction: Direction,
        location: &str,
        hit: &Hit,
        occurred_at_ms: i64,
    ) -> AuditEvent {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.saturating_add(1);
        let context = &self.context;
        AuditEvent {
            request_id: context.request_id.clone(),
            attempt: context.attempt,
            sequence,
            tenant: context.tenant.clone(),
            key_id: context.key_id.clone(),
            model: context.model.clone(),
            policy: context.policy.clone(),
            rule_id: hit.rule_id.to_string(),
            rule_kind: hit.kind.as_str().to_owned(),
            direction: direction.as_str().to_owned(),
            action: hit.action.as_str().to_owned(),
            location: location.to_owned(),
            offset: hit.start as u64,
            length: hit.end.saturating_sub(hit.start) as u64,
            match_hash: hit.match_hash.clone(),
            excerpt: hit.excerpt.clone().unwrap_or_default(),
            occurred_at_ms,
        }
    }
}

/// Unix milliseconds now (0 before 1970).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| i64::try_from(now.as_millis()).unwrap_or(i64::MAX))
}
