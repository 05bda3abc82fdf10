//! Server-sent events: each router chunk is written as `data: {...}\n\n` the
//! moment it arrives, then `data: [DONE]\n\n`. An error after streaming began
//! is sent as a final `data: {"error":...}` event and the stream closes.
//!
//! Anthropic's framing ([`Framing::Anthropic`], Messages clients): the
//! router's chunks are whole events already (`event:` and `data:`), written
//! as they come; there is no `[DONE]` (`message_stop` ends the stream), and
//! an error is an `event: error` with Anthropic's error body.

use std::pin::Pin;
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::Stream;
use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::{ChatEvent, chat_event::Event};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::outcome::Outcome;
use crate::router_call::RouterCall;

const DONE: &[u8] = b"data: [DONE]\n\n";

/// How events are framed for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// OpenAI: `data: <chunk>`, then `data: [DONE]`.
    Openai,
    /// Anthropic: the router's framed events as they are.
    Anthropic,
}

impl Framing {
    fn chunk(self, chunk: Bytes) -> Bytes {
        match self {
            Framing::Openai => data_frame(&chunk),
            Framing::Anthropic => chunk,
        }
    }

    fn error(self, error: &ApiError) -> Bytes {
        match self {
            Framing::Openai => data_frame(&error.to_json()),
            Framing::Anthropic => {
                let mut frame = BytesMut::from(&b"event: error\n"[..]);
                frame.put_slice(&data_frame(&error.to_anthropic_json()));
                frame.freeze()
            }
        }
    }

    fn done(self) -> Bytes {
        match self {
            Framing::Openai => Bytes::from_static(DONE),
            Framing::Anthropic => Bytes::new(),
        }
    }
}
/// An SSE comment: clients ignore it, proxies see traffic.
const KEEPALIVE: &[u8] = b": keep-alive\n\n";

pub fn data_frame(payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(payload.len() + 8);
    frame.put_slice(b"data: ");
    frame.put_slice(payload);
    frame.put_slice(b"\n\n");
    frame.freeze()
}

struct State {
    /// The first frame, already framed.
    first: Option<Bytes>,
    keepalive: Option<(Duration, Pin<Box<Sleep>>)>,
    /// Dropped before its final event (the client left), it cancels the
    /// router call and settles the quota with the router's bill.
    call: RouterCall,
    outcome: Outcome,
    /// Cancelled when the shutdown drain deadline passes.
    drain_expired: CancellationToken,
    finished: bool,
    framing: Framing,
}

/// The SSE body: `first` is the chunk already received (`None`: start with
/// a keep-alive), `events` the rest.
pub fn body(
    first: Option<Bytes>,
    call: RouterCall,
    outcome: Outcome,
    drain_expired: CancellationToken,
    keepalive: Option<Duration>,
    framing: Framing,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    let state = State {
        first: Some(first.map_or_else(
            || Bytes::from_static(KEEPALIVE),
            |chunk| framing.chunk(chunk),
        )),
        keepalive: keepalive.map(|every| (every, Box::pin(tokio::time::sleep(every)))),
        call,
        outcome,
        drain_expired,
        finished: false,
        framing,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        // Polled by the HTTP server, outside the request's span: re-enter it.
        let span = state.outcome.span().clone();
        let frame = next_frame(&mut state).instrument(span).await?;
        Some((Ok(frame), state))
    })
}

async fn next_frame(state: &mut State) -> Option<Bytes> {
    if state.finished {
        return None;
    }
    if let Some(first) = state.first.take() {
        return Some(first);
    }
    let keepalive = async {
        match &mut state.keepalive {
            Some((_, sleep)) => sleep.as_mut().await,
            None => std::future::pending().await,
        }
    };
    let message = tokio::select! {
        biased;
        () = state.drain_expired.cancelled() => {
            return Some(fail(state, ApiError::new(ErrorCode::Unavailable, "the gateway is shutting down; retry the request")));
        }
        message = state.call.message() => message,
        () = keepalive => {
            if let Some((every, sleep)) = &mut state.keepalive {
                sleep.as_mut().reset(tokio::time::Instant::now() + *every);
            }
            return Some(Bytes::from_static(KEEPALIVE));
        }
    };
    // Silence is measured from the last frame.
    if let Some((every, sleep)) = &mut state.keepalive {
        sleep.as_mut().reset(tokio::time::Instant::now() + *every);
    }
    let event = match message {
        Ok(Some(ChatEvent {
            event: Some(event), ..
        })) => event,
        Ok(Some(ChatEvent { event: None, .. })) | Ok(None) => {
            return Some(fail(
                state,
                ApiError::new(ErrorCode::UpstreamError, "the answer ended unexpectedly"),
            ));
        }
        Err(status) => return Some(fail(state, ApiError::from_status(&status))),
    };
    Some(match event {
        Event::Chunk(chunk) => state.framing.chunk(chunk),
        Event::Done(done) => {
            state.call.read_trailers().await;
            state.outcome.status = 200;
            state.outcome.done = Some(done);
            state.finished = true;
            state.framing.done()
        }
        Event::Error(error) => {
            state.call.read_trailers().await;
            fail(state, ApiError::from_proto(error))
        }
        Event::Completion(_) => fail(
            state,
            ApiError::new(
                ErrorCode::Internal,
                "the router answered a stream with a completion",
            ),
        ),
    })
}

fn fail(state: &mut State, error: ApiError) -> Bytes {
    tracing::warn!(
        code = error.code.as_str_name(),
        "stream ended with an error"
    );
    state.outcome.status = error.code.http_status().as_u16();
    state.finished = true;
    state.framing.error(&error)
}
