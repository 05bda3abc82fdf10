//! What the production subscriber enables without an exporter, at quiet
//! logs: the request spans (they carry a caller's trace context), and
//! nothing else the log level leaves out. Its own test binary: the
//! subscriber is process-global.

#[test]
fn quiet_logs_keep_request_spans_and_nothing_more() {
    let config = llmgw_telemetry::Config {
        log_level: "warn".to_owned(),
        ..llmgw_telemetry::Config::default()
    };
    let _guard = llmgw_telemetry::init(&config, "test").expect("subscriber");
    assert!(!llmgw_telemetry::exporting_spans());
    assert!(
        !tracing::info_span!("request").is_disabled(),
        "info spans carry trace context at any log level"
    );
    assert!(tracing::debug_span!("detail").is_disabled());
    assert!(
        !tracing::enabled!(tracing::Level::INFO),
        "info events stay off"
    );
    assert!(tracing::enabled!(tracing::Level::WARN));
}
