//! The one gRPC plumbing every llmgw service uses, so the services differ
//! only in their generated clients and servers:
//!
//! - [`channel`]: a lazily connected client transport for any generated
//!   client (`RouterClient<Channel>`, `QuotaClient<Channel>`, ...) that writes
//!   the caller's W3C trace context into every call's metadata;
//! - [`serve`]: the server set-up, with the layer that makes a caller's trace
//!   context the parent of the handler's spans and the shared `/metrics`
//!   route;
//! - the transport switch: a URL `http://host:port` is a TCP connection, a URL
//!   `inproc://name` (from [`InProcessListener::url`]) an in-memory one to a
//!   server in the same process (`llmgw all`), with no socket at all. The same
//!   clients, servers and layers run over both.

mod channel;
mod in_process;
mod serve;

pub use channel::{Channel, channel};
pub use in_process::InProcessListener;
pub use serve::{Listener, serve};
