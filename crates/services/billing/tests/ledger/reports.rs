//! Usage reports: group-bys and totals against answers computed from the
//! events, filters, date-range edges, CSV that reads back to the same
//! numbers, and the month export.

use crate::fixtures::{
    DAY_MS, NOV_1, Sums, event, expected, ledger, record, report_rows, sums_json, sums_of, varied,
};
use crate::on_both_backends;
use crate::support::{Backend, Service, start};

on_both_backends!(
    group_bys_and_totals,
    filters,
    date_range_edges,
    csv_reads_back_to_the_same_numbers,
    export_is_the_ledger,
);

const RANGE: &str = "from=2026-10-01&to=2026-12-01";

async fn loaded(backend: Backend, n: usize) -> (Service, Vec<llmgw_proto::billing_v1::UsageEvent>) {
    let service = start(backend).await;
    let events = varied("r", n);
    let mut client = ledger(&service).await;
    for batch in events.chunks(250) {
        record(&mut client, batch.to_vec()).await.unwrap();
    }
    (service, events)
}

async fn group_bys_and_totals(backend: Backend) {
    let (service, events) = loaded(backend, 600).await;
    let combinations: [&[&str]; 9] = [
        &[],
        &["tenant"],
        &["key"],
        &["model"],
        &["provider", "day"],
        &["month"],
        &["day"],
        &["tenant", "model", "day"],
        &["month", "tenant", "key", "model", "provider", "day"],
    ];
    for group_by in combinations {
        let report = service
            .get(&format!(
                "/admin/v1/usage?{RANGE}&group_by={}",
                group_by.join(",")
            ))
            .await;
        assert_eq!(report.status, 200, "{report:?}");
        let want: Vec<_> = expected(&events, group_by).into_iter().collect();
        assert_eq!(
            report_rows(&report.json, group_by),
            want,
            "group_by {group_by:?}"
        );
        assert_eq!(
            sums_json(&report.json["total"]),
            sums_of(&events),
            "{group_by:?}"
        );
        assert_eq!(report.json["group_by"], serde_json::json!(group_by));
        assert_eq!(
            (report.json["from"].as_str(), report.json["to"].as_str()),
            (Some("2026-10-01"), Some("2026-12-01"))
        );
    }
    // A few answers written out, in case the fixture's arithmetic and the
    // service's agreed on something wrong: 600 attempts, 200 per tenant.
    let by_tenant = service
        .get(&format!("/admin/v1/usage?{RANGE}&group_by=tenant"))
        .await;
    let rows = report_rows(&by_tenant.json, &["tenant"]);
    let requests: Vec<(&str, u64)> = rows.iter().map(|(k, s)| (k[0].as_str(), s[0])).collect();
    assert_eq!(requests, [("acme", 200), ("globex", 200), ("initech", 200)]);
    // prompt = Σ(100 + 3i) for i < 600; cost = Σ(1000 + 37i).
    assert_eq!(
        sums_json(&by_tenant.json["total"])[1],
        100 * 600 + 3 * 599 * 600 / 2
    );
    assert_eq!(
        sums_json(&by_tenant.json["total"])[5],
        1_000 * 600 + 37 * 599 * 600 / 2
    );
    service.stop().await.unwrap();
}

async fn filters(backend: Backend) {
    let (service, events) = loaded(backend, 300).await;
    let acme: Vec<_> = events
        .iter()
        .filter(|e| e.tenant == "acme")
        .cloned()
        .collect();
    let report = service
        .get(&format!(
            "/admin/v1/usage?{RANGE}&tenant=acme&group_by=model"
        ))
        .await;
    assert_eq!(report.status, 200, "{report:?}");
    let want: Vec<_> = expected(&acme, &["model"]).into_iter().collect();
    assert_eq!(report_rows(&report.json, &["model"]), want);
    assert_eq!(report.json["tenant"], "acme");

    let key: Vec<_> = events
        .iter()
        .filter(|e| e.key_id == "globex-key-1")
        .cloned()
        .collect();
    let report = service
        .get(&format!(
            "/admin/v1/usage?{RANGE}&key_id=globex-key-1&group_by=day"
        ))
        .await;
    let want: Vec<_> = expected(&key, &["day"]).into_iter().collect();
    assert_eq!(report_rows(&report.json, &["day"]), want);

    let nobody = service
        .get(&format!(
            "/admin/v1/usage?{RANGE}&tenant=nobody&group_by=model"
        ))
        .await;
    assert_eq!(nobody.status, 200);
    assert_eq!(nobody.json["rows"], serde_json::json!([]));
    assert_eq!(sums_json(&nobody.json["total"]), [0; 6]);
    service.stop().await.unwrap();
}

