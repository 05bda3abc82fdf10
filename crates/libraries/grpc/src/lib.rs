//! The one gRPC plumbing every llmgw service uses, so the services differ
//! only in their generated clients and servers:
//!
//! - [`channel`]: a lazily connected client transport for any generated
//!   client (`RouterClient<Channel>`, `QuotaClient<Channel>`, ...) that writes
//!   the caller's W3C trace context into every call's metadata;
//! - [`serve`]: the server set-up, with the layer that carries a caller's
//!   trace context into the handler's calls (and, when spans are exported,
//!   makes it the parent of the handler's spans), the standard gRPC health
//!   service ([`health`]) and the shared `/metrics` route;
//! - [`check_health`]: the client side of the health protocol (`llmgw
//!   probe`);
//! - the transport switch: a URL `http://host:port` is a TCP connection, a URL
//!   `inproc://name` (from [`InProcessListener::url`]) an in-memory one to a
//!   server in the same process (`llmgw all`), with no socket at all. The same
//!   clients, servers and layers run over both.

mod channel;
pub mod health;
mod in_process;
mod serve;

pub use channel::{Channel, Transport, channel, is_in_process};
pub use health::{ServingStatus, check_health};
pub use in_process::InProcessListener;
pub use serve::{Listener, serve};
