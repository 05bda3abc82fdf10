//! Bad input to the usage routes: 400 with the OpenAI-style error body, the
//! parameter at fault and a message that says what to send instead; 404
//! for an unknown request; the admin token required as everywhere else.

use crate::on_both_backends;
use crate::support::{Backend, start};

on_both_backends!(
    bad_queries_are_400_with_a_clear_message,
    usage_needs_the_admin_token
);

async fn bad_queries_are_400_with_a_clear_message(backend: Backend) {
    let service = start(backend).await;
    let cases = [
        (
            "/admin/v1/usage?from=2026-13-01&to=2026-12-01",
            "from",
            "not a calendar date",
        ),
        (
            "/admin/v1/usage?from=2026-11-01&to=tomorrow",
            "to",
            "YYYY-MM-DD",
        ),
        ("/admin/v1/usage?from=2026-11-01", "to", "to is missing"),
        ("/admin/v1/usage?to=2026-11-01", "from", "from is missing"),
        (
            "/admin/v1/usage?from=2026-12-01&to=2026-11-01",
            "from",
            "is after to",
        ),
        (
            "/admin/v1/usage?from=2025-01-01&to=2026-12-01",
            "to",
            "at most 366",
        ),
        (
            "/admin/v1/usage?group_by=model,modle",
            "group_by",
            "unknown group_by \"modle\"",
        ),
        (
            "/admin/v1/usage?format=xml",
            "format",
            "expected csv or json",
        ),
        (
            "/admin/v1/usage?groupby=model",
            "groupby",
            "unknown query parameter",
        ),
        (
            "/admin/v1/usage?tenant=a&tenant=b",
            "tenant",
            "more than once",
        ),
        ("/admin/v1/usage?tenant=", "tenant", "tenant is empty"),
        ("/admin/v1/usage/export", "month", "month is required"),
        ("/admin/v1/usage/export?month=2026-13", "month", "YYYY-MM"),
        (
            "/admin/v1/usage/export?month=2026-11-01",
            "month",
            "YYYY-MM",
        ),
        (
            "/admin/v1/usage/export?month=2026-11&key_id=k",
            "key_id",
            "unknown query parameter",
        ),
    ];
    for (path, param, message) in cases {
        let answer = service.get(path).await;
        answer.assert_error(400, Some(param));
        let text = answer.json["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{path}: {text:?} lacks {message:?}");
        assert_eq!(answer.json["error"]["type"], "invalid_request_error");
    }
    let missing = service
        .get("/admin/v1/usage/requests/no-such-request")
        .await;
    missing.assert_error(404, None);
    let openapi = service.get("/admin/v1/openapi.json").await;
    for path in [
        "/admin/v1/usage",
        "/admin/v1/usage/requests/{request_id}",
        "/admin/v1/usage/export",
    ] {
        assert!(
            openapi.json["paths"][path]["get"].is_object(),
            "{path} in the OpenAPI document"
        );
    }
    service.stop().await.unwrap();
}

async fn usage_needs_the_admin_token(backend: Backend) {
    let service = start(backend).await;
    for path in [
        "/admin/v1/usage",
        "/admin/v1/usage/requests/r1",
        "/admin/v1/usage/export?month=2026-11",
    ] {
        let response = service.http.get(service.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        let wrong = service
            .http
            .get(service.url(path))
            .bearer_auth("not-the-token-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
    }
    service.stop().await.unwrap();
}
