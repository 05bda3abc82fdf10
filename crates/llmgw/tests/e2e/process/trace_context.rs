//! W3C trace context reaching the provider.

use serde_json::Value;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::child::{CALL, client, free_ports};
use super::gateway::AllInOne;
use crate::harness::{self, KEY};

/// The incoming W3C trace context of the propagation test.
const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN_ID: &str = "b7ad6b7169203331";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_reaches_the_upstream() {
    assert_trace_context_reaches_the_upstream("info").await;
}

/// Quieter logs must not switch tracing off: the log level filters logs,
/// not the request spans that carry the trace context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_reaches_the_upstream_with_quiet_logs() {
    assert_trace_context_reaches_the_upstream("warn").await;
}

/// Sends a request carrying a `traceparent` through `llmgw all` (logging at
/// `log_level`, exporting spans) and checks what the upstream received.
async fn assert_trace_context_reaches_the_upstream(log_level: &str) {
    let stop = CancellationToken::new();
    let _stop_mock = stop.clone().drop_guard();
    let mock = harness::start_mock(llmgw_mock_upstream::Config::default(), &stop).await;
    // Nothing listens there: export fails in the background, which is fine;
    // an exporter being configured is what turns trace context on.
    let [collector] = free_ports();
    let collector = format!("http://127.0.0.1:{collector}");
    let telemetry =
        format!("log_level: {log_level}, log_format: json, otlp_endpoint: \"{collector}\"");
    let gateway = AllInOne::start(mock, 5, &telemetry).await;

    let incoming = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let response = timeout(
        CALL,
        client()
            .post(gateway.url("/v1/chat/completions"))
            .bearer_auth(KEY)
            .header("traceparent", &incoming)
            .json(&harness::request("mock"))
            .send(),
    )
    .await
    .expect("chat call timed out")
    .expect("edge reachable");
    assert_eq!(response.status(), 200);

    let stats: Value = timeout(CALL, client().get(format!("http://{mock}/stats")).send())
        .await
        .expect("stats timed out")
        .expect("mock reachable")
        .json()
        .await
        .expect("stats JSON");
    let headers = &stats["last_request"]["headers"];
    let Some(upstream) = headers["traceparent"].as_str() else {
        panic!(
            "the upstream request carries no traceparent (sent {incoming}); headers: {headers:#}\n{}",
            gateway.proc.output()
        );
    };
    let fields: Vec<&str> = upstream.split('-').collect();
    assert_eq!(fields.len(), 4, "malformed traceparent {upstream:?}");
    assert_eq!(fields[0], "00", "version of {upstream:?}");
    assert_eq!(
        fields[1], TRACE_ID,
        "the upstream call is not in the caller's trace: {upstream:?}"
    );
    let span_id = fields[2];
    assert!(
        span_id.len() == 16
            && span_id.bytes().all(|b| b.is_ascii_hexdigit())
            && span_id != "0000000000000000",
        "invalid parent span id in {upstream:?}"
    );
    assert_ne!(
        span_id, PARENT_SPAN_ID,
        "the gateway forwarded the caller's span instead of its own: {upstream:?}"
    );
    assert_eq!(fields[3], "01", "the sampled flag was lost: {upstream:?}");

    if log_level == "warn" {
        // ...and the logs stay as quiet as asked.
        let output = gateway.proc.output();
        assert!(
            !output.contains(r#""level":"INFO""#),
            "info logs at log_level warn:\n{output}"
        );
    }
}
