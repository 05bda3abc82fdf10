//! The server-sent events body of a streamed Messages answer.
//!
//! As on the OpenAI route, events are rendered lazily, one per poll, with
//! the chunk delay before each delta, so a slow stream is really slow on the
//! wire and a dropped client stops the work (and releases the response
//! guard) at once.

use std::io;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::stream;
use serde_json::{Value, json};

use super::reply::Reply;
use crate::faults::{self, BROKEN_JSON, Shutdown};
use crate::stats::Gauge;
use crate::stream::Shape;

/// One step of the script. Blocks are numbered by their index in the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    MessageStart,
    Ping,
    BlockStart(usize),
    /// Delta `.1` of block `.0`.
    Delta(usize, usize),
    Signature(usize),
    BlockStop(usize),
    MessageDelta,
    MessageStop,
    /// `message_start` with a body that is not JSON.
    Broken,
    Stall,
    Abort,
}

impl Step {
    /// Deltas and the closing `message_delta` come after the chunk delay:
    /// they stand for generated tokens. Structural events follow at once.
    fn paced(self) -> bool {
        matches!(self, Step::Delta(..) | Step::MessageDelta | Step::Abort)
    }
}

/// Every step of the answer in order, cut short as `shape` asks: half the
/// deltas (at least one), then a stall or a cut connection.
fn script(reply: &Reply, shape: Shape) -> Vec<Step> {
    if shape == Shape::InvalidJson {
        return vec![Step::Broken];
    }
    let mut full = vec![Step::MessageStart, Step::Ping];
    for (b, block) in reply.blocks.iter().enumerate() {
        full.push(Step::BlockStart(b));
        full.extend((0..block.pieces()).map(|i| Step::Delta(b, i)));
        if block.signature().is_some() {
            full.push(Step::Signature(b));
        }
        full.push(Step::BlockStop(b));
    }
    full.extend([Step::MessageDelta, Step::MessageStop]);
    let end = match shape {
        Shape::StallMidStream => Step::Stall,
        Shape::Truncate => Step::Abort,
        Shape::Complete | Shape::InvalidJson => return full,
    };
    let deltas: usize = reply.blocks.iter().map(|block| block.pieces()).sum();
    let keep = (deltas / 2).max(1).min(deltas);
    let mut sent = 0;
    let mut steps = Vec::with_capacity(full.len());
    for step in full {
        match step {
            Step::Delta(..) if sent == keep => break,
            Step::Delta(..) => sent += 1,
            Step::MessageDelta => break,
            _ => {}
        }
        steps.push(step);
    }
    steps.push(end);
    steps
}

fn render(reply: &Reply, step: Step) -> Bytes {
    let (name, data) = match step {
        Step::MessageStart => (
            "message_start",
            json!({"type": "message_start", "message": reply.started()}),
        ),
        Step::Ping => ("ping", json!({"type": "ping"})),
        Step::BlockStart(b) => (
            "content_block_start",
            json!({"type": "content_block_start", "index": b,
                "content_block": reply.blocks.get(b).map(|block| block.started())}),
        ),
        Step::Delta(b, i) => delta(b, reply.blocks.get(b).map(|block| block.delta(i))),
        Step::Signature(b) => delta(b, reply.blocks.get(b).and_then(|block| block.signature())),
        Step::BlockStop(b) => (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": b}),
        ),
        Step::MessageDelta => (
            "message_delta",
            json!({"type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": reply.output_tokens}}),
        ),
        Step::MessageStop => ("message_stop", json!({"type": "message_stop"})),
        Step::Broken => {
            return Bytes::from(format!("event: message_start\ndata: {BROKEN_JSON}\n\n"));
        }
        // Not events; `body` handles them before rendering.
        Step::Stall | Step::Abort => return Bytes::new(),
    };
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn delta(b: usize, delta: Option<Value>) -> (&'static str, Value) {
    (
        "content_block_delta",
        json!({"type": "content_block_delta", "index": b, "delta": delta}),
    )
}

struct State {
    reply: Reply,
    steps: std::vec::IntoIter<Step>,
    first: bool,
    stopped: bool,
    chunk_delay: Duration,
    shutdown: Shutdown,
    /// Keeps the response counted as active until the body is dropped.
    _active: Gauge,
}

pub(crate) fn body(
    reply: Reply,
    shape: Shape,
    chunk_delay: Duration,
    shutdown: Shutdown,
    active: Gauge,
    write_bytes: usize,
) -> Body {
    let state = State {
        steps: script(&reply, shape).into_iter(),
        reply,
        first: true,
        stopped: false,
        chunk_delay,
        shutdown,
        _active: active,
    };
    let events = stream::unfold(state, |mut state| async move {
        if state.stopped {
            return None;
        }
        let step = state.steps.next()?;
        // The first event goes out with the headers (the first-byte latency
        // has already been waited).
        if step.paced() && !state.first && !state.chunk_delay.is_zero() {
            tokio::time::sleep(state.chunk_delay).await;
        }
        state.first = false;
        let item = match step {
            Step::Stall => {
                faults::stall(state.shutdown.clone()).await;
                Err(io::Error::other("mock stall ended by shutdown"))
            }
            Step::Abort => {
                // Returning Pending once lets hyper flush what it has
                // buffered; an error before that would discard the partial
                // content along with the connection.
                tokio::task::yield_now().await;
                // An error makes hyper cut the connection without the final
                // zero-length chunk, so the client sees a truncated body.
                Err(io::Error::other("mock fault: truncated stream"))
            }
            step => Ok(render(&state.reply, step)),
        };
        state.stopped = item.is_err();
        Some((item, state))
    });
    crate::stream::in_writes(events, write_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Settings};

    fn reply(model: &str, chunks: u32) -> Reply {
        let request = json!({"model": model, "max_tokens": 100, "mock": {"chunks": chunks},
            "messages": [{"role": "user", "content": "Hello!"}]});
        let settings = Settings::resolve(&Config::default(), &http::HeaderMap::new(), &request)
            .expect("valid settings");
        Reply::new("msg_mock_0".to_owned(), &request, &settings).expect("valid request")
    }

    #[test]
    fn scripts() {
        use Step::*;
        let text = reply("mock", 2);
        assert_eq!(
            script(&text, Shape::Complete),
            [
                MessageStart,
                Ping,
                BlockStart(0),
                Delta(0, 0),
                Delta(0, 1),
                BlockStop(0),
                MessageDelta,
                MessageStop
            ]
        );
        assert_eq!(
            script(&reply("mock", 4), Shape::Truncate),
            [
                MessageStart,
                Ping,
                BlockStart(0),
                Delta(0, 0),
                Delta(0, 1),
                Abort
            ]
        );
        assert_eq!(
            script(&reply("mock", 1), Shape::StallMidStream),
            [
                MessageStart,
                Ping,
                BlockStart(0),
                Delta(0, 0),
                BlockStop(0),
                Stall
            ]
        );
        assert_eq!(
            script(&reply("mock-reasoner", 1), Shape::Complete),
            [
                MessageStart,
                Ping,
                BlockStart(0),
                Delta(0, 0),
                Delta(0, 1),
                Signature(0),
                BlockStop(0),
                BlockStart(1),
                Delta(1, 0),
                BlockStop(1),
                MessageDelta,
                MessageStop
            ]
        );
        let event = String::from_utf8(render(&text, Delta(0, 1)).to_vec()).expect("utf-8");
        let data = event
            .strip_prefix("event: content_block_delta\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .expect("one event");
        assert_eq!(
            serde_json::from_str::<Value>(data).expect("json"),
            json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "lazy "}})
        );
    }
}
