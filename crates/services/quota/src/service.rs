//! The `llmgw.quota.v1.Quota` gRPC service.

use std::sync::Arc;
use std::time::Duration;

use llmgw_limiter::{Acquire, Decision, Kind, Settle};
use llmgw_proto::ErrorCode;
use llmgw_proto::limits_v1::Limits;
use llmgw_proto::quota_v1::SessionCall;
use llmgw_proto::quota_v1::quota_server::Quota;
use llmgw_proto::quota_v1::{
    AcquireRequest, AcquireResponse, LimitKind, SettleRequest, SettleResponse, Subject, Window,
};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::rules::{self, Overrides, Rules};
use crate::store::{self, Store, Verdict};

/// What every call shares.
pub(crate) struct State {
    pub rules: Rules,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub lease_timeout: Duration,
}

pub struct QuotaService {
    pub(crate) state: Arc<State>,
    /// Cancelled when the server starts shutting down: sessions stop
    /// reading calls and end once the calls they read are answered.
    pub(crate) stopping: CancellationToken,
}

#[tonic::async_trait]
impl Quota for QuotaService {
    async fn acquire(
        &self,
        request: Request<AcquireRequest>,
    ) -> Result<Response<AcquireResponse>, Status> {
        let span = acquire_span(request.get_ref());
        acquire(&self.state, request.into_inner())
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn settle(
        &self,
        request: Request<SettleRequest>,
    ) -> Result<Response<SettleResponse>, Status> {
        let span = settle_span(request.get_ref());
        settle(&self.state, request.into_inner())
            .instrument(span)
            .await?;
        Ok(Response::new(SettleResponse {}))
    }

    type SessionStream = crate::session::Answers;

    async fn session(
        &self,
        request: Request<tonic::Streaming<SessionCall>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let answers = crate::session::start(
            self.state.clone(),
            request.into_inner(),
            self.stopping.clone(),
        );
        Ok(Response::new(answers))
    }
}

/// The span of one Acquire, a child of the current span (the call's, or
/// the session message's).
pub(crate) fn acquire_span(body: &AcquireRequest) -> tracing::Span {
    let subject = body.subject.as_ref();
    tracing::info_span!(
        "quota.acquire",
        request_id = %body.request_id,
        tenant = subject.map_or("", |s| &s.tenant),
        key_id = subject.map_or("", |s| &s.key_id),
        model = subject.map_or("", |s| &s.model),
        allowed = tracing::field::Empty,
        degraded = tracing::field::Empty,
    )
}

pub(crate) fn settle_span(body: &SettleRequest) -> tracing::Span {
    let subject = body.subject.as_ref();
    tracing::info_span!(
        "quota.settle",
        request_id = %body.request_id,
        tenant = subject.map_or("", |s| &s.tenant),
        key_id = subject.map_or("", |s| &s.key_id),
        model = subject.map_or("", |s| &s.model),
        degraded = body.degraded,
    )
}

/// Checks and reserves every limit that applies (run inside its
/// [`acquire_span`]).
pub(crate) async fn acquire(
    state: &State,
    request: AcquireRequest,
) -> Result<AcquireResponse, Status> {
    let subject = validate(
        &request.request_id,
        request.subject.as_ref(),
        overrides(request.key_limits, request.tenant_limits),
    )?;
    let buckets = state.rules.buckets(&subject);
    let unlimited = buckets.is_empty();
    // Nothing limits this subject: no store, no Redis round trip.
    let outcome = if unlimited {
        Verdict {
            decision: store::allowed(),
            degraded: false,
            unavailable: false,
        }
    } else {
        let acquire = Arc::new(Acquire {
            tenant: subject.tenant.to_owned(),
            lease_id: request.request_id.clone(),
            buckets,
            tokens: request.tokens,
            cost_nano_usd: request.cost_nano_usd,
            lease_ttl_ms: millis(state.lease_timeout),
        });
        state.store.acquire(acquire).await
    };
    let outcome_label = match (&outcome.decision, outcome.unavailable) {
        (_, true) => "unavailable",
        (decision, false) if decision.allowed => "allowed",
        _ => "denied",
    };
    state.metrics.decision(outcome_label, outcome.degraded);
    let span = tracing::Span::current();
    span.record("allowed", outcome.decision.allowed);
    span.record("degraded", outcome.degraded);
    Ok(AcquireResponse {
        unlimited,
        config_limits_nobody: state.rules.limit_nobody(),
        ..response(outcome)
    })
}

/// Replaces a reservation with what was used (run inside its
/// [`settle_span`]).
pub(crate) async fn settle(state: &State, request: SettleRequest) -> Result<(), Status> {
    // The same limits as the Acquire's, so the same counters.
    let subject = validate(
        &request.request_id,
        request.subject.as_ref(),
        overrides(request.key_limits, request.tenant_limits),
    )?;
    let buckets = state.rules.buckets(&subject);
    if !buckets.is_empty() {
        let settle = Arc::new(Settle {
            tenant: subject.tenant.to_owned(),
            lease_id: request.request_id.clone(),
            buckets,
            reserved_tokens: request.reserved_tokens,
            actual_tokens: request.actual_tokens,
            reserved_cost_nano_usd: request.reserved_cost_nano_usd,
            actual_cost_nano_usd: request.actual_cost_nano_usd,
        });
        // A settle Redis did not take is logged and counted by the store;
        // the lease timeout releases it, so the caller has nothing to retry.
        state.store.settle(settle, request.degraded).await;
    }
    Ok(())
}

fn validate<'a>(
    request_id: &'a str,
    subject: Option<&'a Subject>,
    overrides: Overrides,
) -> Result<rules::Subject<'a>, Status> {
    let invalid = |message: &str| Status::new(ErrorCode::InvalidRequest.grpc_code(), message);
    if request_id.is_empty() {
        return Err(invalid("request_id is required"));
    }
    let subject = subject.ok_or_else(|| invalid("subject is required"))?;
    if subject.tenant.is_empty() {
        return Err(invalid("subject.tenant is required"));
    }
    if subject.key_id.is_empty() {
        return Err(invalid("subject.key_id is required"));
    }
    Ok(rules::Subject {
        tenant: &subject.tenant,
        key_id: &subject.key_id,
        model: &subject.model,
        overrides,
    })
}

