//! An OpenAI-compatible upstream's stream, as the relay reads it: SSE
//! framing, `[DONE]`, each chunk parsed for accounting ([`Tally`]).
//!
//! Properties: any cut of the body into network chunks reads as the same
//! events; nothing panics; every chunk the router would forward reaches the
//! client intact through the edge's framing.

use llmgw_router::Provider;
use llmgw_router::Tally;
use llmgw_router::provider::chat_chunk::ChunkView;
use llmgw_router::provider::upstream_stream::StreamDecoder;

use crate::Input;
use crate::sse::{assert_frames_intact, read_events, split};

/// Input: chunk size bound, split seed, then the upstream body.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let max = input.byte();
    let seed = u64::from(input.u16());
    let body = input.rest();
    let whole = read_events(&[body]);
    let cut = read_events(&split(body, max, seed));
    assert_eq!(
        whole, cut,
        "the same body cut differently reads differently"
    );
    relay(&cut.0);
}

/// What the relay makes of the events: the chunks it would forward, and
/// the tally of the answer.
pub fn relay(events: &[llmgw_router::provider::sse::SseEvent]) -> (Vec<Vec<u8>>, Tally) {
    let mut decoder = StreamDecoder::new(Provider::Openai, "gpt-alias");
    let mut tally = Tally::default();
    let mut forwarded = Vec::new();
    for event in events {
        let Ok(decoded) = decoder.decode(event.clone()) else {
            break;
        };
        for chunk in decoded.chunks {
            // Not JSON: the relay ends the answer with an upstream error.
            let Ok(view) = serde_json::from_slice::<ChunkView>(&chunk) else {
                return (forwarded, tally);
            };
            tally.observe(&view);
            assert_frames_intact(&chunk);
            forwarded.push(chunk.to_vec());
        }
        if decoded.done {
            break;
        }
    }
    (forwarded, tally)
}
