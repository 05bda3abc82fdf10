//! Admission control: at most `max_in_flight` API requests at once, each
//! counted from arrival to the last byte of its answer (a stream holds its
//! place until it ends).
//!
//! Past the limit a request is refused at once with 503 `overloaded` and
//! `Retry-After`, before its body is read or its key looked up: under
//! overload, a fast refusal lets the client back off or go to another
//! replica, while every admitted request (and every stream already flowing)
//! keeps the CPU, the quota round trips and the upstream connections it
//! needs. Without it, every request would slow down together until all of
//! them missed their deadlines.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http_body_util::BodyExt as _;
use llmgw_proto::ErrorCode;
use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::metrics::Metrics;

/// What a refused client is told to wait: long enough for a burst to pass,
/// short enough not to idle a client that could be served.
const RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct Admission {
    places: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Admission {
    pub fn new(max_in_flight: usize, metrics: Arc<Metrics>) -> Admission {
        Admission {
            places: Arc::new(Semaphore::new(max_in_flight)),
            metrics,
        }
    }
}

/// The middleware: API routes (`/v1/...`) need a place; health checks and
/// metrics never do, so an overloaded edge still reports itself.
pub(crate) async fn admit(
    State(admission): State<Admission>,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let Ok(place) = admission.places.clone().try_acquire_owned() else {
        admission.metrics.overloaded.inc();
        let refusal = ApiError::new(
            ErrorCode::Overloaded,
            "The gateway is at capacity; retry the request shortly.",
        )
        .with_retry_after(RETRY_AFTER);
        // In the caller's protocol: Anthropic's SDKs retry its 529.
        return if request.uri().path().starts_with("/v1/messages") {
            refusal.into_anthropic_response()
        } else {
            refusal.into_response()
        };
    };
    // The place goes with the body: released when its last frame has been
    // sent or the client went away and the body was dropped.
    next.run(request).await.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _ = &place;
            frame
        }))
    })
}
