//! The real `llmgw` binary, run as child processes the way an operator runs
//! it: demo mode with no configuration, graceful shutdown on SIGTERM, edge
//! and router as separate processes, W3C trace context reaching the
//! provider, and the official OpenAI and Anthropic Python SDKs as clients.
//!
//! Every child is killed when its guard drops (also when a test panics), and
//! every wait is bounded.

mod accounts;
pub(crate) mod child;
mod config;
mod drain_billing;
mod gateway;
mod lifecycle;
mod policy_sdk;
mod protocols_sdk;
pub(crate) mod sdk;
mod slow_readers;
mod trace_context;
