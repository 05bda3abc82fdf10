//! An upstream's streamed answer read as OpenAI chunks: the SSE framing of
//! the body, then per event the chunk(s) it stands for (an OpenAI chunk as
//! it came, an Anthropic event translated). The relay reads it from the
//! network; the fuzz targets and property tests feed it bytes, so both run
//! exactly this code.

use bytes::Bytes;
use futures_util::Stream;

use super::ProviderError;
use super::anthropic::{StreamTranslator, Translated};
use super::sse::{SseEvent, SseStream};
use crate::config::Provider;

/// The SSE events of an upstream body, whatever its chunking.
pub fn sse_events<S, B, E>(body: S) -> SseStream<S>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    SseStream::new(body)
}

/// Turns one call's events into OpenAI chunks; create one per call.
#[derive(Debug)]
pub struct StreamDecoder {
    /// Anthropic events become OpenAI chunks; OpenAI ones pass as they are.
    translator: Option<StreamTranslator>,
}

impl StreamDecoder {
    /// `model` is what translated chunks report (the client's view of it).
    pub fn new(provider: Provider, model: &str) -> StreamDecoder {
        let translator = match provider {
            Provider::Openai => None,
            Provider::Anthropic => Some(StreamTranslator::new(model)),
        };
        StreamDecoder { translator }
    }

    /// The chunks `event` stands for, and whether the upstream said the
    /// answer is complete (`[DONE]`, `message_stop`).
    pub fn decode(&mut self, event: SseEvent) -> Result<Translated, ProviderError> {
        match &mut self.translator {
            None if event.data == "[DONE]" => Ok(Translated {
                chunks: Vec::new(),
                done: true,
            }),
            None => Ok(Translated {
                chunks: vec![one_line(event.data)],
                done: false,
            }),
            Some(translator) => translator.on_event(&event.event, &event.data),
        }
    }
}

/// A chunk spread over several `data:` lines arrives with line breaks in
/// it, which the edge's `data: {chunk}` framing would turn into lines of
/// their own: the client would read `{` and lose the rest. In valid JSON a
/// line break can only be whitespace between tokens (inside a string it
/// must be escaped), so it becomes a space. Invalid JSON is left as it is,
/// for the relay to refuse.
fn one_line(data: String) -> Bytes {
    let breaks = |c| c == '\n' || c == '\r';
    if !data.contains(breaks) || serde_json::from_str::<serde::de::IgnoredAny>(&data).is_err() {
        return Bytes::from(data);
    }
    Bytes::from(data.replace(breaks, " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai(data: &str) -> Translated {
        StreamDecoder::new(Provider::Openai, "m")
            .decode(SseEvent {
                event: "message".to_owned(),
                data: data.to_owned(),
            })
            .expect("decodes")
    }

    /// Regression (property tests): a chunk sent over several `data:`
    /// lines reached the client as `{` alone, its line breaks framed by the
    /// edge as lines of their own.
    #[test]
    fn a_chunk_over_several_lines_is_forwarded_on_one() {
        let decoded = openai("{\n  \"choices\": [],\r\n  \"x\": \"a\\nb\"\n}");
        assert_eq!(
            decoded.chunks,
            ["{   \"choices\": [],    \"x\": \"a\\nb\" }"]
        );
        // Not JSON: left alone, for the relay to refuse.
        assert_eq!(openai("{\n\"a").chunks, ["{\n\"a"]);
        assert!(openai("[DONE]").done);
    }
}
