//! An admin manages tenants and keys on the page: each change confirmed,
//! reflected without a reload, and obeyed by the edge; a new key's secret
//! is in the page once, until dismissed, and nowhere else.

use std::time::Duration;

use serde_json::Value;

use super::Context;
use crate::browser::Browser;
use crate::gateway::{ADMIN_TOKEN, Gateway};

const TENANT: &str = "console-e2e";

/// Until the edge answers `status` to `key` (its key cache holds answers
/// for a second in these tests).
async fn edge_answers(gateway: &Gateway, key: &str, status: u16) {
    let wait = async {
        while gateway.chat(key).await != status {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("the edge did not answer {status} within 30 s"));
}

/// Confirms the open dialog, after checking what it asks.
async fn confirm(browser: &Browser, mentions: &str) {
    browser.element("#confirm[open]").await;
    let message = browser.text("#confirm-message").await;
    assert!(message.contains(mentions), "{message}");
    browser.click("#confirm-ok").await;
    browser
        .until("!document.getElementById('confirm').open")
        .await;
}

async fn source(browser: &Browser) -> String {
    browser.client.source().await.expect("page source")
}

pub async fn admin_manages_keys_and_the_edge_obeys(ctx: &Context<'_>, browser: &Browser) {
    let gateway = ctx.gateway;
    browser.click("a[data-page=tenants]").await;
    browser.element("#tenants-table").await;
    browser.js("window.noReload = true;", vec![]).await;

    // A tenant with a budget and a limit: asked first, then listed.
    browser.type_into("#tenant-name", TENANT).await;
    browser.type_into("#tenant-budget", "5").await;
    browser
        .type_into("#tenant-requests_per_minute", "100")
        .await;
    browser.click("#tenant-create").await;
    confirm(browser, TENANT).await;
    browser
        .element(&format!("tr[data-tenant='{TENANT}']"))
        .await;
    let (_, tenant) = gateway
        .admin_call(
            reqwest::Method::GET,
            &format!("/admin/v1/tenants/{TENANT}"),
            None,
        )
        .await;
    assert_eq!(tenant["monthly_budget_usd"], "5");
    assert_eq!(tenant["limits"]["requests_per_minute"], 100);

    // A key: its secret shown once, with a copy button.
    browser
        .click(&format!("button[data-keys='{TENANT}']"))
        .await;
    browser.element("#key-form").await;
    browser.type_into("#key-name", "bot").await;
    browser.type_into("#key-models", "mock").await;
    browser.click("#key-create").await;
    confirm(browser, "bot").await;
    let first = browser.text("#new-secret").await;
    assert!(
        first.starts_with("sk-llmgw-") && first.len() == 37,
        "{first}"
    );
    browser.click("#copy-secret").await;
    browser
        .until("document.getElementById('copy-secret').textContent === 'Copied'")
        .await;
    let page = source(browser).await;
    assert_eq!(page.matches(&first).count(), 1, "the secret is shown once");
    assert!(!page.contains(ADMIN_TOKEN));
    let first_id = browser
        .js(
            "return document.querySelector('#keys-table tr[data-name=bot]').dataset.key;",
            vec![],
        )
        .await;
    let first_id = first_id.as_str().unwrap().to_owned();
    browser
        .screenshot(ctx.screenshots, "05-tenants-and-keys.png")
        .await;
    edge_answers(gateway, &first, 200).await;

    // Allowed models, set through the dialog's input.
    browser
        .click(&format!(
            "tr[data-key='{first_id}'] button[data-action=models]"
        ))
        .await;
    browser.element("#confirm[open]").await;
    browser.type_into("#confirm-input", "mock, gpt-4o").await;
    browser.click("#confirm-ok").await;
    browser
        .until(&format!("document.querySelector(\"tr[data-key='{first_id}']\").textContent.includes('mock, gpt-4o')"))
        .await;
    let (_, key) = gateway
        .admin_call(
            reqwest::Method::GET,
            &format!("/admin/v1/keys/{first_id}"),
            None,
        )
        .await;
    assert_eq!(key["allowed_models"], serde_json::json!(["mock", "gpt-4o"]));

    // Rotation: a new secret, the old one refused at the edge.
    browser
        .click(&format!(
            "tr[data-key='{first_id}'] button[data-action=rotate]"
        ))
        .await;
    confirm(browser, "Rotate").await;
    browser.until(&format!("document.getElementById('new-secret') && document.getElementById('new-secret').textContent !== '{first}'")).await;
    let second = browser.text("#new-secret").await;
    browser
        .element(&format!("tr[data-key='{first_id}'][data-status=revoked]"))
        .await;
    assert!(
        !source(browser).await.contains(&first),
        "the old secret left the page"
    );
    edge_answers(gateway, &first, 401).await;
    edge_answers(gateway, &second, 200).await;

    // Revocation: refused at the edge afterwards.
    let second_id = browser
        .js("return document.querySelector('#keys-table tr[data-name=bot][data-status=active]').dataset.key;", vec![])
        .await;
    let second_id = second_id.as_str().unwrap().to_owned();
    browser
        .click(&format!(
            "tr[data-key='{second_id}'] button[data-action=revoke]"
        ))
        .await;
    confirm(browser, "Revoke").await;
    browser
        .element(&format!("tr[data-key='{second_id}'][data-status=revoked]"))
        .await;
    edge_answers(gateway, &second, 401).await;

    // Dismissed, the secret is gone from the page; nothing reloaded it.
    browser.click("#dismiss-secret").await;
    assert!(!source(browser).await.contains(&second));
    assert_eq!(
        browser.js("return window.noReload === true;", vec![]).await,
        Value::Bool(true)
    );
}
