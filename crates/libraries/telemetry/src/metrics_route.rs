//! `GET /metrics` for every service: the OpenMetrics text a service renders,
//! served over HTTP/1 on its gRPC port (the server needs
//! `accept_http1(true)`), or on the edge's own HTTP router.

use axum::response::IntoResponse;
use axum::routing::get;
use tonic::service::Routes;

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A `/metrics` response with `text`.
pub fn metrics_response(text: String) -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        text,
    )
}

/// Adds `GET /metrics` to a gRPC server's routes.
pub fn with_metrics_route(
    mut routes: Routes,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Routes {
    let handler = move || {
        let render = render.clone();
        async move { metrics_response(render()) }
    };
    *routes.axum_router_mut() =
        std::mem::take(routes.axum_router_mut()).route("/metrics", get(handler));
    routes
}
