//! One usage event per upstream attempt, handed to the durable spool the
//! moment the attempt ends (however it ends), so billing sees every attempt
//! that cost money, and one row for each that did not.
//!
//! What an attempt is billed:
//! - the provider's reported usage when it sent some;
//! - otherwise, once the provider answered (2xx), or when we abandoned a call
//!   it was working on (the client went away, the deadline passed), our
//!   tokenizer's estimate of the prompt and of the text generated so far,
//!   flagged `estimated` (and `client_cancelled` for a disconnect);
//! - nothing when the provider refused the call (error status, connection
//!   failure): providers do not charge for those.
//!
//! Tokenizing is blocking work (the first use of a BPE loads it, up to half
//! a second), so estimates run on tokio's blocking pool, never on the
//! workers that relay other streams.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use llmgw_proto::ErrorCode;
use llmgw_proto::billing_v1::UsageEvent;
use llmgw_proto::router_v1::{Usage, UsageSource};
use tokio::time::Instant;

use super::Relay;
use crate::catalog::{Deployment, Prices, Route};
use crate::config::ClientApi;
use crate::provider::anthropic::inbound;
use crate::usage::spool::UsageSink;
use crate::usage::tokens;

/// The upstream call in progress, until its event is emitted.
pub(super) struct AttemptRecord {
    number: u32,
    route: Arc<Route>,
    deployment: Arc<Deployment>,
    started_at_ms: i64,
    started: Instant,
    /// The provider accepted the call (2xx): it is billable from here on.
    pub(super) answered: bool,
    /// Time to the first chunk (streams) or to the whole answer.
    first_token: Option<Duration>,
}

/// How an attempt ended.
#[derive(Clone, Copy)]
pub(super) enum AttemptEnd {
    Ok,
    /// The provider refused the call or failed it; whether it answered
    /// first decides whether it is billed.
    Failed(ErrorCode),
    /// We dropped a call the provider was working on: the deadline passed.
    Abandoned(ErrorCode),
    /// The client went away.
    Cancelled,
}

/// What an attempt is billed, before any tokenizer runs.
enum Billed {
    Known(Usage),
    Estimate {
        api: ClientApi,
        upstream_model: String,
        body: Bytes,
        generated: String,
    },
}

impl Billed {
    fn count(self) -> Usage {
        match self {
            Billed::Known(usage) => usage,
            Billed::Estimate {
                api,
                upstream_model,
                body,
                generated,
            } => {
                let prompt_tokens = prompt_tokens(api, &upstream_model, &body);
                let completion_tokens = tokens::text_tokens(&upstream_model, &generated);
                Usage {
                    prompt_tokens,
                    completion_tokens,
                    total_tokens: prompt_tokens + completion_tokens,
                    source: UsageSource::Estimated.into(),
                    ..Usage::default()
                }
            }
        }
    }
}

/// Our estimate of a request's prompt tokens, in its API's format. A
/// Messages request is counted as the chat request it translates to (the
/// same texts, the same per-message framing); one that does not translate
/// is counted as text, whole.
pub(crate) fn prompt_tokens(api: ClientApi, upstream_model: &str, body: &[u8]) -> u64 {
    match api {
        ClientApi::Chat => tokens::prompt_tokens(upstream_model, body),
        ClientApi::Embeddings => tokens::input_tokens(upstream_model, body),
        ClientApi::Messages => match inbound::to_chat_request(body, upstream_model, false) {
            Ok(chat) => tokens::prompt_tokens(upstream_model, &chat),
            Err(_) => tokens::text_tokens(upstream_model, &String::from_utf8_lossy(body)),
        },
    }
}

/// An attempt's event, waiting for its token counts.
struct Draft {
    event: UsageEvent,
    prices: Prices,
    sink: UsageSink,
}

impl Draft {
    /// Sends the event; returns the cost it bills.
    fn emit(mut self, usage: &Usage) -> u64 {
        let event = &mut self.event;
        event.prompt_tokens = usage.prompt_tokens;
        event.completion_tokens = usage.completion_tokens;
        event.cached_tokens = usage.cached_tokens;
        event.reasoning_tokens = usage.reasoning_tokens;
        event.cache_creation_tokens = usage.cache_creation_tokens;
        event.estimated = usage.source() == UsageSource::Estimated;
        event.cost_nano_usd = self.prices.cost_of(usage);
        // A refusal (spool full or stopped) is counted and logged, with the
        // event's identity and cost, by the spool itself.
        let cost = event.cost_nano_usd;
        let _ = self.sink.emit(self.event);
        cost
    }
}

impl Relay {
    pub(super) fn begin_attempt(&mut self, route: &Arc<Route>, deployment: &Arc<Deployment>) {
        self.tally = super::Tally::default();
        self.current = Some(AttemptRecord {
            number: self.attempts,
            route: route.clone(),
            deployment: deployment.clone(),
            started_at_ms: unix_ms(SystemTime::now()),
            started: Instant::now(),
            answered: false,
            first_token: None,
        });
    }

