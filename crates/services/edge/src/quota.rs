//! The edge's side of quotas: reserve before calling the router, settle when
//! the answer ends (with what the router billed, so quota counters and the
//! ledger agree), and OpenAI's `x-ratelimit-*` headers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use llmgw_grpc::Channel;
use llmgw_proto::ErrorCode;
use llmgw_proto::quota_v1::quota_client::QuotaClient;
use llmgw_proto::quota_v1::{
    AcquireRequest, AcquireResponse, LimitKind, SettleRequest, Subject, Window,
};
use llmgw_proto::router_v1::{Billed, Model};
use llmgw_telemetry::OutageLog;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;
use tracing::Instrument as _;

use crate::auth::AccountLimits;
use crate::catalog::Prices;
use crate::error::ApiError;
use crate::quota_session::QuotaLink;

/// What the edge does when the quota service cannot be reached in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    /// Serve the request unlimited (and count it): an outage of the quota
    /// service does not take the gateway down.
    #[default]
    Open,
    /// Refuse with 503.
    Closed,
}

/// Output tokens reserved when neither the request nor the model caps them.
const DEFAULT_MAX_TOKENS: u64 = 4_096;

/// What a request may use, for its reservation.
pub struct Demand<'a> {
    pub model: &'a Model,
    /// The model's prices, parsed once per catalog refresh.
    pub prices: Prices,
    pub prompt_chars: u64,
    /// The request's own cap on output tokens.
    pub max_tokens: Option<u64>,
}

/// The quota reservation held for one request. A guard: it settles exactly
/// once, when dropped, with what is known of the request's usage by then.
pub struct Settlement {
    link: Arc<QuotaLink>,
    request: SettleRequest,
    used: Used,
}

/// What a request is known to have used.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Used {
    /// The router was not (successfully) called: nothing.
    Nothing,
    /// The router is working on it, or its answer was lost.
    Unknown,
    /// The router's bill, summed over all attempts.
    Billed(Billed),
}

pub struct Quota {
    link: Arc<QuotaLink>,
    timeout: Duration,
    on_unreachable: Unreachable,
    /// An unreachable quota service is logged once a minute, not per request.
    outage_log: OutageLog,
    /// Every decision taken without the quota service.
    unreachable_total: Counter,
    /// How long the quota service took to answer each Acquire.
    decision_seconds: Histogram,
    /// Until when (unix ms) requests carrying no limits of their own skip
    /// Acquire: the quota service said its config limits nobody.
    nobody_limited_until_ms: AtomicU64,
}

/// How long the edge trusts "the quota config limits nobody" before asking
/// again: a quota service restarted with limits is obeyed within this.
const NOBODY_LIMITED_TRUST_MS: u64 = 10_000;

impl Quota {
    pub fn new(
        channel: Channel,
        timeout: Duration,
        on_unreachable: Unreachable,
        unreachable_total: Counter,
        decision_seconds: Histogram,
    ) -> Quota {
        Quota {
            link: Arc::new(QuotaLink::new(
                QuotaClient::new(channel.clone()),
                !llmgw_grpc::is_in_process(&channel),
            )),
            timeout,
            on_unreachable,
            outage_log: OutageLog::new(Duration::from_secs(60)),
            unreachable_total,
            decision_seconds,
            nobody_limited_until_ms: AtomicU64::new(0),
        }
    }

