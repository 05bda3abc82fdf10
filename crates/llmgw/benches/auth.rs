//! What authenticating an accounts-database key costs at the edge:
//! `cargo bench -p llmgw --bench auth`. A cache miss asks the billing service
//! (gRPC, SQLite here); a hit is a SHA-256 and a map lookup. Measures the
//! edge's own authenticator (`llmgw_edge::auth::Keys`), as the edge builds it.

use std::time::{Duration, Instant};

use llmgw_billing::store::{Actor, Limits, NewKey, NewTenant, Store};
use llmgw_edge::auth::Keys;
use llmgw_proto::billing_v1::accounts_client::AccountsClient;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use tokio_util::sync::CancellationToken;

/// Whether `key` authenticates, the way a request presents it.
async fn authenticate(keys: &Keys, key: &str) -> bool {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::try_from(format!("Bearer {key}")) {
        headers.insert(AUTHORIZATION, value);
    }
    keys.authenticate(&headers).await.is_ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("llmgw-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}/llmgw.db", dir.display());
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    let seeder = Actor::system("bench");
    let tenant = store
        .create_tenant(
            NewTenant {
                name: "bench".to_owned(),
                monthly_budget_nano_usd: None,
                limits: Limits::default(),
                policy: None,
            },
            &seeder,
        )
        .await?;
    let mut secrets = Vec::new();
    for n in 0..300 {
        let new = NewKey {
            name: format!("key-{n}"),
            allowed_models: Vec::new(),
            limits: Limits::default(),
            expires_at: None,
        };
        secrets.push(store.create_key(&tenant.id, new, &seeder).await?.1);
    }

    let stop = CancellationToken::new();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = grpc.local_addr()?;
    let config = llmgw_billing::Config {
        database_url: Some(url),
        ..llmgw_billing::Config::default()
    };
    tokio::spawn(llmgw_billing::run(
        config,
        grpc,
        admin,
        stop.clone().cancelled_owned(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The edge's defaults: 30 s cache, 5 s for unknown keys.
    let edge = llmgw_edge::Config::default();
    let accounts = AccountsClient::new(llmgw_grpc::channel(&format!("http://{address}"))?);
    let auth = Keys::new(
        &[],
        Some(accounts),
        Duration::from_secs(edge.auth_cache_ttl_secs),
        Duration::from_secs(edge.auth_negative_ttl_secs),
    )?;
    anyhow::ensure!(
        authenticate(&auth, &secrets[0]).await,
        "the first key authenticates"
    );

    let mut misses = Vec::new();
    for secret in &secrets[1..] {
        let started = Instant::now();
        anyhow::ensure!(
            authenticate(&auth, secret).await,
            "a database key authenticates"
        );
        misses.push(started.elapsed());
    }
    misses.sort();
    let at = |q: f64| misses[((misses.len() - 1) as f64 * q) as usize];
    println!(
        "cache miss (billing gRPC + SQLite lookup): p50 {:?}  p99 {:?}  ({} keys)",
        at(0.5),
        at(0.99),
        misses.len()
    );

    let calls = 200_000u32;
    let started = Instant::now();
    for n in 0..calls {
        let secret = &secrets[(n as usize) % secrets.len()];
        std::hint::black_box(authenticate(&auth, secret).await);
    }
    println!(
        "cache hit: {:?} per authentication (one thread)",
        started.elapsed() / calls
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