    /// Emits the event of the attempt in progress (if one is), adds it to
    /// the request's bill, and returns the usage it was billed.
    pub(super) async fn close_attempt(&mut self, outcome: AttemptEnd) -> Option<Usage> {
        let (draft, billed) = self.draft(outcome)?;
        let (usage, cost) = match billed {
            Billed::Known(usage) => {
                let cost = draft.emit(&usage);
                (usage, cost)
            }
            // Counted and emitted by one blocking task, so the event is
            // sent even if this future is dropped (the edge cancelled).
            estimate => tokio::task::spawn_blocking(move || {
                let usage = estimate.count();
                let cost = draft.emit(&usage);
                (usage, cost)
            })
            .await
            .unwrap_or_default(),
        };
        self.bill(&usage, cost);
        Some(usage)
    }

    /// [`Self::close_attempt`] where nothing can be awaited (the relay is
    /// being dropped): an estimate is counted and emitted on the blocking
    /// pool.
    pub(super) fn close_attempt_detached(&mut self, outcome: AttemptEnd) {
        let Some((draft, billed)) = self.draft(outcome) else {
            return;
        };
        let finish = move || {
            draft.emit(&billed.count());
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(finish)),
            Err(_) => finish(),
        }
    }

    /// Notes the first answer token of the attempt in progress.
    pub(super) fn first_token_seen(&mut self) {
        if let Some(record) = &mut self.current {
            record
                .first_token
                .get_or_insert_with(|| record.started.elapsed());
        }
    }

    fn draft(&mut self, outcome: AttemptEnd) -> Option<(Draft, Billed)> {
        let record = self.current.take()?;
        let billable = match outcome {
            AttemptEnd::Ok | AttemptEnd::Abandoned(_) | AttemptEnd::Cancelled => true,
            AttemptEnd::Failed(_) => record.answered,
        };
        let billed = match self.tally.reported() {
            Some(usage) if billable => Billed::Known(usage),
            None if billable => Billed::Estimate {
                api: self.api,
                upstream_model: record.deployment.upstream_model.clone(),
                body: self.body.clone(),
                generated: self.tally.take_generated(),
            },
            _ => Billed::Known(Usage {
                source: UsageSource::Reported.into(),
                ..Usage::default()
            }),
        };
        let status = match outcome {
            AttemptEnd::Ok => "ok".to_owned(),
            AttemptEnd::Failed(code) | AttemptEnd::Abandoned(code) => status_name(code),
            AttemptEnd::Cancelled => status_name(ErrorCode::Cancelled),
        };
        let duration = record.started.elapsed();
        let event = UsageEvent {
            request_id: self.envelope.request_id.clone(),
            attempt: record.number,
            tenant: self.envelope.tenant.clone(),
            key_id: self.envelope.key_id.clone(),
            model: self.envelope.model.clone(),
            route: record.route.alias.clone(),
            provider: record.deployment.provider.as_str().to_owned(),
            deployment: record.deployment.name.clone(),
            upstream_model: record.deployment.upstream_model.clone(),
            input_price_per_mtok: record.route.model.input_price_per_mtok.clone(),
            output_price_per_mtok: record.route.model.output_price_per_mtok.clone(),
            cache_read_price_per_mtok: record.route.model.cache_read_price_per_mtok.clone(),
            cache_write_price_per_mtok: record.route.model.cache_write_price_per_mtok.clone(),
            api: self.api.as_str().to_owned(),
            status,
            finish_reason: self.tally.finish_reason.clone().unwrap_or_default(),
            ttft_ms: record.first_token.map_or(0, |at| at.as_millis() as u64),
            duration_ms: duration.as_millis() as u64,
            started_at_ms: record.started_at_ms,
            ended_at_ms: record.started_at_ms + duration.as_millis() as i64,
            client_cancelled: matches!(outcome, AttemptEnd::Cancelled),
            // The delivery's span links back to the request with it.
            traceparent: llmgw_telemetry::traceparent_of(&self.span).unwrap_or_default(),
            // Filled in by `Draft::emit` once counted.
            ..UsageEvent::default()
        };
        let draft = Draft {
            event,
            prices: record.route.prices,
            sink: self.state.usage.clone(),
        };
        Some((draft, billed))
    }
}

/// `ERROR_CODE_UPSTREAM_ERROR` → `upstream_error`, for the ledger's status.
fn status_name(code: ErrorCode) -> String {
    code.as_str_name()
        .trim_start_matches("ERROR_CODE_")
        .to_ascii_lowercase()
}

fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_are_short_and_lowercase() {
        assert_eq!(status_name(ErrorCode::UpstreamError), "upstream_error");
        assert_eq!(status_name(ErrorCode::Cancelled), "cancelled");
    }
}
