//! RecordUsage: exactly once under redelivery and concurrency, all or
//! nothing on bad input, partitions on Postgres, month-to-date spend.

use llmgw_proto::billing_v1::MonthToDateSpendRequest;

use crate::fixtures::{
    DAY_MS, NOV_1, day_of, event, expected, ledger, record, report_rows, shuffle, sums_json,
    sums_of, varied,
};
use crate::on_both_backends;
use crate::support::{Backend, TestDb, start};

on_both_backends!(
    redelivered_batches_count_once,
    concurrent_overlapping_batches_sum_exactly,
    bad_batches_are_refused_whole,
    month_boundary_and_partitions,
    replicas_race_to_open_a_month,
    month_to_date_spend,
);

const NOVEMBER: &str = "from=2026-10-01&to=2026-12-01";

async fn redelivered_batches_count_once(backend: Backend) {
    let service = start(backend).await;
    let events = varied("redeliver", 300);
    let client = ledger(&service).await;
    // The same batch three times at once, then once more.
    let sends = (0..3).map(|_| {
        let mut client = client.clone();
        let events = events.clone();
        tokio::spawn(async move { record(&mut client, events).await.unwrap() })
    });
    let mut inserted = 0;
    let mut duplicates = 0;
    for send in sends {
        let answer = send.await.unwrap();
        inserted += answer.inserted;
        duplicates += answer.duplicates;
    }
    assert_eq!((inserted, duplicates), (300, 600));
    let again = record(&mut client.clone(), events.clone()).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 300));

    // A repeat inside one batch counts once too.
    let fresh = event("fresh", 1, NOV_1);
    let answer = record(
        &mut client.clone(),
        vec![fresh.clone(), fresh.clone(), events[0].clone()],
    )
    .await
    .unwrap();
    assert_eq!((answer.inserted, answer.duplicates), (1, 2));

    let mut all = events.clone();
    all.push(fresh);
    let report = service.get(&format!("/admin/v1/usage?{NOVEMBER}")).await;
    assert_eq!(report.status, 200, "{report:?}");
    assert_eq!(sums_json(&report.json["total"]), sums_of(&all));
    let rollup = report_rows(&report.json, &[]);
    assert_eq!(rollup.len(), 1);

    // One row per attempt in the ledger itself.
    let attempts = service.get("/admin/v1/usage/requests/redeliver-7").await;
    assert_eq!(attempts.status, 200, "{attempts:?}");
    let numbers: Vec<u64> = attempts.json["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2]);
    let first = &attempts.json["attempts"][0];
    assert_eq!(first["tenant"], events[14].tenant);
    assert_eq!(first["prompt_tokens"], events[14].prompt_tokens);
    assert_eq!(
        first["cost_usd"],
        llmgw_usd::format_usd(events[14].cost_nano_usd)
    );
    assert_eq!(first["estimated"], false);
    // The client API and the prompt cache's part are kept per attempt.
    assert_eq!(first["api"], events[14].api);
    assert_eq!(
        first["cache_creation_tokens"],
        events[14].cache_creation_tokens
    );
    assert_eq!(
        first["cache_read_price_per_mtok"],
        events[14].cache_read_price_per_mtok
    );
    assert_eq!(
        first["cache_write_price_per_mtok"],
        events[14].cache_write_price_per_mtok
    );
    assert_eq!(first["day"], day_of(events[14].started_at_ms));

    let metrics = service.metrics().await;
    assert!(
        metrics.contains("llmgw_billing_ledger_events_total{result=\"inserted\"} 301"),
        "{metrics}"
    );
    assert!(metrics.contains("llmgw_billing_ledger_events_total{result=\"duplicate\"} 902"));
    assert!(metrics.contains("llmgw_billing_ledger_batches_total{outcome=\"ok\"} 5"));
    service.stop().await.unwrap();
}

