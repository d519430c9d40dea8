//! `OPCUADevice`: nodes of an OPC UA server (Octopus `adaptors/opcua`).

#[cfg(feature = "kube")]
use kube::CustomResource;
#[cfg(feature = "kube")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extension::{BasicAuth, DeviceExtension};

/// Nodes of an OPC UA server, read by subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(CustomResource, JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "devices.edge.cattle.io",
        version = "v1alpha1",
        kind = "OPCUADevice",
        namespaced,
        status = "OPCUADeviceStatus",
        derive = "PartialEq",
        shortname = "opcua",
        doc = "OPCUADevice is a set of nodes of an OPC UA server.",
        annotation("devices.edge.cattle.io/enable", "true"),
        printcolumn = r#"{"name":"ENDPOINT","type":"string","jsonPath":".spec.protocol.endpoint"}"#,
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct OPCUADeviceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<DeviceExtension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<OpcuaParameters>,
    pub protocol: OpcuaProtocol,
    /// The nodes to read and write.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "kube", schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])))]
    pub properties: Vec<OpcuaDeviceProperty>,
}

/// Subscription settings (durations).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OpcuaParameters {
    /// Publishing interval of the subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "15s")))]
    pub sync_interval: Option<String>,
    /// Timeout of one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "10s")))]
    pub timeout: Option<String>,
}

impl OpcuaParameters {
    pub fn sync_interval(&self) -> &str {
        self.sync_interval.as_deref().unwrap_or("15s")
    }
    pub fn timeout(&self) -> &str {
        self.timeout.as_deref().unwrap_or("10s")
    }
}

/// How to reach the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OpcuaProtocol {
    /// The server URL, `opc.tcp://host:port[/path]`.
    #[cfg_attr(feature = "kube", schemars(regex(pattern = r"^opc\.tcp://[^\s]*$")))]
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "None")))]
    pub security_policy: Option<OpcuaSecurityPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "None")))]
    pub security_mode: Option<OpcuaSecurityMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<OpcuaTls>,
    /// The server certificate trusted under a signing policy: its SHA-1 thumbprint in
    /// hex (`:` separators allowed), as the adaptor's refusal of an unknown certificate
    /// prints it. Nothing is trusted without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "kube",
        schemars(regex(pattern = r"^([0-9A-Fa-f]{2}:?){19}[0-9A-Fa-f]{2}$"))
    )]
    pub server_certificate_thumbprint: Option<String>,
    /// The trusted server certificate itself (PEM), instead of or besides its
    /// thumbprint: any of the pins trusts the server.
    #[serde(
        default,
        rename = "serverCertificatePEM",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_certificate_pem: Option<String>,
    /// The same, through a reference.
    #[serde(
        default,
        rename = "serverCertificatePEMRef",
        skip_serializing_if = "Option::is_none"
    )]
    pub server_certificate_pem_ref: Option<super::extension::ReferenceRelationship>,
}

impl OpcuaProtocol {
    pub fn security_policy(&self) -> OpcuaSecurityPolicy {
        self.security_policy.unwrap_or_default()
    }
    pub fn security_mode(&self) -> OpcuaSecurityMode {
        self.security_mode.unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum OpcuaSecurityPolicy {
    #[default]
    None,
    Basic128Rsa15,
    Basic256,
    Basic256Sha256,
    Aes128Sha256RsaOaep,
    Aes256Sha256RsaPss,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
pub enum OpcuaSecurityMode {
    #[default]
    None,
    Sign,
    SignAndEncrypt,
}

/// The client certificate and key of an OPC UA connection.
pub type OpcuaTls = super::extension::ClientCertificate;

/// One node of the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OpcuaDeviceProperty {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub r#type: OpcuaPropertyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// The value to write, as a string of the property's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub visitor: OpcuaVisitor,
}

impl OpcuaDeviceProperty {
    pub fn read_only(&self) -> bool {
        self.read_only.unwrap_or(false)
    }
}

/// The type of a node value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum OpcuaPropertyType {
    Float,
    Double,
    Int64,
    Int32,
    Int16,
    Uint64,
    Uint32,
    Uint16,
    String,
    Boolean,
    ByteString,
    Datetime,
}

/// Where a property lives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OpcuaVisitor {
    /// The node ID, e.g. `ns=1;s=Temperature` or `ns=1;i=1005`.
    #[serde(rename = "nodeID")]
    pub node_id: String,
    /// The browse name of the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browse_name: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct OPCUADeviceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<OpcuaDeviceStatusProperty>,
}

