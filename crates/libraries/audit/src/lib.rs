//! The audit trail of content-policy hits, shared by the edge (prompts) and
//! the routers (answers):
//!
//! - `event`: [`AuditEvents`] turns `llmgw_policy::Hit`s into numbered
//!   [`AuditEvent`]s (request id, attempt, sequence: billing's identity).
//! - `delivery`: [`AuditDelivery`], the `llmgw_spool::Delivery` to billing's
//!   `Audit.RecordAudit`.
//! - `trail`: [`AuditTrail`], what a service holds: counts and logs each
//!   hit (ids only) and emits it into the durable spool. Its docs say what
//!   happens when the spool is full or no billing is configured.
//!
//! Events never carry the matched text or the prompt: a keyed hash of the
//! match, offsets, and an excerpt (match masked) only when the policy opts in.

mod delivery;
mod event;
#[cfg(test)]
mod tests;
mod trail;

pub use delivery::AuditDelivery;
pub use event::{AuditContext, AuditEvents, EDGE_ATTEMPT};
pub use llmgw_proto::billing_v1::AuditEvent;
pub use trail::{AuditMetrics, AuditSpoolConfig, AuditTrail, HitLabels, NotRecordedLabels};
