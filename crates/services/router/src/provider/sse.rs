//! Server-sent events framing of an upstream body (the WHATWG event stream
//! format), decoded byte by byte as the body arrives.
//!
//! Our own rather than `eventsource-stream`, which the property tests showed panics on
//! a body starting with a byte order mark (it slices the BOM at byte 1),
//! keeps every byte after an invalid UTF-8 sequence until the body ends,
//! and re-scans and copies its whole buffer for each line (quadratic in a
//! long event). Here each byte is looked at once, a line or event past
//! [`MAX_EVENT_BYTES`] ends the stream, and bad UTF-8 ends it at once.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt as _};

/// An upstream event (an answer chunk) is a few hundred bytes; a whole
/// answer in one event is a few MB at most.
pub const MAX_EVENT_BYTES: usize = 8 << 20;

/// One event: its type (`message` when the upstream named none) and data
/// (its `data:` lines joined by `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Why a body is not an event stream we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Utf8,
    TooLarge,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Utf8 => f.write_str("a line is not UTF-8"),
            Invalid::TooLarge => write!(f, "an event exceeds {MAX_EVENT_BYTES} bytes"),
        }
    }
}

/// The decoder's state between two pieces of the body.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// The line read so far (no end-of-line yet).
    line: Vec<u8>,
    /// The `data:` values of the event so far, each followed by `\n`.
    data: String,
    /// Some `data:` line was seen (an event of empty data still counts).
    has_data: bool,
    event: String,
    /// The last piece ended in `\r`: a `\n` first in the next is the same
    /// end of line.
    after_cr: bool,
    /// Bytes of a leading byte order mark matched so far; `None` once the
    /// body is past its start.
    bom: Option<usize>,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

impl SseDecoder {
    pub fn new() -> SseDecoder {
        SseDecoder {
            bom: Some(0),
            ..SseDecoder::default()
        }
    }

    /// Reads `bytes`, the next piece of the body, appending the events it
    /// completes to `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut VecDeque<SseEvent>) -> Result<(), Invalid> {
        if let Some(matched) = self.bom {
            // One BOM at the very start is not content (the spec drops it).
            let mut matched = matched;
            while matched < BOM.len() {
                match bytes.first() {
                    None => {
                        self.bom = Some(matched);
                        return Ok(());
                    }
                    Some(&byte) if byte == BOM[matched] => {
                        matched += 1;
                        bytes = &bytes[1..];
                    }
                    Some(_) => {
                        // Not a BOM: what matched of it is content.
                        self.line.extend_from_slice(&BOM[..matched]);
                        break;
                    }
                }
            }
            self.bom = None;
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            self.extend_line(&bytes[..end])?;
            self.end_line(out)?;
            let crlf = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            if crlf {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.extend_line(bytes)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), Invalid> {
        if self.line.len() + self.data.len() + bytes.len() > MAX_EVENT_BYTES {
            return Err(Invalid::TooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut VecDeque<SseEvent>) -> Result<(), Invalid> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        let line = std::str::from_utf8(&line).map_err(|_| Invalid::Utf8)?;
        if line.starts_with(':') {
            return Ok(()); // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => value.clone_into(&mut self.event),
            // `id` and `retry` are for reconnecting clients: not us.
            _ => {}
        }
        Ok(())
    }

    /// A blank line ends an event; one without data is no event.
    fn dispatch(&mut self, out: &mut VecDeque<SseEvent>) {
        let mut data = std::mem::take(&mut self.data);
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        data.pop(); // the `\n` after the last line
        out.push_back(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data,
        });
    }
}

/// What ended an upstream event stream early.
#[derive(Debug)]
pub enum SseError<E> {
    /// The connection failed.
    Transport(E),
    Invalid(Invalid),
}

impl<E: fmt::Display> fmt::Display for SseError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::Transport(error) => write!(f, "{error}"),
            SseError::Invalid(invalid) => write!(f, "not an event stream: {invalid}"),
        }
    }
}

/// The events of a body, as its pieces arrive. An event the body ends in
/// the middle of is not one (the spec drops it).
pub struct SseStream<S> {
    body: S,
    decoder: SseDecoder,
    ready: VecDeque<SseEvent>,
    /// What ends the stream once the events before it are out.
    failure: Option<Invalid>,
    ended: bool,
}

impl<S> SseStream<S> {
    pub fn new(body: S) -> SseStream<S> {
        SseStream {
            body,
            decoder: SseDecoder::new(),
            ready: VecDeque::new(),
            failure: None,
            ended: false,
        }
    }
}

impl<S, B, E> Stream for SseStream<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    type Item = Result<SseEvent, SseError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(invalid) = this.failure.take() {
                return Poll::Ready(Some(Err(SseError::Invalid(invalid))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match this.body.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    if let Err(invalid) = this.decoder.push(bytes.as_ref(), &mut this.ready) {
                        this.ended = true;
                        this.failure = Some(invalid);
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(SseError::Transport(error))));
                }
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests;
