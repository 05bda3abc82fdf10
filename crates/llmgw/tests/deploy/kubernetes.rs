//! An overlay of deploy/kubernetes rendered (see `kustomize`), with the
//! Secrets of `secrets.example.yaml` beside it, and what each llmgw
//! container of it would load and serve.

use std::path::PathBuf;

use llmgw::GatewayConfig;
use serde_yaml::Value;

use crate::files::{load_config, repo, scalar, seq, text, yaml_documents};
use crate::kustomize::{build, kind_name, pod_spec};
use crate::network_policy::{Labels, labels};
use crate::process::ScratchDir;
use crate::service_config::Role;

pub const OVERLAYS: [&str; 2] = ["dev", "prod"];

pub struct Cluster {
    pub overlay: &'static str,
    pub objects: Vec<Value>,
    /// Created beside the overlay by the operator (the template's names
    /// and keys; values are placeholders).
    pub secrets: Vec<Value>,
    configs: ScratchDir,
}

/// One container of a workload's pod template.
pub struct Container<'a> {
    pub workload: &'a Value,
    pub pod: &'a Value,
    pub value: &'a Value,
}

impl Cluster {
    pub fn render(overlay: &'static str) -> Cluster {
        let root = repo().join("deploy/kubernetes");
        Cluster {
            overlay,
            objects: build(&root.join("overlays").join(overlay)),
            secrets: yaml_documents(&root.join("secrets.example.yaml")),
            configs: ScratchDir::new(&format!("k8s-{overlay}")),
        }
    }

    pub fn namespace(&self) -> String {
        self.objects
            .iter()
            .find_map(|object| object["metadata"]["namespace"].as_str())
            .expect("the overlay sets a namespace")
            .to_owned()
    }

