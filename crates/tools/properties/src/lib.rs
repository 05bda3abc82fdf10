//! What llmgw's parsers of untrusted bytes must do with any input, written
//! once as functions that panic when a property fails. The fuzz targets in
//! `fuzz/` call them with libFuzzer's inputs; the property tests in `tests/`
//! call them with proptest's (and replay the committed fuzz corpora), so a
//! property cannot drift between the two.
//!
//! Each `check` takes raw bytes: the first byte or two steer the harness
//! (how the stream is cut into network chunks, which admin route, which
//! corruption), the rest is the input.

pub mod admin_body;
pub mod anthropic_stream;
pub mod chat_request;
pub mod error_body;
mod input;
pub mod openai_stream;
pub mod spool_segments;
pub mod sse;

pub use input::Input;
