//! docker-compose.yml holds together: every address a service is
//! configured with names a service of the file on a port that service
//! listens on, every secret exists, the health checks ask what each service
//! serves, and start-up waits for what each service needs.

use std::collections::BTreeSet;

use crate::compose::{Compose, Service, committed};
use crate::dockerfile::final_stage;
use crate::files::{host_port, repo, scalar, seq, yaml};
use crate::service_config::{
    Role, absolute, calls, files_read, is_external, is_loopback, listen_addresses, listen_ports,
    overlap, provider_key_vars, spools,
};

/// The ports the other services of the file listen on (their images'
/// defaults, or their own config files).
fn listen_ports_of(service: &Service) -> Vec<u16> {
    if let Some(role) = service.role() {
        return listen_ports(&service.config(&[]), role, &service.command()[2..]);
    }
    match service.name {
        "postgres" => vec![5432],
        "redis" => vec![6379],
        "jaeger" => vec![4317, 16686, 14269],
        "prometheus" => vec![9090],
        "grafana" => vec![3000],
        "otel-collector" => {
            let file = service
                .mounted_file("/etc/otelcol/config.yaml")
                .expect("collector config");
            let endpoint = yaml(&file)["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
                .as_str()
                .expect("OTLP gRPC endpoint")
                .to_owned();
            vec![
                endpoint
                    .rsplit(':')
                    .next()
                    .and_then(|port| port.parse().ok())
                    .expect("a port"),
            ]
        }
        other => panic!("service {other}: which ports does it listen on? (add it here)"),
    }
}

/// The OTLP endpoint the file's comments tell operators to set.
const DOCUMENTED_OTLP: &str = "http://otel-collector:4317";

#[test]
fn every_address_names_a_service_on_a_port_it_listens_on() {
    let compose = Compose::load();
    let mut checked = 0;
    for service in compose.services() {
        let Some(role) = service.role() else { continue };
        for otlp in ["", DOCUMENTED_OTLP] {
            let config = service.config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)]);
            for (setting, address) in listen_addresses(&config, role) {
                assert!(
                    address.ip().is_unspecified(),
                    "{}: {setting} {address} is unreachable from other containers",
                    service.name
                );
            }
            for (setting, url) in calls(&config, role) {
                let (host, port) = host_port(&url);
                assert!(
                    !is_loopback(&host),
                    "{}: {setting} {url}: in a container that is the container itself",
                    service.name
                );
                if is_external(&host) {
                    continue;
                }
                let target = compose.service(&host);
                let ports = listen_ports_of(&target);
                assert!(
                    ports.contains(&port),
                    "{}: {setting} {url}: {host} listens on {ports:?}",
                    service.name
                );
                // Started in order: whatever a service calls (outside an
                // optional profile) is up first.
                if target.profiles().is_empty() {
                    assert!(
                        service.depends_on().iter().any(|(name, _)| *name == host),
                        "{} calls {host} ({setting}) but does not depend on it",
                        service.name
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} addresses checked");
}

#[test]
fn health_checks_ask_each_service_what_it_serves() {
    let compose = Compose::load();
    for service in compose.services() {
        let role = service.role();
        let one_shot = role.is_some_and(|role| !role.serves());
        let healthcheck = service.healthcheck();
        if one_shot {
            assert_eq!(
                service.value["restart"].as_str(),
                Some("no"),
                "{}",
                service.name
            );
        } else {
            assert!(
                service.value["restart"]
                    .as_str()
                    .is_some_and(|restart| restart != "no"),
                "{}: a restart policy",
                service.name
            );
            // The collector's image has neither a shell nor an HTTP client;
            // nothing waits on it (see its comment).
            if service.name != "otel-collector" {
                assert!(healthcheck.is_some(), "{}: a healthcheck", service.name);
            }
        }
        if let (Some(role), Some(test)) = (role, &healthcheck) {
            let ports = listen_ports(&service.config(&[]), role, &service.command()[2..]);
            assert_eq!(test[..2], ["llmgw", "probe"], "{}", service.name);
            let (host, port) = host_port(&test[2].replacen("grpc://", "http://", 1));
            assert!(
                is_loopback(&host),
                "{}: the probe runs in the container",
                service.name
            );
            assert_eq!(
                port, ports[0],
                "{}: the probe asks the port it listens on",
                service.name
            );
            if role.speaks_grpc() {
                assert!(
                    test[2].starts_with("grpc://"),
                    "{}: gRPC health protocol",
                    service.name
                );
            } else if role == Role::Edge {
                assert!(
                    test[2].ends_with("/readyz"),
                    "the edge's readiness, not mere liveness"
                );
            }
        }
        for (dependency, condition) in service.depends_on() {
            let target = compose.service(&dependency);
            let expected = if target.role().is_some_and(|role| !role.serves()) {
                "service_completed_successfully"
            } else if target.healthcheck().is_some() {
                "service_healthy"
            } else {
                "service_started"
            };
            assert_eq!(condition, expected, "{} -> {dependency}", service.name);
        }
    }
    let billing = compose.service("billing");
    assert!(
        billing
            .depends_on()
            .iter()
            .any(|(name, _)| name == "migrate")
    );
    let migrate = compose.service("migrate");
    assert_eq!(migrate.command(), ["llmgw", "migrate"]);
}

#[test]
fn secrets_are_files_that_exist_and_no_password_is_inline() {
    let compose = Compose::load();
    let declared = compose.top_level("secrets");
    for name in &declared {
        let file = compose.file["secrets"][name.as_str()]["file"]
            .as_str()
            .expect("file secret");
        committed(&repo().join(file));
    }
    for service in compose.services() {
        let secrets = service.secrets();
        for secret in &secrets {
            assert!(
                declared.contains(secret),
                "{}: secret {secret} is not declared",
                service.name
            );
        }
        let mounted = |path: &str| {
            path.strip_prefix("/run/secrets/")
                .is_some_and(|name| secrets.iter().any(|s| s == name))
        };
        for (key, value) in service.environment() {
            let upper = key.to_ascii_uppercase();
            if upper.ends_with("_FILE") {
                assert!(
                    mounted(&value),
                    "{}: {key}={value} is not a secret it mounts",
                    service.name
                );
            } else if ["PASSWORD", "TOKEN", "SECRET"]
                .iter()
                .any(|word| upper.contains(word))
            {
                panic!(
                    "{}: {key} is inline; pass it as a secret file",
                    service.name
                );
            }
        }
        for env_file in service.env_files() {
            committed(&env_file);
        }
        let Some(role) = service.role() else { continue };
        let config = service.config(&[]);
        for (setting, path) in files_read(&config, role) {
            assert!(
                mounted(path.to_str().expect("UTF-8")),
                "{}: {setting} {} is not a secret it mounts",
                service.name,
                path.display()
            );
        }
        if let Some(url) = &config.billing.database_url
            && matches!(role, Role::Billing | Role::Migrate)
        {
            let (_, rest) = url.split_once("://").expect("a URL");
            let user = rest
                .split_once('@')
                .map(|(user, _)| user)
                .unwrap_or_default();
            assert!(
                !user.contains(':'),
                "{}: no password in {url}",
                service.name
            );
        }
        assert!(
            config.edge.api_keys.is_empty(),
            "{}: no bootstrap keys",
            service.name
        );
        if role == Role::Router {
            let env = service.environment();
            for var in provider_key_vars(&config) {
                assert!(
                    env.iter().any(|(key, _)| *key == var),
                    "router: model key {var} is not in its environment (env_file)"
                );
            }
        }
    }
}

#[test]
fn only_the_public_api_is_published_beyond_loopback() {
    let compose = Compose::load();
    let mut public = BTreeSet::new();
    for service in compose.services() {
        for port in service.ports() {
            if !port.starts_with("127.0.0.1:") {
                public.insert(format!("{} {port}", service.name));
            }
        }
    }
    let edge = compose.service("edge");
    let edge_port = edge.config(&[]).edge.listen.port();
    assert_eq!(
        public,
        BTreeSet::from([format!("edge {edge_port}:{edge_port}")])
    );
    let billing = compose.service("billing");
    let admin = billing.config(&[]).billing.admin_listen.port();
    assert!(
        billing
            .ports()
            .contains(&format!("127.0.0.1:{admin}:{admin}"))
    );
}

#[test]
fn every_spool_and_the_redis_counters_are_on_volumes_of_their_own() {
    let compose = Compose::load();
    let named = compose.top_level("volumes");
    let image = final_stage(&repo().join("Dockerfile"));
    let (uid, gid) = image.user.expect("USER");
    // (service, setting, volume) of every spool.
    let mut placed: Vec<(String, &str, String)> = Vec::new();
    for service in compose.services() {
        let Some(role) = service.role() else { continue };
        let workdir = service.working_dir(&image.workdir);
        let spools = spools(&service.config(&[]), role);
        for spool in &spools {
            let dir = absolute(&workdir, &spool.dir);
            let (source, target, read_only) = service.mount_at(&dir).unwrap_or_else(|| {
                panic!(
                    "{}: {} {} is on no volume of the file (the container's own \
                     layer or the image's anonymous volume)",
                    service.name,
                    spool.setting,
                    dir.display()
                )
            });
            assert!(
                named.contains(&source) && !read_only,
                "{}: {} {} is on {source}, not a writable named volume",
                service.name,
                spool.setting,
                dir.display()
            );
            // A fresh named volume takes the owner of the image's directory:
            // the image makes it, for its user (the spool dirs below it are
            // the service's to create).
            assert!(
                image.runs.iter().any(|run| run.contains("mkdir")
                    && run.contains(&target)
                    && run.contains(&format!("chown -R {uid}:{gid}"))),
                "the image creates {target} for its user"
            );
            placed.push((service.name.to_owned(), spool.setting, source));
        }
        for (i, a) in spools.iter().enumerate() {
            for b in &spools[i + 1..] {
                assert!(
                    !overlap(&absolute(&workdir, &a.dir), &absolute(&workdir, &b.dir)),
                    "{}: {} and {} share a directory",
                    service.name,
                    a.setting,
                    b.setting
                );
            }
        }
        // Every replica would mount the same named volumes.
        if !spools.is_empty() {
            let replicas = service.value["deploy"]["replicas"].as_u64().unwrap_or(1);
            assert_eq!(
                replicas, 1,
                "{}: replicas would share its spools",
                service.name
            );
        }
    }
    let spooling: BTreeSet<&str> = placed.iter().map(|(name, _, _)| name.as_str()).collect();
    assert_eq!(spooling, BTreeSet::from(["edge", "router"]));
    assert_eq!(placed.len(), 3, "{placed:?}");
    // A named volume is one directory for every container mounting it.
    for (service, setting, volume) in &placed {
        for other in compose.services() {
            assert!(
                other.name == service.as_str()
                    || !seq(other.value, "volumes")
                        .iter()
                        .any(|mount| scalar(mount).split(':').next() == Some(volume)),
                "{service}: {setting} is on {volume}, which {} mounts too",
                other.name
            );
        }
    }

    let redis = compose.service("redis");
    let command = redis.command().join(" ");
    assert!(
        command.contains("--appendonly yes"),
        "Redis persists its counters: {command}"
    );
    assert!(
        redis
            .volumes()
            .iter()
            .any(|(source, target)| target == "/data" && named.contains(source))
    );
}
