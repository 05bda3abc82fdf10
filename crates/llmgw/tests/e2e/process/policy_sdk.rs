//! The input content policy through the official OpenAI Python SDK, against
//! the real `llmgw` binary started from a config file with a `policy:`
//! section.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use super::child::{Proc, TempDir, client, free_ports, wait_ready};
use super::gateway::{LLMGW, LOGS, gateway_yaml};
use super::sdk::{run_sdk_script, sdk_python};
use crate::harness;

/// Appended to the process tests' usual config.
const POLICY_YAML: &str = r#"
policy:
  default: standard
  word_lists:
    confidential: ["Project Falcon"]
  policies:
    standard:
      rules:
        - {id: banned-words, kind: words, terms: [forbidden-term], direction: input, action: block}
        - {id: confidential-projects, kind: words, word_lists: [confidential], action: redact}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_sees_content_policy_violations() {
    let python = sdk_python().await;

    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    let [edge_port, router_port] = free_ports();
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    let router = SocketAddr::from(([127, 0, 0, 1], router_port));
    let dir = TempDir::new("policy-sdk");
    let yaml = format!("{}{POLICY_YAML}", gateway_yaml(edge, router, mock, 5, LOGS));
    let config = dir.write("llmgw.yaml", &yaml);
    let config = config.to_str().expect("UTF-8 path");
    let mut gateway = Proc::spawn("llmgw all", LLMGW, &["all", "--config", config], &[]);
    wait_ready(edge, &mut [&mut gateway]).await;

    let (status, output) = run_sdk_script(
        &python,
        "openai_sdk_policy.py",
        &format!("http://{edge}/v1"),
        &[],
    )
    .await;
    println!("openai_sdk_policy.py ({status}):\n{output}");
    assert!(
        status.success(),
        "openai_sdk_policy.py failed ({status}):\n{output}\n{}",
        gateway.output()
    );

    // Only the redacted prompt reached the provider, masked.
    let stats = harness::mock_stats(&client(), mock).await;
    assert_eq!(stats["requests_total"], 1, "{stats}");
    assert_eq!(
        stats["last_request"]["body"]["messages"][0]["content"],
        "status of ***?"
    );
}
