//! Reading the deployment files as the tools that use them do: YAML
//! documents (anchors and merge keys resolved), compose's `${VAR:-default}`
//! interpolation, and the llmgw config a service would load.

use std::path::{Path, PathBuf};

use llmgw::GatewayConfig;
use llmgw::config::Scope;
use serde::Deserialize as _;
use serde_yaml::Value;

/// The repository's root (the workspace).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every document of a YAML file, merge keys (`<<: *anchor`) applied.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            let mut value = Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            value
                .apply_merge()
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

pub fn yaml(path: &Path) -> Value {
    let mut documents = yaml_documents(path);
    assert_eq!(documents.len(), 1, "{}: one YAML document", path.display());
    documents.remove(0)
}

/// `value[key]` as a string ("" when absent or not a string).
pub fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// `value[key]` as a sequence (empty when absent).
pub fn seq<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

/// A scalar as a string: YAML numbers and booleans as written.
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Compose's interpolation with an empty environment: `${VAR:-default}` and
/// `${VAR-default}` become the default, `${VAR}` and `$VAR` nothing.
pub fn interpolate(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').expect("closed ${...}");
            let expression = &body[..end];
            if let Some((_, default)) = expression
                .split_once(":-")
                .or_else(|| expression.split_once('-'))
            {
                out.push_str(default);
            }
            rest = &body[end + 1..];
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

/// `KEY=value` lines of an env file (comments and blank lines skipped).
pub fn env_file(path: &Path) -> Vec<(String, String)> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').expect("KEY=value");
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

/// The configuration a service would load from `path` with `env`, checked
/// as a whole (no start-time checks of files and variables: those are made
/// against the deployment's mounts and secrets by the tests).
pub fn load_config(path: &Path, env: &[(String, String)]) -> GatewayConfig {
    GatewayConfig::load_from(Some(path), env, Scope::NoService)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// `http://host:port/...` → (host, port); the scheme's port when none.
pub fn host_port(url: &str) -> (String, u16) {
    let parsed = reqwest::Url::parse(url).unwrap_or_else(|error| panic!("{url}: {error}"));
    let host = parsed.host_str().expect("a host").to_owned();
    let port = parsed
        .port_or_known_default()
        .unwrap_or_else(|| match parsed.scheme() {
            "postgres" | "postgresql" => 5432,
            "redis" | "rediss" => 6379,
            other => panic!("{url}: no port for {other}"),
        });
    (host, port)
}

#[test]
fn interpolation_as_compose_does_it() {
    assert_eq!(interpolate("${OTEL:-}"), "");
    assert_eq!(interpolate("a ${X:-http://c:4317} b"), "a http://c:4317 b");
    assert_eq!(interpolate("$$HOME ${Y} $Z."), "$HOME  .");
}