/// `from` inclusive, `to` exclusive, days in UTC.
async fn date_range_edges(backend: Backend) {
    let service = start(backend).await;
    let mut client = ledger(&service).await;
    let dec_1 = NOV_1 + 30 * DAY_MS;
    let at = [NOV_1 - 1, NOV_1, dec_1 - 1, dec_1];
    let events: Vec<_> = at
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            let mut e = event(&format!("edge-{i}"), 1, *ms);
            e.prompt_tokens = 10_u64.pow(u32::try_from(i).unwrap());
            e
        })
        .collect();
    record(&mut client, events).await.unwrap();
    // Which events (by the power of ten of their prompt tokens) a range sees.
    let prompt = |from: &str, to: &str| {
        let path = format!("/admin/v1/usage?from={from}&to={to}");
        let service = &service;
        async move {
            let report = service.get(&path).await;
            assert_eq!(report.status, 200, "{report:?}");
            sums_json(&report.json["total"])[1]
        }
    };
    assert_eq!(prompt("2026-11-01", "2026-12-01").await, 110);
    assert_eq!(prompt("2026-10-31", "2026-11-01").await, 1);
    assert_eq!(prompt("2026-10-31", "2026-12-02").await, 1111);
    assert_eq!(prompt("2026-11-30", "2026-12-01").await, 100);
    assert_eq!(prompt("2026-12-01", "2026-12-02").await, 1000);
    // from = to: an empty range, not an error.
    let empty = service
        .get("/admin/v1/usage?from=2026-11-05&to=2026-11-05&group_by=day")
        .await;
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_eq!(empty.json["rows"], serde_json::json!([]));
    assert_eq!(sums_json(&empty.json["total"]), [0; 6]);
    service.stop().await.unwrap();
}

async fn csv_reads_back_to_the_same_numbers(backend: Backend) {
    let (service, events) = loaded(backend, 300).await;
    let path = format!("/admin/v1/usage?{RANGE}&group_by=model,day");
    let json = service.get(&path).await;
    let csv = service.get(&format!("{path}&format=csv")).await;
    assert_eq!(csv.status, 200, "{csv:?}");
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let lines: Vec<Vec<&str>> = csv
        .text
        .lines()
        .map(|line| line.split(',').collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "model",
            "day",
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "reasoning_tokens",
            "cost_usd",
            "cost_nano_usd"
        ]
    );
    let numbers = |cells: &[&str]| -> Sums {
        // cost_usd must be the exact decimal of cost_nano_usd.
        let nano: u64 = cells[8].parse().unwrap();
        assert_eq!(llmgw_usd::parse_usd(cells[7]).unwrap(), nano, "{cells:?}");
        let n = |i: usize| cells[i].parse::<u64>().unwrap();
        [n(2), n(3), n(4), n(5), n(6), nano]
    };
    let from_csv: Vec<(Vec<String>, Sums)> = lines[1..lines.len() - 1]
        .iter()
        .map(|cells| {
            (
                vec![cells[0].to_owned(), cells[1].to_owned()],
                numbers(cells),
            )
        })
        .collect();
    assert_eq!(from_csv, report_rows(&json.json, &["model", "day"]));
    let total = &lines[lines.len() - 1];
    assert_eq!((total[0], total[1]), ("total", ""));
    assert_eq!(numbers(total), sums_of(&events));

    // Accept: text/csv works as format=csv.
    let accepted = service
        .http
        .get(service.url(&path))
        .bearer_auth(crate::support::TOKEN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(accepted, csv.text);
    service.stop().await.unwrap();
}

async fn export_is_the_ledger(backend: Backend) {
    let service = start(backend).await;
    let mut client = ledger(&service).await;
    // More than one export page (5000 rows), in one month.
    let mut events = varied("x", 5_300);
    for e in &mut events {
        e.started_at_ms = NOV_1 + e.started_at_ms % (20 * DAY_MS);
    }
    events[3].finish_reason = "say \"stop\", then go".to_owned();
    for batch in events.chunks(1_000) {
        record(&mut client, batch.to_vec()).await.unwrap();
    }
    let export = service.get("/admin/v1/usage/export?month=2026-11").await;
    assert_eq!(export.status, 200, "{export:?}");
    assert_eq!(
        export.headers["content-disposition"],
        "attachment; filename=\"usage-2026-11.csv\""
    );
    let lines: Vec<&str> = export.text.lines().collect();
    assert_eq!(lines.len(), 1 + events.len());
    let header: Vec<&str> = lines[0].split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (request, attempt, cost) = (
        column("request_id"),
        column("attempt"),
        column("cost_nano_usd"),
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut total_cost = 0u64;
    for line in &lines[1..] {
        if line.contains('"') {
            assert!(line.contains("\"say \"\"stop\"\", then go\""), "{line}");
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        assert!(
            seen.insert((cells[request].to_owned(), cells[attempt].to_owned())),
            "{line}"
        );
        total_cost += cells[cost].parse::<u64>().unwrap();
    }
    let quoted = &events[3];
    assert_eq!(seen.len(), events.len() - 1);
    assert_eq!(total_cost + quoted.cost_nano_usd, sums_of(&events)[5]);

    let acme = service
        .get("/admin/v1/usage/export?month=2026-11&tenant=acme")
        .await;
    let acme_events = events.iter().filter(|e| e.tenant == "acme").count();
    assert_eq!(acme.text.lines().count(), 1 + acme_events);
    assert!(
        acme.text
            .lines()
            .skip(1)
            .all(|line| line.contains(",acme,"))
    );
    service.stop().await.unwrap();
}
