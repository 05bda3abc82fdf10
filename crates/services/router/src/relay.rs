//! One call (chat, messages or embeddings) as a stream of events: choose a
//! deployment, call it (with retries and fallbacks before the first byte),
//! relay the answer chunk by chunk, and finish with exactly one `done` or
//! `error` event.
//!
//! How an attempt's answer is read depends on the client's API and the
//! deployment's protocol (see [`Reader`]): OpenAI chunks are read as they
//! are, Anthropic events translated into them, or (Messages clients of an
//! Anthropic deployment) passed through untouched and only read for
//! accounting. Messages clients of anything else get the OpenAI chunks
//! re-encoded as Anthropic events ([`MessagesEncoder`]), after the content
//! policy has seen them.
//!
//! The gRPC server polls this stream directly: no task, no channel, so a chunk
//! crosses the router with one wake-up. When the edge goes away (client
//! disconnect) the server drops the stream, which drops the upstream response
//! and closes its connection at once, even if the upstream is silent.

mod answer_policy;
mod attempt;
pub(crate) use answer_policy::for_tenant as answer_policy;
pub(crate) mod output_scan;
pub(crate) mod tally;
mod usage_event;
pub(crate) use usage_event::prompt_tokens;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt as _};
use llmgw_proto::ErrorCode;
use llmgw_proto::router_v1::{
    Billed, ChatEvent, Done, Envelope, Usage, UsageSource, chat_event::Event,
};
use tokio::time::Instant;
use tonic::Status;

use crate::State;
use crate::breaker::Permit;
use crate::catalog::{Deployment, Route};
use crate::config::ClientApi;
use crate::provider::ProviderError;
use crate::provider::anthropic::inbound::MessagesEncoder;
use crate::provider::anthropic::native::{self, NativeStream};
use crate::provider::chat_chunk::{self, ChunkView};
use crate::provider::sse::{SseError, SseStream};
use crate::provider::upstream_error;
use crate::provider::upstream_stream::StreamDecoder;
use output_scan::OutputScan;
use tally::Tally;
use usage_event::{AttemptEnd, AttemptRecord};

type Sse = SseStream<BoxStream<'static, reqwest::Result<Bytes>>>;

/// The upstream stream being relayed, and how to read it.
struct Upstream {
    events: Sse,
    reader: Reader,
    /// Chunks translated but not yet sent (one event can make several).
    pending: VecDeque<Bytes>,
    deployment: Arc<Deployment>,
    permit: Option<Permit>,
    /// The answer is complete: nothing more is read.
    finished: bool,
}

/// How an upstream stream's events are read.
enum Reader {
    /// OpenAI chunks as they are, or Anthropic events translated into them.
    Decoded(StreamDecoder),
    /// Anthropic events passed through to a Messages client (read only for
    /// accounting).
    Native(NativeStream),
}

enum Phase {
    /// Nothing sent upstream yet.
    Start,
    Streaming(Box<Upstream>),
    /// A `block` rule cut the answer: the upstream call is dropped; the
    /// chunks already queued go out, then the answer finishes.
    Cut,
    /// The answer is complete (or failed): one last event to send.
    Finish(Result<(), ProviderError>),
    /// The final event, after the usage chunk of a cut answer.
    Last(Event),
    Ended,
}

struct Relay {
    state: Arc<State>,
    route: Arc<Route>,
    envelope: Envelope,
    /// The client's API (from the envelope).
    api: ClientApi,
    /// Messages clients of a translated answer: re-encodes the OpenAI
    /// chunks as Anthropic events.
    encoder: Option<MessagesEncoder>,
    /// Frames ready for the client, sent before anything else.
    frames: VecDeque<Bytes>,
    body: Bytes,
    deadline: Instant,
    started: Instant,
    tally: Tally,
    phase: Phase,
    /// Upstream calls made (retries and fallbacks included).
    attempts: u32,
    /// The deployment that answered (or last failed).
    served_by: Option<Arc<Deployment>>,
    /// The upstream call in progress, until its usage event is emitted.
    current: Option<AttemptRecord>,
    /// What the attempts closed so far were billed.
    billed: Billed,
    /// The final event was produced; dropping the relay earlier means the
    /// edge went away.
    finished: bool,
    /// A passed-through Anthropic stream sent (or was given) its
    /// `message_stop`.
    native_stopped: bool,
    /// The tenant's content policy, when it checks answers.
    policy: Option<Arc<llmgw_policy::Policy>>,
    /// The policy's scan of the attempt in progress.
    output: Option<OutputScan>,
    /// Chunks to send before reading the upstream again (a policy rewrite
    /// can turn one chunk into several).
    outbox: VecDeque<Bytes>,
    /// The audit events of the attempt in progress (numbered per attempt).
    audit: Option<llmgw_audit::AuditEvents>,
    span: tracing::Span,
}

