//! End-to-end tests: the real edge and router (and the mock upstream), each on
//! port 0, talking gRPC and HTTP over loopback as in production. One test
//! binary, so the workspace links once.

mod harness;

mod accounts;

mod admission;
mod auth_throttle;
mod embeddings;
mod faults;
mod ledger;
mod ledger_protocols;
mod limits;
mod messages;
mod passthrough;
mod policy_audit;
mod policy_input;
mod policy_outage;
mod policy_output;
mod process;
mod quota;
mod quota_ledger;
mod quota_outage;
mod request_caps;
mod roundtrip;
mod routing;
mod streaming;
mod validation;
