//! The ledger bills Messages and embeddings calls as exactly as chat
//! (Postgres): one row per attempt with the client API, the tokens the
//! provider reported (a Messages answer's cache reads and writes
//! included), and the cost from the price table, cache prices applied;
//! embeddings rows bill input tokens only.

use std::collections::HashMap;
use std::time::Duration;

use llmgw_testdb::TestDatabase;
use serde_json::{Value, json};

use crate::accounts::scratch_dir;
use crate::harness::{Gateway, KEY};
use crate::ledger::{Billing, Ledger, Seen};
use crate::messages::{events, messages, protocol_models};

/// USD per million tokens of `claude` (see `messages::protocol_models`),
/// in nano-USD: input, output, cache read, cache write.
const CLAUDE: [u64; 4] = [3_000_000_000, 15_000_000_000, 300_000_000, 3_750_000_000];
/// `mock` (the harness's prices): input, output.
const MOCK: [u64; 2] = [150_000_000, 600_000_000];
/// `embed`: input.
const EMBED: u64 = 20_000_000;

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn seen(request_id: String) -> Seen {
    Seen {
        request_id,
        usage: None,
        cancelled: false,
    }
}

/// A Messages call; its request id and the usage the client was told.
async fn messages_call(gateway: &Gateway, body: Value) -> (String, Value) {
    let stream = body["stream"].as_bool().unwrap_or(false);
    let response = messages(gateway, &body).await;
    assert_eq!(response.status(), 200);
    let id = request_id(&response);
    let text = response.text().await.expect("body");
    let usage = if stream {
        let events = events(&text);
        // message_start holds the prompt's parts, message_delta the output
        // (and, re-encoded, everything).
        let mut usage = events[0].1["message"]["usage"].clone();
        let (_, end) = &events[events.len() - 2];
        for (field, value) in end["usage"].as_object().expect("usage") {
            usage[field] = value.clone();
        }
        usage
    } else {
        serde_json::from_str::<Value>(&text).expect("JSON")["usage"].clone()
    };
    (id, usage)
}

#[tokio::test]
async fn messages_and_embeddings_are_billed_exactly() {
    let database = TestDatabase::create("e2e_ledger_protocols")
        .await
        .expect("postgres reachable");
    let dir = scratch_dir("ledger-protocols");
    let billing = Billing::start(database.url(), &dir, None).await;
    let spool = dir.join("spool");
    let grpc = billing.grpc;
    let gateway = Gateway::start_with(move |config| {
        protocol_models(config);
        config.edge.billing_url = Some(format!("http://{grpc}"));
        config.router.usage.spool_dir = Some(spool);
        config.router.usage.flush_interval_ms = 5;
    })
    .await;

    // Native Anthropic, with prompt-cache usage (the mock's option travels
    // in the body, which goes upstream as it is), JSON and streamed; then
    // translated for the OpenAI-compatible `mock`.
    let cache = json!({"cache_read_tokens": 1000, "cache_write_tokens": 300});
    let mut calls = Vec::new();
    for (model, stream) in [
        ("claude", false),
        ("claude", true),
        ("mock", false),
        ("mock", true),
    ] {
        let mut body = json!({"model": model, "max_tokens": 64, "stream": stream,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": format!("Hello {model} {stream}")}]});
        if model == "claude" {
            body["mock"] = cache.clone();
        }
        let (id, usage) = messages_call(&gateway, body).await;
        calls.push((id, model, usage));
    }
    let response = gateway
        .client
        .post(gateway.url("/v1/embeddings"))
        .bearer_auth(KEY)
        .json(&json!({"model": "embed", "input": ["one two three", "four"]}))
        .send()
        .await
        .expect("edge");
    assert_eq!(response.status(), 200);
    let embed_id = request_id(&response);
    let embed_usage = response.json::<Value>().await.expect("JSON")["usage"].clone();

    let ledger = Ledger::at(billing.admin);
    let mut all: Vec<Seen> = calls.iter().map(|(id, ..)| seen(id.clone())).collect();
    all.push(seen(embed_id.clone()));
    let rows: HashMap<String, Vec<Value>> = ledger.wait_for(&all, Duration::from_secs(15)).await;
    assert_eq!(rows.len(), all.len(), "every request is in the ledger");

    for (id, model, usage) in &calls {
        let [row] = rows[id].as_slice() else {
            panic!("one attempt each: {:?}", rows[id]);
        };
        assert_eq!(row["api"], "messages", "{row}");
        assert_eq!(row["status"], "ok");
        assert_eq!(row["estimated"], false);
        let field = |name: &str| usage[name].as_u64().expect(name);
        let (input, read, write, output) = (
            field("input_tokens"),
            field("cache_read_input_tokens"),
            field("cache_creation_input_tokens"),
            field("output_tokens"),
        );
        // The ledger holds the whole prompt, and of it the cache's parts.
        assert_eq!(row["prompt_tokens"], input + read + write, "{row}");
        assert_eq!(row["cached_tokens"], read);
        assert_eq!(row["cache_creation_tokens"], write);
        assert_eq!(row["completion_tokens"], output);
        let cost = if *model == "claude" {
            assert_eq!((read, write), (1000, 300), "the mock's cache usage");
            assert_eq!(row["cache_read_price_per_mtok"], "0.30");
            assert_eq!(row["cache_write_price_per_mtok"], "3.75");
            llmgw_usd::cost_nano_usd(input, CLAUDE[0])
                + llmgw_usd::cost_nano_usd(read, CLAUDE[2])
                + llmgw_usd::cost_nano_usd(write, CLAUDE[3])
                + llmgw_usd::cost_nano_usd(output, CLAUDE[1])
        } else {
            assert_eq!((read, write), (0, 0));
            llmgw_usd::cost_nano_usd(input, MOCK[0]) + llmgw_usd::cost_nano_usd(output, MOCK[1])
        };
        assert_eq!(row["cost_nano_usd"], cost, "{row}");
    }

    let [row] = rows[&embed_id].as_slice() else {
        panic!("one attempt: {:?}", rows[&embed_id]);
    };
    assert_eq!(row["api"], "embeddings");
    let prompt = embed_usage["prompt_tokens"]
        .as_u64()
        .expect("prompt_tokens");
    // ceil(13 / 4) + ceil(4 / 4): the mock's count.
    assert_eq!(prompt, 5);
    assert_eq!(row["prompt_tokens"], prompt);
    assert_eq!(row["completion_tokens"], 0, "input tokens only");
    assert_eq!(
        row["cost_nano_usd"],
        llmgw_usd::cost_nano_usd(prompt, EMBED)
    );
    billing.stop().await;
}
