//! What routing costs in CPU, per request and per chunk (no I/O):
//! `cargo bench -p llmgw-router`. Prints nanoseconds per operation. Every
//! step calls the functions the router runs per call (the catalog, the
//! balancer, the breaker, the providers' request builders, the Anthropic
//! stream translator, the chunk tally, the output policy scan), through the
//! crate's public API.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use llmgw_policy::{Policy, PolicySpec};
use llmgw_router::catalog::{Catalog, Defaults, Route};
use llmgw_router::provider::anthropic::StreamTranslator;
use llmgw_router::provider::chat_chunk::ChunkView;
use llmgw_router::{
    BreakerConfig, ClientApi, DeploymentConfig, Metrics, ModelConfig, OutputScan, Provider,
    Strategy, Tally, Timeouts, Verdict, provider, tokens,
};

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

/// Resident memory of this process, from `/proc/self/status` (Linux only).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

const ENGLISH: &str = "When a provider does not report usage, or the client goes away in the middle of a stream, the router still has to account for the tokens it relayed. It counts them with the same byte pair encoding the model uses, so that quotas and bills stay close to what the provider would have charged. ";

/// Token estimates: the first call of each BPE (which loads it), then the
/// steady-state cost. Runs before anything else can load a BPE.
fn token_estimates() {
    println!("token estimates");
    for (encoding, model) in [("o200k_base", "gpt-4o"), ("cl100k_base", "gpt-4")] {
        let before = rss_kib();
        let started = Instant::now();
        black_box(tokens::text_tokens(model, black_box("hello world")));
        let elapsed = started.elapsed();
        let grown = match (before, rss_kib()) {
            (Some(before), Some(after)) => {
                format!("{:.1} MB", after.saturating_sub(before) as f64 / 1024.0)
            }
            _ => "n/a".to_owned(),
        };
        println!(
            "  first call, loads {encoding:<12} {:>8.1} ms, RSS +{grown}",
            elapsed.as_secs_f64() * 1e3
        );
    }
    let text: String = ENGLISH.chars().cycle().take(1_000).collect();
    for (encoding, model) in [("o200k_base", "gpt-4o"), ("cl100k_base", "gpt-4")] {
        let tokens = tokens::text_tokens(model, &text);
        measure(
            &format!("  text_tokens, 1,000 chars of English ({tokens} tokens, {encoding})"),
            || {
                black_box(tokens::text_tokens(model, black_box(&text)));
            },
        );
    }
    let tokens = tokens::prompt_tokens("gpt-4o", REQUEST.as_bytes());
    measure(
        &format!("  prompt_tokens, the request body below ({tokens} tokens)"),
        || {
            black_box(tokens::prompt_tokens(
                "gpt-4o",
                black_box(REQUEST.as_bytes()),
            ));
        },
    );
}

/// The routing decision every request makes before its first call, as the
/// relay makes it: resolve the alias, order its deployments, take a breaker
/// permit from the first.
fn decide(catalog: &Catalog, alias: &str, rng: &mut fastrand::Rng) -> Option<usize> {
    let route = catalog.resolve(alias)?;
    let first = route.deployment_order(rng).first().copied()?;
    if let Some(permit) = route.deployments[first].breaker.try_acquire() {
        permit.success();
    }
    Some(first)
}

/// The upstream request body for the first deployment of `route`.
fn build_request(route: &Route, client_body: &[u8]) -> Option<usize> {
    provider::build_request(ClientApi::Chat, client_body, &route.deployments[0], true)
        .ok()
        .map(|request| request.body.len())
}

/// Per-chunk work of the relay: read the chunk's view and account it.
fn account(tally: &mut Tally, chunk: &[u8]) -> anyhow::Result<()> {
    let view: ChunkView = serde_json::from_slice(chunk)?;
    tally.observe(&view);
    Ok(())
}

/// [`account`], then the content policy's scan: what the relay does per
/// chunk when the tenant's policy checks answers.
fn account_and_scan(
    tally: &mut Tally,
    scan: &mut OutputScan,
    chunk: &Bytes,
) -> anyhow::Result<usize> {
    let view: ChunkView = serde_json::from_slice(chunk)?;
    tally.observe(&view);
    let verdict = scan
        .chunk(chunk, &view)
        .map_err(|error| anyhow::anyhow!(error.message))?;
    Ok(match verdict {
        Verdict::Pass => 1,
        Verdict::Replace(chunks) => chunks.len(),
    })
}

