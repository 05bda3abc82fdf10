//! The `llmgw.billing.v1.Accounts` gRPC service the edge calls to resolve an
//! API key it has not cached.

use std::sync::Arc;

use axum::response::{IntoResponse as _, Response};
use llmgw_proto::ErrorCode;
use llmgw_proto::billing_v1::accounts_server::Accounts;
use llmgw_proto::billing_v1::{KeyInfo, LookupKeyRequest, LookupKeyResponse};
use llmgw_proto::limits_v1::Limits;
use tonic::service::Routes;
use tonic::{Request, Status};
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::store::Store;

pub struct AccountsService {
    pub(crate) store: Store,
    pub(crate) metrics: Arc<Metrics>,
}

#[tonic::async_trait]
impl Accounts for AccountsService {
    async fn lookup_key(
        &self,
        request: Request<LookupKeyRequest>,
    ) -> Result<tonic::Response<LookupKeyResponse>, Status> {
        // The digest is not recorded: it identifies a key as well as the
        // key itself does for anyone holding a copy of the database.
        let span = tracing::info_span!(
            "billing.lookup_key",
            found = tracing::field::Empty,
            key_id = tracing::field::Empty,
        );
        async move {
            let request = request.into_inner();
            let Ok(digest) = <&[u8; 32]>::try_from(&request.key_digest[..]) else {
                return Err(ErrorCode::InvalidRequest.status(format!(
                    "key_digest must be the 32-byte SHA-256 of the key, got {} bytes",
                    request.key_digest.len()
                )));
            };
            let found = match self.store.lookup_digest(digest).await {
                Ok(found) => found,
                Err(error) => {
                    self.metrics.lookup("error");
                    tracing::warn!(error = %error, "key lookup failed");
                    // Unavailable tells the edge to fall back to its cache
                    // and to answer unknown keys 503, not 401: the key may
                    // well be valid.
                    return Err(
                        ErrorCode::Unavailable.status("the accounts database is unavailable")
                    );
                }
            };
            let span = tracing::Span::current();
            span.record("found", found.is_some());
            let Some(info) = found else {
                self.metrics.lookup("not_found");
                return Ok(tonic::Response::new(LookupKeyResponse {
                    found: false,
                    key: None,
                }));
            };
            self.metrics.lookup("found");
            span.record("key_id", info.key_id.as_str());
            Ok(tonic::Response::new(LookupKeyResponse {
                found: true,
                key: Some(KeyInfo {
                    key_id: info.key_id,
                    name: info.name,
                    tenant: info.tenant,
                    allowed_models: info.allowed_models,
                    expires_at_unix_ms: expires_at_unix_ms(info.expires_at),
                    key_limits: key_limits(&info.limits),
                    // A budget of 0 is a budget (nothing may be spent).
                    tenant_limits: info.tenant_monthly_budget_nano_usd.map(|budget| Limits {
                        monthly_budget_nano_usd: Some(budget),
                        ..Limits::default()
                    }),
                }),
            }))
        }
        .instrument(span)
        .await
    }
}

/// The stored limits (the admin API's JSON) on the wire; absent when the
/// database sets none: the edge then sends none on.
fn key_limits(limits: &crate::store::Limits) -> Option<Limits> {
    (*limits != crate::store::Limits::default()).then_some(Limits {
        requests_per_minute: limits.requests_per_minute,
        tokens_per_minute: limits.tokens_per_minute,
        tokens_per_day: limits.tokens_per_day,
        concurrent: limits.concurrent,
        monthly_budget_nano_usd: None,
    })
}

/// On the wire 0 means "never": a stored time at or before the epoch must
/// not turn into a key that never expires, so it becomes 1 ms (long past).
fn expires_at_unix_ms(expires_at: Option<i64>) -> u64 {
    match expires_at {
        None => 0,
        Some(ms) => u64::try_from(ms).unwrap_or(0).max(1),
    }
}

/// tonic answers unknown paths with HTTP 200 and `grpc-status: 12`, which
/// an HTTP client reads as success. Plain HTTP requests (say, someone
/// trying the admin API on this port) get a real 404 instead; gRPC clients
/// still get their `UNIMPLEMENTED`.
pub(crate) fn answer_404_to_plain_http(routes: &mut Routes) {
    async fn fallback(request: axum::extract::Request) -> Response {
        let grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/grpc"));
        if grpc {
            // gRPC's own answer to an unknown method, not an ErrorCode:
            // clients' stubs recognise UNIMPLEMENTED as exactly that.
            Status::unimplemented("").into_http::<axum::body::Body>()
        } else {
            (
                http::StatusCode::NOT_FOUND,
                "not found: this is the billing gRPC port; the admin API listens on admin_listen\n",
            )
                .into_response()
        }
    }
    let router = std::mem::take(routes.axum_router_mut());
    *routes.axum_router_mut() = router.fallback(fallback);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_zero_only_means_never() {
        assert_eq!(expires_at_unix_ms(None), 0);
        assert_eq!(expires_at_unix_ms(Some(0)), 1);
        assert_eq!(expires_at_unix_ms(Some(-5)), 1);
        assert_eq!(
            expires_at_unix_ms(Some(1_700_000_000_000)),
            1_700_000_000_000
        );
    }
}
