//! Telemetry set-up shared by every llmgw service: structured logs (pretty or
//! JSON), OpenTelemetry trace export over OTLP/gRPC, and W3C trace-context
//! propagation across HTTP and gRPC hops: full (our spans join the caller's
//! trace) when spans are exported, pass-through (the caller's context is
//! forwarded unchanged) otherwise; see `propagation`.
//!
//! Logging is initialised once per process (`llmgw all` runs every service in
//! one process, so they share it).

mod metrics_route;
mod outage_log;
mod passthrough;
mod propagation;
mod trace_layers;

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use serde::Deserialize;
use tracing_subscriber::{
    EnvFilter, Layer, Registry, filter::LevelFilter, layer::SubscriberExt as _,
    util::SubscriberInitExt as _,
};

pub use metrics_route::{OPENMETRICS_CONTENT_TYPE, metrics_response, with_metrics_route};
pub use outage_log::{OutageLog, Recovered};
pub use propagation::{
    MessageTrace, add_link, exporting_spans, inject_context, propagate_trace_context,
    traceparent_of,
};
pub use trace_layers::{
    ExtractTraceContext, ExtractTraceContextLayer, InjectTraceContext, ServerKind, message_span,
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `llmgw_router=debug,info`;
    /// `RUST_LOG` wins when set.
    pub log_level: String,
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, when set and not empty, overrides the
    /// file (the binary's configuration layers). Unset: no spans are exported
    /// and no trace context is generated (it costs CPU on every request); a
    /// caller's `traceparent` is passed on unchanged.
    pub otlp_endpoint: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_format: LogFormat::Pretty,
            log_level: "info".to_owned(),
            otlp_endpoint: None,
        }
    }
}

impl Config {
    /// What is wrong with this section, relative to `telemetry:`.
    pub fn validate(&self) -> Vec<String> {
        match EnvFilter::try_new(&self.log_level) {
            Ok(_) => Vec::new(),
            Err(error) => vec![format!(
                "log_level: {:?} is not a filter directive: {error}",
                self.log_level
            )],
        }
    }
}

/// Keeps the exporter alive; dropping it flushes the spans still buffered.
#[must_use = "dropping the guard stops trace export"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown()
        {
            eprintln!("llmgw: flushing traces at exit failed: {error}");
        }
    }
}

/// Installs the global subscriber. Fails if one is already installed.
pub fn init(config: &Config, service_name: &str) -> anyhow::Result<Guard> {
    install(config, service_name, None)
}

/// [`init`], with `extra` in the subscriber as well: for tests that watch
/// the spans of the real set-up. Give `extra` a filter of its own
/// (`with_filter`): without one it enables every span and event at every
/// level, for every layer.
pub fn init_with(
    config: &Config,
    service_name: &str,
    extra: impl Layer<Registry> + Send + Sync + 'static,
) -> anyhow::Result<Guard> {
    install(config, service_name, Some(extra.boxed()))
}

/// The layers of the subscriber. A `Vec`, not `Option` layers: with per-layer
/// filters, an absent (`None`) layer next to a filtered one makes
/// `tracing-subscriber` enable every span and event at every level.
type Layers = Vec<Box<dyn Layer<Registry> + Send + Sync>>;

fn install(
    config: &Config,
    service_name: &str,
    extra: Option<Box<dyn Layer<Registry> + Send + Sync>>,
) -> anyhow::Result<Guard> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .with_context(|| format!("invalid log level {:?}", config.log_level))?;
    let fmt = match config.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    let mut layers: Layers = extra.into_iter().collect();
    layers.push(fmt.with_filter(filter).boxed());

    let provider = config
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| otlp_provider(endpoint, service_name))
        .transpose()?;
    // Spans have their own level, independent of the log filter: quieter
    // logs (log_level: warn) must not disable the request spans, which carry
    // the trace context (and, when exported, are the trace).
    match &provider {
        Some(provider) => {
            propagation::propagate_trace_context();
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("llmgw"))
                    .with_filter(LevelFilter::INFO)
                    .boxed(),
            );
        }
        None => layers.push(passthrough::request_spans()),
    }

    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .context("a tracing subscriber is already installed")?;
    Ok(Guard { provider })
}

fn otlp_provider(endpoint: &str, service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .with_context(|| format!("building the OTLP exporter for {endpoint}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build())
}
