//! One chat call as a stream of events: send it upstream, relay the answer
//! chunk by chunk, and finish with exactly one `done` or `error` event.
//!
//! The gRPC server polls this stream directly: no task, no channel, so a chunk
//! crosses the router with one wake-up. When the edge goes away (client
//! disconnect) the server drops the stream, which drops the upstream response
//! and closes its connection at once, even if the upstream is silent.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use eventsource_stream::{EventStream, Eventsource as _};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt as _};
use llmgw_openai::Usage as OpenaiUsage;
use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::{ChatEvent, Done, Envelope, Usage, UsageSource, chat_event::Event};
use tokio::time::Instant;
use tonic::Status;

use crate::State;
use crate::catalog::Deployment;
use crate::provider::ProviderError;
use crate::provider::openai::{self, ChunkView};

type Sse = EventStream<BoxStream<'static, reqwest::Result<Bytes>>>;

/// What the answer has told us so far.
#[derive(Debug, Default)]
struct Tally {
    prompt_chars: u64,
    generated_chars: u64,
    reported: Option<OpenaiUsage>,
    finish_reason: Option<String>,
    /// id, created and model of the first chunk, for a synthesised finish chunk.
    first: Option<(String, u64, String)>,
}

impl Tally {
    fn observe(&mut self, view: &ChunkView<'_>) {
        for choice in &view.choices {
            if let Some(delta) = choice.delta.as_ref().or(choice.message.as_ref()) {
                self.generated_chars += delta.generated_chars();
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.to_string());
            }
        }
        if let Some(usage) = &view.usage {
            self.reported = Some(usage.clone());
        }
        if self.first.is_none() {
            self.first = Some((view.id.to_string(), view.created, view.model.to_string()));
        }
    }

    /// Provider-reported usage when there is some; otherwise an estimate
    /// (about four characters a token) flagged as such.
    fn usage(&self) -> Usage {
        match &self.reported {
            Some(usage) => Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
                total_tokens: usage.total_tokens,
                cached_tokens: usage.cached_tokens(),
                reasoning_tokens: usage.reasoning_tokens(),
                source: UsageSource::Reported.into(),
            },
            None => {
                let prompt_tokens = self.prompt_chars.div_ceil(4);
                let completion_tokens = self.generated_chars.div_ceil(4);
                Usage {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens: prompt_tokens + completion_tokens,
                    cached_tokens: 0,
                    reasoning_tokens: 0,
                    source: UsageSource::Estimated.into(),
                }
            }
        }
    }
}

enum Phase {
    /// Nothing sent upstream yet.
    Start(Bytes),
    /// Relaying an upstream SSE stream.
    Streaming(Sse),
    /// The answer is complete (or failed): one last event to send.
    Finish(Result<(), ProviderError>),
    Ended,
}

struct Relay {
    state: Arc<State>,
    deployment: Arc<Deployment>,
    envelope: Envelope,
    deadline: Instant,
    started: Instant,
    tally: Tally,
    phase: Phase,
    /// The final event was produced; dropping the relay earlier means the
    /// edge went away.
    finished: bool,
    span: tracing::Span,
}

/// The events of one call; `span` is the call's span (events are polled by
/// the gRPC server, outside it).
pub fn relay(
    state: Arc<State>,
    deployment: Arc<Deployment>,
    envelope: Envelope,
    body: Bytes,
    span: tracing::Span,
) -> impl Stream<Item = Result<ChatEvent, Status>> + Send + 'static {
    let relay = Relay {
        state,
        deadline: deadline(envelope.deadline_unix_ms),
        deployment,
        envelope,
        started: Instant::now(),
        tally: Tally::default(),
        phase: Phase::Start(body),
        finished: false,
        span,
    };
    futures_util::stream::unfold(relay, |mut relay| async move {
        let span = relay.span.clone();
        let event = tracing::Instrument::instrument(relay.next_event(), span).await?;
        Some((Ok(ChatEvent { event: Some(event) }), relay))
    })
}

