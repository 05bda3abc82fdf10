//! The record of one request, written when it ends: metrics and one access
//! log line. A guard, so a stream cut by the client is recorded too (as 499).
//! Settling the request's quota is not its business: see `quota::Settlement`.

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;
use llmgw_proto::router_v1::Done;

use crate::metrics::Metrics;

pub struct Outcome {
    metrics: Arc<Metrics>,
    span: tracing::Span,
    route: &'static str,
    started: Instant,
    /// A configured alias once validation passed; "unknown" before.
    pub model: String,
    /// HTTP status, or 499 while the client may still hang up.
    pub status: u16,
    pub done: Option<Done>,
    stream: bool,
    /// `x-ratelimit-*` headers for the response.
    pub rate_headers: HeaderMap,
}

impl Outcome {
    pub fn new(metrics: Arc<Metrics>, route: &'static str, started: Instant) -> Outcome {
        Outcome {
            metrics,
            span: tracing::Span::current(),
            route,
            started,
            model: "unknown".to_owned(),
            status: 499,
            done: None,
            stream: false,
            rate_headers: HeaderMap::new(),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The answer is now a stream: count it as open until this is dropped.
    pub fn streaming(&mut self) {
        self.stream = true;
        self.metrics.open_streams.inc();
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        let _entered = self.span.enter();
        if self.stream {
            self.metrics.open_streams.dec();
        }
        self.metrics
            .observe(self.route, &self.model, self.status, self.started);
        let elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        match self
            .done
            .as_ref()
            .and_then(|done| done.usage.map(|usage| (done, usage)))
        {
            Some((done, usage)) => {
                self.metrics
                    .tokens(&self.model, usage.prompt_tokens, usage.completion_tokens);
                tracing::info!(
                    status = self.status,
                    model = %self.model,
                    deployment = %done.deployment,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    usage_source = usage.source().as_str_name(),
                    finish_reason = %done.finish_reason,
                    elapsed_ms,
                    "request finished"
                );
            }
            None => tracing::info!(
                status = self.status,
                model = %self.model,
                elapsed_ms,
                "request finished"
            ),
        }
    }
}
