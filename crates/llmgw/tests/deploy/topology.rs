//! The compose topology as processes of the built binary: every service the
//! file runs, with the file's own configuration and environment, container
//! addresses and paths translated to this machine (free loopback ports, a
//! test database on the local Postgres, a key prefix of its own on the local
//! Redis, secrets as files in a scratch directory, each container's
//! filesystem and volumes a directory of its own, its working directory the
//! image's). Two quota replicas, each behind its own edge, share one Redis.
//! A request goes through and lands in the ledger; every spool is where the
//! configuration says, on a volume of its own container.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use llmgw_testdb::TestDatabase;
use serde_json::{Value, json};
use serde_yaml::Value as Yaml;

use crate::compose::{Compose, Service};
use crate::dockerfile::final_stage;
use crate::files::{host_port, repo};
use crate::process::{Launch, Proc, STARTUP, ScratchDir, client, free_ports, wait_http_ok};
use crate::service_config::{absolute, spools};

const ADMIN_TOKEN: &str = "deploy-topology-admin-token-0123456789";

/// The compose config with every container address, path and datastore
/// replaced by this machine's.
struct Translation {
    /// (compose service, port it listens on) → local port.
    ports: BTreeMap<(String, u16), u16>,
    database_url: String,
    redis_prefix: String,
    scratch: ScratchDir,
    /// The image's working directory, where every container starts.
    workdir: PathBuf,
}

impl Translation {
    fn address(&self, host: &str, port: u16) -> Option<String> {
        let local = self.ports.get(&(host.to_owned(), port))?;
        Some(format!("127.0.0.1:{local}"))
    }

    /// The filesystem of container `instance` (each replica has its own,
    /// volumes included).
    fn root(&self, instance: &str) -> PathBuf {
        self.scratch.path().join("containers").join(instance)
    }

    /// A path inside container `instance`, on this machine.
    fn path(&self, instance: &str, path: &Path) -> PathBuf {
        self.root(instance)
            .join(path.strip_prefix("/").unwrap_or(path))
    }

    /// A string of the config of `service`, run as container `instance`, as
    /// it must read here.
    fn string(&self, service: &str, instance: &str, text: &str) -> String {
        if let Some(secret) = text.strip_prefix("/run/secrets/") {
            return self
                .scratch
                .path()
                .join("secrets")
                .join(secret)
                .display()
                .to_string();
        }
        if text.starts_with("/var/lib/llmgw/") {
            return self.path(instance, Path::new(text)).display().to_string();
        }
        if text.starts_with("postgres://") {
            return self.database_url.clone();
        }
        if text.starts_with("redis://") {
            return "redis://127.0.0.1:6379".to_owned();
        }
        if let Some(rest) = text.strip_prefix("http://") {
            let (host, port) = host_port(text);
            let path = rest.find('/').map_or("", |at| &rest[at..]);
            if let Some(address) = self.address(&host, port) {
                return format!("http://{address}{path}");
            }
        }
        if let Some(port) = text
            .strip_prefix("0.0.0.0:")
            .and_then(|port| port.parse().ok())
            && let Some(address) = self.address(service, port)
        {
            return address;
        }
        text.to_owned()
    }

    fn value(&self, service: &str, instance: &str, value: &Yaml) -> Yaml {
        match value {
            Yaml::String(text) => Yaml::String(self.string(service, instance, text)),
            Yaml::Mapping(map) => Yaml::Mapping(
                map.iter()
                    .map(|(key, value)| (key.clone(), self.value(service, instance, value)))
                    .collect(),
            ),
            Yaml::Sequence(list) => Yaml::Sequence(
                list.iter()
                    .map(|item| self.value(service, instance, item))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// How `service` of the compose file starts here as container
    /// `instance`: its command line and environment (with its translated
    /// config file), plus `env`, in the image's working directory.
    fn launch<'a>(
        &self,
        service: &Service,
        instance: &'a str,
        env: &[(&str, String)],
    ) -> Launch<'a> {
        let command: Vec<String> = service
            .command()
            .iter()
            .map(|arg| self.string(service.name, instance, arg))
            .collect();
        assert_eq!(command[0], "llmgw");
        let config_path = service.env_var("LLMGW_CONFIG").expect("LLMGW_CONFIG");
        let mut config =
            crate::files::yaml(&service.mounted_file(&config_path).expect("mounted config"));
        config = self.value(service.name, instance, &config);
        config["quota"]["key_prefix"] = self.redis_prefix.clone().into();
        let file = self.scratch.path().join(format!("{instance}.yaml"));
        std::fs::write(&file, serde_yaml::to_string(&config).expect("YAML")).expect("write config");
        let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
        let mut launch = Launch::llmgw(instance, &args);
        let workdir = self.path(instance, &self.workdir);
        std::fs::create_dir_all(&workdir).expect("the working directory");
        launch.cwd = Some(workdir);
        for (key, value) in service.environment() {
            let value = if key == "LLMGW_CONFIG" {
                file.display().to_string()
            } else {
                value
            };
            launch = launch.env(&key, value);
        }
        for (key, value) in env {
            launch = launch.env(key, value.clone());
        }
        launch
    }
}

/// The directories under `root` a spool has locked (its `lock` file).
fn spool_dirs(root: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return found;
    };
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(spool_dirs(&path));
        } else if path.file_name().is_some_and(|name| name == "lock") {
            found.insert(root.to_owned());
        }
    }
    found
}

