//! deploy/kubernetes holds together, in each overlay: every address a
//! container is configured with names a Service whose port leads to a pod
//! listening there, probes ask what each container serves, every Secret and
//! file exists, pods run restricted with writable volumes where they write,
//! and the NetworkPolicies admit exactly the callers.

use crate::files::{host_port, repo, scalar, seq, text};
use crate::kubernetes::{Cluster, Container, OVERLAYS};
use crate::kubernetes_spools::check_spools;
use crate::kustomize::{kind_name, pod_spec};
use crate::network_policy::{Labels, Peer, admits, labels};
use crate::service_config::{
    Role, calls, files_read, is_loopback, listen_addresses, listen_ports, provider_key_vars,
};

/// The containers of `cluster` listening on `port` behind Service `name`:
/// its port's target resolved in the pods its selector picks.
fn service_targets<'a>(cluster: &'a Cluster, name: &str, port: u16) -> Vec<(Container<'a>, u16)> {
    let service = cluster
        .find("Service", name)
        .unwrap_or_else(|| panic!("{}: no Service {name}", cluster.overlay));
    let service_port = seq(&service["spec"], "ports")
        .iter()
        .find(|declared| declared["port"].as_u64() == Some(u64::from(port)))
        .unwrap_or_else(|| panic!("{}: Service {name} has no port {port}", cluster.overlay));
    let target = service_port
        .get("targetPort")
        .unwrap_or(&service_port["port"]);
    let selector = labels(service["spec"].get("selector"));
    cluster
        .containers()
        .into_iter()
        .filter(|container| {
            let pod = Cluster::pod_labels(container.workload);
            selector
                .iter()
                .all(|(key, value)| pod.get(key) == Some(value))
                && text(container.workload, "kind") != "Job"
                && seq(container.pod, "containers")
                    .iter()
                    .any(|c| c == container.value)
        })
        .filter_map(|container| {
            let number = match target.as_u64() {
                Some(number) => u16::try_from(number).ok()?,
                None => seq(container.value, "ports")
                    .iter()
                    .find(|declared| text(declared, "name") == scalar(target))
                    .and_then(|declared| declared["containerPort"].as_u64())
                    .and_then(|number| u16::try_from(number).ok())?,
            };
            Some((container, number))
        })
        .collect()
}

/// The Service a host names: `name`, `name.namespace`, `name.namespace.svc...`.
fn in_cluster_service(cluster: &Cluster, host: &str) -> Option<String> {
    let (name, rest) = host.split_once('.').unwrap_or((host, ""));
    let namespace = cluster.namespace();
    let local = rest.is_empty()
        || rest == namespace
        || rest
            .strip_prefix(&namespace)
            .is_some_and(|suffix| suffix.starts_with(".svc"));
    (local && cluster.find("Service", name).is_some()).then(|| name.to_owned())
}

