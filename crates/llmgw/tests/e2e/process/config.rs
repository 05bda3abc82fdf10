//! A bad configuration stops `llmgw` before any service starts, with every
//! problem listed at once.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tokio::time::Instant;

use super::child::{Proc, TempDir, free_ports};
use super::gateway::LLMGW;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_problems_are_all_listed_before_anything_starts() {
    let [edge_port] = free_ports();
    let edge = SocketAddr::from(([127, 0, 0, 1], edge_port));
    let dir = TempDir::new("bad-config");
    let yaml = format!(
        r#"
edge:
  listen: {edge}
router:
  listen: 127.0.0.1:0
  models:
    - {{alias: chat, provider: openai, base_url: "http://127.0.0.1:9/v1", upstream_model: m, fallbacks: [nope]}}
    - {{alias: paid, provider: openai, base_url: "http://127.0.0.1:9/v1", upstream_model: m, api_key_env: LLMGW_E2E_UNSET_PROVIDER_KEY_VAR}}
quota:
  lease_timeout_secs: 0
"#
    );
    let config = dir.write("llmgw.yaml", &yaml);
    let config = config.to_str().expect("UTF-8 path");
    let mut proc = Proc::spawn(
        "llmgw all (bad config)",
        LLMGW,
        &["all", "--config", config],
        &[],
    );
    let status = proc
        .wait_exit_by(Instant::now() + Duration::from_secs(30))
        .await;
    assert!(
        !status.success(),
        "llmgw started with a bad config:\n{}",
        proc.output()
    );
    let problems = [
        "has 3 problems:",
        "router.models[0].fallbacks: \"nope\" is not a configured model",
        "router.models[1].api_key_env: environment variable LLMGW_E2E_UNSET_PROVIDER_KEY_VAR",
        "quota.lease_timeout_secs: must be above 0",
    ];
    // The pipes are read by tasks that may still be catching up.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut output = proc.output();
    while !problems.iter().all(|problem| output.contains(problem)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        output = proc.output();
    }
    for problem in problems {
        assert!(
            output.contains(problem),
            "{problem:?} not listed:\n{output}"
        );
    }
    // Nothing was started: the edge never listened.
    assert!(
        TcpStream::connect_timeout(&edge, Duration::from_millis(200)).is_err(),
        "{output}"
    );
}