async fn metrics_ok(port: u16, procs: &mut [&mut Proc]) {
    wait_http_ok(&format!("http://127.0.0.1:{port}/metrics"), procs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_topology_serves_and_bills_a_request() {
    let compose = Compose::load();
    let database = TestDatabase::create("deploy_topology")
        .await
        .expect("a test database");
    let [
        billing,
        admin,
        quota_a,
        quota_b,
        router,
        mock,
        edge_a,
        edge_b,
    ] = free_ports();
    let translation = Translation {
        ports: BTreeMap::from([
            (("billing".to_owned(), 8083), billing),
            (("billing".to_owned(), 8090), admin),
            (("quota".to_owned(), 8082), quota_a),
            (("router".to_owned(), 8081), router),
            (("mock-upstream".to_owned(), 9000), mock),
            (("edge".to_owned(), 8080), edge_a),
        ]),
        database_url: database.url().to_owned(),
        redis_prefix: format!("llmgw-deploy-topology-{}", std::process::id()),
        scratch: ScratchDir::new("topology"),
        workdir: PathBuf::from(final_stage(&repo().join("Dockerfile")).workdir),
    };
    let secrets = translation.scratch.path().join("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    std::fs::write(secrets.join("admin_token"), ADMIN_TOKEN).expect("admin token");
    // The local Postgres trusts local connections: any password passes,
    // and the password file is still read and put into the URL.
    std::fs::write(secrets.join("postgres_password"), "p@ss word\n").expect("password");

    // In the compose file's order of dependencies.
    let (status, output) = translation
        .launch(&compose.service("migrate"), "migrate", &[])
        .run()
        .await;
    assert!(status.success(), "migrate\n{output}");
    let billing_service = compose.service("billing");
    let mut billing_proc = translation.launch(&billing_service, "billing", &[]).spawn();
    metrics_ok(billing, &mut [&mut billing_proc]).await;
    // Every account limited to one request in flight: counted in Redis,
    // shared by both quota replicas.
    // (Redis's answers get a wider bound than production's 25 ms: this
    // machine builds and tests in parallel, and a slow answer would decide
    // the request without Redis, per quota.on_redis_failure.)
    let one_at_a_time = [
        (
            "LLMGW_QUOTA__LIMITS__DEFAULT_KEY__CONCURRENT",
            "1".to_owned(),
        ),
        ("LLMGW_QUOTA__REDIS_TIMEOUT_MS", "2000".to_owned()),
    ];
    let quota_service = compose.service("quota");
    let mut quota_a_proc = translation
        .launch(&quota_service, "quota-a", &one_at_a_time)
        .spawn();
    let mut quota_b_proc = translation
        .launch(
            &quota_service,
            "quota-b",
            &[
                one_at_a_time[0].clone(),
                one_at_a_time[1].clone(),
                ("LLMGW_QUOTA__LISTEN", format!("127.0.0.1:{quota_b}")),
            ],
        )
        .spawn();
    let mock_service = compose.service("mock-upstream");
    let mut mock_proc = translation
        .launch(&mock_service, "mock-upstream", &[])
        .spawn();
    let router_service = compose.service("router");
    let mut router_proc = translation.launch(&router_service, "router", &[]).spawn();
    metrics_ok(quota_a, &mut [&mut quota_a_proc]).await;
    metrics_ok(quota_b, &mut [&mut quota_b_proc]).await;
    metrics_ok(router, &mut [&mut router_proc]).await;
    wait_http_ok(
        &format!("http://127.0.0.1:{mock}/v1/models"),
        &mut [&mut mock_proc],
    )
    .await;
    let edge_service = compose.service("edge");
    let mut edge_a_proc = translation.launch(&edge_service, "edge-a", &[]).spawn();
    let mut edge_b_proc = translation
        .launch(
            &edge_service,
            "edge-b",
            &[
                ("LLMGW_EDGE__LISTEN", format!("127.0.0.1:{edge_b}")),
                (
                    "LLMGW_EDGE__QUOTA_URL",
                    format!("http://127.0.0.1:{quota_b}"),
                ),
            ],
        )
        .spawn();
    for (port, proc) in [(edge_a, &mut edge_a_proc), (edge_b, &mut edge_b_proc)] {
        wait_http_ok(&format!("http://127.0.0.1:{port}/readyz"), &mut [proc]).await;
    }

    // README's first steps: a tenant and a key through the admin CLI.
    let cli = |args: &[&str]| {
        Launch::llmgw("llmgw (admin CLI)", args)
            .env("LLMGW_ADMIN_URL", format!("http://127.0.0.1:{admin}"))
            .env("LLMGW_ADMIN_TOKEN", ADMIN_TOKEN)
    };
    let created = cli(&["tenants", "create", "acme"]).output().await;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = cli(&["keys", "create", "acme", "--name", "smoke", "--json"])
        .output()
        .await;
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let key: Value = serde_json::from_slice(&key.stdout).expect("JSON");
    let key = key["secret"].as_str().expect("the new key").to_owned();

    let client = client();
    let chat = |edge: u16, body: Value| {
        client
            .post(format!("http://127.0.0.1:{edge}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let hello = json!({"model": "mock", "messages": [{"role": "user", "content": "Hello!"}]});
    let answer = chat(edge_a, hello.clone()).await.expect("edge A");
    assert_eq!(answer.status(), 200);
    let request_id = answer.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let _ = answer.text().await;

    // A stream held open through edge A (and quota A) takes the one slot:
    // edge B, asking quota B, is refused, since both count in one Redis.
    // (The first request's slot is handed back off its response path: until
    // then, this one may be refused too.)
    let deadline = tokio::time::Instant::now() + STARTUP;
    let held = loop {
        let held = chat(
            edge_a,
            json!({"model": "mock", "stream": true, "mock": {"fault": "stall-mid-stream"},
                   "messages": [{"role": "user", "content": "Hold on"}]}),
        )
        .await
        .expect("edge A");
        if held.status() == 200 {
            break held;
        }
        assert_eq!(held.status(), 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut held = held.bytes_stream();
    let first = held.next().await.expect("a first chunk").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("data:"));
    let refused = chat(edge_b, hello.clone()).await.expect("edge B");
    assert_eq!(
        refused.status(),
        429,
        "{}",
        refused.text().await.unwrap_or_default()
    );
    drop(held);
    // The client left: its slot comes back, and edge B serves.
    loop {
        let answer = chat(edge_b, hello.clone()).await.expect("edge B");
        if answer.status() == 200 {
            break;
        }
        let status = answer.status();
        let body = answer.text().await.unwrap_or_default();
        assert_eq!(status, 429, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The router's spool delivers the first request's usage to billing.
    let pool = database.pool().await.expect("pool");
    loop {
        let (rows, tenant): (i64, Option<String>) =
            sqlx::query_as("SELECT count(*), max(tenant) FROM usage_events WHERE request_id = $1")
                .bind(&request_id)
                .fetch_one(&pool)
                .await
                .expect("query the ledger");
        if rows > 0 {
            assert_eq!(tenant.as_deref(), Some("acme"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "request {request_id} never reached the ledger\n{}\n{}",
            router_proc.output(),
            billing_proc.output()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    pool.close().await;

    // Each process opened its spools where its configuration says (the
    // services' defaults resolved in the image's working directory when
    // unset), each on a volume its own container mounts, and no others: two
    // edges, two spool directories.
    for (service, instance) in [
        ("billing", "billing"),
        ("quota", "quota-a"),
        ("quota", "quota-b"),
        ("mock-upstream", "mock-upstream"),
        ("router", "router"),
        ("edge", "edge-a"),
        ("edge", "edge-b"),
    ] {
        let service = compose.service(service);
        let role = service.role().expect("an llmgw service");
        let mut expected = BTreeSet::new();
        for spool in spools(&service.config(&[]), role) {
            let dir = absolute(&translation.workdir, &spool.dir);
            assert!(
                service.mount_at(&dir).is_some(),
                "{instance}: {} {} is on no volume",
                spool.setting,
                dir.display()
            );
            expected.insert(translation.path(instance, &dir));
        }
        assert_eq!(
            spool_dirs(&translation.root(instance)),
            expected,
            "{instance}: its spools"
        );
    }
    drop((
        edge_a_proc,
        edge_b_proc,
        router_proc,
        mock_proc,
        quota_a_proc,
        quota_b_proc,
        billing_proc,
    ));
    database
        .drop_database()
        .await
        .expect("drop the test database");
}
