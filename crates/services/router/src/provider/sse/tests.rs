use std::collections::VecDeque;
use std::convert::Infallible;

use futures_util::{FutureExt as _, StreamExt as _};

use super::*;

fn event(event: &str, data: &str) -> SseEvent {
    SseEvent {
        event: event.to_owned(),
        data: data.to_owned(),
    }
}

/// The events of `pieces` fed one by one, and the error that ended them.
fn decode(pieces: &[&[u8]]) -> (Vec<SseEvent>, Option<Invalid>) {
    let body = futures_util::stream::iter(pieces.iter().map(|piece| Ok::<_, Infallible>(*piece)));
    let mut stream = SseStream::new(body);
    let mut events = Vec::new();
    loop {
        match stream.next().now_or_never().expect("never waits") {
            Some(Ok(event)) => events.push(event),
            Some(Err(SseError::Invalid(invalid))) => return (events, Some(invalid)),
            Some(Err(SseError::Transport(never))) => match never {},
            None => return (events, None),
        }
    }
}

/// Every way of cutting `body` in two reads the same as the whole.
fn same_at_every_cut(body: &[u8]) -> (Vec<SseEvent>, Option<Invalid>) {
    let whole = decode(&[body]);
    for cut in 0..=body.len() {
        assert_eq!(decode(&[&body[..cut], &body[cut..]]), whole, "cut at {cut}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(decode(&bytes), whole, "byte by byte");
    whole
}

#[test]
fn fields_comments_and_line_ends() {
    let body = b": keep-alive\n\ndata: a\r\ndata:b\rdata:  c\n\nevent: ping\ndata\nid: 7\nretry: 5\n\nevent: gone\n\n";
    let (events, failed) = same_at_every_cut(body);
    assert_eq!(failed, None);
    assert_eq!(events, [event("message", "a\nb\n c"), event("ping", "")]);
}

/// Regression (property tests): `eventsource-stream` panicked on a body starting
/// with a byte order mark, whole or cut anywhere, once or twice.
#[test]
fn a_leading_byte_order_mark_is_dropped_once() {
    let (events, failed) = same_at_every_cut("\u{feff}data: x\n\n".as_bytes());
    assert_eq!((events, failed), (vec![event("message", "x")], None));
    // A second one is part of the first field's name: an unknown field.
    let (events, failed) = same_at_every_cut("\u{feff}\u{feff}data: x\n\ndata: y\n\n".as_bytes());
    assert_eq!((events, failed), (vec![event("message", "y")], None));
    // Half a BOM is not one: those bytes are not UTF-8.
    assert_eq!(
        decode(&[b"\xEF\xBBdata: x\n\n"]),
        (vec![], Some(Invalid::Utf8))
    );
}

#[test]
fn an_unfinished_event_is_not_an_event() {
    assert_eq!(
        same_at_every_cut(b"data: a\n\ndata: b\n"),
        (vec![event("message", "a")], None)
    );
}

/// Bad UTF-8 ends the stream at once, after the events before it (the old
/// reader kept every byte after it until the body ended).
#[test]
fn invalid_utf8_ends_the_stream_after_the_events_before_it() {
    let (events, failed) = same_at_every_cut(b"data: a\n\ndata: \xff\n\ndata: c\n\n");
    assert_eq!(
        (events, failed),
        (vec![event("message", "a")], Some(Invalid::Utf8))
    );
    // A character cut across pieces is fine.
    let text = "data: é🦀\n\n".as_bytes();
    assert_eq!(
        same_at_every_cut(text),
        (vec![event("message", "é🦀")], None)
    );
}

#[test]
fn an_endless_line_or_event_is_refused() {
    let mut decoder = SseDecoder::new();
    let mut out = VecDeque::new();
    let piece = vec![b'x'; 1 << 20];
    let mut result = Ok(());
    for _ in 0..=MAX_EVENT_BYTES >> 20 {
        result = decoder.push(&piece, &mut out);
    }
    assert_eq!(result, Err(Invalid::TooLarge));
    let mut decoder = SseDecoder::new();
    let line = [b"data: ".as_slice(), &piece, b"\n"].concat();
    let mut result = Ok(());
    for _ in 0..=MAX_EVENT_BYTES >> 20 {
        result = decoder.push(&line, &mut out);
    }
    assert_eq!(result, Err(Invalid::TooLarge));
    assert!(out.is_empty());
}
