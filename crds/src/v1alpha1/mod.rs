//! `edge.cattle.io/v1alpha1`: the DeviceLink as Octopus defined it, plus `grants` and
//! `observedGeneration`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conditions::Condition;
use crate::grants::Grant;

/// API group of DeviceLink.
pub const GROUP: &str = "edge.cattle.io";
/// API version string of DeviceLink.
pub const API_VERSION: &str = "edge.cattle.io/v1alpha1";
/// Kind of DeviceLink.
pub const KIND: &str = "DeviceLink";
/// API group of the device models adaptors ship.
pub const DEVICES_GROUP: &str = "devices.edge.cattle.io";

/// The subset of Kubernetes object metadata the API needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// apiVersion and kind of a device model.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TypeMeta {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
}

/// A DeviceLink: which adaptor on which node drives a device of which model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLink {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: DeviceLinkSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceLinkStatus>,
}

impl DeviceLink {
    /// `namespace/name`, the key links are known by.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace(), self.metadata.name)
    }

    /// The namespace, `default` when the YAML leaves it out (as kubectl does).
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or("default")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceAdaptor {
    /// The node whose limb drives the device.
    #[serde(default)]
    pub node: String,
    /// The adaptor name, e.g. `adaptors.edge.cattle.io/dummy`.
    pub name: String,
    /// Deprecated in Octopus (moved into the model spec); kept so old YAML parses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    #[serde(default)]
    pub spec: Value,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A named source of values the device spec points into with `*Ref` fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLinkReference {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeysSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeysSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downward_api: Option<DownwardApiSource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeysSource {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardApiSource {
    #[serde(default)]
    pub items: Vec<DownwardApiItem>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownwardApiItem {
    pub name: String,
    pub field_ref: FieldRef,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    pub field_path: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLinkStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_internal_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_internal_dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_external_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_external_dns: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<TypeMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptor_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
