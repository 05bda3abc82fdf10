//! What routing costs in CPU, per request and per chunk (no I/O):
//! `cargo bench -p llmgw-router`. Prints nanoseconds per operation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use llmgw_router::microbench::{ChunkMeter, Fixture};
use llmgw_router::{DeploymentConfig, ModelConfig, Provider, Strategy};

fn deployment(provider: Provider, weight: u32) -> DeploymentConfig {
    DeploymentConfig {
        provider,
        base_url: "http://127.0.0.1:9/v1".to_owned(),
        upstream_model: "bench".to_owned(),
        api_key_env: None,
        weight,
        priority: 0,
        timeouts: None,
    }
}

fn model(alias: &str, strategy: Strategy, deployments: Vec<DeploymentConfig>) -> ModelConfig {
    ModelConfig {
        alias: alias.to_owned(),
        strategy,
        deployments,
        ..ModelConfig::default()
    }
}

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
    println!("{name:<58} {ns:>9.0} ns");
}

const REQUEST: &str = r#"{"model":"bench","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64,"temperature":0.7,"stream":true}"#;
const OPENAI_CHUNK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"bench","choices":[{"index":0,"delta":{"content":"hello "},"finish_reason":null}],"usage":null}"#;
const ANTHROPIC_DELTA: &str =
    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello "}}"#;

fn main() -> anyhow::Result<()> {
    let openai = Provider::Openai;
    let mut fixture = Fixture::new(&[
        model("one", Strategy::Weighted, vec![deployment(openai, 1)]),
        model(
            "four-weighted",
            Strategy::Weighted,
            (1..=4).map(|w| deployment(openai, w)).collect(),
        ),
        model(
            "four-latency",
            Strategy::LeastLatency,
            (1..=4).map(|w| deployment(openai, w)).collect(),
        ),
        model(
            "claude",
            Strategy::Weighted,
            vec![deployment(Provider::Anthropic, 1)],
        ),
    ])?;
    println!("per request");
    for alias in ["one", "four-weighted", "four-latency"] {
        measure(&format!("  routing decision, {alias}"), || {
            black_box(fixture.decide(alias).ok());
        });
    }
    let body = REQUEST.as_bytes();
    measure(
        "  request body, OpenAI-compatible (rewrite model, usage)",
        || {
            black_box(fixture.build_request("one", body, true).ok());
        },
    );
    measure("  request body, Anthropic (translate)", || {
        black_box(fixture.build_request("claude", body, true).ok());
    });

    println!("per chunk");
    let mut meter = ChunkMeter::default();
    let chunk = Bytes::from_static(OPENAI_CHUNK.as_bytes());
    measure("  OpenAI chunk: parse view, account", || {
        black_box(meter.openai_chunk(&chunk).ok());
    });
    let mut meter = ChunkMeter::default();
    meter.anthropic_event(
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"bench","content":[],"stop_reason":null,"usage":{"input_tokens":10,"output_tokens":1}}}"#,
    )?;
    meter.anthropic_event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    )?;
    measure(
        "  Anthropic text delta: translate, parse view, account",
        || {
            black_box(
                meter
                    .anthropic_event("content_block_delta", ANTHROPIC_DELTA)
                    .ok(),
            );
        },
    );
    Ok(())
}