/// The limits a request carries, per scope.
fn overrides(key: Option<Limits>, tenant: Option<Limits>) -> Overrides {
    Overrides {
        key: key.map_or_else(llmgw_limiter::Limits::default, limits),
        tenant: tenant.map_or_else(llmgw_limiter::Limits::default, limits),
    }
}

/// A budget above what the limiter counts exactly is, for every practical
/// purpose, no budget: it is held at that maximum rather than refused (a
/// refused call would serve the request unlimited at the edge anyway).
fn limits(wire: Limits) -> llmgw_limiter::Limits {
    llmgw_limiter::Limits {
        requests_per_minute: wire.requests_per_minute,
        tokens_per_minute: wire.tokens_per_minute,
        tokens_per_day: wire.tokens_per_day,
        concurrent: wire.concurrent,
        monthly_budget_nano_usd: wire
            .monthly_budget_nano_usd
            .map(|budget| budget.min(llmgw_usd::MAX_EXACT_NANO_USD)),
    }
}

fn response(outcome: Verdict) -> AcquireResponse {
    let Decision {
        allowed,
        denied,
        retry_after_ms,
        requests,
        tokens,
    } = outcome.decision;
    let window = |window: llmgw_limiter::Window| Window {
        limit: window.limit,
        remaining: window.remaining,
        reset_ms: window.reset_ms,
    };
    AcquireResponse {
        allowed,
        denied_by: denied.map_or(LimitKind::Unspecified, |(_, kind)| limit_kind(kind)) as i32,
        denied_scope: denied.map_or_else(String::new, |(scope, _)| scope.as_str().to_owned()),
        retry_after_ms: if allowed { 0 } else { retry_after_ms },
        requests: requests.map(window),
        tokens: tokens.map(window),
        degraded: outcome.degraded,
        unavailable: outcome.unavailable,
        unlimited: false,
        config_limits_nobody: false,
    }
}

fn limit_kind(kind: Kind) -> LimitKind {
    match kind {
        Kind::RequestsPerMinute => LimitKind::RequestsPerMinute,
        Kind::TokensPerMinute => LimitKind::TokensPerMinute,
        Kind::TokensPerDay => LimitKind::TokensPerDay,
        Kind::Concurrent => LimitKind::Concurrent,
        Kind::MonthlyBudget => LimitKind::MonthlyBudget,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
