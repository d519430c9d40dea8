//! `edge.cattle.io/v1alpha1`: the DeviceLink as Octopus defined it, plus `grants` and
//! `observedGeneration`.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conditions::Condition;
use crate::grants::Grant;
use crate::schema;

/// API group of DeviceLink.
pub const GROUP: &str = "edge.cattle.io";
/// API version string of DeviceLink.
pub const API_VERSION: &str = "edge.cattle.io/v1alpha1";
/// Kind of DeviceLink.
pub const KIND: &str = "DeviceLink";
/// API group of the device models adaptors ship.
pub const DEVICES_GROUP: &str = "devices.edge.cattle.io";
/// The limb's finalizer on DeviceLinks (Octopus's name).
pub const LIMB_FINALIZER: &str = "edge.cattle.io/octopus-limb";
/// The label the brain sets to the validated node, so each limb selects its own links.
pub const NODE_LABEL: &str = "edge.cattle.io/node";
/// The annotation (`"true"`) by which a link opts its readings into the limb's
/// `/metrics` when its node does not export every device's.
pub const DEVICE_METRICS_ANNOTATION: &str = "edge.cattle.io/device-metrics";

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// apiVersion and kind of a device model.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    pub api_version: String,
    pub kind: String,
}

impl TypeMeta {
    /// The group and version of `apiVersion` (`("", "v1")` for the core group).
    pub fn group_version(&self) -> (&str, &str) {
        self.api_version
            .split_once('/')
            .unwrap_or(("", &self.api_version))
    }
}

/// Which adaptor on which node drives a device of which model.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "edge.cattle.io",
    version = "v1alpha1",
    kind = "DeviceLink",
    namespaced,
    status = "DeviceLinkStatus",
    shortname = "dl",
    printcolumn = r#"{"name":"KIND","type":"string","jsonPath":".spec.model.kind"}"#,
    printcolumn = r#"{"name":"NODE","type":"string","jsonPath":".spec.adaptor.node"}"#,
    printcolumn = r#"{"name":"ADAPTOR","type":"string","jsonPath":".spec.adaptor.name"}"#,
    printcolumn = r#"{"name":"PHASE","type":"string","jsonPath":".status.conditions[-1].type"}"#,
    printcolumn = r#"{"name":"STATUS","type":"string","jsonPath":".status.conditions[-1].reason"}"#,
    printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLinkSpec {
    pub adaptor: DeviceAdaptor,
    pub model: TypeMeta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<DeviceLinkReference>,
    pub template: DeviceTemplate,
    /// Capabilities granted to the device beyond what the adaptor's resource fields
    /// derive from the spec. Not in Octopus; optional so Octopus YAML applies unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Grant>,
}

impl DeviceLink {
    /// `namespace/name`, the key links are known by.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace_or_default(), self.name())
    }

    /// The namespace, `default` when the YAML leaves it out (as kubectl does).
    pub fn namespace_or_default(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    pub fn uid(&self) -> Option<&str> {
        self.metadata.uid.as_deref()
    }

    /// Whether the link asks for its readings on `/metrics`
    /// ([`DEVICE_METRICS_ANNOTATION`] set to `true`).
    pub fn wants_device_metrics(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DEVICE_METRICS_ANNOTATION))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceAdaptor {
    /// The node whose limb drives the device.
    pub node: String,
    /// The adaptor name, e.g. `adaptors.edge.cattle.io/dummy`.
    pub name: String,
    /// Pins the adaptor's component (`sha256:<hex>`): any other version is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: Option<String>,
    /// Deprecated in Octopus (moved into the model spec); kept so old YAML parses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub parameters: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// The device instance's spec; validated against the model's own schema.
    #[serde(default)]
    #[schemars(schema_with = "schema::preserve_unknown_object")]
    pub spec: Value,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A named source of values the device spec points into with `*Ref` fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLinkReference {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeysSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeysSource>,
    #[serde(
        default,
        rename = "downwardAPI",
        skip_serializing_if = "Option::is_none"
    )]
    pub downward_api: Option<DownwardApiSource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeysSource {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownwardApiSource {
    #[serde(default)]
    pub items: Vec<DownwardApiItem>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownwardApiItem {
    pub name: String,
    pub field_ref: FieldRef,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub field_path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLinkStatus {
    /// The pipeline of conditions reached so far (see [`crate::conditions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_host_name: Option<String>,
    #[serde(
        default,
        rename = "nodeInternalIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_internal_ip: Option<String>,
    #[serde(
        default,
        rename = "nodeInternalDNS",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_internal_dns: Option<String>,
    #[serde(
        default,
        rename = "nodeExternalIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_external_ip: Option<String>,
    #[serde(
        default,
        rename = "nodeExternalDNS",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_external_dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<TypeMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptor_name: Option<String>,
    /// The generation of the spec the brain last validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The value of [`NODE_LABEL`] for a node: the name itself when it fits a label value
/// (63 characters), else `h-` and the start of its sha256, so every node name maps to a
/// valid, stable label value the limb can select on.
pub fn node_label_value(node: &str) -> String {
    let fits = !node.is_empty()
        && node.len() <= 63
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && node.starts_with(|c: char| c.is_ascii_alphanumeric())
        && node.ends_with(|c: char| c.is_ascii_alphanumeric());
    if fits {
        return node.to_owned();
    }
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(node.as_bytes()));
    format!("h-{}", &digest[..40])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_label_values_are_valid_and_stable() {
        assert_eq!(node_label_value("edge-worker-1"), "edge-worker-1");
        let long = format!("{}.example.com", "a".repeat(60));
        let v = node_label_value(&long);
        assert!(v.starts_with("h-") && v.len() == 42, "{v}");
        assert_eq!(v, node_label_value(&long));
        assert_ne!(v, node_label_value(&format!("b{long}")));
    }

    #[test]
    fn links_opt_into_device_metrics_by_annotation() {
        let mut link = DeviceLink::new("l", DeviceLinkSpec::default());
        assert!(!link.wants_device_metrics());
        for (value, wanted) in [
            ("true", true),
            (" True ", true),
            ("false", false),
            ("1", false),
        ] {
            link.metadata.annotations =
                Some([(DEVICE_METRICS_ANNOTATION.to_owned(), value.to_owned())].into());
            assert_eq!(link.wants_device_metrics(), wanted, "{value:?}");
        }
    }
}