/// The events of one call; `span` is the call's span (events are polled by
/// the gRPC server, outside it). `cancel` completes when the edge asks to
/// stop. `policy` (see [`answer_policy`]) scans the answer.
pub fn relay(
    state: Arc<State>,
    route: Arc<Route>,
    envelope: Envelope,
    body: Bytes,
    policy: Option<Arc<llmgw_policy::Policy>>,
    span: tracing::Span,
    cancel: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = Result<ChatEvent, Status>> + Send + 'static {
    let relay = Relay {
        state,
        route,
        deadline: deadline(envelope.deadline_unix_ms),
        api: crate::catalog::api_of(envelope.api()),
        encoder: None,
        frames: VecDeque::new(),
        envelope,
        body,
        started: Instant::now(),
        tally: Tally::default(),
        phase: Phase::Start,
        attempts: 0,
        served_by: None,
        current: None,
        billed: Billed::default(),
        finished: false,
        native_stopped: false,
        policy,
        output: None,
        outbox: VecDeque::new(),
        audit: None,
        span,
    };
    let cancel: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(cancel);
    futures_util::stream::unfold(
        (relay, Some(cancel)),
        |(mut relay, mut cancel)| async move {
            let span = relay.span.clone();
            let next = async {
                let Some(asked) = &mut cancel else {
                    return relay.next_event().await;
                };
                // Dropping `next_event` mid-way drops the upstream call at once;
                // the attempt it was making is still open, and `cancelled`
                // closes it.
                let stop = tokio::select! {
                    biased;
                    () = asked.as_mut() => true,
                    event = relay.next_event() => return event,
                };
                debug_assert!(stop);
                cancel = None;
                Some(relay.cancelled().await)
            };
            let event = tracing::Instrument::instrument(next, span).await?;
            let last = matches!(event, Event::Done(_) | Event::Error(_));
            let billed = last.then_some(relay.billed);
            Some((
                Ok(ChatEvent {
                    billed,
                    event: Some(event),
                }),
                (relay, cancel),
            ))
        },
    )
}