    /// Reserves the request's limits (the quota config's, with `limits` from
    /// the accounts database over them), and the rate-limit headers to send
    /// either way. `Ok(None)`: served without a lease (quota unreachable,
    /// policy open).
    pub async fn acquire(
        &self,
        request_id: &str,
        subject: Subject,
        limits: AccountLimits,
        demand: Demand<'_>,
    ) -> (Result<Option<Settlement>, ApiError>, HeaderMap) {
        let Demand {
            model,
            prices,
            prompt_chars,
            max_tokens,
        } = demand;
        // Nothing can limit this request: no call at all (two loopback
        // gRPC calls are most of what a quota check costs).
        let carries_none = limits == AccountLimits::default();
        if carries_none && crate::unix_ms() < self.nobody_limited_until_ms.load(Ordering::Relaxed) {
            return (Ok(None), HeaderMap::new());
        }
        let prompt_estimate = prompt_chars.div_ceil(4);
        let max_tokens = max_tokens
            .or((model.max_output_tokens > 0).then_some(model.max_output_tokens))
            .unwrap_or(DEFAULT_MAX_TOKENS);
        let tokens = prompt_estimate + max_tokens;
        let cost = prices.cost_nano_usd(prompt_estimate, max_tokens);
        let request = AcquireRequest {
            request_id: request_id.to_owned(),
            subject: Some(subject.clone()),
            tokens,
            cost_nano_usd: cost,
            key_limits: limits.key,
            tenant_limits: limits.tenant,
        };
        // The settle of this reservation, once its usage is known.
        let settle = SettleRequest {
            request_id: request_id.to_owned(),
            subject: Some(subject),
            reserved_tokens: tokens,
            actual_tokens: 0,
            reserved_cost_nano_usd: cost,
            actual_cost_nano_usd: 0,
            degraded: false,
            // The Acquire's limits, so the same counters are adjusted.
            key_limits: limits.key,
            tenant_limits: limits.tenant,
        };
        let mut call = Box::pin({
            let link = self.link.clone();
            async move { link.acquire(request).await }
        });
        let asked = Instant::now();
        let answer = match tokio::time::timeout(self.timeout, &mut call).await {
            Ok(Ok(answer)) => {
                self.decision_seconds.observe(asked.elapsed().as_secs_f64());
                if let Some(outage) = self.outage_log.recovered() {
                    tracing::info!(
                        failures = outage.failures,
                        outage_secs = outage.lasted.as_secs(),
                        "quota service reachable again"
                    );
                }
                answer
            }
            Ok(Err(status)) => return (self.unreachable(&status.to_string()), HeaderMap::new()),
            Err(_) => {
                self.hand_back_if_granted(call, settle);
                return (self.unreachable("timed out"), HeaderMap::new());
            }
        };
        let headers = headers(&answer);
        if !answer.allowed {
            return (Err(denial(&answer)), headers);
        }
        if answer.unlimited {
            if answer.config_limits_nobody && carries_none {
                self.nobody_limited_until_ms.store(
                    crate::unix_ms() + NOBODY_LIMITED_TRUST_MS,
                    Ordering::Relaxed,
                );
            }
            // Nothing was reserved: nothing to settle.
            return (Ok(None), headers);
        }
        let settlement = Settlement {
            link: self.link.clone(),
            request: SettleRequest {
                degraded: answer.degraded,
                ..settle
            },
            used: Used::Nothing,
        };
        (Ok(Some(settlement)), headers)
    }

    /// An Acquire the edge stopped waiting for still reaches the quota
    /// service, which may grant it; the request was served without a lease
    /// (or refused), so nobody would settle it, and its reservation would
    /// hold budget for the rest of the month. The call goes on in the
    /// background and whatever it was granted is settled as unused.
    fn hand_back_if_granted<F>(&self, call: F, settle: SettleRequest)
    where
        F: Future<Output = Result<AcquireResponse, tonic::Status>> + Send + 'static,
    {
        let link = self.link.clone();
        tokio::spawn(
            async move {
                let Ok(answer) = call.await else { return };
                if !answer.allowed || answer.unlimited {
                    return; // Nothing was reserved.
                }
                // A lost settle is released by the lease timeout.
                link.settle(SettleRequest {
                    degraded: answer.degraded,
                    ..settle
                });
            }
            .in_current_span(),
        );
    }

