//! docker-compose.yml read as compose reads it (merge keys, `${VAR:-x}`
//! interpolation with an empty environment, env files), and each llmgw
//! service's configuration as that service would load it.

use std::path::{Path, PathBuf};

use llmgw::GatewayConfig;
use serde_yaml::Value;

use crate::files::{env_file, interpolate, load_config, repo, scalar, seq, text, yaml};
use crate::service_config::Role;

pub struct Compose {
    pub file: Value,
}

pub struct Service<'a> {
    pub name: &'a str,
    pub value: &'a Value,
}

impl Compose {
    pub fn load() -> Compose {
        Compose {
            file: yaml(&repo().join("docker-compose.yml")),
        }
    }

    pub fn services(&self) -> Vec<Service<'_>> {
        self.file["services"]
            .as_mapping()
            .expect("services")
            .iter()
            .map(|(name, value)| Service {
                name: name.as_str().expect("a service name"),
                value,
            })
            .collect()
    }

    pub fn service(&self, name: &str) -> Service<'_> {
        self.services()
            .into_iter()
            .find(|service| service.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    /// The top-level `secrets:` and `volumes:` names.
    pub fn top_level(&self, section: &str) -> Vec<String> {
        self.file
            .get(section)
            .and_then(Value::as_mapping)
            .map(|mapping| mapping.keys().map(scalar).collect())
            .unwrap_or_default()
    }
}

impl Service<'_> {
    pub fn command(&self) -> Vec<String> {
        seq(self.value, "command")
            .iter()
            .map(|arg| interpolate(&scalar(arg)))
            .collect()
    }

    /// An llmgw service (the project's image), by the subcommand it runs.
    pub fn role(&self) -> Option<Role> {
        let command = self.command();
        (text(self.value, "image").starts_with("llmgw")
            && command.first().is_some_and(|c| c == "llmgw"))
        .then(|| Role::of_command(&command[1..]))
        .flatten()
    }

    pub fn profiles(&self) -> Vec<String> {
        seq(self.value, "profiles").iter().map(scalar).collect()
    }

    /// `environment:` (map or list form), interpolated, then every env
    /// file's variables (a secret env file by its committed `.example`).
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        match self.value.get("environment") {
            Some(Value::Mapping(map)) => {
                for (key, value) in map {
                    env.push((scalar(key), interpolate(&scalar(value))));
                }
            }
            Some(Value::Sequence(list)) => {
                for item in list {
                    let item = scalar(item);
                    let (key, value) = item.split_once('=').unwrap_or((&item, ""));
                    env.push((key.to_owned(), interpolate(value)));
                }
            }
            _ => {}
        }
        for path in self.env_files() {
            env.extend(env_file(&committed(&path)));
        }
        env
    }

    pub fn env_files(&self) -> Vec<PathBuf> {
        match self.value.get("env_file") {
            None => Vec::new(),
            Some(Value::String(path)) => vec![repo().join(path)],
            Some(Value::Sequence(list)) => list
                .iter()
                .map(|item| match item {
                    Value::String(path) => repo().join(path),
                    other => repo().join(text(other, "path")),
                })
                .collect(),
            Some(other) => panic!("env_file: {other:?}"),
        }
    }

    pub fn env_var(&self, key: &str) -> Option<String> {
        self.environment()
            .into_iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    pub fn secrets(&self) -> Vec<String> {
        seq(self.value, "secrets")
            .iter()
            .map(|secret| match secret {
                Value::String(name) => name.clone(),
                other => text(other, "source").to_owned(),
            })
            .collect()
    }

    /// `source:target[:mode]` volume entries.
    pub fn volumes(&self) -> Vec<(String, String)> {
        seq(self.value, "volumes")
            .iter()
            .map(|volume| {
                let volume = scalar(volume);
                let mut parts = volume.split(':');
                let source = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().expect("source:target").to_owned();
                (source, target)
            })
            .collect()
    }

    /// The mount a path inside the container lies on (the deepest one):
    /// `(source, target, read-only)`.
    pub fn mount_at(&self, path: &Path) -> Option<(String, String, bool)> {
        seq(self.value, "volumes")
            .iter()
            .map(|volume| {
                let volume = scalar(volume);
                let parts: Vec<&str> = volume.split(':').collect();
                let read_only = parts
                    .get(2)
                    .is_some_and(|mode| mode.split(',').any(|m| m == "ro"));
                (parts[0].to_owned(), parts[1].to_owned(), read_only)
            })
            .filter(|(_, target, _)| path.starts_with(target))
            .max_by_key(|(_, target, _)| target.len())
    }

    /// The container's working directory: its own, or the image's.
    pub fn working_dir(&self, image_workdir: &str) -> PathBuf {
        PathBuf::from(match self.value.get("working_dir") {
            Some(dir) => scalar(dir),
            None => image_workdir.to_owned(),
        })
    }

    pub fn ports(&self) -> Vec<String> {
        seq(self.value, "ports").iter().map(scalar).collect()
    }

    /// The healthcheck's command, `CMD` dropped.
    pub fn healthcheck(&self) -> Option<Vec<String>> {
        let test = self.value.get("healthcheck")?.get("test")?;
        let mut test: Vec<String> = test.as_sequence()?.iter().map(scalar).collect();
        if test.first().is_some_and(|first| first == "CMD") {
            test.remove(0);
        }
        Some(test)
    }

    /// `(service, condition)` of every `depends_on` entry.
    pub fn depends_on(&self) -> Vec<(String, String)> {
        match self.value.get("depends_on") {
            None => Vec::new(),
            Some(Value::Mapping(map)) => map
                .iter()
                .map(|(name, spec)| (scalar(name), text(spec, "condition").to_owned()))
                .collect(),
            Some(Value::Sequence(list)) => list
                .iter()
                .map(|name| (scalar(name), String::new()))
                .collect(),
            Some(other) => panic!("depends_on: {other:?}"),
        }
    }

    /// The host file mounted at `target`, for bind mounts of the repo.
    pub fn mounted_file(&self, target: &str) -> Option<PathBuf> {
        self.volumes()
            .into_iter()
            .find(|(_, mounted)| mounted == target)
            .map(|(source, _)| repo().join(source))
    }

    /// The llmgw configuration this service loads, with `extra_env` beside
    /// its own environment.
    pub fn config(&self, extra_env: &[(&str, &str)]) -> GatewayConfig {
        let mut env = self.environment();
        env.extend(
            extra_env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        let path = env
            .iter()
            .find(|(key, _)| key == "LLMGW_CONFIG")
            .map(|(_, path)| path.clone())
            .expect("LLMGW_CONFIG");
        let file = self
            .mounted_file(&path)
            .unwrap_or_else(|| panic!("{}: nothing mounted at LLMGW_CONFIG {path}", self.name));
        load_config(&file, &env)
    }
}

/// A secret file by its committed template (`x.example`): the real file is
/// made on the deploying host and never read by tests.
pub fn committed(path: &Path) -> PathBuf {
    let mut example = path.as_os_str().to_owned();
    example.push(".example");
    let example = PathBuf::from(example);
    if example.exists() {
        return example;
    }
    assert!(
        path.exists(),
        "neither {} nor its .example exists",
        path.display()
    );
    path.to_owned()
}
