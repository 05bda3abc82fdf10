//! Routing: load balancing, fallbacks, retries, circuit breakers, timeouts,
//! keep-alives, and Anthropic deployments.

use std::time::Duration;

use futures_util::StreamExt as _;
use llmgw::GatewayConfig;
use llmgw_router::{FallbackOn, Provider, Strategy};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::harness::{
    Gateway, chunks, content_of, deployment, error_of, mock_stats, model, request, start_mock,
};

/// A second and third mock upstream for a test, stopped when it ends.
struct Mocks {
    stop: CancellationToken,
}

impl Drop for Mocks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn two_mocks(
    fast: llmgw_mock_upstream::Config,
    slow: llmgw_mock_upstream::Config,
) -> (Mocks, String, String) {
    let stop = CancellationToken::new();
    let a = start_mock(fast, &stop).await;
    let b = start_mock(slow, &stop).await;
    (
        Mocks { stop },
        format!("http://{a}/v1"),
        format!("http://{b}/v1"),
    )
}

async fn requests_seen(client: &reqwest::Client, base_url: &str) -> u64 {
    let address = base_url
        .trim_start_matches("http://")
        .trim_end_matches("/v1");
    mock_stats(client, address.parse().expect("address")).await["requests_total"]
        .as_u64()
        .expect("count")
}

fn add_model(
    config: &mut GatewayConfig,
    alias: &str,
    adjust: impl FnOnce(&mut llmgw_router::ModelConfig),
) {
    let mut model = model(alias, String::new(), "");
    model.provider = None;
    model.base_url = None;
    model.upstream_model = None;
    adjust(&mut model);
    config.router.models.push(model);
}

#[tokio::test]
async fn weights_split_traffic() {
    let (_mocks, a, b) = two_mocks(Default::default(), Default::default()).await;
    let gateway = Gateway::start_with(|config| {
        add_model(config, "balanced", |model| {
            let mut heavy = deployment(Provider::Openai, &b, "mock");
            heavy.weight = 3;
            model.deployments = vec![deployment(Provider::Openai, &a, "mock"), heavy];
        });
    })
    .await;
    let total = 400;
    for _ in 0..total {
        assert_eq!(gateway.chat(request("balanced")).await.status(), 200);
    }
    let light = requests_seen(&gateway.client, &a).await;
    let heavy = requests_seen(&gateway.client, &b).await;
    assert_eq!(light + heavy, total);
    // Expected 100 : 300; five standard deviations is about ±43.
    assert!(
        (57..=143).contains(&light),
        "weight 1 got {light} of {total}"
    );
}

#[tokio::test]
async fn least_latency_prefers_the_fast_deployment_and_still_probes_the_slow_one() {
    let slow_config = llmgw_mock_upstream::Config {
        first_byte_latency_ms: 40,
        ..Default::default()
    };
    let (_mocks, fast, slow) = two_mocks(Default::default(), slow_config).await;
    let gateway = Gateway::start_with(|config| {
        add_model(config, "fastest", |model| {
            model.strategy = Strategy::LeastLatency;
            model.deployments = vec![
                deployment(Provider::Openai, &slow, "mock"),
                deployment(Provider::Openai, &fast, "mock"),
            ];
        });
    })
    .await;
    for _ in 0..200 {
        assert_eq!(gateway.chat(request("fastest")).await.status(), 200);
    }
    let fast = requests_seen(&gateway.client, &fast).await;
    let slow = requests_seen(&gateway.client, &slow).await;
    assert!(fast >= 160, "fast got {fast}, slow {slow}");
    assert!(slow >= 1, "the slow deployment was never probed");
}

fn with_fallback(config: &mut GatewayConfig, primary_upstream: &str) {
    let base = config.router.models[0].base_url.clone().expect("mock base");
    let mut primary = model("primary", base, primary_upstream);
    primary.fallbacks = vec!["mock".to_owned()];
    primary.fallback_on = Some(vec![
        FallbackOn::RateLimited,
        FallbackOn::Unavailable,
        FallbackOn::Timeout,
    ]);
    config.router.models.push(primary);
    config.router.retries.max_retries = 1;
    config.router.retries.initial_backoff_ms = 10;
}

