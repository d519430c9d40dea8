//! The models of the example adaptors in `adaptors-wasm/languages/`, written once per
//! guest language: `CounterDevice` (the template every language starts from) and
//! `RegisterDevice` (Modbus TCP holding registers read through the socket capability).
//! Not Octopus models; they exist so the examples run in a cluster exactly as in
//! standalone mode, and as a pattern for authors shipping a model with their adaptor.

#[cfg(feature = "kube")]
use kube::CustomResource;
#[cfg(feature = "kube")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A counter that adds `step` on every poll.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(CustomResource, JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "devices.edge.cattle.io",
        version = "v1alpha1",
        kind = "CounterDevice",
        namespaced,
        status = "CounterDeviceStatus",
        derive = "PartialEq",
        shortname = "counter",
        doc = "CounterDevice is the device of the adaptor template in every guest language.",
        annotation("devices.edge.cattle.io/enable", "true"),
        printcolumn = r#"{"name":"COUNT","type":"integer","jsonPath":".status.count"}"#,
        printcolumn = r#"{"name":"LANGUAGE","type":"string","jsonPath":".status.language"}"#,
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CounterDeviceSpec {
    /// Added to the count on every poll (1 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    /// Milliseconds between polls (1000 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 10)))]
    pub sync_interval_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CounterDeviceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    /// The language of the adaptor build that counted last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Holding registers of a Modbus TCP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(CustomResource, JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "devices.edge.cattle.io",
        version = "v1alpha1",
        kind = "RegisterDevice",
        namespaced,
        status = "RegisterDeviceStatus",
        derive = "PartialEq",
        shortname = "registers",
        doc = "RegisterDevice reads holding registers of a Modbus TCP server; the example adaptor of every guest language.",
        annotation("devices.edge.cattle.io/enable", "true"),
        printcolumn = r#"{"name":"ENDPOINT","type":"string","jsonPath":".spec.endpoint"}"#,
        printcolumn = r#"{"name":"POLLS","type":"integer","jsonPath":".status.polls"}"#,
        printcolumn = r#"{"name":"LANGUAGE","type":"string","jsonPath":".status.language"}"#,
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RegisterDeviceSpec {
    /// The server, `host:port`; the limb grants exactly this endpoint.
    pub endpoint: String,
    /// Modbus unit (slave) ID (1 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 0, max = 255)))]
    pub unit_id: Option<u8>,
    /// First holding register (0 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<u16>,
    /// How many registers to read, 1 to 16 (1 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 1, max = 16)))]
    pub count: Option<u8>,
    /// Milliseconds between polls (1000 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "kube", schemars(range(min = 10)))]
    pub sync_interval_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterDeviceStatus {
    /// The registers' values, from `address` on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registers: Vec<u16>,
    /// Successful polls, carried across hot swaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polls: Option<u64>,
    /// The language of the adaptor build that read last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}
