//! The console's scenarios, each on a signed-in browser, in the order a
//! user would meet them.

mod access;
mod keys;
mod reports;

use std::path::Path;

use llmgw_proto::billing_v1::UsageEvent;

use crate::browser::Browser;
use crate::gateway::{ADMIN_TOKEN, Gateway};

pub use access::{
    changes_need_the_csrf_token, expired_sessions_are_refused, finance_cannot_manage_keys,
};
pub use keys::admin_manages_keys_and_the_edge_obeys;
pub use reports::{
    one_request_shows_every_attempt, overview_matches_the_cli, usage_csv_is_the_cli_csv,
};

pub struct Context<'a> {
    pub gateway: &'a Gateway,
    pub screenshots: &'a Path,
    pub events: &'a [UsageEvent],
}

/// A figure as the page shows it ("$1,234.5", "12,345") as the CLI prints
/// it ("1234.5", "12345").
pub fn plain(text: &str) -> String {
    text.trim().replace(['$', ','], "")
}

/// Signs in on the sign-in form (the page must be showing it).
pub async fn sign_in(browser: &Browser, credential: &str) {
    browser.element("#sign-in:not([hidden])").await;
    browser.type_into("#credential", credential).await;
    browser.click("#sign-in-button").await;
    // The page the address names (the overview by default).
    browser
        .element("#bar:not([hidden]) ~ main #page > div")
        .await;
}

/// Opens the console, shows the sign-in page, signs in with the admin
/// token; the cookie is invisible to scripts and nothing is kept in
/// storage.
pub async fn sign_in_as_admin(ctx: &Context<'_>, browser: &Browser) {
    browser.goto(&ctx.gateway.admin_url("/ui/")).await;
    browser.element("#sign-in:not([hidden])").await;
    browser.screenshot(ctx.screenshots, "01-sign-in.png").await;
    // A wrong credential is refused on the page.
    browser
        .type_into("#credential", "not-the-token-0123456789")
        .await;
    browser.click("#sign-in-button").await;
    browser
        .until("document.getElementById('sign-in-error').textContent.length > 0")
        .await;
    sign_in(browser, ADMIN_TOKEN).await;
    assert_eq!(
        browser.text("#who").await,
        format!("{} · admin", admin_actor())
    );
    let script = browser
        .js(
            "return [document.cookie, localStorage.length, sessionStorage.length];",
            vec![],
        )
        .await;
    assert_eq!(
        script,
        serde_json::json!(["", 0, 0]),
        "the cookie is HttpOnly, nothing stored"
    );
    let cookies = browser.client.get_all_cookies().await.expect("cookies");
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let cookie = &cookies[0];
    assert_eq!(cookie.name(), "llmgw_console");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Strict)");
    assert_ne!(
        cookie.secure(),
        Some(true),
        "plain HTTP: not Secure unless configured"
    );
    assert_eq!(cookie.path(), Some("/"));
    let source = browser.client.source().await.expect("page source");
    assert!(
        !source.contains(ADMIN_TOKEN),
        "the credential stays out of the page"
    );
    assert!(
        !source.contains(cookie.value()),
        "the session token stays out of the page"
    );
}

pub fn admin_actor() -> String {
    let digest = llmgw_apikey::digest(ADMIN_TOKEN);
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("admin:{hex}")
}
