//! One `Chat` call to the router, held until its final event: the edge's
//! half of the call stays open so that, if the client leaves, the edge can
//! ask the router to stop and still learn what the request was billed.
//!
//! The router is the one source of usage and cost: its final event carries
//! the bill summed over all attempts (what the ledger rows add up to), and
//! the request's quota [`Settlement`] settles exactly that, cancelled
//! requests included.

use std::time::Duration;

use futures_util::StreamExt as _;
use llmgw_grpc::Channel;
use llmgw_proto::router_v1::router_client::RouterClient;
use llmgw_proto::router_v1::{Cancel, ChatEvent, ChatInput, ChatRequest, chat_input::Input};
use tokio::sync::oneshot;
use tonic::{Status, Streaming};
use tracing::Instrument as _;

use crate::quota::Settlement;

/// How long a cancelled call waits for the router's bill. The router answers
/// a cancel at once (after tokenizing what was generated); past this the
/// router is taken as gone and the reservation is settled as it stands.
const CANCEL_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// Bound on reading a stream's trailers after its final event.
const TRAILERS_WAIT: Duration = Duration::from_secs(1);

pub struct RouterCall {
    /// Taken by `drop` when the call must be cancelled.
    events: Option<Streaming<ChatEvent>>,
    /// Asks for a cancel on the edge's half of the call, which reaches the
    /// replica serving this call (one gRPC stream, whatever the load
    /// balancing). Sending, or dropping it once the final event is in,
    /// closes the half, so the call ends cleanly on both sides rather than
    /// by a reset.
    cancel: Option<oneshot::Sender<()>>,
    settlement: Option<Settlement>,
    /// The final event arrived (or the stream broke): nothing to cancel.
    finished: bool,
    /// The request's span: a cancel is logged in it.
    span: tracing::Span,
}

impl RouterCall {
    /// Starts the call. `settlement` (the request's quota reservation, if
    /// any) is settled with the router's bill once the call ends.
    pub async fn start(
        router: &RouterClient<Channel>,
        request: ChatRequest,
        timeout: Duration,
        mut settlement: Option<Settlement>,
    ) -> Result<RouterCall, Status> {
        // The request, then a cancel if one is asked for: two messages at
        // most, so a oneshot rather than a channel (whose first block holds
        // 32 of them).
        let (cancel, asked) = oneshot::channel::<()>();
        let request = ChatInput {
            input: Some(Input::Request(request)),
        };
        let outgoing = futures_util::stream::once(std::future::ready(request)).chain(
            futures_util::stream::once(asked).filter_map(|asked| {
                std::future::ready(asked.ok().map(|()| ChatInput {
                    input: Some(Input::Cancel(Cancel {})),
                }))
            }),
        );
        let mut call = tonic::Request::new(outgoing);
        call.set_timeout(timeout);
        let events = router.clone().chat(call).await?.into_inner();
        if let Some(settlement) = &mut settlement {
            settlement.router_called();
        }
        Ok(RouterCall {
            events: Some(events),
            cancel: Some(cancel),
            settlement,
            finished: false,
            span: tracing::Span::current(),
        })
    }

    /// The next event; the final one's bill goes to the settlement.
    /// Cancel-safe, like [`Streaming::message`].
    pub async fn message(&mut self) -> Result<Option<ChatEvent>, Status> {
        let Some(events) = &mut self.events else {
            return Ok(None);
        };
        let message = events.message().await;
        match &message {
            Ok(Some(event)) => {
                if let Some(billed) = event.billed {
                    self.finished = true;
                    self.cancel = None;
                    if let Some(settlement) = &mut self.settlement {
                        settlement.billed(billed);
                    }
                }
            }
            // The answer is cut: the router has dropped the call.
            Ok(None) | Err(_) => {
                self.finished = true;
                self.cancel = None;
            }
        }
        message
    }

    /// Reads the end of the stream after its final event. Dropping the
    /// stream before its trailers arrive resets the HTTP/2 stream, and a
    /// server that sees thousands of resets a second takes it for an attack
    /// (the HTTP/2 "rapid reset" defence) and closes the whole connection,
    /// failing every call on it. The trailers follow the final event at
    /// once; the bound is a guard against a misbehaving router.
    pub async fn read_trailers(&mut self) {
        if let Some(events) = &mut self.events {
            let _ = tokio::time::timeout(TRAILERS_WAIT, events.message()).await;
        }
    }
}

/// The request ended before the router's final event (the client left, or
/// the gateway is draining): ask the router to stop, and settle with the
/// bill it answers with.
impl Drop for RouterCall {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // The process is exiting; the lease timeout settles.
        };
        let (Some(mut events), Some(cancel)) = (self.events.take(), self.cancel.take()) else {
            return;
        };
        let mut settlement = self.settlement.take();
        let span = self.span.clone();
        runtime.spawn(
            async move {
                // Sent, the cancel also closes the edge's half: the call ends
                // cleanly on both sides once the trailers are read.
                let _ = cancel.send(());
                let billed = tokio::time::timeout(CANCEL_ANSWER_WAIT, async {
                    loop {
                        match events.message().await {
                            Ok(Some(ChatEvent {
                                billed: Some(billed),
                                ..
                            })) => return Some(billed),
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => return None,
                        }
                    }
                })
                .await;
                match billed {
                    Ok(Some(billed)) => {
                        if let Some(settlement) = &mut settlement {
                            settlement.billed(billed);
                        }
                        let _ = tokio::time::timeout(TRAILERS_WAIT, events.message()).await;
                    }
                    // The settlement keeps "unknown": the reservation is
                    // settled as it stands, as the lease timeout would.
                    _ => tracing::warn!(
                        "the router did not answer a cancel with its bill; settling the reservation as reserved"
                    ),
                }
                drop(settlement);
            }
            .instrument(span),
        );
    }
}
