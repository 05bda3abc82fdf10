//! What authenticating an accounts-database key costs at the edge:
//! `cargo bench -p llmgw --bench auth`. A cache miss asks the billing service
//! (gRPC, SQLite here); a hit is a SHA-256 and a map lookup.

use std::time::{Duration, Instant};

use llmgw_billing::store::{Limits, NewKey, NewTenant, Store};
use llmgw_edge::microbench::Auth;
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("llmgw-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}/llmgw.db", dir.display());
    let store = Store::connect(&url).await?;
    store.migrate().await?;
    let tenant = store
        .create_tenant(NewTenant {
            name: "bench".to_owned(),
            monthly_budget_nano_usd: None,
            limits: Limits::default(),
        })
        .await?;
    let mut secrets = Vec::new();
    for n in 0..300 {
        let new = NewKey {
            name: format!("key-{n}"),
            allowed_models: Vec::new(),
            limits: Limits::default(),
            expires_at: None,
        };
        secrets.push(store.create_key(&tenant.id, new).await?.1);
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
    let auth = Auth::new(&format!("http://{address}"))?;
    anyhow::ensure!(
        auth.authenticate(&secrets[0]).await,
        "the first key authenticates"
    );

    let mut misses = Vec::new();
    for secret in &secrets[1..] {
        let started = Instant::now();
        anyhow::ensure!(
            auth.authenticate(secret).await,
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
        std::hint::black_box(auth.authenticate(secret).await);
    }
    println!(
        "cache hit: {:?} per authentication (one thread)",
        started.elapsed() / calls
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
