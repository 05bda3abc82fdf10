//! Getting an answer started: the route's deployments in balancer order,
//! retries with backoff, then the fallback chain. All of it happens before
//! the first byte reaches the client; after that nothing is retried.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use llmgw_proto::ErrorCode;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{AttemptEnd, Phase, Reader, Relay, Upstream};
use crate::breaker::Permit;
use crate::catalog::{Deployment, Route};
use crate::config::{ClientApi, Provider};
use crate::provider::anthropic::inbound::{self, MessagesEncoder};
use crate::provider::anthropic::native::{self, NativeStream};
use crate::provider::chat_chunk::ChunkView;
use crate::provider::upstream_error;
use crate::provider::upstream_stream::{self, StreamDecoder};
use crate::provider::{self, ClientHeaders, ProviderError, openai};

impl Relay {
    /// Non-streaming: the whole completion. Streaming: sets
    /// [`Phase::Streaming`] and returns `None`.
    pub(super) async fn connect(&mut self) -> Result<Option<Bytes>, ProviderError> {
        let primary = self.route.clone();
        let mut last = match self.try_route(&primary).await {
            Ok(answer) => return Ok(answer),
            Err(error) => error,
        };
        for alias in &primary.fallbacks {
            let wanted = last
                .fallback_reason()
                .is_some_and(|reason| primary.fallback_on.contains(&reason));
            if !wanted {
                break;
            }
            // A fallback that does not serve the client's API is skipped.
            let Some(route) = self.state.catalog.resolve_for(alias, self.api).cloned() else {
                continue;
            };
            tracing::info!(from = %primary.alias, to = %alias, code = last.code.as_str_name(), "falling back");
            last = match self.try_route(&route).await {
                Ok(answer) => return Ok(answer),
                Err(error) => error,
            };
        }
        Err(last)
    }

    /// The deployments of one alias, in balancer order, each skipped while
    /// its breaker is open, retried up to the retry budget.
    async fn try_route(&mut self, route: &Arc<Route>) -> Result<Option<Bytes>, ProviderError> {
        let mut order: VecDeque<usize> = route.deployment_order(&mut fastrand::Rng::new()).into();
        let retries = self.state.retries;
        let mut tries_left = 1 + retries.max_retries;
        let mut backoff = Duration::from_millis(retries.initial_backoff_ms);
        let mut last: Option<ProviderError> = None;
        let mut skipped = 0;
        while tries_left > 0 {
            let Some(index) = order.pop_front() else {
                break;
            };
            // Cycle: a single deployment is retried, several take turns.
            order.push_back(index);
            let deployment = &route.deployments[index];
            let Some(permit) = deployment.breaker.try_acquire() else {
                skipped += 1;
                if skipped >= order.len() {
                    break; // every deployment is open
                }
                continue;
            };
            skipped = 0;
            if let Some(error) = &last {
                let wait = match error.retry_after {
                    Some(after) if after <= Duration::from_millis(retries.max_retry_after_ms) => {
                        after
                    }
                    _ => jitter(backoff),
                };
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_millis(retries.max_backoff_ms));
            }
            tries_left -= 1;
            match self.attempt(route, deployment.clone(), permit).await {
                Ok(answer) => return Ok(answer),
                Err(error) if error.is_retryable() => last = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or_else(|| {
            ProviderError::new(
                ErrorCode::Unavailable,
                format!(
                    "every deployment of `{}` is unavailable right now; retry later",
                    route.alias
                ),
            )
        }))
    }

    /// One upstream call, in its own span.
    async fn attempt(
        &mut self,
        route: &Arc<Route>,
        deployment: Arc<Deployment>,
        permit: Permit,
    ) -> Result<Option<Bytes>, ProviderError> {
        self.attempts += 1;
        self.served_by = Some(deployment.clone());
        self.begin_attempt(route, &deployment);
        self.begin_scan();
        let span = tracing::info_span!("router.attempt", attempt = self.attempts, deployment = %deployment.name);
        let result = self.call(&route.alias, &deployment).instrument(span).await;
        if let Err(error) = &result {
            self.close_attempt(AttemptEnd::Failed(error.code)).await;
        }
        let metrics = &self.state.metrics;
        match &result {
            Ok(_) => metrics.attempt(&route.alias, &deployment.name, "ok"),
            Err(error) => metrics.attempt(&route.alias, &deployment.name, error.code.as_str_name()),
        }
        match (&result, &self.phase) {
            // A stream's health is judged when it ends.
            (Ok(None), Phase::Streaming(_)) => {
                if let Phase::Streaming(upstream) = &mut self.phase {
                    upstream.permit = Some(permit);
                }
            }
            (Err(error), _) if error.is_deployment_fault() => permit.failure(),
            _ => permit.success(),
        }
        result
    }