/// Many tasks send batches that share rollup rows (few groups) and overlap
/// each other's events in different orders: with a lock order that
/// depended on arrival order, Postgres would detect deadlocks here.
async fn concurrent_overlapping_batches_sum_exactly(backend: Backend) {
    let service = start(backend).await;
    let client = ledger(&service).await;
    let tasks = 6;
    let per_task = 400;
    let mut all = Vec::new();
    for task in 0..tasks {
        let mut events = varied(&format!("task{task}"), per_task);
        for e in &mut events {
            // Few groups: every batch touches every rollup row.
            e.started_at_ms = NOV_1 + (e.started_at_ms % 2) * DAY_MS;
        }
        all.push(events);
    }
    let mut handles = Vec::new();
    for task in 0..tasks {
        let mut client = client.clone();
        // Own events plus the next task's, shuffled, in batches of 200.
        let mut mine: Vec<_> = all[task]
            .iter()
            .chain(&all[(task + 1) % tasks])
            .cloned()
            .collect();
        shuffle(&mut mine, u64::try_from(task).unwrap() + 1);
        handles.push(tokio::spawn(async move {
            let mut inserted = 0;
            for batch in mine.chunks(200) {
                inserted += record(&mut client, batch.to_vec()).await.unwrap().inserted;
            }
            inserted
        }));
    }
    let mut inserted = 0;
    for handle in handles {
        inserted += handle.await.unwrap();
    }
    let every: Vec<_> = all.into_iter().flatten().collect();
    assert_eq!(inserted as usize, every.len());
    let report = service
        .get(&format!(
            "/admin/v1/usage?{NOVEMBER}&group_by=tenant,key,model,day"
        ))
        .await;
    assert_eq!(report.status, 200, "{report:?}");
    let want: Vec<_> = expected(&every, &["tenant", "key", "model", "day"])
        .into_iter()
        .collect();
    assert_eq!(
        report_rows(&report.json, &["tenant", "key", "model", "day"]),
        want
    );
    assert_eq!(sums_json(&report.json["total"]), sums_of(&every));
    service.stop().await.unwrap();
}

async fn bad_batches_are_refused_whole(backend: Backend) {
    let service = start(backend).await;
    let mut client = ledger(&service).await;
    let good = event("good", 1, NOV_1);
    type Spoil = fn(&mut llmgw_proto::billing_v1::UsageEvent);
    let spoilers: [(Spoil, &str); 7] = [
        (|e| e.request_id.clear(), "request_id"),
        (|e| e.attempt = 0, "attempt"),
        (|e| e.tenant.clear(), "tenant"),
        (|e| e.cost_nano_usd = u64::MAX, "cost_nano_usd"),
        (
            |e| e.input_price_per_mtok = "2,5".to_owned(),
            "input_price_per_mtok",
        ),
        (|e| e.started_at_ms = -5, "started_at_ms"),
        (|e| e.model = "a\nb".to_owned(), "model"),
    ];
    for (spoil, field) in spoilers {
        let mut bad = event("bad", 1, NOV_1 + 1);
        spoil(&mut bad);
        let status = record(&mut client, vec![good.clone(), bad])
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{field}: {status:?}");
        assert!(status.message().contains("event 1"), "{status:?}");
    }
    // Nothing of the refused batches was recorded: `good` is still new.
    let answer = record(&mut client, vec![good]).await.unwrap();
    assert_eq!((answer.inserted, answer.duplicates), (1, 0));
    let empty = record(&mut client, vec![]).await.unwrap();
    assert_eq!((empty.inserted, empty.duplicates), (0, 0));
    let metrics = service.metrics().await;
    assert!(metrics.contains("llmgw_billing_ledger_batches_total{outcome=\"invalid\"} 7"));
    service.stop().await.unwrap();
}

async fn month_boundary_and_partitions(backend: Backend) {
    let service = start(backend).await;
    let mut client = ledger(&service).await;
    let october = [NOV_1 - 1, NOV_1 - DAY_MS];
    let november = [NOV_1, NOV_1 + 1, NOV_1 + 29 * DAY_MS];
    let events: Vec<_> = october
        .iter()
        .chain(&november)
        .enumerate()
        .map(|(i, at)| event(&format!("edge-{i}"), 1, *at))
        .collect();
    // One batch spanning both months: both partitions are created for it.
    let answer = record(&mut client, events.clone()).await.unwrap();
    assert_eq!(answer.inserted, 5);

    if backend == Backend::Postgres {
        let counts = partition_counts(&service.db).await;
        assert_eq!(
            counts,
            [
                ("usage_events_202610".to_owned(), 2),
                ("usage_events_202611".to_owned(), 3)
            ]
        );
    }
    let report = service
        .get("/admin/v1/usage?from=2026-10-01&to=2026-12-01&group_by=month")
        .await;
    let rows = report_rows(&report.json, &["month"]);
    assert_eq!(
        rows,
        expected(&events, &["month"])
            .into_iter()
            .collect::<Vec<_>>()
    );
    assert_eq!(rows[0].1[0], 2);
    assert_eq!(rows[1].1[0], 3);
    for (month, lines) in [("2026-10", 2), ("2026-11", 3), ("2026-09", 0)] {
        let export = service
            .get(&format!("/admin/v1/usage/export?month={month}"))
            .await;
        assert_eq!(export.status, 200, "{export:?}");
        assert_eq!(
            export.text.lines().count(),
            1 + lines,
            "{month}: {}",
            export.text
        );
    }
    service.stop().await.unwrap();
}

