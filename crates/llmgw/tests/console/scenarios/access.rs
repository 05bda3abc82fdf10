//! Who may do what from the page: changes without the CSRF token are
//! refused, a finance session neither sees nor uses key management, and an
//! expired session sends the user back to sign in.

use serde_json::{Value, json};

use super::{Context, sign_in};
use crate::browser::Browser;
use crate::fixtures::TENANTS;

pub async fn changes_need_the_csrf_token(ctx: &Context<'_>, browser: &Browser) {
    let json = json!({"Content-Type": "application/json"});
    let body = r#"{"name":"csrf-probe"}"#;
    let (status, text) = browser
        .fetch("POST", "/admin/v1/tenants", json.clone(), Some(body))
        .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("CSRF"), "{text}");
    let wrong = json!({"Content-Type": "application/json", "X-CSRF-Token": "0".repeat(64)});
    let (status, text) = browser
        .fetch("POST", "/admin/v1/tenants", wrong, Some(body))
        .await;
    assert_eq!(status, 403, "{text}");
    let (status, _) = ctx
        .gateway
        .admin_call(reqwest::Method::GET, "/admin/v1/tenants/csrf-probe", None)
        .await;
    assert_eq!(status, 404, "nothing was created");
    // Reads need no token.
    let (status, _) = browser
        .fetch("GET", "/admin/v1/tenants", json!({}), None)
        .await;
    assert_eq!(status, 200);
    // The console is only on the admin listener, never on the public edge.
    let edge = ctx
        .gateway
        .http
        .get(format!("http://{}/ui/", ctx.gateway.edge))
        .send()
        .await
        .unwrap();
    assert_eq!(edge.status(), 404);
}

pub async fn finance_cannot_manage_keys(ctx: &Context<'_>, browser: &Browser, credential: &str) {
    browser.goto(&ctx.gateway.admin_url("/ui/")).await;
    sign_in(browser, credential).await;
    assert!(browser.text("#who").await.ends_with(" · finance"));
    // Budgets are finance's business: the overview shows them.
    browser.element("#budgets table").await;
    let link = browser.element("a[data-page=tenants]").await;
    assert!(
        !link.is_displayed().await.unwrap(),
        "no key management in the navigation"
    );
    // Typed in by hand, the page refuses without asking the API.
    browser.goto(&ctx.gateway.admin_url("/ui/#/tenants")).await;
    let refusal = browser.text("#not-allowed").await;
    assert!(refusal.contains("admin role"), "{refusal}");
    browser
        .screenshot(ctx.screenshots, "06-finance-refused.png")
        .await;
    // And the API refuses this session whatever the page does.
    let keys = format!("/admin/v1/tenants/{}/keys", TENANTS[0]);
    let (status, text) = browser.fetch("GET", &keys, json!({}), None).await;
    assert_eq!(status, 403, "{text}");
    let (_, session) = browser.fetch("GET", "/ui/session", json!({}), None).await;
    let session: Value = serde_json::from_str(&session).unwrap();
    assert_eq!(session["role"], "finance");
    let headers =
        json!({"Content-Type": "application/json", "X-CSRF-Token": session["csrf_token"]});
    let (status, text) = browser
        .fetch("POST", &keys, headers.clone(), Some(r#"{"name":"sneaky"}"#))
        .await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("finance role"), "{text}");
    let (status, text) = browser
        .fetch(
            "POST",
            "/admin/v1/admins",
            headers,
            Some(r#"{"name":"x","role":"admin"}"#),
        )
        .await;
    assert_eq!(status, 403, "{text}");
    let (_, answer) = ctx
        .gateway
        .admin_call(reqwest::Method::GET, &keys, None)
        .await;
    assert_eq!(answer["data"], json!([]), "no key was made");
    // Usage is finance's too.
    let (status, _) = browser
        .fetch("GET", "/admin/v1/usage?group_by=tenant", json!({}), None)
        .await;
    assert_eq!(status, 200);
}

pub async fn expired_sessions_are_refused(ctx: &Context<'_>, browser: &Browser) {
    ctx.gateway
        .sql("UPDATE admin_sessions SET expires_at = 1")
        .await;
    browser.click("a[data-page=usage]").await;
    browser.element("#sign-in:not([hidden])").await;
    let message = browser.text("#sign-in-error").await;
    assert!(message.contains("session has ended"), "{message}");
    let (status, _) = browser
        .fetch("GET", "/admin/v1/tenants", json!({}), None)
        .await;
    assert_eq!(status, 401);
    // Signing in again works.
    sign_in(browser, crate::gateway::ADMIN_TOKEN).await;
}
