//! What serving Anthropic Messages clients costs in CPU, per request and
//! per chunk (no I/O): `cargo bench -p llmgw-router --bench messages`.
//! Prints nanoseconds per operation. Three paths, as the relay runs them:
//!
//! - native: a Messages client of an Anthropic deployment. The body gets
//!   its model replaced; each streamed event is read for accounting and
//!   forwarded as it came.
//! - translated: a Messages client of an OpenAI-compatible deployment. The
//!   request is translated to chat completions; each OpenAI chunk is
//!   accounted and re-encoded as Anthropic events.
//! - round trip: a Messages client of an Anthropic deployment whose tenant
//!   has a policy on answers. Each Anthropic event is translated into
//!   OpenAI chunks (which the policy reads), then re-encoded.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use llmgw_proto::router_v1::Usage;
use llmgw_router::Tally;
use llmgw_router::provider::anthropic::StreamTranslator;
use llmgw_router::provider::anthropic::inbound::{
    MessagesEncoder, completion_to_message, to_chat_request,
};
use llmgw_router::provider::anthropic::native::{self, NativeStream};
use llmgw_router::provider::chat_chunk::ChunkView;

/// Runs `op` for about a second and prints the time per call.
fn measure(name: &str, mut op: impl FnMut()) {
    for _ in 0..1_000 {
        op();
    }
    let mut calls = 0u64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..1_000 {
            op();
        }
        calls += 1_000;
    }
    let ns = started.elapsed().as_nanos() as f64 / calls as f64;
    println!("{name:<62} {ns:>9.0} ns");
}

/// A Claude Code-like request: a system prompt in blocks with cache
/// control, a tool, a tool round trip and a question.
const REQUEST: &str = r#"{"model":"claude","max_tokens":1024,"stream":true,
"system":[{"type":"text","text":"You are a coding assistant. Be terse."},{"type":"text","text":"Project rules: write tests first.","cache_control":{"type":"ephemeral"}}],
"tools":[{"name":"read_file","description":"Reads a file","input_schema":{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}}],
"messages":[{"role":"user","content":"What does main.rs do?"},
{"role":"assistant","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_1","name":"read_file","input":{"path":"src/main.rs"}}]},
{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"fn main() { println!(\"hello\"); }"},{"type":"text","text":"Explain it."}]}]}"#;

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-up","choices":[{"index":0,"message":{"role":"assistant","content":"It prints hello and exits."},"finish_reason":"stop"}],"usage":{"prompt_tokens":120,"completion_tokens":8,"total_tokens":128,"prompt_tokens_details":{"cached_tokens":64}}}"#;

const MESSAGE: &str = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"It prints hello and exits."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":56,"cache_creation_input_tokens":0,"cache_read_input_tokens":64,"output_tokens":8}}"#;

const ANTHROPIC_DELTA: &str =
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello "}}"#;
const OPENAI_CHUNK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-up","choices":[{"index":0,"delta":{"content":"hello "},"finish_reason":null}]}"#;

/// What the relay does per OpenAI chunk for a Messages client: account it,
/// then re-encode it.
fn account_and_encode(
    tally: &mut Tally,
    encoder: &mut MessagesEncoder,
    chunk: &[u8],
    out: &mut Vec<Bytes>,
) -> anyhow::Result<usize> {
    let view: ChunkView = serde_json::from_slice(chunk)?;
    tally.observe(&view);
    out.clear();
    encoder.on_chunk(chunk, out);
    Ok(out.len())
}

fn main() -> anyhow::Result<()> {
    let body = REQUEST.as_bytes();
    println!("per request");
    measure("  native: request body (replace the model)", || {
        black_box(native::build_request(black_box(body), "claude-sonnet-4-5").ok());
    });
    measure(
        "  translated: request body (Messages -> chat completions)",
        || {
            black_box(to_chat_request(black_box(body), "gpt-up", true).ok());
        },
    );
    measure("  native: read a whole answer (usage, stop reason)", || {
        black_box(native::read_message(black_box(MESSAGE.as_bytes())).ok());
    });
    measure(
        "  translated: whole answer (chat.completion -> message)",
        || {
            black_box(completion_to_message(black_box(COMPLETION.as_bytes())).ok());
        },
    );
    let mut encoder = MessagesEncoder::new();
    let mut frames = Vec::new();
    measure(
        "  translated stream: first chunk to finish (message_start..stop)",
        || {
            encoder = MessagesEncoder::new();
            frames.clear();
            encoder.on_chunk(OPENAI_CHUNK.as_bytes(), &mut frames);
            encoder.finish(&Usage::default(), &mut frames);
            black_box(frames.len());
        },
    );

    println!("per chunk");
    let mut stream = NativeStream::new();
    let mut generated = String::new();
    measure("  native: text delta, read and framed", || {
        generated.clear();
        black_box(
            stream
                .on_event(
                    "content_block_delta",
                    black_box(ANTHROPIC_DELTA),
                    &mut generated,
                )
                .ok(),
        );
    });

    let mut tally = Tally::default();
    let mut encoder = MessagesEncoder::new();
    let mut out = Vec::new();
    account_and_encode(&mut tally, &mut encoder, OPENAI_CHUNK.as_bytes(), &mut out)?;
    measure(
        "  translated: OpenAI chunk, accounted and re-encoded",
        || {
            black_box(
                account_and_encode(&mut tally, &mut encoder, OPENAI_CHUNK.as_bytes(), &mut out)
                    .ok(),
            );
        },
    );

    let mut translator = StreamTranslator::new("claude-sonnet-4-5");
    let mut tally = Tally::default();
    let mut encoder = MessagesEncoder::new();
    let start = r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":{"input_tokens":10,"output_tokens":1}}}"#;
    for chunk in translator
        .on_event("message_start", start)
        .map_err(|error| anyhow::anyhow!(error.message))?
        .chunks
    {
        account_and_encode(&mut tally, &mut encoder, &chunk, &mut out)?;
    }
    measure(
        "  round trip: Anthropic delta -> OpenAI chunk -> Anthropic",
        || {
            let translated = translator.on_event("content_block_delta", ANTHROPIC_DELTA);
            for chunk in translated.map(|t| t.chunks).unwrap_or_default() {
                black_box(account_and_encode(&mut tally, &mut encoder, &chunk, &mut out).ok());
            }
        },
    );
    Ok(())
}