#[tokio::test]
async fn failing_primary_falls_back() {
    for (fault, attempts) in [
        ("mock-fault-500", 2),
        ("mock-fault-429", 2),
        ("mock-fault-stall-first-byte", 2),
    ] {
        let gateway = Gateway::start_with(|config| with_fallback(config, fault)).await;
        for stream in [false, true] {
            let mut body = request("primary");
            body["stream"] = json!(stream);
            // A stalled primary is given up at its first-byte timeout: the
            // answer arriving at all (from the fallback, after the attempts
            // counted below) shows it. The deadline only keeps a hang from
            // stalling the suite; how long it took is the benchmarks' business.
            let response = tokio::time::timeout(Duration::from_secs(60), gateway.chat(body))
                .await
                .expect("the fallback answers");
            assert_eq!(response.status(), 200, "{fault} stream={stream}");
            let text = response.text().await.expect("body");
            assert!(
                text.contains("mock-upstream-model"),
                "{fault}: the answer comes from the fallback: {text}"
            );
        }
        let stats = gateway.mock_stats().await;
        // Per call: `attempts` on the primary, one on the fallback.
        assert_eq!(stats["requests_total"], 2 * (attempts + 1), "{fault}");
        let metrics = gateway.router_metrics().await;
        assert!(
            metrics.contains("llmgw_router_upstream_attempts_total"),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn errors_outside_fallback_on_are_returned_as_they_are() {
    let gateway = Gateway::start_with(|config| {
        with_fallback(config, "mock-fault-500");
        config.router.models[3].fallback_on = Some(vec![FallbackOn::RateLimited]);
    })
    .await;
    let (status, error) = error_of(gateway.chat(request("primary")).await).await;
    assert_eq!(status, 502);
    assert_eq!(error["code"], "upstream_error");
    assert_eq!(
        gateway.mock_stats().await["requests_total"],
        2,
        "one retry, no fallback"
    );
}

#[tokio::test]
async fn no_retry_once_bytes_reached_the_client() {
    let gateway = Gateway::start_with(|config| with_fallback(config, "mock-upstream-model")).await;
    let mut body = request("primary");
    body["stream"] = json!(true);
    body["mock"] = json!({"fault": "truncate", "chunks": 6});
    let (status, events) = gateway.stream(body).await;
    assert_eq!(status, 200);
    let chunks = chunks(&events);
    let (error, content) = chunks.split_last().expect("events");
    assert_eq!(error["error"]["code"], "upstream_error");
    assert_eq!(
        content_of(content).split_whitespace().count(),
        3,
        "no duplicated content"
    );
    assert_eq!(
        gateway.mock_stats().await["requests_total"],
        1,
        "not retried, no fallback"
    );
}

#[tokio::test]
async fn breaker_opens_probes_and_closes() {
    let gateway = Gateway::start_with(|config| {
        config.router.retries.max_retries = 0;
        config.router.breaker.consecutive_failures = 3;
        // Long enough that the five calls below all fall in the open
        // window however slow the machine (a window, not a bound).
        config.router.breaker.open_ms = 3_000;
    })
    .await;
    let failing = || {
        let mut body = request("mock");
        body["mock"] = json!({"fault": "500"});
        body
    };
    for _ in 0..3 {
        assert_eq!(gateway.chat(failing()).await.status(), 502);
    }
    // Open: refused at once, the upstream sees nothing.
    for _ in 0..5 {
        let (status, error) = error_of(gateway.chat(request("mock")).await).await;
        assert_eq!(status, 503);
        assert_eq!(error["code"], "service_unavailable");
    }
    assert_eq!(gateway.mock_stats().await["requests_total"], 3);
    assert!(
        gateway
            .router_metrics()
            .await
            .contains("llmgw_router_breaker_state{model=\"mock\"")
    );

    // After the cool-down (a lower bound), one failing probe opens it again...
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(gateway.chat(failing()).await.status(), 502);
    assert_eq!(gateway.chat(request("mock")).await.status(), 503);
    assert_eq!(gateway.mock_stats().await["requests_total"], 4);

    // ...and after the next one, a successful probe closes it.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(gateway.chat(request("mock")).await.status(), 200);
    for _ in 0..3 {
        assert_eq!(gateway.chat(request("mock")).await.status(), 200);
    }
    assert_eq!(gateway.mock_stats().await["requests_total"], 8);
}

#[tokio::test]
async fn a_slow_healthy_stream_is_never_cut() {
    // Chunks 2 s apart, the idle timeout three times that (a delayed chunk
    // on a busy machine is not a dead upstream), the whole far longer.
    let gateway = Gateway::start_with(|config| config.router.timeouts.idle_ms = 6_000).await;
    let mut body = request("mock");
    body["stream"] = json!(true);
    body["mock"] = json!({"chunks": 15, "chunk_delay_ms": 2_000});
    let (status, events) = gateway.stream(body).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(content_of(&chunks(&events)).split_whitespace().count(), 15);
}

#[tokio::test]
async fn keep_alive_comments_while_the_first_token_is_slow() {
    let gateway = Gateway::start_with(|config| {
        config.edge.sse_keepalive_secs = 1;
        config.router.timeouts.first_byte_ms = 10_000;
    })
    .await;
    let mut body = request("mock");
    body["stream"] = json!(true);
    // Keep-alives every second, the first token after 4.5 s: at least two
    // come first even if timers run late.
    body["mock"] = json!({"first_byte_latency_ms": 4_500, "chunks": 2});
    let response = gateway.chat(body).await;
    assert_eq!(response.status(), 200);
    let mut raw = String::new();
    let mut stream = response.bytes_stream();
    while let Some(bytes) = stream.next().await {
        raw.push_str(&String::from_utf8_lossy(&bytes.expect("bytes")));
    }
    let before_first_data = raw.split("data: ").next().unwrap_or_default();
    assert!(
        before_first_data.matches(": keep-alive\n\n").count() >= 2,
        "no keep-alives before the first token: {raw:?}"
    );
    assert!(raw.ends_with("data: [DONE]\n\n"));
}

fn with_anthropic(config: &mut GatewayConfig) {
    let base = config.router.models[0].base_url.clone().expect("mock base");
    let mut claude = model("claude", base, "claude-mock");
    claude.provider = Some(Provider::Anthropic);
    config.router.models.push(claude);
}

#[tokio::test]
async fn anthropic_deployments_answer_in_openai_format() {
    let gateway = Gateway::start_with(with_anthropic).await;
    let openai: Value = gateway
        .chat(request("mock"))
        .await
        .json()
        .await
        .expect("JSON");
    let claude: Value = gateway
        .chat(request("claude"))
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(claude["object"], "chat.completion");
    assert_eq!(claude["choices"][0]["finish_reason"], "stop");
    // The mock answers the same prompt with the same words in both protocols.
    assert_eq!(
        claude["choices"][0]["message"]["content"],
        openai["choices"][0]["message"]["content"]
    );
    assert_eq!(
        claude["usage"]["prompt_tokens"],
        openai["usage"]["prompt_tokens"]
    );
    assert_eq!(
        claude["usage"]["completion_tokens"],
        openai["usage"]["completion_tokens"]
    );
    let seen = &gateway.mock_stats().await["last_request"];
    assert_eq!(seen["body"]["model"], "claude-mock");
    assert!(
        seen["body"]["max_tokens"].is_u64(),
        "Anthropic requires max_tokens: {seen}"
    );

    let mut body = request("claude");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, events) = gateway.stream(body).await;
    assert_eq!(status, 200);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = chunks(&events);
    assert_eq!(
        content_of(&chunks),
        openai["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
    );
    assert!(
        chunks
            .iter()
            .any(|chunk| chunk["choices"][0]["finish_reason"] == "stop")
    );
    assert_eq!(
        chunks.last().expect("usage chunk")["usage"]["completion_tokens"],
        openai["usage"]["completion_tokens"]
    );
}

#[tokio::test]
async fn anthropic_errors_map_like_openai_ones() {
    let faults = [
        ("429", 429, "upstream_rate_limited"),
        ("529", 502, "upstream_error"),
        ("500", 502, "upstream_error"),
    ];
    let gateway = Gateway::start_with(|config| {
        config.router.retries.max_retries = 0;
        let base = config.router.models[0].base_url.clone().expect("mock base");
        // Anthropic rejects unknown fields, so the router drops the mock's
        // `mock` body field: the fault is chosen by the upstream model name.
        for (fault, _, _) in faults {
            let mut claude = model(
                &format!("claude-{fault}"),
                base.clone(),
                &format!("mock-fault-{fault}"),
            );
            claude.provider = Some(Provider::Anthropic);
            config.router.models.push(claude);
        }
    })
    .await;
    for (fault, status, code) in faults {
        for stream in [false, true] {
            let mut body = request(&format!("claude-{fault}"));
            body["stream"] = json!(stream);
            let (got, error) = error_of(gateway.chat(body).await).await;
            assert_eq!(got, status, "{fault} stream={stream}: {error}");
            assert_eq!(error["code"], code, "{fault} stream={stream}");
        }
    }
}

#[tokio::test]
async fn anthropic_tool_calls_come_back_as_openai_tool_calls() {
    let gateway = Gateway::start_with(with_anthropic).await;
    let mut body = request("claude");
    body["messages"] = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let answer: Value = gateway.chat(body.clone()).await.json().await.expect("JSON");
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    let call = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().expect("arguments"))
            .expect("JSON arguments");
    assert_eq!(arguments, json!({"city": "Paris"}));

    body["stream"] = json!(true);
    let (_, events) = gateway.stream(body).await;
    let chunks = chunks(&events);
    let streamed: String = chunks
        .iter()
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&streamed).expect("streamed arguments"),
        json!({"city": "Paris"})
    );
    assert!(
        chunks
            .iter()
            .any(|chunk| chunk["choices"][0]["finish_reason"] == "tool_calls")
    );
}
