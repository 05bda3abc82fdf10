//! The service around the API, on Postgres and on SQLite: LookupKey's
//! argument checks, the admin routes' absence from the gRPC port, start-up
//! failures (database down, bad admin token), the
//! admin API without a token, and a database lost while serving.
#![allow(clippy::unwrap_used)] // panicking is how tests fail

mod support;

use std::time::{Duration, Instant};

use llmgw_proto::billing_v1::LookupKeyRequest;
use serde_json::json;
use support::{Backend, TOKEN, TestDb, config, listeners, start, start_with, unique};

on_both_backends!(
    lookup_checks_the_digest,
    unreachable_database_fails_the_start,
    short_admin_token_fails_the_start,
    admin_api_without_a_token_is_disabled,
    migrate_is_idempotent,
    admin_routes_are_not_on_the_grpc_port,
);

async fn lookup_checks_the_digest(backend: Backend) {
    let service = start(backend).await;
    let mut client = service.accounts().await;
    for digest in [vec![1u8; 5], vec![], vec![7u8; 33]] {
        let status = client
            .lookup_key(LookupKeyRequest {
                key_digest: digest.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    let unknown = client
        .lookup_key(LookupKeyRequest {
            key_digest: vec![0u8; 32].into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!unknown.found);
    assert!(unknown.key.is_none());
    // An unknown gRPC method is still a gRPC answer, not an HTTP 404.
    let response = service
        .http
        .post(format!(
            "http://{}/llmgw.billing.v1.Nope/Nothing",
            service.grpc
        ))
        .header("content-type", "application/grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "12");
    service.stop().await.unwrap();
}

async fn unreachable_database_fails_the_start(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = config(&db);
    config.database_url = Some(match backend {
        // Nothing listens on port 1.
        Backend::Postgres => "postgres://postgres:hunter2@127.0.0.1:1/llmgw".to_owned(),
        // A directory that does not exist: the file cannot be created.
        Backend::Sqlite => format!(
            "sqlite://{}",
            db.dir.join("missing").join("deeper").join("x.db").display()
        ),
    });
    let (grpc, admin) = listeners().await;
    let started = Instant::now();
    let error = llmgw_billing::run(config, grpc, admin, std::future::pending())
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("billing database"), "{message}");
    assert!(
        !message.contains("hunter2"),
        "password in an error: {message}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "{message}");
}

async fn short_admin_token_fails_the_start(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = config(&db);
    std::fs::write(config.admin_token_file.as_ref().unwrap(), "too-short\n").unwrap();
    let (grpc, admin) = listeners().await;
    let error = llmgw_billing::run(config, grpc, admin, std::future::pending())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("too short"), "{error:#}");
}

async fn admin_api_without_a_token_is_disabled(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = config(&db);
    config.admin_token_file = None;
    let (grpc, admin) = listeners().await;
    let admin_address = admin.local_addr().unwrap();
    let grpc_address = grpc.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(llmgw_billing::run(config, grpc, admin, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let sent = http
            .get(format!("http://{admin_address}/admin/v1/tenants"))
            .bearer_auth(support::TOKEN)
            .send()
            .await;
        if let Ok(response) = sent {
            break support::answer(response).await;
        }
        assert!(Instant::now() < deadline, "billing did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    answer.assert_error(503, None);
    let message = answer.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("admin API disabled: set LLMGW_BILLING_TEST_UNSET_TOKEN"),
        "{message}"
    );
    // LookupKey does not need the admin token.
    let mut client = llmgw_proto::billing_v1::accounts_client::AccountsClient::connect(format!(
        "http://{grpc_address}"
    ))
    .await
    .unwrap();
    let found = client
        .lookup_key(LookupKeyRequest {
            key_digest: vec![3u8; 32].into(),
        })
        .await
        .unwrap()
        .into_inner()
        .found;
    assert!(!found);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

async fn migrate_is_idempotent(backend: Backend) {
    let db = TestDb::new(backend).await;
    llmgw_billing::migrate(&db.url).await.unwrap();
    llmgw_billing::migrate(&db.url).await.unwrap();
    // And a service that does not migrate serves the migrated database.
    let mut config = config(&db);
    config.migrate_on_start = false;
    let service = start_with(db, config).await;
    let name = unique("premigrated");
    service.tenant(&name).await;
    service.stop().await.unwrap();
}

async fn admin_routes_are_not_on_the_grpc_port(backend: Backend) {
    let service = start(backend).await;
    let grpc = format!("http://{}", service.grpc);
    let name = unique("wrong-port");
    for request in [
        service
            .http
            .post(format!("{grpc}/admin/v1/tenants"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(json!({"name": name}).to_string()),
        service
            .http
            .get(format!("{grpc}/admin/v1/tenants"))
            .bearer_auth(TOKEN),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 404);
    }
    let listing = service.get("/admin/v1/tenants").await.json;
    assert_eq!(
        listing,
        json!({"data": []}),
        "the gRPC port created a tenant"
    );
    let metrics = service.metrics().await;
    assert!(metrics.contains("llmgw_billing_lookups"), "{metrics}");
    service.stop().await.unwrap();
}

/// Postgres only: a SQLite file cannot go away in the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lost_while_serving_answers_unavailable() {
    let service = start(Backend::Postgres).await;
    let tenant = unique("doomed");
    service.tenant(&tenant).await;
    let key = service.key(&tenant, "k").await;
    service.db.drop_postgres_database().await;

    let listing = service.get("/admin/v1/tenants").await;
    listing.assert_error(503, None);
    assert_eq!(listing.json["error"]["type"], "server_error");
    let created = service
        .post(
            "/admin/v1/tenants",
            serde_json::json!({"name": unique("late")}),
        )
        .await;
    created.assert_error(503, None);
    let status = service
        .lookup(key["secret"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let metrics = service.metrics().await;
    assert!(
        metrics.contains("llmgw_billing_lookups_total{result=\"error\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("llmgw_billing_admin_requests_total{status=\"503\"} 2"),
        "{metrics}"
    );
    service.stop().await.unwrap();
}
