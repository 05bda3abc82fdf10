//! The input content policy through the official OpenAI Python SDK, against
//! the real `llmgw` binary started from a config file with a `policy:`
//! section.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::child::{Proc, TempDir, client, free_ports, run_bounded, wait_ready};
use super::gateway::{LLMGW, LOGS, gateway_yaml};
use super::sdk::{sdk_dir, sdk_python};
use crate::harness::{self, KEY};

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

    let mut command = Command::new(&python);
    command
        .arg(sdk_dir().join("openai_sdk_policy.py"))
        .env("OPENAI_BASE_URL", format!("http://{edge}/v1"))
        .env("OPENAI_API_KEY", KEY)
        .env("OPENAI_MODEL", "mock")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost");
    for name in [
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "OPENAI_LOG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(name);
    }
    let (status, output) = run_bounded(command, Duration::from_secs(120))
        .await
        .unwrap_or_else(|output| panic!("openai_sdk_policy.py did not finish in time:\n{output}"));
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