/// Several billing replicas (separate pools) receive the first events of
/// the same new month at once: each finds no partition and creates it; the
/// losers of that race must carry on, not fail the batch.
async fn replicas_race_to_open_a_month(backend: Backend) {
    let service = start(backend).await;
    let march = NOV_1 + 120 * DAY_MS;
    let mut replicas = Vec::new();
    for replica in 0..6 {
        let store = llmgw_billing::store::Store::connect(&service.db.url)
            .await
            .unwrap();
        replicas.push(tokio::spawn(async move {
            let events: Vec<_> = (0..50)
                .map(|i| event(&format!("race-{replica}-{i}"), 1, march + i))
                .collect();
            store.record_usage(&events).await
        }));
    }
    for replica in replicas {
        let recorded = replica.await.unwrap().unwrap();
        assert_eq!((recorded.inserted, recorded.duplicates), (50, 0));
    }
    if backend == Backend::Postgres {
        assert_eq!(
            partition_counts(&service.db).await,
            [("usage_events_202703".to_owned(), 300)]
        );
    }
    service.stop().await.unwrap();
}

async fn partition_counts(db: &TestDb) -> Vec<(String, i64)> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_as(
        "SELECT tableoid::regclass::text, count(*) FROM usage_events GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

async fn month_to_date_spend(backend: Backend) {
    let service = start(backend).await;
    let mut client = ledger(&service).await;
    let now = crate::support::now_ms();
    let mut a = event("mtd-1", 1, now);
    a.cost_nano_usd = 7;
    let mut b = event("mtd-2", 1, now);
    b.tenant = "globex".to_owned();
    b.cost_nano_usd = 11;
    let mut c = event("mtd-2", 2, now);
    c.tenant = "globex".to_owned();
    c.cost_nano_usd = 13;
    // Another key of globex; the same key id under acme is another key.
    let mut d = event("mtd-3", 1, now);
    d.tenant = "globex".to_owned();
    d.key_id = "key-b".to_owned();
    d.cost_nano_usd = 5;
    let mut e = event("mtd-4", 1, now);
    e.key_id = "key-b".to_owned();
    e.cost_nano_usd = 3;
    // Last year's spend is not this month's.
    let old = event("mtd-old", 1, now - 400 * DAY_MS);
    record(&mut client, vec![a, b, c, d, e, old]).await.unwrap();

    let all = client
        .month_to_date_spend(MonthToDateSpendRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.month, day_of(now)[..7]);
    let spend: Vec<(String, u64)> = all
        .tenants
        .into_iter()
        .map(|t| (t.tenant, t.cost_nano_usd))
        .collect();
    assert_eq!(spend, [("acme".to_owned(), 10), ("globex".to_owned(), 29)]);
    let keys: Vec<(String, String, u64)> = all
        .keys
        .into_iter()
        .map(|k| (k.tenant, k.key_id, k.cost_nano_usd))
        .collect();
    let key = |tenant: &str, key_id: &str, cost| (tenant.to_owned(), key_id.to_owned(), cost);
    assert_eq!(
        keys,
        [
            key("acme", "key-a", 7),
            key("acme", "key-b", 3),
            key("globex", "key-a", 24),
            key("globex", "key-b", 5),
        ]
    );
    let one = client
        .month_to_date_spend(MonthToDateSpendRequest {
            tenant: "globex".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.tenants.len(), 1);
    assert_eq!(one.tenants[0].cost_nano_usd, 29);
    let one_keys: Vec<(String, String, u64)> = one
        .keys
        .into_iter()
        .map(|k| (k.tenant, k.key_id, k.cost_nano_usd))
        .collect();
    assert_eq!(
        one_keys,
        [key("globex", "key-a", 24), key("globex", "key-b", 5)]
    );
    service.stop().await.unwrap();
}
