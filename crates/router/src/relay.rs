//! One chat call: send it upstream, relay the answer to the edge chunk by
//! chunk, and finish with exactly one `done` or `error` event.
//!
//! Runs in its own task that owns the sending half of the gRPC stream. When
//! the edge goes away (client disconnect) the receiving half is dropped, the
//! `tx.closed()` branch wins, and dropping the upstream future closes the
//! upstream connection at once, even if the upstream is silent.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use llmgw_openai::Usage as OpenaiUsage;
use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::{ChatEvent, Done, Envelope, Usage, UsageSource, chat_event::Event};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Status;

use crate::State;
use crate::catalog::Deployment;
use crate::provider::ProviderError;
use crate::provider::openai::{self, ChunkView};

pub type EventSender = mpsc::Sender<Result<ChatEvent, Status>>;

/// What the answer has told us so far.
#[derive(Debug, Default)]
struct Tally {
    prompt_chars: u64,
    generated_chars: u64,
    reported: Option<OpenaiUsage>,
    finish_reason: Option<String>,
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

pub async fn relay(
    state: Arc<State>,
    deployment: Arc<Deployment>,
    envelope: Envelope,
    body: Bytes,
    tx: EventSender,
) {
    let started = Instant::now();
    let deadline = deadline(envelope.deadline_unix_ms);
    let mut tally = Tally::default();
    let call = attempt(&state, &deployment, &envelope, &body, &tx, &mut tally);
    let outcome = tokio::select! {
        biased;
        () = tx.closed() => Err(ProviderError::new(ErrorCode::Cancelled, "the client went away")),
        result = tokio::time::timeout_at(deadline, call) => result.unwrap_or_else(|_| Err(openai::timeout())),
    };
    let usage = tally.usage();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let event = match outcome {
        Ok(()) => {
            tracing::info!(
                deployment = %deployment.name,
                prompt_tokens = usage.prompt_tokens,
                completion_tokens = usage.completion_tokens,
                usage_source = usage.source().as_str_name(),
                elapsed_ms,
                "chat completed"
            );
            Event::Done(Done {
                usage: Some(usage),
                deployment: deployment.name.clone(),
                provider: deployment.provider.as_str().to_owned(),
                upstream_model: deployment.upstream_model.clone(),
                finish_reason: tally.finish_reason.unwrap_or_default(),
                attempts: 1,
            })
        }
        Err(error) => {
            tracing::info!(
                deployment = %deployment.name,
                code = error.code.as_str_name(),
                completion_tokens = usage.completion_tokens,
                elapsed_ms,
                "chat failed"
            );
            if error.code == ErrorCode::Cancelled {
                return;
            }
            Event::Error(error.into_proto())
        }
    };
    // The edge may be gone by now; nothing left to tell it then.
    let _ = tx.send(Ok(ChatEvent { event: Some(event) })).await;
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

async fn attempt(
    state: &State,
    deployment: &Deployment,
    envelope: &Envelope,
    body: &[u8],
    tx: &EventSender,
    tally: &mut Tally,
) -> Result<(), ProviderError> {
    let request = openai::build_request(body, deployment, envelope.stream)?;
    tally.prompt_chars = request.prompt_chars;
    let timeouts = state.timeouts;
    let first_byte = Duration::from_millis(timeouts.first_byte_ms);
    let response = openai::send(&state.client, deployment, request.body, first_byte).await?;
    if !envelope.stream {
        let body = tokio::time::timeout(first_byte, response.bytes())
            .await
            .map_err(|_| openai::timeout())?
            .map_err(|error| openai::transport_error(deployment, &error))?;
        let view: ChunkView = serde_json::from_slice(&body).map_err(|_| openai::invalid_json())?;
        tally.observe(&view);
        return send(tx, Event::Completion(body)).await;
    }

    let idle = Duration::from_millis(timeouts.idle_ms);
    let mut events = response.bytes_stream().eventsource();
    let mut first: Option<(String, u64, String)> = None;
    let mut saw_done = false;
    while let Some(event) = tokio::time::timeout(idle, events.next())
        .await
        .map_err(|_| openai::timeout())?
    {
        let event = event.map_err(|error| {
            tracing::warn!(deployment = %deployment.name, error = %error, "upstream stream broke");
            ProviderError::new(
                ErrorCode::UpstreamError,
                "the model provider's stream was cut",
            )
        })?;
        if event.data == "[DONE]" {
            saw_done = true;
            break;
        }
        let view: ChunkView =
            serde_json::from_str(&event.data).map_err(|_| openai::invalid_json())?;
        tally.observe(&view);
        if first.is_none() {
            first = Some((view.id.to_string(), view.created, view.model.to_string()));
        }
        // We always ask upstream for usage; the usage-only chunk goes to the
        // client only if it asked for it too.
        let usage_only = view.choices.is_empty() && view.usage.is_some();
        drop(view);
        if usage_only && !envelope.include_usage {
            continue;
        }
        send(tx, Event::Chunk(Bytes::from(event.data))).await?;
    }
    if tally.finish_reason.is_none() {
        if !saw_done {
            return Err(ProviderError::new(
                ErrorCode::UpstreamError,
                "the model provider's stream ended early",
            ));
        }
        let (id, created, model) = first.unwrap_or_default();
        send(
            tx,
            Event::Chunk(openai::finish_chunk(&id, created, &model, "stop")),
        )
        .await?;
        tally.finish_reason = Some("stop".to_owned());
    }
    Ok(())
}

async fn send(tx: &EventSender, event: Event) -> Result<(), ProviderError> {
    tx.send(Ok(ChatEvent { event: Some(event) }))
        .await
        .map_err(|_| ProviderError::new(ErrorCode::Cancelled, "the client went away"))
}