    async fn call(
        &mut self,
        alias: &str,
        deployment: &Arc<Deployment>,
    ) -> Result<Option<Bytes>, ProviderError> {
        let stream = self.envelope.stream;
        let api = self.api;
        let request = provider::build_request(api, &self.body, deployment, stream)?;
        let first_byte = Duration::from_millis(deployment.timeouts.first_byte_ms);
        let sent = Instant::now();
        let headers = ClientHeaders {
            anthropic_version: Some(self.envelope.anthropic_version.as_str())
                .filter(|version| !version.is_empty()),
            anthropic_beta: Some(self.envelope.anthropic_beta.as_str())
                .filter(|beta| !beta.is_empty()),
        };
        let response = provider::send(
            &self.state.client,
            deployment,
            api,
            request.body,
            first_byte,
            &headers,
        )
        .await?;
        let elapsed = sent.elapsed();
        if let Some(record) = &mut self.current {
            record.answered = true;
        }
        deployment.latency.observe(elapsed);
        self.state
            .metrics
            .first_byte(alias, &deployment.name, elapsed);
        let native = self.native(deployment);
        // Messages clients of anything but a native answer get it
        // re-encoded from OpenAI's form.
        self.encoder = (api == ClientApi::Messages && !native).then(MessagesEncoder::new);
        if stream {
            let reader = if native {
                Reader::Native(NativeStream::new())
            } else {
                Reader::Decoded(StreamDecoder::new(
                    deployment.provider,
                    &deployment.upstream_model,
                ))
            };
            self.native_stopped = false;
            self.phase = Phase::Streaming(Box::new(Upstream {
                events: upstream_stream::sse_events(response.bytes_stream().boxed()),
                reader,
                pending: VecDeque::new(),
                deployment: deployment.clone(),
                permit: None,
                finished: false,
            }));
            return Ok(None);
        }
        let body = tokio::time::timeout(first_byte, response.bytes())
            .await
            .map_err(|_| upstream_error::timeout())?
            .map_err(|error| upstream_error::transport_error(deployment, &error))?;
        if api == ClientApi::Embeddings {
            if let Some(usage) = openai::embeddings_usage(&body)? {
                self.tally.report(usage);
            }
            self.first_token_seen();
            return Ok(Some(body));
        }
        if native {
            let read = native::read_message(&body)?;
            self.tally.report(read.usage);
            self.tally.finish_reason = Some(read.finish_reason.to_owned());
            self.tally.generated_mut().push_str(&read.generated);
            self.first_token_seen();
            return Ok(Some(body));
        }
        let completion = provider::completion(deployment, body)?;
        let view: ChunkView =
            serde_json::from_slice(&completion).map_err(|_| upstream_error::invalid_json())?;
        self.tally.observe(&view);
        self.first_token_seen();
        drop(view);
        let completion = self.scan_completion(completion)?;
        match api {
            ClientApi::Messages => inbound::completion_to_message(&completion).map(Some),
            ClientApi::Chat | ClientApi::Embeddings => Ok(Some(completion)),
        }
    }

    /// Whether this attempt passes an Anthropic answer through untouched:
    /// a Messages client, an Anthropic deployment, and no content policy
    /// on answers (the policy reads answers in OpenAI's form, so such an
    /// answer goes through it and is re-encoded; see `docs/architecture.md`).
    fn native(&self, deployment: &Deployment) -> bool {
        self.api == ClientApi::Messages
            && deployment.provider == Provider::Anthropic
            && self.policy.is_none()
    }
}

/// "Full jitter": a random wait between half the backoff and all of it, so
/// retries from many requests do not arrive together.
fn jitter(backoff: Duration) -> Duration {
    backoff.mul_f64(0.5 + fastrand::f64() * 0.5)
}