    fn unreachable(&self, error: &str) -> Result<Option<Settlement>, ApiError> {
        self.unreachable_total.inc();
        if let Some(failures) = self.outage_log.failed() {
            tracing::warn!(error, failures, policy = ?self.on_unreachable, "quota service unreachable (logged once a minute)");
        }
        match self.on_unreachable {
            Unreachable::Open => Ok(None),
            Unreachable::Closed => Err(ApiError::new(
                ErrorCode::Unavailable,
                "limits cannot be checked right now; retry the request",
            )),
        }
    }
}

impl Settlement {
    /// The router has the request: until its bill arrives, the usage is
    /// unknown.
    pub fn router_called(&mut self) {
        self.used = Used::Unknown;
    }

    /// The router's bill for the request.
    pub fn billed(&mut self, billed: Billed) {
        self.used = Used::Billed(billed);
    }
}

/// Replaces the reservation with what was used: the router's bill; nothing
/// if the router was never reached; and when the bill never came (the
/// router's answer was cut), the reservation itself, which is what the
/// quota service would keep once the lease times out, settled now so the
/// concurrency slot is freed at once.
impl Drop for Settlement {
    fn drop(&mut self) {
        let request = &mut self.request;
        (request.actual_tokens, request.actual_cost_nano_usd) = match self.used {
            Used::Nothing => (0, 0),
            Used::Unknown => (request.reserved_tokens, request.reserved_cost_nano_usd),
            Used::Billed(billed) => (
                billed.prompt_tokens + billed.completion_tokens,
                billed.cost_nano_usd,
            ),
        };
        // Off the response path (queued on the session, under the
        // request's span, so the settle is part of its trace); a lost
        // settle is repaired by the lease timeout. No runtime (the process
        // is exiting): the same.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.link.settle(std::mem::take(&mut self.request));
    }
}

fn denial(answer: &AcquireResponse) -> ApiError {
    if answer.unavailable {
        return ApiError::new(
            ErrorCode::Unavailable,
            "limits cannot be checked right now; retry the request",
        );
    }
    let scope = match answer.denied_scope.as_str() {
        "tenant" => "your organization",
        "key_model" => "this API key for this model",
        _ => "this API key",
    };
    let retry = Duration::from_millis(answer.retry_after_ms);
    let error = match answer.denied_by() {
        LimitKind::MonthlyBudget => ApiError::new(
            ErrorCode::InsufficientQuota,
            format!(
                "You exceeded the monthly budget of {scope}. It resets at the start of next month (UTC)."
            ),
        ),
        kind => {
            let what = match kind {
                LimitKind::TokensPerMinute => "tokens per minute",
                LimitKind::TokensPerDay => "tokens per day",
                LimitKind::Concurrent => "concurrent requests",
                LimitKind::RequestsPerMinute
                | LimitKind::MonthlyBudget
                | LimitKind::Unspecified => "requests per minute",
            };
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "Rate limit reached for {what} on {scope}. Please try again in {:.1}s.",
                    retry.as_secs_f64()
                ),
            )
        }
    };
    error.with_retry_after(retry)
}

/// OpenAI's headers: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
/// Static names and integer values (`HeaderValue::from`): this runs for
/// every request, and formatting each name and number allocated twice per
/// header.
fn headers(answer: &AcquireResponse) -> HeaderMap {
    const NAMES: [[&str; 3]; 2] = [
        [
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
        ],
        [
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
    ];
    let mut headers = HeaderMap::new();
    for (names, window) in NAMES.iter().zip([&answer.requests, &answer.tokens]) {
        let Some(Window {
            limit,
            remaining,
            reset_ms,
        }) = window
        else {
            continue;
        };
        let [limit_name, remaining_name, reset_name] = names.map(HeaderName::from_static);
        headers.insert(limit_name, HeaderValue::from(*limit));
        headers.insert(remaining_name, HeaderValue::from(*remaining));
        if let Ok(reset) = HeaderValue::try_from(format!("{reset_ms}ms")) {
            headers.insert(reset_name, reset);
        }
    }
    headers
}
