//! What finance reads: the overview, the usage explorer and its CSV, one
//! request's attempts; every figure checked against the CLI (and the
//! fixtures), to the nano-dollar.

use llmgw_calendar::Month;
use serde_json::Value;

use super::{Context, plain};
use crate::browser::Browser;
use crate::fixtures::{FALLBACK_REQUEST, TENANTS, month_to_date_nano};

/// Rows of `table_css`: each row's `data-name` and cell texts.
async fn rows(browser: &Browser, table_css: &str) -> Vec<(String, Vec<String>)> {
    let found = browser
        .js(
            "return [...document.querySelectorAll(arguments[0] + ' tbody tr')].map((row) =>
               [row.dataset.name || '', [...row.cells].map((cell) => cell.textContent)]);",
            vec![Value::from(table_css)],
        )
        .await;
    serde_json::from_value(found).unwrap()
}

pub async fn overview_matches_the_cli(ctx: &Context<'_>, browser: &Browser) {
    browser.element("#budgets table").await;
    browser.element("#top-models table").await;
    browser.element("#daily-chart .uplot").await;
    let cli: Value = serde_json::from_str(&ctx.gateway.cli(&["usage", "--json"]).await).unwrap();
    let total = &cli["total"];
    let shown = |css: &'static str| async move { plain(&browser.text(css).await) };
    assert_eq!(
        shown("#mtd-spend").await,
        total["cost_usd"].as_str().unwrap()
    );
    assert_eq!(
        shown("#mtd-prompt-tokens").await,
        total["prompt_tokens"].to_string()
    );
    assert_eq!(
        shown("#mtd-completion-tokens").await,
        total["completion_tokens"].to_string()
    );
    assert_eq!(shown("#mtd-requests").await, total["requests"].to_string());
    // ... and the CLI's figure is the fixtures' own sum.
    let expected: u64 = TENANTS
        .iter()
        .map(|tenant| month_to_date_nano(ctx.events, tenant))
        .sum();
    assert_eq!(total["cost_nano_usd"].as_u64(), Some(expected));

    // Top tenants: the CLI's report grouped by tenant, most expensive first.
    let by_tenant: Value = serde_json::from_str(
        &ctx.gateway
            .cli(&["usage", "--group-by", "tenant", "--json"])
            .await,
    )
    .unwrap();
    let mut expected: Vec<(String, String)> = by_tenant["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["tenant"].as_str().unwrap().to_owned(),
                row["cost_usd"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    expected.sort_by_key(|(_, cost)| std::cmp::Reverse(llmgw_usd::parse_usd(cost).unwrap()));
    let top: Vec<(String, String)> = rows(browser, "#top-tenants")
        .await
        .into_iter()
        .map(|(name, cells)| (name, plain(cells.last().unwrap())))
        .collect();
    assert_eq!(top, expected);

    // Closest to budget: spent / budget, marketing (90 %) before research
    // (25 %); support has no budget.
    let budgets = rows(browser, "#budgets").await;
    let names: Vec<&str> = budgets.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, [TENANTS[0], TENANTS[1]]);
    assert_eq!(budgets[0].1[1], "90.0%");
    assert_eq!(budgets[1].1[1], "25.0%");
    let spent = month_to_date_nano(ctx.events, TENANTS[0]);
    assert_eq!(plain(&budgets[0].1[2]), llmgw_usd::format_usd(spent));
    assert_eq!(
        plain(&budgets[0].1[3]),
        llmgw_usd::format_usd(spent * 10 / 9)
    );
    browser.screenshot(ctx.screenshots, "02-overview.png").await;
}

pub async fn usage_csv_is_the_cli_csv(ctx: &Context<'_>, browser: &Browser) {
    browser.click("a[data-page=usage]").await;
    browser.element("#usage-form").await;
    browser.element("#usage-table").await;
    let month = Month::current();
    // From the start of last month: the previous month's event is in.
    let (from, to) = (
        Month::of_ms(month.first_day().start_ms() - 1)
            .unwrap()
            .first_day()
            .to_string(),
        month.succ().first_day().to_string(),
    );
    browser
        .js(
            "document.getElementById('usage-from').value = arguments[0];
             document.getElementById('usage-to').value = arguments[1];",
            vec![Value::from(from.clone()), Value::from(to.clone())],
        )
        .await;
    browser.click("#group-day").await; // model is checked by default
    browser.type_into("#filter-tenant", TENANTS[0]).await;
    browser.click("#usage-show").await;
    browser
        .until("location.hash.includes('tenant=marketing') && document.querySelector('#page-usage #usage-table')")
        .await;
    browser.element("#usage-chart .uplot").await;
    browser.click("#csv-download").await;
    let downloaded = browser.downloaded("usage-").await;
    let cli = ctx
        .gateway
        .cli(&[
            "usage",
            "--from",
            &from,
            "--to",
            &to,
            "--group-by",
            "model,day",
            "--tenant",
            TENANTS[0],
            "--csv",
        ])
        .await;
    assert_eq!(downloaded, cli, "the page's CSV is the CLI's");
    // The table shows the same rows and total as the CSV.
    let lines: Vec<&str> = cli.trim_end().split("\r\n").collect();
    let table = rows(browser, "#usage-table").await;
    assert_eq!(
        table.len(),
        lines.len() - 1,
        "one row per CSV line and the total"
    );
    for ((_, cells), line) in table.iter().zip(&lines[1..]) {
        let csv: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0], if csv[0].is_empty() { "total" } else { csv[0] });
        assert_eq!(
            plain(cells.last().unwrap()),
            csv[csv.len() - 2],
            "cost of {line}"
        );
        assert_eq!(plain(&cells[2]), csv[2], "requests of {line}");
    }
    browser
        .screenshot(ctx.screenshots, "03-usage-explorer.png")
        .await;
}

pub async fn one_request_shows_every_attempt(ctx: &Context<'_>, browser: &Browser) {
    browser.click("a[data-page=request]").await;
    browser.type_into("#request-id", FALLBACK_REQUEST).await;
    browser.click("#request-show").await;
    browser.element("#attempts").await;
    let (status, answer) = ctx
        .gateway
        .admin_call(
            reqwest::Method::GET,
            &format!("/admin/v1/usage/requests/{FALLBACK_REQUEST}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let attempts = answer["attempts"].as_array().unwrap();
    let shown = rows(browser, "#attempts").await;
    assert_eq!(shown.len(), attempts.len());
    assert_eq!(shown.len(), 2);
    for ((_, cells), attempt) in shown.iter().zip(attempts) {
        assert_eq!(cells[0], attempt["attempt"].to_string());
        assert_eq!(cells[1], attempt["status"].as_str().unwrap());
        assert_eq!(cells[2], attempt["provider"].as_str().unwrap());
        assert_eq!(cells[3], attempt["deployment"].as_str().unwrap());
        assert_eq!(plain(&cells[9]), attempt["cost_usd"].as_str().unwrap());
    }
    assert_eq!(shown[0].1[2], "openai");
    assert_eq!(shown[1].1[2], "anthropic");
    browser
        .screenshot(ctx.screenshots, "04-one-request.png")
        .await;
    // An unknown id says so.
    browser.type_into("#request-id", "no-such-request").await;
    browser.click("#request-show").await;
    browser.element("#request-missing").await;
}
