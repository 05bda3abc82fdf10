//! The official Anthropic Python SDK against `llmgw all`: Messages JSON and
//! streamed (text, tool use, thinking), count_tokens, models, and errors
//! raised as the SDK's own exception classes, once against an Anthropic
//! deployment (passed through) and once against an OpenAI-compatible one
//! (translated). And the official OpenAI SDK's embeddings, float and
//! base64.

use std::net::SocketAddr;

use super::child::{Proc, TempDir, free_ports, wait_ready};
use super::gateway::{LLMGW, LOGS};
use super::sdk::{run_sdk_script, sdk_python};
use crate::harness::{self, KEY};

/// `llmgw all` serving the mock under every alias the scripts use: for
/// each upstream format a model, a reasoning model, one that is rate
/// limited, one that fails, and one whose streams are cut; and `embed`.
fn protocols_yaml(edge: SocketAddr, router: SocketAddr, mock: SocketAddr) -> String {
    let mut models = String::new();
    for (prefix, provider) in [("", "openai"), ("claude-", "anthropic")] {
        for (name, upstream) in [
            ("model", "mock"),
            ("reasoner", "mock-reasoner"),
            ("429", "mock-fault-429"),
            ("500", "mock-fault-500"),
            ("cut", "mock-fault-truncate"),
        ] {
            models.push_str(&format!(
                "    - {{alias: \"{prefix}{name}\", provider: {provider}, base_url: \"http://{mock}/v1\", upstream_model: {upstream}}}\n"
            ));
        }
    }
    models.push_str(&format!(
        "    - {{alias: embed, provider: openai, base_url: \"http://{mock}/v1\", upstream_model: text-embedding-mock, apis: [embeddings]}}\n"
    ));
    format!(
        "telemetry: {{{LOGS}}}\n\
         edge:\n  \
           listen: \"{edge}\"\n  \
           router_url: \"http://{router}\"\n  \
           api_keys:\n    \
             - {{key: \"{KEY}\", tenant: \"team-a\", name: \"sdk-test\"}}\n\
         router:\n  \
           listen: \"{router}\"\n  \
           models:\n{models}  \
           timeouts: {{first_byte_ms: 2000, idle_ms: 2000}}\n  \
           retries: {{max_retries: 0}}\n  \
           breaker: {{consecutive_failures: 0, min_requests: 4294967295}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_and_openai_sdks_messages_and_embeddings() {
    let python = sdk_python().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    let [edge_port, router_port] = free_ports();
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    let router = SocketAddr::from(([127, 0, 0, 1], router_port));
    let dir = TempDir::new("protocols");
    let config = dir.write("llmgw.yaml", &protocols_yaml(edge, router, mock));
    let config = config.to_str().expect("UTF-8 path");
    let mut gateway = Proc::spawn("llmgw all", LLMGW, &["all", "--config", config], &[]);
    wait_ready(edge, &mut [&mut gateway]).await;

    let base = format!("http://{edge}");
    for (upstream, prefix, signed) in [
        ("anthropic", "claude-", "1"),
        ("openai-compatible", "", "0"),
    ] {
        let aliases =
            ["model", "reasoner", "429", "500", "cut"].map(|name| format!("{prefix}{name}"));
        let env = [
            ("ANTHROPIC_BASE_URL", base.as_str()),
            ("ANTHROPIC_API_KEY", KEY),
            ("UPSTREAM", upstream),
            ("MODEL", aliases[0].as_str()),
            ("REASONER", aliases[1].as_str()),
            ("MODEL_429", aliases[2].as_str()),
            ("MODEL_500", aliases[3].as_str()),
            ("MODEL_CUT", aliases[4].as_str()),
            ("SIGNED_THINKING", signed),
        ];
        let (status, output) = run_sdk_script(&python, "anthropic_sdk.py", &base, &env).await;
        println!("anthropic_sdk.py, {upstream} upstream ({status}):\n{output}");
        assert!(
            status.success(),
            "anthropic_sdk.py against an {upstream} upstream failed ({status}):\n{output}\n--- gateway ---\n{}",
            gateway.output()
        );
    }

    let (status, output) = run_sdk_script(
        &python,
        "openai_sdk_embeddings.py",
        &format!("{base}/v1"),
        &[("OPENAI_MODEL", "embed")],
    )
    .await;
    println!("openai_sdk_embeddings.py ({status}):\n{output}");
    assert!(
        status.success(),
        "openai_sdk_embeddings.py failed ({status}):\n{output}\n--- gateway ---\n{}",
        gateway.output()
    );
}
