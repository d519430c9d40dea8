//! Reading DeviceLinks from YAML, the way `kubectl apply -f` would take them.

use crate::v1alpha1::{API_VERSION, DeviceLink, KIND};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("document {index}: invalid YAML")]
    Yaml {
        index: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("document {index}: invalid DeviceLink {name:?}")]
    DeviceLink {
        index: usize,
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "document {index}: DeviceLink {name:?} has apiVersion {found:?}, expected {API_VERSION:?}"
    )]
    Version {
        index: usize,
        name: String,
        found: String,
    },
}

/// Parses every DeviceLink in a multi-document YAML string. Documents of other kinds
/// (CRDs, Secrets) are skipped, as a cluster would hold them separately.
pub fn device_links(yaml: &str) -> Result<Vec<DeviceLink>, Error> {
    let mut links = Vec::new();
    for (index, doc) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_json::Value::deserialize_yaml(doc)
            .map_err(|source| Error::Yaml { index, source })?;
        // `kubectl get dl -o yaml` writes a List of them.
        let kind = value.get("kind").and_then(|k| k.as_str());
        let items = match (kind, value.get("items").and_then(|i| i.as_array())) {
            (Some("List" | "DeviceLinkList"), Some(items)) => items.clone(),
            _ => vec![value],
        };
        for value in items {
            push_link(&mut links, index, value)?;
        }
    }
    Ok(links)
}

/// Adds `value` to `links` if it is a DeviceLink (document `index`, for errors).
fn push_link(
    links: &mut Vec<DeviceLink>,
    index: usize,
    value: serde_json::Value,
) -> Result<(), Error> {
    if value.is_null() || value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
        return Ok(());
    }
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_owned();
    let api_version = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if api_version != API_VERSION {
        return Err(Error::Version {
            index,
            name,
            found: api_version.to_owned(),
        });
    }
    let link: DeviceLink = serde_json::from_value(value).map_err(|source| Error::DeviceLink {
        index,
        name,
        source,
    })?;
    links.push(link);
    Ok(())
}

trait DeserializeYaml: Sized {
    fn deserialize_yaml(doc: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error>;
}

impl DeserializeYaml for serde_json::Value {
    fn deserialize_yaml(doc: serde_yaml::Deserializer<'_>) -> Result<Self, serde_yaml::Error> {
        serde::Deserialize::deserialize(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCTOPUS_DUMMY: &str = r#"
apiVersion: edge.cattle.io/v1alpha1
kind: DeviceLink
metadata:
  name: living-room-fan
spec:
  adaptor:
    node: edge-worker
    name: adaptors.edge.cattle.io/dummy
  model:
    apiVersion: "devices.edge.cattle.io/v1alpha1"
    kind: "DummySpecialDevice"
  template:
    metadata:
      labels:
        device: living-room-fan
    spec:
      protocol:
        location: "living-room"
      gear: slow
      "on": true
---
apiVersion: v1
kind: Secret
metadata: {name: ignored}
"#;

    #[test]
    fn octopus_yaml_parses_unchanged() {
        let links = device_links(OCTOPUS_DUMMY).unwrap();
        assert_eq!(links.len(), 1);
        let link = &links[0];
        assert_eq!(link.key(), "default/living-room-fan");
        assert_eq!(link.spec.adaptor.name, "adaptors.edge.cattle.io/dummy");
        assert_eq!(link.spec.model.kind, "DummySpecialDevice");
        assert_eq!(link.spec.template.spec["gear"], "slow");
        assert!(link.spec.grants.is_empty());
    }

    /// What `kubectl get dl -A -o yaml` prints: a List, the links with their status.
    #[test]
    fn a_list_of_links_is_read_as_its_items() {
        let yaml = r#"
apiVersion: v1
kind: List
items:
  - apiVersion: edge.cattle.io/v1alpha1
    kind: DeviceLink
    metadata: {name: a, namespace: x, finalizers: [edge.cattle.io/octopus-limb]}
    spec:
      adaptor: {node: n1, name: adaptors.edge.cattle.io/dummy}
      model: {apiVersion: devices.edge.cattle.io/v1alpha1, kind: DummySpecialDevice}
      template: {spec: {on: true}}
    status:
      conditions:
        - {type: NodeExisted, status: "True", reason: Found, lastUpdateTime: "2020-07-08T13:24:00Z"}
  - apiVersion: v1
    kind: Secret
    metadata: {name: ignored}
"#;
        let links = device_links(yaml).unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].key(), "x/a");
    }

    #[test]
    fn wrong_api_version_is_named() {
        let yaml =
            "apiVersion: edge.cattle.io/v2\nkind: DeviceLink\nmetadata: {name: x}\nspec: {}\n";
        let err = device_links(yaml).unwrap_err();
        assert!(err.to_string().contains("edge.cattle.io/v2"), "{err}");
    }

    #[test]
    fn missing_required_field_is_an_error_with_the_link_name() {
        let yaml = "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata: {name: broken}\nspec: {model: {kind: X}}\n";
        let err = device_links(yaml).unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
    }

    #[test]
    fn explicit_grants_parse() {
        let yaml = r#"
apiVersion: edge.cattle.io/v1alpha1
kind: DeviceLink
metadata: {name: plc, namespace: factory}
spec:
  adaptor: {node: n1, name: adaptors.edge.cattle.io/modbus}
  model: {apiVersion: devices.edge.cattle.io/v1alpha1, kind: ModbusDevice}
  template: {spec: {}}
  grants:
    - {name: bus, kind: serial, target: /dev/ttyUSB0}
"#;
        let links = device_links(yaml).unwrap();
        assert_eq!(links[0].spec.grants[0].kind, crate::GrantKind::Serial);
        assert_eq!(links[0].key(), "factory/plc");
    }
}
