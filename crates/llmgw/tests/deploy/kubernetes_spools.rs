//! Where the llmgw containers of a rendered overlay keep their spools: on
//! writable volumes of their own pods, sized for them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use llmgw::GatewayConfig;

use crate::dockerfile::final_stage;
use crate::files::{repo, scalar, seq, text};
use crate::kubernetes::{Cluster, Container};
use crate::service_config::{Role, absolute, overlap, spools};

/// Every spool of `container` is on a writable volume of its own pod,
/// sized for it: the router's on each replica's own claim (persistent), the
/// edge's on an emptyDir (a shared claim would be one directory for every
/// replica, and each spool locks its directory).
pub fn check_spools(cluster: &Cluster, container: &Container, config: &GatewayConfig, role: Role) {
    let overlay = cluster.overlay;
    let name = container.name();
    let image = final_stage(&repo().join("Dockerfile"));
    let workdir = match container.value.get("workingDir") {
        Some(dir) => PathBuf::from(scalar(dir)),
        None => PathBuf::from(&image.workdir),
    };
    let spools = spools(config, role);
    let expected = match role {
        Role::Edge => 1,
        Role::Router => 2,
        _ => 0,
    };
    assert_eq!(spools.len(), expected, "{overlay} {name}: {spools:?}");
    // Bytes each volume must hold, by volume name.
    let mut needs: BTreeMap<String, u64> = BTreeMap::new();
    for (i, spool) in spools.iter().enumerate() {
        let dir = absolute(&workdir, &spool.dir);
        let path = dir.to_str().expect("UTF-8");
        let (volume, _) = cluster.volume_at(container, path).unwrap_or_else(|| {
            panic!(
                "{overlay} {name}: {} {path} is on the read-only root filesystem",
                spool.setting
            )
        });
        let mount = seq(container.value, "volumeMounts")
            .iter()
            .find(|mount| text(mount, "name") == text(volume, "name"))
            .expect("the mount");
        assert_ne!(
            mount["readOnly"].as_bool(),
            Some(true),
            "{overlay} {name}: {} is on a read-only mount",
            spool.setting
        );
        let claim = seq(&container.workload["spec"], "volumeClaimTemplates")
            .iter()
            .any(|template| template["metadata"] == *volume);
        match role {
            Role::Router => {
                assert!(
                    claim && text(container.workload, "kind") == "StatefulSet",
                    "{overlay} {name}: {} is on each replica's own claim",
                    spool.setting
                );
            }
            _ => assert!(
                claim || volume.get("emptyDir").is_some(),
                "{overlay} {name}: {} is on a volume of the pod's own \
                 (an emptyDir or a StatefulSet's claim), not {volume:?}",
                spool.setting
            ),
        }
        *needs.entry(text(volume, "name").to_owned()).or_default() += spool.disk_bytes;
        for other in &spools[i + 1..] {
            assert!(
                !overlap(&dir, &absolute(&workdir, &other.dir)),
                "{overlay} {name}: {} and {} share a directory",
                spool.setting,
                other.setting
            );
        }
    }
    for (volume, bytes_needed) in needs {
        let size = match seq(&container.workload["spec"], "volumeClaimTemplates")
            .iter()
            .find(|template| text(&template["metadata"], "name") == volume)
        {
            Some(template) => scalar(&template["spec"]["resources"]["requests"]["storage"]),
            None => seq(container.pod, "volumes")
                .iter()
                .find(|declared| text(declared, "name") == volume)
                .and_then(|declared| declared["emptyDir"].get("sizeLimit"))
                .map(scalar)
                .unwrap_or_else(|| panic!("{overlay} {name}: emptyDir {volume} has a sizeLimit")),
        };
        assert!(
            bytes(&size) > bytes_needed,
            "{overlay} {name}: volume {volume} ({size}) holds its spools ({bytes_needed} bytes)"
        );
    }
}

/// The memory quantity `2Gi`, `512Mi` in bytes.
fn bytes(quantity: &str) -> u64 {
    let (number, unit) = quantity.split_at(
        quantity
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(quantity.len()),
    );
    let number: u64 = number.parse().expect("a quantity");
    number
        * match unit {
            "" => 1,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            other => panic!("unit {other}"),
        }
}