impl Relay {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(Event::Chunk(frame));
            }
            match std::mem::replace(&mut self.phase, Phase::Ended) {
                Phase::Start => {
                    match tokio::time::timeout_at(self.deadline, self.connect()).await {
                        Ok(Ok(Some(completion))) => {
                            self.phase = Phase::Finish(Ok(()));
                            return Some(Event::Completion(completion));
                        }
                        Ok(Ok(None)) => {} // streaming: `connect` set the phase
                        Ok(Err(error)) => self.phase = Phase::Finish(Err(error)),
                        Err(_) => {
                            // The call in flight, if any, is dropped while
                            // the provider may be working on it.
                            let error = upstream_error::timeout();
                            self.close_attempt(AttemptEnd::Abandoned(error.code)).await;
                            self.phase = Phase::Finish(Err(error));
                        }
                    }
                }
                Phase::Streaming(mut upstream) => {
                    let next =
                        tokio::time::timeout_at(self.deadline, self.next_chunk(&mut upstream));
                    let result = match next.await {
                        Ok(Ok(Some(chunk))) => {
                            if self.output.as_ref().is_some_and(OutputScan::blocked) {
                                // Cancels the upstream call: its connection
                                // closes as the response is dropped. It did
                                // its job; the policy cut the answer.
                                if let Some(permit) = upstream.permit.take() {
                                    permit.success();
                                }
                                drop(upstream);
                                self.phase = Phase::Cut;
                            } else {
                                self.phase = Phase::Streaming(upstream);
                            }
                            match self.for_client(chunk) {
                                Some(chunk) => return Some(Event::Chunk(chunk)),
                                None => continue,
                            }
                        }
                        Ok(Ok(None)) => Ok(()),
                        Ok(Err(error)) => Err(error),
                        Err(_) => Err(upstream_error::timeout()),
                    };
                    // Mid-stream failures count against the deployment too.
                    if let Some(permit) = upstream.permit.take() {
                        match &result {
                            Err(error) if error.is_deployment_fault() => permit.failure(),
                            _ => permit.success(),
                        }
                    }
                    self.phase = Phase::Finish(result);
                }
                Phase::Cut => match self.outbox.pop_front() {
                    Some(chunk) => {
                        self.phase = Phase::Cut;
                        if let Some(chunk) = self.for_client(chunk) {
                            return Some(Event::Chunk(chunk));
                        }
                    }
                    None => self.phase = Phase::Finish(Ok(())),
                },
                Phase::Finish(result) => {
                    let last = self.finish(result).await;
                    if let Some(usage) = self.cut_usage_chunk(&last) {
                        self.frames.push_back(usage);
                    }
                    self.close_encoded(&last);
                    if let Some(first) = self.frames.pop_front() {
                        self.phase = Phase::Last(last);
                        return Some(Event::Chunk(first));
                    }
                    return Some(last);
                }
                Phase::Last(event) => return Some(event),
                Phase::Ended => return None,
            }
        }
    }

    /// The next chunk to forward; `None` once the upstream finished cleanly.
    async fn next_chunk(
        &mut self,
        upstream: &mut Upstream,
    ) -> Result<Option<Bytes>, ProviderError> {
        let idle = Duration::from_millis(upstream.deployment.timeouts.idle_ms);
        loop {
            if let Some(chunk) = self.outbox.pop_front() {
                return Ok(Some(chunk));
            }
            if upstream.finished {
                return Ok(None);
            }
            if self.output.as_ref().is_some_and(OutputScan::blocked) {
                return Ok(None);
            }
            if let Some(chunk) = upstream.pending.pop_front() {
                if let Some(chunk) = self.observe(chunk)? {
                    return Ok(Some(chunk));
                }
                continue;
            }
            let Some(event) = tokio::time::timeout(idle, upstream.events.next())
                .await
                .map_err(|_| upstream_error::timeout())?
            else {
                upstream.finished = true;
                if let Reader::Native(_) = upstream.reader {
                    return self.native_ended();
                }
                return self.ended(false);
            };
            let event = event.map_err(|error| {
                tracing::warn!(deployment = %upstream.deployment.name, error = %error, "upstream stream broke");
                let message = match error {
                    SseError::Transport(_) => "the model provider's stream was cut",
                    SseError::Invalid(_) => "the model provider's stream is not valid server-sent events",
                };
                ProviderError::new(ErrorCode::UpstreamError, message)
            })?;
            match &mut upstream.reader {
                Reader::Decoded(decoder) => {
                    let decoded = decoder.decode(event)?;
                    upstream.pending.extend(decoded.chunks);
                    if decoded.done && upstream.pending.is_empty() {
                        upstream.finished = true;
                        return self.ended(true);
                    }
                }
                Reader::Native(reader) => {
                    let seen =
                        reader.on_event(&event.event, &event.data, self.tally.generated_mut())?;
                    if let Some(usage) = seen.usage {
                        self.tally.report(usage);
                    }
                    if let Some(reason) = seen.finish_reason {
                        self.tally.finish_reason = Some(reason.to_owned());
                    }
                    self.native_stopped |= seen.stopped;
                    self.first_token_seen();
                    return Ok(Some(seen.frame));
                }
            }
        }
    }

    /// Accounts one OpenAI chunk; `None` if the client should not see it.
    fn observe(&mut self, chunk: Bytes) -> Result<Option<Bytes>, ProviderError> {
        let view: ChunkView =
            serde_json::from_slice(&chunk).map_err(|_| upstream_error::invalid_json())?;
        self.tally.observe(&view);
        self.first_token_seen();
        // We always ask upstream for usage; the usage-only chunk goes to the
        // client only if it asked for it too.
        let usage_only = view.choices.is_empty() && view.usage.is_some();
        if usage_only && !self.envelope.include_usage {
            return Ok(None);
        }
        if self.output.is_none() || usage_only {
            return Ok(Some(chunk));
        }
        // What the policy lets through instead waits in the outbox.
        let pass = self.scan_chunk(&chunk, &view)?;
        Ok(pass.then_some(chunk))
    }

    /// The upstream stream ended. Without a `finish_reason` so far, a clean
    /// end gets a synthesised finish chunk; an abrupt one is an error.
    fn ended(&mut self, clean: bool) -> Result<Option<Bytes>, ProviderError> {
        if self.tally.finish_reason.is_some() {
            return Ok(None);
        }
        if !clean {
            return Err(ProviderError::new(
                ErrorCode::UpstreamError,
                "the model provider's stream ended early",
            ));
        }
        // Kept: a cut answer's usage chunk names them too.
        let (id, created, model) = self.tally.first.clone().unwrap_or_default();
        if self.release_held_back(&id, created, &model) {
            // A block in the held-back text: the cut answer's last chunk is
            // queued already.
            return Ok(self.outbox.pop_front());
        }
        self.tally.finish_reason = Some("stop".to_owned());
        let finish = chat_chunk::finish_chunk(&id, created, &model, "stop");
        match self.outbox.pop_front() {
            Some(first) => {
                self.outbox.push_back(finish);
                Ok(Some(first))
            }
            None => Ok(Some(finish)),
        }
    }

    /// A passed-through Anthropic stream ended: complete after its
    /// `message_stop`; after its stop reason only, it gets the
    /// `message_stop` clients wait for; earlier, it was cut.
    fn native_ended(&mut self) -> Result<Option<Bytes>, ProviderError> {
        if self.native_stopped {
            return Ok(None);
        }
        if self.tally.finish_reason.is_some() {
            self.native_stopped = true;
            return Ok(Some(native::message_stop()));
        }
        Err(ProviderError::new(
            ErrorCode::UpstreamError,
            "the model provider's stream ended early",
        ))
    }

    /// A chunk on its way to the client: as it is, or re-encoded for a
    /// Messages client (which may make none, one or several frames).
    fn for_client(&mut self, chunk: Bytes) -> Option<Bytes> {
        let Some(encoder) = &mut self.encoder else {
            return Some(chunk);
        };
        let mut frames = Vec::new();
        encoder.on_chunk(&chunk, &mut frames);
        self.frames.extend(frames);
        self.frames.pop_front()
    }

    /// The end of a re-encoded Messages stream: `message_delta` with the
    /// usage the client is told, and `message_stop`, queued before the
    /// final event. An error ends the stream with an error event instead.
    fn close_encoded(&mut self, last: &Event) {
        let (Some(encoder), Event::Done(done)) = (&mut self.encoder, last) else {
            return;
        };
        if !self.envelope.stream {
            return;
        }
        let mut frames = Vec::new();
        encoder.finish(&done.usage.unwrap_or_default(), &mut frames);
        self.frames.extend(frames);
    }

    /// The edge asked to stop: the upstream call is already dropped; bill
    /// what it generated, and answer with a cancellation.
    async fn cancelled(&mut self) -> Event {
        self.phase = Phase::Ended;
        self.finished = true;
        self.close_attempt(AttemptEnd::Cancelled).await;
        tracing::info!(
            attempts = self.attempts,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            cost_nano_usd = self.billed.cost_nano_usd,
            "chat cancelled by the client; upstream call dropped"
        );
        Event::Error(
            ProviderError::new(ErrorCode::Cancelled, "the client cancelled the request")
                .into_proto(),
        )
    }

    /// Adds one closed attempt to the request's bill.
    fn bill(&mut self, usage: &Usage, cost_nano_usd: u64) {
        let billed = &mut self.billed;
        billed.prompt_tokens += usage.prompt_tokens;
        billed.completion_tokens += usage.completion_tokens;
        billed.cost_nano_usd += cost_nano_usd;
        billed.estimated |= usage.source() == UsageSource::Estimated;
    }

    async fn finish(&mut self, result: Result<(), ProviderError>) -> Event {
        self.finished = true;
        let outcome = match &result {
            Ok(()) => AttemptEnd::Ok,
            Err(error) => AttemptEnd::Failed(error.code),
        };
        // A call that failed before answering was closed by `attempt`.
        let usage = self.close_attempt(outcome).await.unwrap_or_default();
        let elapsed_ms = self.started.elapsed().as_millis() as u64;
        let deployment = self
            .served_by
            .as_ref()
            .map_or("", |deployment| deployment.name.as_str());
        match result {
            Ok(()) => {
                tracing::info!(
                    deployment,
                    attempts = self.attempts,
                    prompt_tokens = usage.prompt_tokens,
                    completion_tokens = usage.completion_tokens,
                    usage_source = usage.source().as_str_name(),
                    elapsed_ms,
                    "chat completed"
                );
                let served_by = self.served_by.as_deref();
                Event::Done(Done {
                    usage: Some(usage),
                    deployment: deployment.to_owned(),
                    provider: served_by.map_or("", |d| d.provider.as_str()).to_owned(),
                    upstream_model: served_by
                        .map_or_else(String::new, |d| d.upstream_model.clone()),
                    finish_reason: self.tally.finish_reason.take().unwrap_or_default(),
                    attempts: self.attempts,
                })
            }
            Err(error) => {
                tracing::info!(
                    deployment,
                    attempts = self.attempts,
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
            let span = self.span.clone();
            let _entered = span.enter();
            self.close_attempt_detached(AttemptEnd::Cancelled);
            tracing::info!(
                attempts = self.attempts,
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
