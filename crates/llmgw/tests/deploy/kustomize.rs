//! Enough of `kustomize build` for the checks, with no tool installed:
//! resources (files and directories), configMapGenerator, strategic-merge
//! patches, namespace, labels and images. Generated names keep no hash
//! suffix (references then match by name as they would after kustomize
//! rewrites them). When `kubectl` is there, a test compares the result.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use crate::files::{read, scalar, seq, text, yaml, yaml_documents};

/// The objects `kustomize build dir` would print.
pub fn build(dir: &Path) -> Vec<Value> {
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let mut objects = Vec::new();
    for resource in seq(&kustomization, "resources") {
        let path = dir.join(scalar(resource));
        if path.is_dir() {
            objects.extend(build(&path));
        } else {
            objects.extend(yaml_documents(&path));
        }
    }
    for generator in seq(&kustomization, "configMapGenerator") {
        let name = text(generator, "name");
        let mut data = Mapping::new();
        for file in seq(generator, "files") {
            let file = scalar(file);
            let (key, path) = file.split_once('=').unwrap_or_else(|| {
                let key = Path::new(&file)
                    .file_name()
                    .expect("a file")
                    .to_str()
                    .expect("UTF-8");
                (key, file.as_str())
            });
            data.insert(key.into(), read(&dir.join(path)).into());
        }
        match text(generator, "behavior") {
            "" | "create" => objects.push(config_map(name, data)),
            behavior => {
                let existing = objects
                    .iter_mut()
                    .find(|object| kind_name(object) == ("ConfigMap", name))
                    .unwrap_or_else(|| {
                        panic!("configMapGenerator {behavior}: no ConfigMap {name}")
                    });
                if behavior == "replace" {
                    *existing = config_map(name, data);
                } else {
                    merge(existing, &config_map(name, data));
                }
            }
        }
    }
    for patch in seq(&kustomization, "patches") {
        let patches = yaml_documents(&dir.join(text(patch, "path")));
        for patch in patches {
            let (kind, name) = kind_name(&patch);
            let target = objects
                .iter_mut()
                .find(|object| kind_name(object) == (kind, name))
                .unwrap_or_else(|| panic!("patch for {kind}/{name}: no such object"));
            merge(target, &patch);
        }
    }
    if let Some(namespace) = kustomization.get("namespace").and_then(Value::as_str) {
        for object in &mut objects {
            if text(object, "kind") != "Namespace" {
                object["metadata"]["namespace"] = namespace.into();
            }
        }
    }
    for labels in seq(&kustomization, "labels") {
        for object in &mut objects {
            let metadata = object["metadata"].as_mapping_mut().expect("metadata");
            let existing = metadata
                .entry("labels".into())
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            merge(existing, &labels["pairs"]);
        }
    }
    for image in seq(&kustomization, "images") {
        let name = text(image, "name");
        let replacement = format!("{}:{}", text(image, "newName"), scalar(&image["newTag"]));
        for object in &mut objects {
            for container in containers_mut(object) {
                let current = text(container, "image");
                if current == name || current.split(':').next() == Some(name) {
                    container["image"] = replacement.clone().into();
                }
            }
        }
    }
    objects
}

fn config_map(name: &str, data: Mapping) -> Value {
    let mut object = Mapping::new();
    object.insert("apiVersion".into(), "v1".into());
    object.insert("kind".into(), "ConfigMap".into());
    let mut metadata = Mapping::new();
    metadata.insert("name".into(), name.into());
    object.insert("metadata".into(), Value::Mapping(metadata));
    object.insert("data".into(), Value::Mapping(data));
    Value::Mapping(object)
}

pub fn kind_name(object: &Value) -> (&str, &str) {
    (text(object, "kind"), text(&object["metadata"], "name"))
}

/// The pod template's spec of a workload (Deployment, StatefulSet, Job).
pub fn pod_spec(object: &Value) -> Option<&Value> {
    object.get("spec")?.get("template")?.get("spec")
}

fn containers_mut(object: &mut Value) -> Vec<&mut Value> {
    let Some(spec) = object
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("template"))
        .and_then(|template| template.get_mut("spec"))
        .and_then(Value::as_mapping_mut)
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (key, list) in spec.iter_mut() {
        if matches!(key.as_str(), Some("containers" | "initContainers"))
            && let Some(list) = list.as_sequence_mut()
        {
            found.extend(list.iter_mut());
        }
    }
    found
}

/// Kubernetes' strategic merge, as far as these manifests need it: maps
/// merge key by key, lists of named items merge by name, other values and
/// lists are replaced.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Mapping(target), Value::Mapping(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Sequence(target), Value::Sequence(patch))
            if patch.iter().all(|item| item.get("name").is_some()) =>
        {
            for item in patch {
                match target
                    .iter_mut()
                    .find(|existing| existing.get("name") == item.get("name"))
                {
                    Some(existing) => merge(existing, item),
                    None => target.push(item.clone()),
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

#[test]
fn strategic_merge_by_name() {
    let mut target: Value = serde_yaml::from_str(
        "spec: {replicas: 2, containers: [{name: a, image: x, env: [{name: A, value: '1'}]}]}",
    )
    .expect("YAML");
    let patch: Value = serde_yaml::from_str(
        "spec: {replicas: 1, containers: [{name: a, env: [{name: B, value: '2'}]}, {name: b, image: y}]}",
    )
    .expect("YAML");
    merge(&mut target, &patch);
    let expected: Value = serde_yaml::from_str(
        "spec: {replicas: 1, containers: [{name: a, image: x, env: [{name: A, value: '1'}, {name: B, value: '2'}]}, {name: b, image: y}]}",
    )
    .expect("YAML");
    assert_eq!(target, expected);
}
