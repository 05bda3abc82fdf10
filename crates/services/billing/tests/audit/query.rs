//! `GET /admin/v1/audit`: filters, newest-first keyset paging, CSV exports
//! and refused parameters, checked against answers computed from the
//! events in Rust.

use llmgw_proto::billing_v1::AuditEvent;
use serde_json::Value;

use crate::on_both_backends;
use crate::support::{Backend, Service, start};
use crate::{DAY_MS, NOV_1, event, record, varied};

on_both_backends!(
    filters_select_exactly,
    pages_cover_everything_once,
    csv_exports_every_row,
    bad_parameters_are_refused,
);

/// (request_id, attempt, sequence) of each event, in the API's order:
/// newest first, then by the key, descending.
fn expected<'a>(events: impl IntoIterator<Item = &'a AuditEvent>) -> Vec<(String, i64, i64)> {
    let mut rows: Vec<&AuditEvent> = events.into_iter().collect();
    rows.sort_by(|a, b| {
        (b.occurred_at_ms, &b.request_id, b.attempt, b.sequence).cmp(&(
            a.occurred_at_ms,
            &a.request_id,
            a.attempt,
            a.sequence,
        ))
    });
    rows.iter()
        .map(|e| {
            (
                e.request_id.clone(),
                i64::from(e.attempt),
                i64::from(e.sequence),
            )
        })
        .collect()
}

