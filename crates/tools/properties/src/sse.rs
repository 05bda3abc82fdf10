//! SSE bytes cut into network chunks and read through the router's own
//! framing ([`llmgw_router::provider::upstream_stream::sse_events`]).

use std::convert::Infallible;

use futures_util::{FutureExt as _, StreamExt as _};
use llmgw_router::provider::sse::SseEvent;
use llmgw_router::provider::upstream_stream::sse_events;

/// `bytes` cut into chunks of 1..=`max` bytes, sizes drawn from `seed`;
/// `max == 0` leaves it whole.
pub fn split(bytes: &[u8], max: u8, seed: u64) -> Vec<&[u8]> {
    if max == 0 {
        return vec![bytes];
    }
    // xorshift64: deterministic, so a failing input replays.
    let mut state = seed | 1;
    let mut chunks = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = (state % u64::from(max)) as usize + 1;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

/// The events of a body arriving as `chunks`, up to the framing error that
/// ends it (`true` if there was one), as the relay reads them.
pub fn read_events(chunks: &[&[u8]]) -> (Vec<SseEvent>, bool) {
    let body = futures_util::stream::iter(chunks.iter().map(|chunk| Ok::<_, Infallible>(*chunk)));
    let mut events = sse_events(body);
    let mut read = Vec::new();
    loop {
        match events.next().now_or_never() {
            Some(Some(Ok(event))) => read.push(event),
            Some(Some(Err(_))) => return (read, true),
            Some(None) => return (read, false),
            None => panic!("an in-memory body never makes the reader wait"),
        }
    }
}

/// What the edge writes for a chunk the router forwards, `data: {chunk}`
/// and a blank line, must read back as exactly that chunk: one event, the
/// same bytes. A line break in the chunk would split it for the client.
pub fn assert_frames_intact(chunk: &[u8]) {
    let mut frame = b"data: ".to_vec();
    frame.extend_from_slice(chunk);
    frame.extend_from_slice(b"\n\n");
    let (events, failed) = read_events(&[&frame]);
    assert!(!failed, "a forwarded chunk breaks SSE framing: {chunk:?}");
    assert_eq!(
        events.len(),
        1,
        "a forwarded chunk reads back as {} events: {:?}",
        events.len(),
        String::from_utf8_lossy(chunk)
    );
    assert_eq!(
        events[0].data,
        String::from_utf8_lossy(chunk),
        "a forwarded chunk changed"
    );
}
