//! Which connections a set of NetworkPolicies admits, evaluated as the
//! Kubernetes network model defines it: a pod selected by no Ingress
//! policy accepts everything; a selected pod accepts what some rule of
//! some policy selecting it allows (port and peer).

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::files::{scalar, seq, text};

pub type Labels = BTreeMap<String, String>;

/// Where a connection comes from.
#[derive(Debug, Clone)]
pub struct Peer {
    pub pod_labels: Labels,
    pub namespace: String,
}

pub fn labels(value: Option<&Value>) -> Labels {
    value
        .and_then(Value::as_mapping)
        .map(|map| {
            map.iter()
                .map(|(key, value)| (scalar(key), scalar(value)))
                .collect()
        })
        .unwrap_or_default()
}

/// `matchLabels` only (these manifests use nothing else); an empty
/// selector matches everything.
fn selects(selector: &Value, labels: &Labels) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "matchExpressions: extend the evaluator"
    );
    self::labels(selector.get("matchLabels"))
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

fn namespace_labels(namespace: &str) -> Labels {
    Labels::from([(
        "kubernetes.io/metadata.name".to_owned(),
        namespace.to_owned(),
    )])
}

fn peer_matches(from: &Value, peer: &Peer, namespace: &str) -> bool {
    assert!(
        from.get("ipBlock").is_none(),
        "ipBlock: extend the evaluator"
    );
    let namespace_ok = match from.get("namespaceSelector") {
        Some(selector) => selects(selector, &namespace_labels(&peer.namespace)),
        None => peer.namespace == namespace,
    };
    let pod_ok = from
        .get("podSelector")
        .is_none_or(|selector| selects(selector, &peer.pod_labels));
    namespace_ok && pod_ok
}

fn rule_admits(rule: &Value, port: u16, peer: &Peer, namespace: &str) -> bool {
    let ports = seq(rule, "ports");
    let port_ok = ports.is_empty()
        || ports.iter().any(|allowed| {
            allowed
                .get("port")
                .is_none_or(|number| scalar(number) == port.to_string())
        });
    let from = seq(rule, "from");
    port_ok && (from.is_empty() || from.iter().any(|from| peer_matches(from, peer, namespace)))
}

/// Whether `peer` may connect to `port` of a pod with `pod_labels` in
/// `namespace`, under `policies` (objects of every kind; only
/// NetworkPolicies count).
pub fn admits(
    objects: &[Value],
    namespace: &str,
    pod_labels: &Labels,
    port: u16,
    peer: &Peer,
) -> bool {
    let selecting: Vec<&Value> = objects
        .iter()
        .filter(|object| text(object, "kind") == "NetworkPolicy")
        .filter(|policy| {
            seq(&policy["spec"], "policyTypes")
                .iter()
                .any(|kind| scalar(kind) == "Ingress")
                && selects(&policy["spec"]["podSelector"], pod_labels)
        })
        .collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|policy| {
        seq(&policy["spec"], "ingress")
            .iter()
            .any(|rule| rule_admits(rule, port, peer, namespace))
    })
}