fn keys(page: &Value) -> Vec<(String, i64, i64)> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {page}"))
        .iter()
        .map(|row| {
            (
                row["request_id"].as_str().unwrap().to_owned(),
                row["attempt"].as_i64().unwrap(),
                row["sequence"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Which events a filter keeps.
type Keep = Box<dyn Fn(&AuditEvent) -> bool>;

async fn seeded(backend: Backend, n: usize) -> (Service, Vec<AuditEvent>) {
    let service = start(backend).await;
    let events = varied("q", n);
    let answer = record(&mut service.audit().await, events.clone())
        .await
        .unwrap();
    assert_eq!(answer.inserted as usize, n);
    (service, events)
}

async fn filters_select_exactly(backend: Backend) {
    let (service, events) = seeded(backend, 90).await;
    let from = NOV_1 - DAY_MS;
    let to = NOV_1 + DAY_MS / 2;
    let cases: Vec<(String, Keep)> = vec![
        ("".into(), Box::new(|_| true)),
        ("tenant=globex".into(), Box::new(|e| e.tenant == "globex")),
        (
            "key_id=acme-key-0".into(),
            Box::new(|e| e.key_id == "acme-key-0"),
        ),
        (
            "rule_id=banned-words".into(),
            Box::new(|e| e.rule_id == "banned-words"),
        ),
        ("action=redact".into(), Box::new(|e| e.action == "redact")),
        (
            "direction=output".into(),
            Box::new(|e| e.direction == "output"),
        ),
        (
            "tenant=acme&action=block&direction=input".into(),
            Box::new(|e| e.tenant == "acme" && e.action == "block" && e.direction == "input"),
        ),
        (
            format!("from={from}&to={to}"),
            Box::new(move |e| (from..to).contains(&e.occurred_at_ms)),
        ),
        (
            "from=2026-11-01".into(),
            Box::new(|e| e.occurred_at_ms >= NOV_1),
        ),
        (
            "request_id=q-4&policy=strict".into(),
            Box::new(|e| e.request_id == "q-4"),
        ),
        ("tenant=nobody".into(), Box::new(|_| false)),
    ];
    for (filters, keep) in cases {
        let page = service
            .get(&format!("/admin/v1/audit?limit=1000&{filters}"))
            .await;
        assert_eq!(page.status, 200, "{filters}: {page:?}");
        let want = expected(events.iter().filter(|e| keep(e)));
        assert_eq!(keys(&page.json), want, "{filters}");
        assert_eq!(page.json["next_cursor"], Value::Null, "{filters}");
    }
    // A row carries every field of the event.
    let page = service.get("/admin/v1/audit?request_id=q-0&limit=1").await;
    let row = &page.json["data"][0];
    let newest = events
        .iter()
        .filter(|e| e.request_id == "q-0")
        .max_by_key(|e| e.occurred_at_ms)
        .unwrap();
    assert_eq!(row["tenant"], newest.tenant);
    assert_eq!(row["key_id"], newest.key_id);
    assert_eq!(row["rule_kind"], "secret");
    assert_eq!(row["location"], "messages[0].content");
    assert_eq!(row["offset"], newest.offset);
    assert_eq!(row["length"], 51);
    assert_eq!(row["match_hash"], newest.match_hash);
    assert_eq!(row["occurred_at_ms"], newest.occurred_at_ms);
    assert_eq!(row["excerpt"], "");
    service.stop().await.unwrap();
}

async fn pages_cover_everything_once(backend: Backend) {
    let (service, events) = seeded(backend, 50).await;
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/admin/v1/audit?limit=7&tenant=acme".to_owned();
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let page = service.get(&path).await;
        assert_eq!(page.status, 200, "{page:?}");
        let rows = keys(&page.json);
        assert!(rows.len() <= 7);
        seen.extend(rows);
        pages += 1;
        match page.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        // Events arriving meanwhile are newer: they never shift the pages
        // still to come.
        if pages == 1 {
            let mut late = event("late", 0, NOV_1 + 300 * DAY_MS);
            late.tenant = "acme".into();
            record(&mut service.audit().await, vec![late])
                .await
                .unwrap();
        }
        assert!(pages < 20, "paging does not end");
    }
    let want = expected(events.iter().filter(|e| e.tenant == "acme"));
    assert_eq!(seen, want);
    assert_eq!(pages, want.len().div_ceil(7));
    service.stop().await.unwrap();
}

async fn csv_exports_every_row(backend: Backend) {
    let service = start(backend).await;
    let mut client = service.audit().await;
    // More than one export page (5000 rows), in two batches.
    let events = varied("bulk", 11_000);
    for batch in events.chunks(6_000) {
        record(&mut client, batch.to_vec()).await.unwrap();
    }
    let mut quoted = event("quoted", 0, NOV_1 + 400 * DAY_MS);
    quoted.excerpt = "line one, [REDACTED:secret]\n\"two\"".into();
    quoted.tenant = "quoting".into();
    record(&mut client, vec![quoted]).await.unwrap();

    let all = service.get("/admin/v1/audit?format=csv").await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(
        all.headers["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let mut lines = all.text.split("\r\n");
    assert_eq!(
        lines.next().unwrap(),
        "occurred_at,occurred_at_ms,request_id,attempt,sequence,tenant,key_id,model,policy,\
         rule_id,rule_kind,direction,action,location,offset,length,match_hash,excerpt"
    );
    // The quoted excerpt spans two physical lines; 11 000 more rows.
    assert_eq!(all.text.matches("\r\n").count(), 1 + 11_001);
    assert!(
        all.text
            .contains(",\"line one, [REDACTED:secret]\n\"\"two\"\"\"\r\n"),
        "{}",
        &all.text[..400]
    );
    // Each event once, newest first.
    let ids: Vec<&str> = all
        .text
        .split("\r\n")
        .skip(2)
        .filter(|line| !line.is_empty())
        .map(|line| line.split(',').nth(2).unwrap())
        .collect();
    assert_eq!(ids.len(), 11_000);
    let want = expected(&events);
    assert_eq!(ids[0], want[0].0);
    assert_eq!(ids[10_999], want[10_999].0);

    // Accept: text/csv, a limit across the page boundary, a filter.
    let limited = service
        .http
        .get(service.url("/admin/v1/audit?limit=5001&tenant=acme"))
        .bearer_auth(crate::support::TOKEN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 200);
    let text = limited.text().await.unwrap();
    assert_eq!(text.matches("\r\n").count(), 1 + 3_667);
    assert!(text.lines().skip(1).all(|line| line.contains(",acme,")));
    let five = service.get("/admin/v1/audit?format=csv&limit=5001").await;
    assert_eq!(five.text.matches("\r\n").count(), 1 + 5_001);
    service.stop().await.unwrap();
}

async fn bad_parameters_are_refused(backend: Backend) {
    let service = start(backend).await;
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("direction=both", "direction"),
        ("action=allow", "action"),
        ("cursor=garbage", "cursor"),
        ("from=2026-11-02&to=2026-11-01", "from"),
        ("from=yesterday", "from"),
        ("tenant=", "tenant"),
        ("format=xml", "format"),
        ("tenant=a&tenant=b", "tenant"),
        ("ruleid=x", "ruleid"),
    ] {
        let answer = service.get(&format!("/admin/v1/audit?{query}")).await;
        answer.assert_error(400, Some(param));
    }
    for (query, param) in [
        ("limit=0", "limit"),
        ("cursor=abc", "cursor"),
        ("actor=", "actor"),
        ("rule_id=x", "rule_id"),
    ] {
        let answer = service.get(&format!("/admin/v1/audit/admin?{query}")).await;
        answer.assert_error(400, Some(param));
    }
    service.stop().await.unwrap();
}
