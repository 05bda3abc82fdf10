//! An Anthropic upstream's answer, streamed (events translated into OpenAI
//! chunks) and whole (a Messages response into a `chat.completion`).
//!
//! Properties: nothing panics; every translated chunk is an OpenAI
//! `chat.completion.chunk` that reaches the client intact through the
//! edge's framing; a translated completion is an OpenAI `chat.completion`;
//! a failure is an upstream error, never a client or internal one.

use llmgw_openai::{ChatCompletion, ChatCompletionChunk};
use llmgw_proto::ErrorCode;
use llmgw_router::Provider;
use llmgw_router::provider::ProviderError;
use llmgw_router::provider::anthropic::completion_to_openai;
use llmgw_router::provider::chat_chunk::ChunkView;
use llmgw_router::provider::upstream_stream::StreamDecoder;

use crate::Input;
use crate::sse::{assert_frames_intact, read_events, split};

/// Input: chunk size bound, split seed, then the upstream body (read both
/// as a stream and as a whole response).
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let max = input.byte();
    let seed = u64::from(input.u16());
    let body = input.rest();
    let (events, _) = read_events(&split(body, max, seed));
    translate(&events);
    if let Ok(completion) = completion_to_openai(body, "claude-alias") {
        let _: ChatCompletion = serde_json::from_slice(&completion)
            .unwrap_or_else(|error| panic!("not a chat.completion ({error}): {completion:?}"));
    }
}

/// The chunks the events become, up to the error that ends the answer, and
/// whether the upstream said it was complete.
pub fn translate(
    events: &[llmgw_router::provider::sse::SseEvent],
) -> (Vec<ChatCompletionChunk>, bool) {
    let mut decoder = StreamDecoder::new(Provider::Anthropic, "claude-alias");
    let mut chunks = Vec::new();
    for event in events {
        let decoded = match decoder.decode(event.clone()) {
            Ok(decoded) => decoded,
            Err(error) => {
                assert_upstream_fault(&error);
                return (chunks, false);
            }
        };
        for chunk in decoded.chunks {
            let parsed: ChatCompletionChunk = serde_json::from_slice(&chunk)
                .unwrap_or_else(|error| panic!("not a chat.completion.chunk ({error}): {chunk:?}"));
            serde_json::from_slice::<ChunkView>(&chunk).expect("the relay reads the chunk");
            assert_frames_intact(&chunk);
            chunks.push(parsed);
        }
        if decoded.done {
            return (chunks, true);
        }
    }
    (chunks, false)
}

/// Garbage from an upstream is the upstream's fault, except for the
/// client-facing errors Anthropic reports about the request itself.
fn assert_upstream_fault(error: &ProviderError) {
    assert!(
        matches!(
            error.code,
            ErrorCode::UpstreamError
                | ErrorCode::UpstreamTimeout
                | ErrorCode::UpstreamRateLimited
                | ErrorCode::InvalidRequest
                | ErrorCode::ContextLengthExceeded
                | ErrorCode::RequestTooLarge
        ),
        "{error:?}"
    );
    assert!(!error.message.is_empty());
}
