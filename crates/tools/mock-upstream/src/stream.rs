//! The server-sent events body of a streamed answer.
//!
//! Events are produced lazily, one per poll, with the configured delay
//! before each, so that a slow stream is really slow on the wire and a
//! dropped client stops the work (and releases the response guard) at once.

use std::io;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::stream;
use llmgw_openai::ChatCompletionChunk;
use serde_json::Value;

use crate::completion::Answer;
use crate::faults::{self, BROKEN_JSON, Shutdown};
use crate::production::Recorder;
use crate::stats::Gauge;

/// How a stream deviates from a well-formed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Complete,
    /// Half the content, then silence with the connection left open.
    StallMidStream,
    /// Half the content, then the connection is cut.
    Truncate,
    /// One unparseable event, then `[DONE]`.
    InvalidJson,
}

pub struct Script {
    pub answer: Answer,
    pub include_usage: bool,
    pub shape: Shape,
    pub chunk_delay: Duration,
}

enum Step {
    /// A chunk carrying this many completion tokens, sent after the chunk
    /// delay (except for the first).
    Chunk(Bytes, u64),
    /// The `[DONE]` sentinel, sent right after the last chunk.
    Done,
    Stall,
    Abort,
    End,
}

impl Script {
    fn step(&self, i: usize) -> Result<Step, serde_json::Error> {
        if self.shape == Shape::InvalidJson {
            return Ok(match i {
                0 => Step::Chunk(Bytes::from(format!("data: {BROKEN_JSON}\n\n")), 0),
                1 => Step::Done,
                _ => Step::End,
            });
        }
        let answer = &self.answer;
        let reasoning = answer.reasoning_chunks;
        let words = answer.pieces.len();
        let sent = match self.shape {
            Shape::Complete => words,
            _ => (words / 2).max(1).min(words),
        };
        let (chunk, tokens) = if i == 0 {
            (answer.role_chunk(), 0)
        } else if i <= reasoning {
            (answer.reasoning_chunk(), 1)
        } else if let Some(piece) = answer.pieces[..sent].get(i - reasoning - 1) {
            (answer.piece_chunk(i - reasoning - 1, piece), 1)
        } else {
            match (self.shape, i - reasoning - sent - 1) {
                (Shape::StallMidStream, _) => return Ok(Step::Stall),
                (Shape::Truncate, _) => return Ok(Step::Abort),
                (_, 0) => (answer.finish_chunk(), 0),
                (_, 1) if self.include_usage => (answer.usage_chunk(), 0),
                (_, n) if n == 1 + usize::from(self.include_usage) => return Ok(Step::Done),
                _ => return Ok(Step::End),
            }
        };
        self.event(chunk).map(|bytes| Step::Chunk(bytes, tokens))
    }

    fn event(&self, chunk: ChatCompletionChunk) -> Result<Bytes, serde_json::Error> {
        let mut value = serde_json::to_value(chunk)?;
        if !self.include_usage
            && let Value::Object(fields) = &mut value
        {
            // OpenAI only sends the `usage` key when include_usage was asked for.
            fields.remove("usage");
        }
        Ok(Bytes::from(format!("data: {value}\n\n")))
    }
}

struct State {
    script: Script,
    next: usize,
    stopped: bool,
    shutdown: Shutdown,
    /// Keeps the response counted as active until the body is dropped.
    _active: Gauge,
    /// The request's production record, when it is tagged.
    recorder: Option<Recorder>,
}

pub fn body(
    script: Script,
    shutdown: Shutdown,
    active: Gauge,
    write_bytes: usize,
    recorder: Option<Recorder>,
) -> Body {
    let state = State {
        script,
        next: 0,
        stopped: false,
        shutdown,
        _active: active,
        recorder,
    };
    let events = stream::unfold(state, |mut state| async move {
        if state.stopped {
            return None;
        }
        let i = state.next;
        state.next += 1;
        let delay = state.script.chunk_delay;
        let item = match state.script.step(i) {
            Ok(Step::Chunk(bytes, tokens)) => {
                pace(i, delay).await;
                state.record(&bytes, tokens, false);
                Ok(bytes)
            }
            Ok(Step::Done) => {
                let done = Bytes::from_static(b"data: [DONE]\n\n");
                state.record(&done, 0, true);
                Ok(done)
            }
            Ok(Step::Stall) => {
                faults::stall(state.shutdown.clone()).await;
                Err(io::Error::other("mock stall ended by shutdown"))
            }
            Ok(Step::Abort) => {
                pace(i, delay).await;
                // Returning Pending once lets hyper flush what it has
                // buffered; an error before that would discard the headers
                // and the partial content along with the connection.
                tokio::task::yield_now().await;
                // An error makes hyper cut the connection without the final
                // zero-length chunk, so the client sees a truncated body.
                Err(io::Error::other("mock fault: truncated stream"))
            }
            Ok(Step::End) => return None,
            Err(err) => Err(io::Error::other(err)),
        };
        state.stopped = item.is_err();
        Some((item, state))
    });
    in_writes(events, write_bytes)
}

impl State {
    /// Counts an event as produced: it is handed to the HTTP server now.
    fn record(&self, event: &Bytes, tokens: u64, finished: bool) {
        if let Some(recorder) = &self.recorder {
            recorder.update(|production| {
                production.events += 1;
                production.bytes += event.len() as u64;
                production.completion_tokens += tokens;
                production.finished |= finished;
            });
        }
    }
}

/// The body of `events`, each event written `write_bytes` bytes at a time
/// (0: whole). Each piece is its own body frame, and the body yields
/// between pieces, so the server flushes them as separate writes: a reader
/// gets events cut anywhere, even inside a UTF-8 character.
pub(crate) fn in_writes(
    events: impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static,
    write_bytes: usize,
) -> Body {
    use futures_util::StreamExt as _;
    if write_bytes == 0 {
        return Body::from_stream(events);
    }
    let pieces = events
        .flat_map(move |event| {
            let pieces: Vec<io::Result<Bytes>> = match event {
                Ok(bytes) => (0..bytes.len())
                    .step_by(write_bytes)
                    .map(|at| Ok(bytes.slice(at..bytes.len().min(at + write_bytes))))
                    .collect(),
                Err(error) => vec![Err(error)],
            };
            stream::iter(pieces)
        })
        .then(|piece| async move {
            tokio::task::yield_now().await;
            piece
        });
    Body::from_stream(pieces)
}

/// Waits the chunk delay, except before the first chunk, which goes out with
/// the headers (the first-byte latency has already been waited).
async fn pace(i: usize, delay: Duration) {
    if i > 0 && !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

/// A `text/event-stream` response around `body` (both wire formats).
pub(crate) fn sse_response(body: axum::body::Body) -> axum::response::Response {
    let mut response = axum::response::Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    response
}
