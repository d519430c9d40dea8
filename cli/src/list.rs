//! `octopus list`: the adaptors stored in the cluster, and where DeviceLinks run them.
//!
//! The cluster does not record which limb loaded what; DeviceLinks do, per link: the
//! limb writes `AdaptorExisted`'s message as `<adaptor> <version> (sha256:<12 hex>)`.
//! So a node appears under an adaptor only when some DeviceLink on it uses that adaptor.
//!
//! Owns reading and grouping what the cluster holds; must not run components (it never
//! compiles anything) nor write to the cluster.

use std::collections::BTreeMap;

use crds::{ConditionStatus, ConditionType, DeviceLink};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use limb::adaptors::package::{self, Manifest};
use serde::Serialize;

use crate::cluster::{self, failed};
use crate::output::{bytes, plural, short_digest};

/// Everything `list` shows (`-o json` prints this).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub namespace: String,
    pub adaptors: Vec<AdaptorEntry>,
    /// Why DeviceLinks could not be read (no CRD, no permission); `nodes` are then
    /// empty for every adaptor.
    pub links_error: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdaptorEntry {
    /// The adaptor's name (`adaptors.edge.cattle.io/<x>`); empty if the ConfigMap lacks it.
    pub name: String,
    /// The manifest ConfigMap; absent when DeviceLinks name an adaptor no ConfigMap holds.
    pub config_map: Option<String>,
    /// `sha256:<hex>` of the component, from the manifest.
    pub digest: Option<String>,
    /// `gzip` or `identity`.
    pub encoding: Option<String>,
    /// How many ConfigMaps the payload spans, from the manifest.
    pub parts: Option<usize>,
    /// How many of them are present.
    pub parts_present: usize,
    /// `apiVersion/Kind` the adaptor serves, from the manifest.
    pub models: Vec<String>,
    /// Bytes stored across the parts present.
    pub stored_bytes: usize,
    /// Bytes of the component, when it reassembles and matches its digest.
    pub size: Option<usize>,
    /// What would stop a limb from loading it, or other oddities.
    pub problems: Vec<String>,
    /// Nodes with DeviceLinks using the adaptor.
    pub nodes: Vec<NodeUsage>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeUsage {
    pub node: String,
    /// DeviceLinks on this node using the adaptor.
    pub links: usize,
    /// Of which DeviceConnected is True.
    pub connected: usize,
    /// Of which AdaptorExisted is True (the limb found and loaded the adaptor).
    pub loaded: usize,
    /// The builds the limb reports, from AdaptorExisted's message; a loaded link whose
    /// message names no build (an older limb) is counted in `loaded` only.
    pub versions: Vec<VersionUsage>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionUsage {
    pub version: String,
    /// `sha256:` and the first hex digits the limb reports.
    pub digest: String,
    pub links: usize,
    /// Links pinning this build with `spec.adaptor.digest`.
    pub pinned: usize,
    /// Whether this is the build in the ConfigMap; absent without a ConfigMap.
    pub current: Option<bool>,
}

/// What AdaptorExisted's message says the limb loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub adaptor: String,
    pub version: String,
    /// `sha256:<hex prefix>`.
    pub digest: String,
}

/// Parses `<adaptor> <version> (sha256:<hex prefix>)`.
pub fn parse_loaded(message: &str) -> Option<Loaded> {
    let (head, hex) = message.trim().strip_suffix(')')?.rsplit_once(" (sha256:")?;
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (adaptor, version) = head.trim_end().rsplit_once(' ')?;
    let adaptor = adaptor.trim();
    if adaptor.is_empty() || version.is_empty() {
        return None;
    }
    Some(Loaded {
        adaptor: adaptor.to_owned(),
        version: version.to_owned(),
        digest: format!("sha256:{}", hex.to_ascii_lowercase()),
    })
}

/// Whether `prefix` (`sha256:<some hex>`) is the start of `digest` (`sha256:<64 hex>`).
fn same_build(prefix: &str, digest: &str) -> bool {
    let p = prefix.strip_prefix("sha256:").unwrap_or(prefix);
    let d = digest.strip_prefix("sha256:").unwrap_or(digest);
    !p.is_empty() && d.starts_with(p)
}

/// The adaptor ConfigMaps (manifests and parts, as listed), one entry per manifest.
pub fn stored(configmaps: &[ConfigMap]) -> Vec<AdaptorEntry> {
    let mut out = Vec::new();
    for cm in configmaps
        .iter()
        .filter(|c| !c.labels().contains_key(package::PART_OF_LABEL))
    {
        let name = cm.name_any();
        let a = cm.annotations();
        let mut entry = AdaptorEntry {
            name: a.get(package::NAME_ANNOTATION).cloned().unwrap_or_default(),
            config_map: Some(name.clone()),
            digest: a.get(package::DIGEST_ANNOTATION).cloned(),
            encoding: a.get(package::ENCODING_ANNOTATION).cloned(),
            models: a
                .get(package::MODELS_ANNOTATION)
                .map(|m| m.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
            ..AdaptorEntry::default()
        };
        let manifest = match Manifest::from_annotations(a) {
            Ok(m) => m,
            Err(e) => {
                entry.problems.push(e.to_string());
                entry.stored_bytes = package::Stored::from(cm).payload.map_or(0, <[u8]>::len);
                out.push(entry);
                continue;
            }
        };
        entry.parts = Some(manifest.parts);
        let (parts, strays) =
            package::collect_parts(cm.into(), manifest.parts, configmaps.iter().map(Into::into));
        for stray in strays {
            entry.problems.push(format!(
                "ConfigMap {stray} claims to be a part of it but is not one of its {}",
                plural(manifest.parts, "part", "parts")
            ));
        }
        entry.parts_present = parts.iter().filter(|p| p.is_some()).count();
        entry.stored_bytes = parts.iter().flatten().map(|p| p.len()).sum();
        match package::assemble(&manifest, &parts) {
            Ok(component) => entry.size = Some(component.len()),
            Err(e) => entry.problems.push(e.to_string()),
        }
        out.push(entry);
    }
    out
}

/// DeviceLinks by adaptor name, then node.
pub fn group(links: &[DeviceLink]) -> BTreeMap<String, BTreeMap<String, NodeUsage>> {
    let mut out: BTreeMap<String, BTreeMap<String, NodeUsage>> = BTreeMap::new();
    for link in links {
        let spec = &link.spec.adaptor;
        let usage = out
            .entry(spec.name.clone())
            .or_default()
            .entry(spec.node.clone())
            .or_insert_with(|| NodeUsage {
                node: spec.node.clone(),
                ..NodeUsage::default()
            });
        usage.links += 1;
        let conditions = link
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let is_true = |t: ConditionType| {
            conditions
                .iter()
                .find(|c| c.type_ == t)
                .filter(|c| c.status == ConditionStatus::True)
        };
        if is_true(ConditionType::DeviceConnected).is_some() {
            usage.connected += 1;
        }
        let Some(existed) = is_true(ConditionType::AdaptorExisted) else {
            continue;
        };
        usage.loaded += 1;
        let Some(loaded) = parse_loaded(&existed.message) else {
            continue;
        };
        let pinned = spec
            .digest
            .as_deref()
            .is_some_and(|pin| same_build(&loaded.digest, pin));
        let found = usage
            .versions
            .iter()
            .position(|v| v.version == loaded.version && v.digest == loaded.digest);
        let index = found.unwrap_or_else(|| {
            usage.versions.push(VersionUsage {
                version: loaded.version,
                digest: loaded.digest,
                ..VersionUsage::default()
            });
            usage.versions.len().saturating_sub(1)
        });
        if let Some(version) = usage.versions.get_mut(index) {
            version.links += 1;
            version.pinned += usize::from(pinned);
        }
    }
    for nodes in out.values_mut() {
        for usage in nodes.values_mut() {
            usage
                .versions
                .sort_by(|a, b| (&a.version, &a.digest).cmp(&(&b.version, &b.digest)));
        }
    }
    out
}

/// Joins the stored adaptors with the links' usage, flagging builds older than the
/// ConfigMap's.
pub fn build(
    namespace: &str,
    mut adaptors: Vec<AdaptorEntry>,
    mut usage: BTreeMap<String, BTreeMap<String, NodeUsage>>,
    links_error: Option<String>,
) -> Listing {
    adaptors.sort_by(|a, b| (&a.name, &a.config_map).cmp(&(&b.name, &b.config_map)));
    let notes: Vec<Option<String>> = adaptors
        .iter()
        .map(|a| {
            let others: Vec<&str> = adaptors
                .iter()
                .filter(|b| !a.name.is_empty() && b.name == a.name && b.config_map != a.config_map)
                .filter_map(|b| b.config_map.as_deref())
                .collect();
            (!others.is_empty())
                .then(|| format!("ConfigMap {} also holds this adaptor", others.join(", ")))
        })
        .collect();
    for (a, note) in adaptors.iter_mut().zip(notes) {
        a.problems.extend(note);
        let nodes = usage.get(&a.name).cloned().unwrap_or_default();
        a.nodes = nodes.into_values().collect();
        if let Some(digest) = &a.digest {
            for v in a.nodes.iter_mut().flat_map(|n| n.versions.iter_mut()) {
                v.current = Some(same_build(&v.digest, digest));
            }
        }
    }
    for name in adaptors.iter().map(|a| a.name.clone()).collect::<Vec<_>>() {
        usage.remove(&name);
    }
    for (name, nodes) in usage {
        adaptors.push(AdaptorEntry {
            problems: vec![format!(
                "no ConfigMap in {namespace} holds it: DeviceLinks name an adaptor the limbs cannot find"
            )],
            name,
            nodes: nodes.into_values().collect(),
            ..AdaptorEntry::default()
        });
    }
    Listing {
        namespace: namespace.to_owned(),
        adaptors,
        links_error,
    }
}

/// Reads the adaptor ConfigMaps and every DeviceLink, and joins them.
pub async fn run(client: Client, namespace: &str) -> Result<Listing, cluster::Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let selector = format!("{}=true", package::COMPONENT_LABEL);
    let configmaps = cms
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(failed(format!(
            "cannot list the adaptor ConfigMaps in {namespace}"
        )))?
        .items;
    let links: Api<DeviceLink> = Api::all(client);
    let (usage, links_error) = match links.list(&ListParams::default()).await {
        Ok(list) => (group(&list.items), None),
        Err(e) => {
            let e = failed("cannot list DeviceLinks")(e);
            match e.code() {
                // No CRD, or no right to read links: the ConfigMaps are still worth showing.
                Some(403 | 404) => (BTreeMap::new(), Some(e.to_string())),
                _ => return Err(e),
            }
        }
    };
    Ok(build(namespace, stored(&configmaps), usage, links_error))
}

impl Listing {
    /// The listing for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        if self.adaptors.is_empty() {
            let _ = writeln!(
                s,
                "no adaptors: no ConfigMap in {} is labelled {}=true, and no DeviceLink names an adaptor",
                self.namespace,
                package::COMPONENT_LABEL
            );
        }
        for a in &self.adaptors {
            let title = if a.name.is_empty() {
                "(unnamed adaptor)"
            } else {
                &a.name
            };
            let _ = writeln!(s, "{title}");
            if let Some(cm) = &a.config_map {
                let mut what = vec![format!("{}/{cm}", self.namespace)];
                if let Some(d) = &a.digest {
                    what.push(short_digest(d));
                }
                if let Some(e) = &a.encoding {
                    what.push(e.clone());
                }
                match a.parts {
                    Some(n) if n == a.parts_present => {
                        what.push(plural(n, "part", "parts"));
                    }
                    Some(n) => what.push(format!("{} of {n} parts present", a.parts_present)),
                    None => {}
                }
                match a.size {
                    Some(size) => what.push(format!(
                        "{} stored for {}",
                        bytes(a.stored_bytes),
                        bytes(size)
                    )),
                    None => what.push(format!("{} stored", bytes(a.stored_bytes))),
                }
                let _ = writeln!(s, "  {:<10} {}", "configmap", what.join(", "));
            }
            if !a.models.is_empty() {
                let _ = writeln!(s, "  {:<10} {}", "models", a.models.join(", "));
            }
            for p in &a.problems {
                let _ = writeln!(s, "  {:<10} {p}", "problem");
            }
            if a.nodes.is_empty() && self.links_error.is_none() {
                let _ = writeln!(s, "  {:<10} no DeviceLink uses it", "nodes");
            }
            for n in &a.nodes {
                let mut what = vec![
                    plural(n.links, "link", "links"),
                    format!("{} connected", n.connected),
                ];
                for v in &n.versions {
                    let state = match v.current {
                        Some(true) => "current",
                        Some(false) if v.pinned == v.links => "pinned, not the ConfigMap's",
                        Some(false) => "OLDER than the ConfigMap",
                        None => "no ConfigMap to compare",
                    };
                    what.push(format!(
                        "{} ({}) on {}, {state}",
                        v.version,
                        v.digest,
                        plural(v.links, "link", "links")
                    ));
                }
                let reported: usize = n.versions.iter().map(|v| v.links).sum();
                if n.loaded > reported {
                    what.push(format!(
                        "{} loaded without naming the build",
                        plural(n.loaded - reported, "link", "links")
                    ));
                }
                if n.loaded < n.links {
                    what.push(format!(
                        "{} not loaded (yet)",
                        plural(n.links - n.loaded, "link", "links")
                    ));
                }
                let _ = writeln!(s, "  node {}: {}", n.node, what.join("; "));
            }
        }
        match &self.links_error {
            Some(e) => {
                let _ = writeln!(s, "warning: {e}; nodes are not shown");
            }
            None if !self.adaptors.is_empty() => {
                let _ = writeln!(
                    s,
                    "(a node is listed only when a DeviceLink on it uses the adaptor; limbs load every adaptor ConfigMap, links or not)"
                );
            }
            None => {}
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use limb::adaptors::package::Part;
    use serde_json::json;

    #[test]
    fn adaptor_existed_messages_parse() {
        let hex = "0123456789ab";
        assert_eq!(
            parse_loaded(&format!(
                "adaptors.edge.cattle.io/dummy 0.1.0+v2 (sha256:{hex})"
            )),
            Some(Loaded {
                adaptor: "adaptors.edge.cattle.io/dummy".into(),
                version: "0.1.0+v2".into(),
                digest: format!("sha256:{hex}"),
            })
        );
        for bad in [
            "",
            "Found",
            "adaptors.edge.cattle.io/dummy 0.1.0",
            "adaptors.edge.cattle.io/dummy (sha256:0123)",
            "adaptors.edge.cattle.io/dummy 0.1.0 (sha256:)",
            "adaptors.edge.cattle.io/dummy 0.1.0 (sha256:xyz)",
            "adaptors.edge.cattle.io/dummy 0.1.0 (md5:0123)",
            "verify if there is a suitable adaptor to access",
        ] {
            assert_eq!(parse_loaded(bad), None, "{bad:?}");
        }
    }

    fn link(name: &str, node: &str, adaptor: &str, conditions: serde_json::Value) -> DeviceLink {
        serde_json::from_value(json!({
            "apiVersion": "edge.cattle.io/v1alpha1",
            "kind": "DeviceLink",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "adaptor": {"node": node, "name": adaptor},
                "model": {"apiVersion": "devices.edge.cattle.io/v1alpha1", "kind": "DummySpecialDevice"},
                "template": {"spec": {}}
            },
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn running(version: &str, hex: &str, connected: bool) -> serde_json::Value {
        json!([
            {"type": "NodeExisted", "status": "True", "reason": "Found"},
            {"type": "ModelExisted", "status": "True", "reason": "Found"},
            {"type": "AdaptorExisted", "status": "True", "reason": "Found",
             "message": format!("adaptors.edge.cattle.io/dummy {version} (sha256:{hex})")},
            {"type": "DeviceCreated", "status": "True", "reason": "Success"},
            {"type": "DeviceConnected", "status": if connected { "True" } else { "False" },
             "reason": if connected { "Healthy" } else { "Unhealthy" }},
        ])
    }

    const DUMMY: &str = "adaptors.edge.cattle.io/dummy";

    #[test]
    fn links_are_grouped_by_adaptor_and_node() {
        let links = [
            link("a", "edge-1", DUMMY, running("0.1.0", "aaaaaaaaaaaa", true)),
            link(
                "b",
                "edge-1",
                DUMMY,
                running("0.1.0", "aaaaaaaaaaaa", false),
            ),
            link("c", "edge-2", DUMMY, running("0.0.9", "bbbbbbbbbbbb", true)),
            link(
                "d",
                "edge-2",
                DUMMY,
                json!([{"type": "AdaptorExisted", "status": "False", "reason": "NotFound"}]),
            ),
            link(
                "e",
                "edge-2",
                DUMMY,
                json!([{"type": "AdaptorExisted", "status": "True", "reason": "Found"}]),
            ),
            link("f", "edge-1", "adaptors.edge.cattle.io/modbus", json!([])),
        ];
        let g = group(&links);
        assert_eq!(g.len(), 2);
        let dummy = &g[DUMMY];
        let e1 = &dummy["edge-1"];
        assert_eq!((e1.links, e1.connected, e1.loaded), (2, 1, 2));
        assert_eq!(e1.versions.len(), 1);
        assert_eq!(e1.versions[0].links, 2);
        assert_eq!(e1.versions[0].digest, "sha256:aaaaaaaaaaaa");
        let e2 = &dummy["edge-2"];
        assert_eq!((e2.links, e2.connected, e2.loaded), (3, 1, 2));
        assert_eq!(e2.versions.len(), 1);
        assert_eq!(e2.versions[0].version, "0.0.9");
        let modbus = &g["adaptors.edge.cattle.io/modbus"]["edge-1"];
        assert_eq!((modbus.links, modbus.loaded), (1, 0));
    }

    fn configmap(part: &Part) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(part.name.clone()),
                labels: Some(part.labels.clone()),
                annotations: Some(part.annotations.clone()),
                ..Default::default()
            },
            binary_data: Some(
                [(package::DATA_KEY.to_owned(), ByteString(part.data.clone()))].into(),
            ),
            ..Default::default()
        }
    }

    fn noise(n: usize) -> Vec<u8> {
        let mut x: u32 = 3;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn stored_adaptors_are_reassembled_and_checked() {
        let component = noise(1 << 20);
        let parts = package::package("adaptor-dummy", DUMMY, &["m/v1/K".into()], &component);
        let cms: Vec<ConfigMap> = parts.iter().map(configmap).collect();
        let s = stored(&cms);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, DUMMY);
        assert_eq!((s[0].parts, s[0].parts_present), (Some(2), 2));
        assert_eq!(s[0].size, Some(1 << 20));
        assert_eq!(s[0].models, ["m/v1/K"]);
        assert!(s[0].problems.is_empty(), "{:?}", s[0].problems);

        let torn = stored(&cms[..1]);
        assert_eq!(torn[0].parts_present, 1);
        assert_eq!(torn[0].size, None);
        assert!(torn[0].problems[0].contains("part 1 of 2"), "{torn:?}");
    }

    #[test]
    fn nodes_on_an_older_build_are_flagged() {
        let component = b"\0asm-not-really".to_vec();
        let digest = package::digest(&component);
        let hex = &digest[7..19];
        let cms: Vec<ConfigMap> = package::package("adaptor-dummy", DUMMY, &[], &component)
            .iter()
            .map(configmap)
            .collect();
        let links = [
            link("a", "edge-1", DUMMY, running("0.1.0", hex, true)),
            link("b", "edge-2", DUMMY, running("0.0.9", "bbbbbbbbbbbb", true)),
            link("c", "edge-1", "adaptors.edge.cattle.io/ghost", json!([])),
        ];
        let l = build("octopus-system", stored(&cms), group(&links), None);
        assert_eq!(l.adaptors.len(), 2);
        let dummy = &l.adaptors[0];
        assert_eq!(dummy.name, DUMMY);
        assert_eq!(dummy.nodes[0].versions[0].current, Some(true));
        assert_eq!(dummy.nodes[1].versions[0].current, Some(false));
        let ghost = &l.adaptors[1];
        assert_eq!(ghost.config_map, None);
        assert!(ghost.problems[0].contains("no ConfigMap"));
        let text = l.text();
        assert!(
            text.contains("node edge-1: 1 link; 1 connected; 0.1.0"),
            "{text}"
        );
        assert!(text.contains("OLDER than the ConfigMap"), "{text}");
        assert!(text.contains("a node is listed only when"), "{text}");
    }

    #[test]
    fn duplicate_configmaps_for_one_adaptor_are_named() {
        let mk = |cm: &str| {
            package::package(cm, DUMMY, &[], b"x")
                .iter()
                .map(configmap)
                .collect::<Vec<_>>()
        };
        let mut cms = mk("adaptor-dummy");
        cms.extend(mk("adaptor-dummy-2"));
        let l = build("ns", stored(&cms), BTreeMap::new(), None);
        assert_eq!(l.adaptors.len(), 2);
        assert!(l.adaptors[0].problems[0].contains("adaptor-dummy-2"));
        assert!(l.adaptors[1].problems[0].contains("ConfigMap adaptor-dummy also"));
    }

    #[test]
    fn json_field_names_are_stable() {
        let l = Listing {
            namespace: "octopus-system".into(),
            adaptors: vec![AdaptorEntry {
                name: DUMMY.into(),
                nodes: vec![NodeUsage {
                    node: "edge-1".into(),
                    versions: vec![VersionUsage::default()],
                    ..NodeUsage::default()
                }],
                ..AdaptorEntry::default()
            }],
            links_error: None,
        };
        let v = serde_json::to_value(&l).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort_unstable();
            k
        };
        assert_eq!(keys(&v), ["adaptors", "linksError", "namespace"]);
        assert_eq!(
            keys(&v["adaptors"][0]),
            [
                "configMap",
                "digest",
                "encoding",
                "models",
                "name",
                "nodes",
                "parts",
                "partsPresent",
                "problems",
                "size",
                "storedBytes"
            ]
        );
        assert_eq!(
            keys(&v["adaptors"][0]["nodes"][0]),
            ["connected", "links", "loaded", "node", "versions"]
        );
        assert_eq!(
            keys(&v["adaptors"][0]["nodes"][0]["versions"][0]),
            ["current", "digest", "links", "pinned", "version"]
        );
    }
}