/// A policy on answers: `terms` generated terms (half English, half
/// Chinese; none occurs in the benchmark's chunks) blocked, and every
/// data-leak detector redacting.
fn answer_policy(terms: usize) -> anyhow::Result<Arc<Policy>> {
    let mut rng = fastrand::Rng::with_seed(12);
    let words: Vec<String> = (0..terms)
        .map(|i| {
            if i % 2 == 0 {
                format!("forbidden-{i:06}")
            } else {
                (0..3 + i % 3)
                    .map(|_| char::from_u32(rng.u32(0x4E00..0x9FA5)).unwrap_or('词'))
                    .collect()
            }
        })
        .collect();
    let mut rules = vec![serde_json::json!({"id": "terms", "kind": "words",
        "direction": "output", "action": "block", "word_lists": ["terms"]})];
    for kind in [
        "email",
        "phone",
        "resident_id",
        "bank_card",
        "ipv4",
        "secret",
    ] {
        rules.push(
            serde_json::json!({"id": kind, "kind": kind, "direction": "output",
            "action": "redact"}),
        );
    }
    let spec: PolicySpec = serde_json::from_value(serde_json::json!({ "rules": rules }))?;
    let lists = BTreeMap::from([("terms".to_owned(), words)]);
    Ok(Arc::new(Policy::compile(
        "bench",
        &spec,
        &lists,
        b"bench-key",
    )?))
}

/// An Anthropic event, translated into OpenAI chunks that are accounted.
fn translate(
    translator: &mut StreamTranslator,
    tally: &mut Tally,
    event: &str,
    data: &str,
) -> anyhow::Result<usize> {
    let translated = translator
        .on_event(event, data)
        .map_err(|error| anyhow::anyhow!(error.message))?;
    for chunk in &translated.chunks {
        account(tally, chunk)?;
    }
    Ok(translated.chunks.len())
}

fn main() -> anyhow::Result<()> {
    token_estimates();
    let openai = Provider::Openai;
    let metrics = Metrics::new();
    let defaults = Defaults {
        timeouts: Timeouts::default(),
        breaker: &BreakerConfig::default(),
        metrics: &metrics,
    };
    let catalog = Catalog::from_config(
        &[
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
        ],
        &defaults,
    )?;
    let route = |alias: &str| {
        catalog
            .resolve(alias)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no model {alias}"))
    };
    let mut rng = fastrand::Rng::with_seed(7);
    println!("per request");
    for alias in ["one", "four-weighted", "four-latency"] {
        measure(&format!("  routing decision, {alias}"), || {
            black_box(decide(&catalog, alias, &mut rng));
        });
    }
    let body = REQUEST.as_bytes();
    let one = route("one")?;
    measure(
        "  request body, OpenAI-compatible (rewrite model, usage)",
        || {
            black_box(build_request(&one, body));
        },
    );
    let claude = route("claude")?;
    measure("  request body, Anthropic (translate)", || {
        black_box(build_request(&claude, body));
    });

    println!("per chunk");
    let mut tally = Tally::default();
    let chunk = Bytes::from_static(OPENAI_CHUNK.as_bytes());
    measure("  OpenAI chunk: parse view, account", || {
        black_box(account(&mut tally, &chunk).ok());
    });
    for terms in [1_000, 50_000] {
        let policy = answer_policy(terms)?;
        let mut tally = Tally::default();
        let mut scan = OutputScan::new(policy.clone());
        measure(
            &format!(
                "  OpenAI chunk: the same, and the output scan ({terms} terms + detectors, no hit)"
            ),
            || {
                black_box(account_and_scan(&mut tally, &mut scan, &chunk).ok());
            },
        );
        let mut tally = Tally::default();
        let mut scan = OutputScan::new(policy);
        let leak = Bytes::from(OPENAI_CHUNK.replace("hello ", "mail ops@example.com "));
        measure(
            &format!("  OpenAI chunk with an e-mail: parse, account, scan, redact ({terms} terms)"),
            || {
                black_box(account_and_scan(&mut tally, &mut scan, &leak).ok());
            },
        );
    }
    let mut tally = Tally::default();
    let mut translator = StreamTranslator::new("bench");
    translate(
        &mut translator,
        &mut tally,
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"bench","content":[],"stop_reason":null,"usage":{"input_tokens":10,"output_tokens":1}}}"#,
    )?;
    translate(
        &mut translator,
        &mut tally,
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    )?;
    measure(
        "  Anthropic text delta: translate, parse view, account",
        || {
            black_box(
                translate(
                    &mut translator,
                    &mut tally,
                    "content_block_delta",
                    ANTHROPIC_DELTA,
                )
                .ok(),
            );
        },
    );
    Ok(())
}