#[test]
fn every_address_names_a_service_whose_pods_listen_there() {
    for overlay in OVERLAYS {
        let cluster = Cluster::render(overlay);
        let mut checked = 0;
        for container in cluster.containers() {
            let Some(role) = container.role() else {
                continue;
            };
            let config = cluster.config(&container);
            for (setting, address) in listen_addresses(&config, role) {
                assert!(
                    address.ip().is_unspecified(),
                    "{overlay} {}: {setting} {address}",
                    container.name()
                );
            }
            for (setting, url) in calls(&config, role) {
                let (host, port) = host_port(&url);
                assert!(
                    !is_loopback(&host),
                    "{overlay} {}: {setting} {url}",
                    container.name()
                );
                let Some(service) = in_cluster_service(&cluster, &host) else {
                    // Providers, and in prod the managed Postgres and Redis.
                    let managed =
                        matches!(setting.as_str(), "billing.database_url" | "quota.redis_url");
                    assert!(
                        host.contains('.') || (overlay == "prod" && managed),
                        "{overlay} {}: {setting} {url} names no Service",
                        container.name()
                    );
                    continue;
                };
                let targets = service_targets(&cluster, &service, port);
                assert!(
                    !targets.is_empty(),
                    "{overlay}: Service {service}:{port} selects no pod"
                );
                for (target, target_port) in targets {
                    let listens = match target.role() {
                        Some(role) => {
                            let config = cluster.config(&target);
                            listen_ports(&config, role, &target.command_line()[2..])
                        }
                        None => target.declared_ports(),
                    };
                    assert!(
                        listens.contains(&target_port),
                        "{overlay} {}: {setting} {url} reaches {} on {target_port}, which listens on {listens:?}",
                        container.name(),
                        target.name()
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 5, "{overlay}: only {checked} addresses checked");
    }
}

#[test]
fn probes_ask_each_container_what_it_serves() {
    for overlay in OVERLAYS {
        let cluster = Cluster::render(overlay);
        for container in cluster.containers() {
            let is_init = seq(container.pod, "initContainers")
                .iter()
                .any(|c| c == container.value);
            let serves = container.role().is_none_or(Role::serves)
                && text(container.workload, "kind") != "Job";
            if is_init || !serves {
                continue;
            }
            let name = container.name();
            assert!(
                container.value.get("readinessProbe").is_some(),
                "{overlay} {name}: readiness"
            );
            assert!(
                container.value.get("livenessProbe").is_some(),
                "{overlay} {name}: liveness"
            );
            let Some(role) = container.role() else {
                continue;
            };
            assert!(
                container.value.get("startupProbe").is_some(),
                "{overlay} {name}: startup"
            );
            let config = cluster.config(&container);
            let listens = listen_ports(&config, role, &container.command_line()[2..]);
            for port in &listens {
                assert!(
                    container.declared_ports().contains(port),
                    "{overlay} {name}: declares {port}"
                );
            }
            for kind in ["startupProbe", "readinessProbe", "livenessProbe"] {
                let probe = &container.value[kind];
                if let Some(grpc) = probe.get("grpc") {
                    assert!(role.speaks_grpc(), "{overlay} {name}: {kind} is gRPC");
                    assert_eq!(
                        container.port_number(&grpc["port"]),
                        listens[0],
                        "{overlay} {name} {kind}"
                    );
                    assert_eq!(text(grpc, "service"), "", "the server's overall health");
                } else {
                    let http = probe
                        .get("httpGet")
                        .unwrap_or_else(|| panic!("{overlay} {name}: {kind}"));
                    assert_eq!(
                        role,
                        Role::Edge,
                        "{overlay} {name}: HTTP probes are the edge's"
                    );
                    assert_eq!(
                        container.port_number(&http["port"]),
                        listens[0],
                        "{overlay} {name} {kind}"
                    );
                    let path = text(http, "path");
                    let expected = if kind == "readinessProbe" {
                        "/readyz"
                    } else {
                        "/healthz"
                    };
                    assert_eq!(path, expected, "{overlay} {name} {kind}");
                }
            }
        }
    }
}

#[test]
fn secrets_and_the_files_read_from_them_exist() {
    for overlay in OVERLAYS {
        let cluster = Cluster::render(overlay);
        for container in cluster.containers() {
            let name = container.name();
            // Resolving the environment checks every secretKeyRef and envFrom.
            let env = cluster.env(&container);
            for volume in seq(container.pod, "volumes") {
                if let Some(secret) = volume.get("secret") {
                    for item in seq(secret, "items") {
                        cluster.secret_value(text(secret, "secretName"), text(item, "key"));
                    }
                }
                for source in seq(&volume["projected"], "sources") {
                    for item in seq(&source["secret"], "items") {
                        cluster.secret_value(text(&source["secret"], "name"), text(item, "key"));
                    }
                }
                if let Some(map) = volume.get("configMap") {
                    assert!(
                        cluster.find("ConfigMap", text(map, "name")).is_some(),
                        "{overlay} {name}"
                    );
                }
            }
            let Some(role) = container.role() else {
                continue;
            };
            let config = cluster.config(&container);
            for (setting, path) in files_read(&config, role) {
                let path = path.to_str().expect("UTF-8");
                let (volume, relative) = cluster
                    .volume_at(&container, path)
                    .unwrap_or_else(|| panic!("{overlay} {name}: {setting} {path} is not mounted"));
                let items: Vec<&serde_yaml::Value> = seq(&volume["projected"], "sources")
                    .iter()
                    .flat_map(|source| seq(&source["secret"], "items"))
                    .chain(seq(&volume["secret"], "items"))
                    .collect();
                assert!(
                    items.iter().any(|item| text(item, "path") == relative),
                    "{overlay} {name}: {setting} {path}: no Secret item at {relative}"
                );
            }
            assert!(
                config.edge.api_keys.is_empty(),
                "{overlay} {name}: no bootstrap keys"
            );
            if role == Role::Router {
                for var in provider_key_vars(&config) {
                    assert!(
                        env.iter().any(|(key, _)| *key == var),
                        "{overlay} {name}: {var}"
                    );
                }
            }
        }
        // The config file is the one in the repository, unchanged.
        let config_map = cluster
            .find("ConfigMap", "llmgw-config")
            .expect("llmgw-config");
        let file = std::fs::read_to_string(repo().join("deploy/kubernetes/base/llmgw.yaml"))
            .expect("read");
        assert_eq!(
            config_map["data"]["llmgw.yaml"].as_str(),
            Some(file.as_str())
        );
    }
}

#[test]
fn pods_run_restricted_and_write_only_to_their_volumes() {
    for overlay in OVERLAYS {
        let cluster = Cluster::render(overlay);
        for workload in cluster.workloads() {
            let (_, workload_name) = kind_name(workload);
            let pod = pod_spec(workload).expect("pod");
            let context = &pod["securityContext"];
            assert_eq!(
                context["runAsNonRoot"].as_bool(),
                Some(true),
                "{overlay} {workload_name}"
            );
            assert_eq!(
                text(&context["seccompProfile"], "type"),
                "RuntimeDefault",
                "{overlay} {workload_name}"
            );
            assert_eq!(
                pod["automountServiceAccountToken"].as_bool(),
                Some(false),
                "{overlay} {workload_name}"
            );
            for key in ["initContainers", "containers"] {
                for container in seq(pod, key) {
                    let name = format!("{workload_name}/{}", text(container, "name"));
                    let security = &container["securityContext"];
                    assert_eq!(
                        security["allowPrivilegeEscalation"].as_bool(),
                        Some(false),
                        "{overlay} {name}"
                    );
                    assert_eq!(
                        security["readOnlyRootFilesystem"].as_bool(),
                        Some(true),
                        "{overlay} {name}"
                    );
                    let drops: Vec<String> = seq(&security["capabilities"], "drop")
                        .iter()
                        .map(scalar)
                        .collect();
                    assert_eq!(drops, ["ALL"], "{overlay} {name}");
                    for bound in ["requests", "limits"] {
                        for resource in ["cpu", "memory"] {
                            assert!(
                                container["resources"][bound].get(resource).is_some(),
                                "{overlay} {name}: resources.{bound}.{resource}"
                            );
                        }
                    }
                }
            }
        }
        for container in cluster.containers() {
            let Some(role) = container.role() else {
                continue;
            };
            let config = cluster.config(&container);
            let name = container.name();
            if role.serves() && text(container.workload, "kind") != "Job" {
                // Streams drain for edge.drain_timeout_secs, the binary
                // allows 5 s more, a preStop pause comes first.
                let pre_stop: u64 =
                    seq(&container.value["lifecycle"]["preStop"]["exec"], "command")
                        .last()
                        .and_then(|seconds| scalar(seconds).parse().ok())
                        .unwrap_or(0);
                let grace = container.pod["terminationGracePeriodSeconds"]
                    .as_u64()
                    .unwrap_or(30);
                assert!(
                    grace > config.edge.drain_timeout_secs + 5 + pre_stop,
                    "{overlay} {name}: terminationGracePeriodSeconds {grace}"
                );
            }
            check_spools(&cluster, &container, &config, role);
        }
        for (kind, target) in [
            ("Deployment", "llmgw-edge"),
            ("StatefulSet", "llmgw-router"),
        ] {
            assert!(
                cluster.of_kind("HorizontalPodAutoscaler").any(|hpa| {
                    let reference = &hpa["spec"]["scaleTargetRef"];
                    text(reference, "kind") == kind && text(reference, "name") == target
                }),
                "{overlay}: an HPA for {kind}/{target}"
            );
        }
        for component in ["edge", "router", "quota", "billing"] {
            let pods = Cluster::pod_labels(cluster.component(component));
            assert!(
                cluster.of_kind("PodDisruptionBudget").any(|pdb| {
                    labels(pdb["spec"]["selector"].get("matchLabels"))
                        .iter()
                        .all(|(k, v)| pods.get(k) == Some(v))
                }),
                "{overlay}: a PodDisruptionBudget for {component}"
            );
        }
        let migrate = cluster
            .find("Job", "llmgw-migrate")
            .expect("the migration Job");
        let job_line: Vec<String> = seq(&pod_spec(migrate).expect("pod")["containers"][0], "args")
            .iter()
            .map(scalar)
            .collect();
        assert_eq!(job_line, ["migrate"]);
    }
}

#[test]
fn network_policies_admit_exactly_the_callers() {
    for overlay in OVERLAYS {
        let cluster = Cluster::render(overlay);
        let namespace = cluster.namespace();
        let pod = |component: &str| Peer {
            pod_labels: Cluster::pod_labels(cluster.component(component)),
            namespace: namespace.clone(),
        };
        let stranger_here = Peer {
            pod_labels: Labels::from([("app".to_owned(), "debug-shell".to_owned())]),
            namespace: namespace.clone(),
        };
        let outside = Peer {
            pod_labels: Labels::new(),
            namespace: "elsewhere".to_owned(),
        };
        let prometheus = Peer {
            pod_labels: Labels::new(),
            namespace: "monitoring".to_owned(),
        };
        let check = |component: &str, port: u16, allowed: &[&Peer], refused: &[&Peer]| {
            let target = Cluster::pod_labels(cluster.component(component));
            for peer in allowed {
                assert!(
                    admits(&cluster.objects, &namespace, &target, port, peer),
                    "{overlay}: {peer:?} -> {component}:{port}"
                );
            }
            for peer in refused {
                assert!(
                    !admits(&cluster.objects, &namespace, &target, port, peer),
                    "{overlay}: {peer:?} -/-> {component}:{port}"
                );
            }
        };
        let (edge, router, quota, billing) =
            (pod("edge"), pod("router"), pod("quota"), pod("billing"));
        check("edge", 8080, &[&outside, &stranger_here], &[]);
        check(
            "router",
            8081,
            &[&edge, &prometheus],
            &[&quota, &billing, &stranger_here, &outside],
        );
        check(
            "quota",
            8082,
            &[&edge, &prometheus],
            &[&router, &billing, &stranger_here, &outside],
        );
        check(
            "billing",
            8083,
            &[&edge, &router, &quota, &prometheus],
            &[&stranger_here, &outside],
        );
        // The admin API: from inside the namespace only.
        check(
            "billing",
            8090,
            &[&stranger_here, &edge],
            &[&outside, &prometheus],
        );
        if overlay == "dev" {
            let migrate = pod("migrate");
            check(
                "postgres",
                5432,
                &[&billing, &migrate],
                &[&edge, &quota, &router, &stranger_here, &outside],
            );
            check(
                "redis",
                6379,
                &[&quota],
                &[&edge, &billing, &router, &stranger_here, &outside],
            );
        }
    }
}

/// The resolver these checks use renders what `kubectl kustomize` renders
/// (generated names without their hash suffix). Skipped without kubectl.
#[test]
fn the_rendering_matches_kubectl_kustomize() {
    let Ok(version) = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
    else {
        eprintln!("SKIPPED: no kubectl on this machine");
        return;
    };
    assert!(version.status.success());
    for overlay in OVERLAYS {
        let dir = repo().join("deploy/kubernetes/overlays").join(overlay);
        let output = std::process::Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .expect("kubectl kustomize");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("UTF-8");
        // `llmgw-config-<hash>` → `llmgw-config`, wherever it appears.
        let generated: Vec<String> = Cluster::render(overlay)
            .of_kind("ConfigMap")
            .map(|map| map["metadata"]["name"].as_str().expect("a name").to_owned())
            .collect();
        let mut normalized = String::new();
        for line in text.lines() {
            let mut line = line.to_owned();
            for name in &generated {
                if let Some(at) = line.find(&format!("{name}-")) {
                    let end = at + name.len() + 11;
                    if line.len() >= end {
                        line.replace_range(at + name.len()..end, "");
                    }
                }
            }
            normalized.push_str(&line);
            normalized.push('\n');
        }
        let mut theirs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&normalized)
            .map(|document| serde::Deserialize::deserialize(document).expect("YAML"))
            .collect();
        let mut ours = Cluster::render(overlay).objects;
        let key = |object: &serde_yaml::Value| format!("{:?}", kind_name(object));
        theirs.sort_by_key(key);
        ours.sort_by_key(key);
        assert_eq!(ours.len(), theirs.len(), "{overlay}: object count");
        for (ours, theirs) in ours.iter().zip(&theirs) {
            assert_eq!(ours, theirs, "{overlay}: {:?}", kind_name(ours));
        }
    }
}