impl Relay {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            match std::mem::replace(&mut self.phase, Phase::Ended) {
                Phase::Start(body) => {
                    match tokio::time::timeout_at(self.deadline, self.start(&body)).await {
                        Ok(Ok(Some(completion))) => {
                            self.phase = Phase::Finish(Ok(()));
                            return Some(Event::Completion(completion));
                        }
                        Ok(Ok(None)) => {} // streaming: phase set by `start`
                        Ok(Err(error)) => self.phase = Phase::Finish(Err(error)),
                        Err(_) => self.phase = Phase::Finish(Err(openai::timeout())),
                    }
                }
                Phase::Streaming(mut events) => {
                    let next = tokio::time::timeout_at(self.deadline, self.next_chunk(&mut events));
                    match next.await {
                        Ok(Ok(Some(chunk))) => {
                            self.phase = Phase::Streaming(events);
                            return Some(Event::Chunk(chunk));
                        }
                        Ok(Ok(None)) => self.phase = Phase::Finish(Ok(())),
                        Ok(Err(error)) => self.phase = Phase::Finish(Err(error)),
                        Err(_) => self.phase = Phase::Finish(Err(openai::timeout())),
                    }
                }
                Phase::Finish(result) => return Some(self.finish(result)),
                Phase::Ended => return None,
            }
        }
    }

    /// Sends the request. Non-streaming: returns the whole completion.
    /// Streaming: moves to [`Phase::Streaming`] and returns `None`.
    async fn start(&mut self, body: &[u8]) -> Result<Option<Bytes>, ProviderError> {
        let deployment = &self.deployment;
        let request = openai::build_request(body, deployment, self.envelope.stream)?;
        self.tally.prompt_chars = request.prompt_chars;
        let first_byte = Duration::from_millis(self.state.timeouts.first_byte_ms);
        let response =
            openai::send(&self.state.client, deployment, request.body, first_byte).await?;
        if self.envelope.stream {
            self.phase = Phase::Streaming(response.bytes_stream().boxed().eventsource());
            return Ok(None);
        }
        let body = tokio::time::timeout(first_byte, response.bytes())
            .await
            .map_err(|_| openai::timeout())?
            .map_err(|error| openai::transport_error(deployment, &error))?;
        let view: ChunkView = serde_json::from_slice(&body).map_err(|_| openai::invalid_json())?;
        self.tally.observe(&view);
        Ok(Some(body))
    }

    /// The next chunk to forward; `None` once the upstream finished cleanly.
    async fn next_chunk(&mut self, events: &mut Sse) -> Result<Option<Bytes>, ProviderError> {
        let idle = Duration::from_millis(self.state.timeouts.idle_ms);
        loop {
            let Some(event) = tokio::time::timeout(idle, events.next())
                .await
                .map_err(|_| openai::timeout())?
            else {
                return self.ended(false);
            };
            let event = event.map_err(|error| {
                tracing::warn!(deployment = %self.deployment.name, error = %error, "upstream stream broke");
                ProviderError::new(ErrorCode::UpstreamError, "the model provider's stream was cut")
            })?;
            if event.data == "[DONE]" {
                return self.ended(true);
            }
            let view: ChunkView =
                serde_json::from_str(&event.data).map_err(|_| openai::invalid_json())?;
            self.tally.observe(&view);
            // We always ask upstream for usage; the usage-only chunk goes to
            // the client only if it asked for it too.
            let usage_only = view.choices.is_empty() && view.usage.is_some();
            drop(view);
            if !usage_only || self.envelope.include_usage {
                return Ok(Some(Bytes::from(event.data)));
            }
        }
    }

    /// The upstream stream ended. Without a `finish_reason` so far, a clean
    /// end (`[DONE]`) gets a synthesised finish chunk; an abrupt one is an error.
    fn ended(&mut self, saw_done: bool) -> Result<Option<Bytes>, ProviderError> {
        if self.tally.finish_reason.is_some() {
            return Ok(None);
        }
        if !saw_done {
            return Err(ProviderError::new(
                ErrorCode::UpstreamError,
                "the model provider's stream ended early",
            ));
        }
        self.tally.finish_reason = Some("stop".to_owned());
        let (id, created, model) = self.tally.first.take().unwrap_or_default();
        Ok(Some(openai::finish_chunk(&id, created, &model, "stop")))
    }

    fn finish(&mut self, result: Result<(), ProviderError>) -> Event {
        self.finished = true;
        let usage = self.tally.usage();
        let elapsed_ms = self.started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                tracing::info!(
                    deployment = %self.deployment.name,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    usage_source = usage.source().as_str_name(),
                    elapsed_ms,
                    "chat completed"
                );
                Event::Done(Done {
                    usage: Some(usage),
                    deployment: self.deployment.name.clone(),
                    provider: self.deployment.provider.as_str().to_owned(),
                    upstream_model: self.deployment.upstream_model.clone(),
                    finish_reason: self.tally.finish_reason.take().unwrap_or_default(),
                    attempts: 1,
                })
            }
            Err(error) => {
                tracing::info!(
                    deployment = %self.deployment.name,
                    code = error.code.as_str_name(),
                    completion_tokens = usage.completion_tokens,
                    elapsed_ms,
                    "chat failed"
                );
                Event::Error(error.into_proto())
            }
        }
    }
}

/// The edge went away before the answer was complete.
impl Drop for Relay {
    fn drop(&mut self) {
        if !self.finished {
            let _entered = self.span.enter();
            tracing::info!(
                deployment = %self.deployment.name,
                completion_tokens = self.tally.usage().completion_tokens,
                elapsed_ms = self.started.elapsed().as_millis() as u64,
                "chat cancelled by the client; upstream call dropped"
            );
        }
    }
}

fn deadline(deadline_unix_ms: u64) -> Instant {
    // No deadline from the edge: a day is "never" for a chat call.
    let far = Instant::now() + Duration::from_secs(86_400);
    if deadline_unix_ms == 0 {
        return far;
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |now| now.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_unix_ms.saturating_sub(now_ms))
}
