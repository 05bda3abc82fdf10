//! What the production subscriber enables with an exporter, at quiet logs:
//! the request spans (they are the trace), and nothing else the log level
//! leaves out. Its own test binary: the subscriber is process-global.

#[tokio::test]
async fn quiet_logs_keep_exported_spans_and_nothing_more() {
    let config = llmgw_telemetry::Config {
        log_level: "warn".to_owned(),
        // Nothing listens there; nothing is exported in this test.
        otlp_endpoint: Some("http://127.0.0.1:9".to_owned()),
        ..llmgw_telemetry::Config::default()
    };
    let guard = llmgw_telemetry::init(&config, "test").expect("subscriber");
    assert!(llmgw_telemetry::exporting_spans());
    assert!(!tracing::info_span!("request").is_disabled());
    assert!(tracing::debug_span!("detail").is_disabled());
    // Info events are on: they become events of the exported spans.
    assert!(!tracing::enabled!(tracing::Level::DEBUG));
    // Dropping the guard would wait for a flush to nowhere.
    std::mem::forget(guard);
}