    pub fn find(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|object| kind_name(object) == (kind, name))
    }

    pub fn of_kind(&self, kind: &str) -> impl Iterator<Item = &Value> {
        let kind = kind.to_owned();
        self.objects
            .iter()
            .filter(move |object| text(object, "kind") == kind)
    }

    pub fn workloads(&self) -> impl Iterator<Item = &Value> {
        self.objects
            .iter()
            .filter(|object| pod_spec(object).is_some())
    }

    pub fn containers(&self) -> Vec<Container<'_>> {
        let mut found = Vec::new();
        for workload in self.workloads() {
            let pod = pod_spec(workload).expect("a pod template");
            for key in ["initContainers", "containers"] {
                for value in seq(pod, key) {
                    found.push(Container {
                        workload,
                        pod,
                        value,
                    });
                }
            }
        }
        found
    }

    /// The Secret named `name` (rendered, or from the template), or None.
    pub fn secret(&self, name: &str) -> Option<&Value> {
        self.secrets
            .iter()
            .chain(self.of_kind("Secret"))
            .find(|secret| text(&secret["metadata"], "name") == name)
    }

    /// The value of `key` in Secret `name`; panics if either is missing.
    pub fn secret_value(&self, name: &str, key: &str) -> String {
        let secret = self
            .secret(name)
            .unwrap_or_else(|| panic!("{}: no Secret {name}", self.overlay));
        let data = secret.get("stringData").or_else(|| secret.get("data"));
        data.and_then(|data| data.get(key))
            .map(scalar)
            .unwrap_or_else(|| panic!("{}: Secret {name} has no key {key}", self.overlay))
    }

    /// A container's environment, resolved as the kubelet does.
    pub fn env(&self, container: &Container) -> Vec<(String, String)> {
        let mut env = Vec::new();
        for from in seq(container.value, "envFrom") {
            let name = text(&from["secretRef"], "name");
            let secret = self
                .secret(name)
                .unwrap_or_else(|| panic!("no Secret {name}"));
            let data = secret
                .get("stringData")
                .or_else(|| secret.get("data"))
                .expect("data");
            for (key, value) in data.as_mapping().expect("a map") {
                env.push((scalar(key), scalar(value)));
            }
        }
        for var in seq(container.value, "env") {
            let value = match var.get("valueFrom") {
                Some(from) => {
                    let reference = from
                        .get("secretKeyRef")
                        .expect("secretKeyRef (extend for others)");
                    self.secret_value(text(reference, "name"), text(reference, "key"))
                }
                None => scalar(&var["value"]),
            };
            env.push((text(var, "name").to_owned(), value));
        }
        env
    }

    /// The volume a path inside the container lies on: (volume, the path
    /// relative to the mount).
    pub fn volume_at<'a>(
        &self,
        container: &'a Container,
        path: &str,
    ) -> Option<(&'a Value, String)> {
        let mount = seq(container.value, "volumeMounts")
            .iter()
            .filter(|mount| {
                let at = text(mount, "mountPath");
                path == at || path.starts_with(&format!("{}/", at.trim_end_matches('/')))
            })
            .max_by_key(|mount| text(mount, "mountPath").len())?;
        let name = text(mount, "name");
        let relative = path[text(mount, "mountPath").len()..].trim_start_matches('/');
        let relative = match text(mount, "subPath") {
            "" => relative.to_owned(),
            sub => sub.to_owned(),
        };
        let volume = seq(container.pod, "volumes")
            .iter()
            .chain(
                seq(&container.workload["spec"], "volumeClaimTemplates")
                    .iter()
                    .map(|template| &template["metadata"]),
            )
            .find(|volume| text(volume, "name") == name)?;
        Some((volume, relative))
    }

    /// The llmgw configuration a container loads (its ConfigMap's file, its
    /// resolved environment).
    pub fn config(&self, container: &Container) -> GatewayConfig {
        let env = self.env(container);
        let path = env
            .iter()
            .find(|(key, _)| key == "LLMGW_CONFIG")
            .map(|(_, path)| path.clone())
            .expect("LLMGW_CONFIG");
        let (volume, file) = self
            .volume_at(container, &path)
            .expect("the config file is mounted");
        let map = text(&volume["configMap"], "name");
        let config_map = self
            .find("ConfigMap", map)
            .unwrap_or_else(|| panic!("no ConfigMap {map}"));
        let contents = config_map["data"][file.as_str()]
            .as_str()
            .expect("the config file's key");
        let local: PathBuf = self.configs.path().join(format!("{map}-{file}"));
        std::fs::write(&local, contents).expect("write the config");
        load_config(&local, &env)
    }

    /// Labels of a workload's pods.
    pub fn pod_labels(workload: &Value) -> Labels {
        labels(workload["spec"]["template"]["metadata"].get("labels"))
    }

    /// The workload whose pods carry component `component`.
    pub fn component(&self, component: &str) -> &Value {
        self.workloads()
            .find(|workload| {
                Cluster::pod_labels(workload)
                    .get("app.kubernetes.io/component")
                    .map(String::as_str)
                    == Some(component)
            })
            .unwrap_or_else(|| panic!("{}: no workload for {component}", self.overlay))
    }
}

impl Container<'_> {
    pub fn name(&self) -> String {
        format!(
            "{}/{}",
            text(&self.workload["metadata"], "name"),
            text(self.value, "name")
        )
    }

    pub fn command_line(&self) -> Vec<String> {
        seq(self.value, "command")
            .iter()
            .chain(seq(self.value, "args"))
            .map(scalar)
            .collect()
    }

    /// An llmgw container, by the subcommand it runs.
    pub fn role(&self) -> Option<Role> {
        let line = self.command_line();
        (line.first().is_some_and(|first| first == "llmgw"))
            .then(|| Role::of_command(&line[1..]))
            .flatten()
    }

    /// A port given by number or by the name of one of its ports.
    pub fn port_number(&self, port: &Value) -> u16 {
        if let Some(number) = port.as_u64() {
            return u16::try_from(number).expect("a port");
        }
        let name = scalar(port);
        seq(self.value, "ports")
            .iter()
            .find(|declared| text(declared, "name") == name)
            .and_then(|declared| declared["containerPort"].as_u64())
            .map(|number| u16::try_from(number).expect("a port"))
            .unwrap_or_else(|| panic!("{}: no port named {name}", self.name()))
    }

    pub fn declared_ports(&self) -> Vec<u16> {
        seq(self.value, "ports")
            .iter()
            .filter_map(|port| port["containerPort"].as_u64())
            .map(|number| u16::try_from(number).expect("a port"))
            .collect()
    }
}