/// A node as the server reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct OpcuaDeviceStatusProperty {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<OpcuaPropertyType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(extend("format" = "date-time")))]
    pub updated_at: Option<String>,
    /// Why the node has no current value: its bad status code, a refused write, a type
    /// other than the spec's, or the server being unreachable (not in Octopus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(all(test, feature = "kube"))]
mod tests {
    use super::*;

    const SERVER: &str = r#"
parameters:
  syncInterval: 5s
protocol:
  endpoint: opc.tcp://10.0.0.9:4840/
  securityPolicy: Basic256Sha256
  basicAuth:
    usernameRef:
      name: opcua-credentials
      item: username
    passwordRef:
      name: opcua-credentials
      item: password
  tlsConfig:
    certFilePEMRef: {name: opcua-tls, item: tls.crt}
    keyFilePEMRef: {name: opcua-tls, item: tls.key}
properties:
  - name: datetime
    description: The server time
    type: datetime
    readOnly: true
    visitor:
      nodeID: "ns=0;i=2258"
  - name: counter
    type: int32
    value: "12"
    visitor:
      nodeID: "ns=1;s=the.answer"
      browseName: TheAnswer
"#;

    #[test]
    fn a_server_parses_with_its_defaults_and_round_trips() {
        let spec: OPCUADeviceSpec = serde_yaml::from_str(SERVER).unwrap();
        assert_eq!(spec.protocol.endpoint, "opc.tcp://10.0.0.9:4840/");
        assert_eq!(
            spec.protocol.security_policy(),
            OpcuaSecurityPolicy::Basic256Sha256
        );
        assert_eq!(spec.protocol.security_mode(), OpcuaSecurityMode::None);
        let auth = spec.protocol.basic_auth.as_ref().unwrap();
        assert_eq!(auth.username, None);
        assert_eq!(auth.username_ref.as_ref().unwrap().item, "username");
        let tls = spec.protocol.tls_config.as_ref().unwrap();
        assert_eq!(tls.key_file_pem_ref.as_ref().unwrap().item, "tls.key");
        let parameters = spec.parameters.clone().unwrap();
        assert_eq!(
            (parameters.sync_interval(), parameters.timeout()),
            ("5s", "10s")
        );
        assert_eq!(spec.properties[0].r#type, OpcuaPropertyType::Datetime);
        assert!(spec.properties[0].read_only());
        assert_eq!(spec.properties[1].visitor.node_id, "ns=1;s=the.answer");
        assert_eq!(
            spec.properties[1].visitor.browse_name.as_deref(),
            Some("TheAnswer")
        );
        assert!(!spec.properties[1].read_only());

        let original: serde_json::Value = serde_yaml::from_str(SERVER).unwrap();
        assert_eq!(serde_json::to_value(&spec).unwrap(), original);
    }

    #[test]
    fn the_crd_carries_octopus_enums_defaults_and_endpoint_pattern() {
        let crd = serde_json::to_value(<OPCUADevice as kube::CustomResourceExt>::crd()).unwrap();
        let protocol = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["protocol"];
        assert_eq!(protocol["required"], serde_json::json!(["endpoint"]));
        assert_eq!(
            protocol["properties"]["endpoint"]["pattern"],
            r"^opc\.tcp://[^\s]*$"
        );
        let policy = &protocol["properties"]["securityPolicy"];
        assert_eq!(policy["default"], "None");
        assert_eq!(policy["nullable"], true);
        assert_eq!(policy["enum"].as_array().map(Vec::len), Some(6), "{policy}");
        let mode = &protocol["properties"]["securityMode"];
        assert_eq!(
            mode["enum"],
            serde_json::json!(["None", "Sign", "SignAndEncrypt"])
        );
    }
}
