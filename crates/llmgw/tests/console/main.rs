//! The console in a real browser (headless Chromium through chromedriver),
//! against the whole gateway on Postgres with ledger fixtures: sign in; the
//! overview's totals equal the CLI's; the usage explorer's CSV equals
//! `llmgw usage --csv` for the same filters; one request's attempts; a
//! finance credential can neither see nor use key management; an admin
//! creates, rotates and revokes keys and the edge refuses them afterwards;
//! CSRF and expired sessions are refused; the cookie is HttpOnly and no
//! secret is in the page but the once-shown new key. A screenshot of each
//! page lands in `target/console-screenshots/`.
//!
//! Skipped, with a message, when Chromium or chromedriver is missing, except
//! under `CI=true`, where that is a failure (`.ci/run` installs both).
#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod browser;
mod fixtures;
mod gateway;
mod scenarios;

use std::path::PathBuf;

use serde_json::json;

use crate::browser::{Driver, installed};
use crate::gateway::Gateway;

/// `target/console-screenshots/`.
fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("console-screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_real_browser() {
    let Some((chromium, chromedriver)) = installed() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but chromium or chromedriver is missing: the console's browser tests must \
             run in CI (apt-get install chromium chromium-driver; .ci/run does it)"
        );
        eprintln!(
            "SKIPPED console_in_a_real_browser: chromium or chromedriver is not installed \
             (apt-get install chromium chromium-driver). Under CI=true this is a failure."
        );
        return;
    };
    let gateway = Gateway::start().await;
    let events = fixtures::events();
    gateway.record(events.clone()).await;
    // Budgets that put marketing at 90 % and research at 25 % this month.
    let spent = |tenant| fixtures::month_to_date_nano(&events, tenant);
    let budgets = [
        (
            fixtures::TENANTS[0],
            Some(spent(fixtures::TENANTS[0]) * 10 / 9),
        ),
        (fixtures::TENANTS[1], Some(spent(fixtures::TENANTS[1]) * 4)),
        (fixtures::TENANTS[2], None),
    ];
    for (tenant, budget) in budgets {
        let mut body = json!({"name": tenant});
        if let Some(budget) = budget {
            body["monthly_budget_usd"] = json!(llmgw_usd::format_usd(budget));
        }
        let (status, answer) = gateway
            .admin_call(reqwest::Method::POST, "/admin/v1/tenants", Some(body))
            .await;
        assert_eq!(status, 201, "{answer}");
    }
    // A finance credential, made as an operator would.
    let created = gateway
        .cli(&["admins", "create", "finance-e2e", "--role", "finance"])
        .await;
    let finance = created
        .lines()
        .find_map(|line| line.strip_prefix("Credential: "))
        .unwrap_or_else(|| panic!("no credential in {created}"))
        .trim()
        .to_owned();

    let screenshots = screenshot_dir();
    let scratch = gateway.dir.join("browsers");
    let driver = Driver::start(chromium, &chromedriver).await;
    let admin = driver.browser(&scratch.join("admin")).await;
    let ctx = scenarios::Context {
        gateway: &gateway,
        screenshots: &screenshots,
        events: &events,
    };
    scenarios::sign_in_as_admin(&ctx, &admin).await;
    scenarios::overview_matches_the_cli(&ctx, &admin).await;
    scenarios::usage_csv_is_the_cli_csv(&ctx, &admin).await;
    scenarios::one_request_shows_every_attempt(&ctx, &admin).await;
    scenarios::changes_need_the_csrf_token(&ctx, &admin).await;
    let finance_browser = driver.browser(&scratch.join("finance")).await;
    scenarios::finance_cannot_manage_keys(&ctx, &finance_browser, &finance).await;
    finance_browser.close().await;
    scenarios::admin_manages_keys_and_the_edge_obeys(&ctx, &admin).await;
    scenarios::expired_sessions_are_refused(&ctx, &admin).await;
    admin.close().await;
    gateway.stop().await;
}
