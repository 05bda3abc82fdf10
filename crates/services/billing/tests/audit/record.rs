//! RecordAudit: exactly once under redelivery, all or nothing on bad input,
//! monthly partitions on Postgres.

use crate::on_both_backends;
use crate::support::{Backend, TestDb, start};
use crate::{DAY_MS, NOV_1, event, record, varied};

on_both_backends!(
    redelivered_batches_record_once,
    bad_batches_are_refused_whole,
    month_boundary_and_partitions,
);

async fn redelivered_batches_record_once(backend: Backend) {
    let service = start(backend).await;
    let events = varied("redeliver", 120);
    let client = service.audit().await;
    // The same batch three times at once (a spool retrying while the first
    // delivery is still in flight), then once more.
    let sends = (0..3).map(|_| {
        let mut client = client.clone();
        let events = events.clone();
        tokio::spawn(async move { record(&mut client, events).await.unwrap() })
    });
    let (mut inserted, mut duplicates) = (0, 0);
    for send in sends {
        let answer = send.await.unwrap();
        inserted += answer.inserted;
        duplicates += answer.duplicates;
    }
    assert_eq!((inserted, duplicates), (120, 240));
    let again = record(&mut client.clone(), events.clone()).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 120));

    // A repeat inside one batch counts once; a new sequence of a known
    // request is a new event.
    let mut next = events[0].clone();
    next.sequence = 99;
    let answer = record(
        &mut client.clone(),
        vec![next.clone(), next.clone(), events[1].clone()],
    )
    .await
    .unwrap();
    assert_eq!((answer.inserted, answer.duplicates), (1, 2));

    let page = service.get("/admin/v1/audit?limit=1000").await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(page.json["data"].as_array().unwrap().len(), 121);
    let one = service
        .get(&format!(
            "/admin/v1/audit?request_id={}",
            events[0].request_id
        ))
        .await;
    let sequences: Vec<i64> = one.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["sequence"].as_i64().unwrap())
        .collect();
    // Newest first; the two at the same time by sequence, descending.
    assert_eq!(sequences, [2, 1, 99, 0]);
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("llmgw_billing_audit_events_total{result=\"inserted\"} 121"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmgw_billing_audit_events_total{result=\"duplicate\"} 362"),
        "{metrics}"
    );
    service.stop().await.unwrap();
}

async fn bad_batches_are_refused_whole(backend: Backend) {
    let service = start(backend).await;
    let mut client = service.audit().await;
    let good = event("fine", 0, NOV_1);
    let spoilers: [fn(&mut llmgw_proto::billing_v1::AuditEvent); 6] = [
        |e| e.request_id.clear(),
        |e| e.rule_id.clear(),
        |e| e.direction = "sideways".into(),
        |e| e.action = "allow".into(),
        |e| e.tenant = "line\nbreak".into(),
        |e| e.occurred_at_ms = -1,
    ];
    for spoil in spoilers {
        let mut bad = event("bad", 1, NOV_1);
        spoil(&mut bad);
        let status = record(&mut client, vec![good.clone(), bad])
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        // The message names the event, never what it matched.
        assert!(status.message().contains("audit event 1"), "{status:?}");
    }
    // Nothing of the refused batches was kept, the good event included.
    let page = service.get("/admin/v1/audit").await;
    assert_eq!(page.json["data"], serde_json::json!([]), "{page:?}");
    let answer = record(&mut client, vec![good]).await.unwrap();
    assert_eq!((answer.inserted, answer.duplicates), (1, 0));
    let empty = record(&mut client, vec![]).await.unwrap();
    assert_eq!((empty.inserted, empty.duplicates), (0, 0));
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("llmgw_billing_audit_batches_total{outcome=\"invalid\"} 6"),
        "{metrics}"
    );
    service.stop().await.unwrap();
}

async fn month_boundary_and_partitions(backend: Backend) {
    let service = start(backend).await;
    let mut client = service.audit().await;
    let times = [
        NOV_1 - DAY_MS,
        NOV_1 - 1,
        NOV_1,
        NOV_1 + 1,
        NOV_1 + 29 * DAY_MS,
    ];
    let events: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(i, at)| event(&format!("edge-{i}"), 0, *at))
        .collect();
    // One batch spanning both months: both partitions are created for it.
    let answer = record(&mut client, events.clone()).await.unwrap();
    assert_eq!(answer.inserted, 5);
    if backend == Backend::Postgres {
        assert_eq!(
            partition_counts(&service.db).await,
            [
                ("audit_events_202610".to_owned(), 2),
                ("audit_events_202611".to_owned(), 3)
            ]
        );
    }
    // Redelivered after the partitions exist: nothing new.
    let again = record(&mut client, events).await.unwrap();
    assert_eq!((again.inserted, again.duplicates), (0, 5));
    // The month filter's edges: `from` inclusive, `to` exclusive.
    let november = service
        .get("/admin/v1/audit?from=2026-11-01&to=2026-12-01")
        .await;
    assert_eq!(november.json["data"].as_array().unwrap().len(), 3);
    let october = service
        .get(&format!("/admin/v1/audit?from=2026-10-01&to={NOV_1}"))
        .await;
    assert_eq!(october.json["data"].as_array().unwrap().len(), 2);

    // Replicas racing to open a new month all succeed.
    let march = NOV_1 + 120 * DAY_MS;
    let mut replicas = Vec::new();
    for replica in 0..4 {
        let store = llmgw_billing::store::Store::connect(&service.db.url)
            .await
            .unwrap();
        replicas.push(tokio::spawn(async move {
            let events: Vec<_> = (0..20)
                .map(|i| event(&format!("race-{replica}-{i}"), 0, march + i64::from(i)))
                .collect();
            store.record_audit(&events).await
        }));
    }
    for replica in replicas {
        let recorded = replica.await.unwrap().unwrap();
        assert_eq!((recorded.inserted, recorded.duplicates), (20, 0));
    }
    if backend == Backend::Postgres {
        let counts = partition_counts(&service.db).await;
        assert_eq!(
            counts.last().unwrap(),
            &("audit_events_202703".to_owned(), 80)
        );
        // Append-only: rows cannot be changed or deleted through the table.
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&service.db.url).await.unwrap();
        for sql in [
            "UPDATE audit_events SET tenant = 'x'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
        ] {
            let error = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
            assert!(error.to_string().contains("append-only"), "{sql}: {error}");
        }
    }
    service.stop().await.unwrap();
}

async fn partition_counts(db: &TestDb) -> Vec<(String, i64)> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_as(
        "SELECT tableoid::regclass::text, count(*) FROM audit_events GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}
