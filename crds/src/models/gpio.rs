//! `GPIODevice`: lines of one GPIO chip, each a named property (ours; Octopus had no
//! GPIO model). Inputs report their level and, with edge detection, edge counts;
//! outputs are driven to the spec's `value`.

#[cfg(feature = "kube")]
use kube::CustomResource;
#[cfg(feature = "kube")]
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Lines of a GPIO chip: relays, contacts, pulse counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(CustomResource, JsonSchema))]
#[cfg_attr(
    feature = "kube",
    kube(
        group = "devices.edge.cattle.io",
        version = "v1alpha1",
        kind = "GPIODevice",
        namespaced,
        status = "GPIODeviceStatus",
        derive = "PartialEq",
        shortname = "gpio",
        doc = "GPIODevice is a set of lines of one GPIO chip, each a named input or output.",
        annotation("devices.edge.cattle.io/enable", "true"),
        printcolumn = r#"{"name":"CHIP","type":"string","jsonPath":".spec.chip"}"#,
        printcolumn = r#"{"name":"AGE","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "kube", schemars(transform = super::no_null_in_enums))]
pub struct GPIODeviceSpec {
    /// The chip as the node names it (`gpiochip0`). The DeviceLink grants each line
    /// as `chip:line`, and the node's policy must allow it.
    #[cfg_attr(feature = "kube", schemars(length(min = 1)))]
    pub chip: String,
    /// How often input levels are read (a duration such as `1s`). Inputs with edge
    /// detection also update on the edge.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::string_or_count"
    )]
    #[cfg_attr(feature = "kube", schemars(extend("default" = "1s")))]
    pub sync_interval: Option<String>,
    /// The lines, each a named property.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "kube", schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"])))]
    pub properties: Vec<GPIOProperty>,
}

impl GPIODeviceSpec {
    pub fn sync_interval(&self) -> &str {
        self.sync_interval.as_deref().unwrap_or("1s")
    }
}

/// One line of the chip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GPIOProperty {
    /// The property's name in status.
    pub name: String,
    /// The line: its offset on the chip (`17`) or the name the chip gives it
    /// (`relay1`, from the board's `gpio-line-names`).
    #[serde(deserialize_with = "line_ref")]
    #[cfg_attr(feature = "kube", schemars(schema_with = "int_or_string"))]
    pub line: String,
    pub direction: GPIODirection,
    /// Active means low on the pin (false when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_low: Option<bool>,
    /// The line's bias resistor; the chip's own setting when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias: Option<GPIOBias>,
    /// Outputs only (push-pull when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drive: Option<GPIODrive>,
    /// Inputs only: a debounce period (a duration such as `10ms`, at most `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<String>,
    /// Inputs only: which edges are detected and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edges: Option<GPIOEdges>,
    /// Outputs only: the level to drive (`true` = active; inactive when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<bool>,
    /// Outputs only: the level left on the line when the device shuts down
    /// (inactive when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_value: Option<bool>,
}

/// Which way a line goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum GPIODirection {
    Input,
    Output,
}

/// A line's bias resistor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum GPIOBias {
    PullUp,
    PullDown,
    Disabled,
}

/// How an output drives its pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum GPIODrive {
    PushPull,
    OpenDrain,
    OpenSource,
}

/// Which transitions of an input are detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum GPIOEdges {
    Rising,
    Falling,
    Both,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GPIODeviceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<GPIOPropertyStatus>,
}

/// What one line showed last.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "kube", derive(JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GPIOPropertyStatus {
    pub name: String,
    /// The line's level (`true` = active).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<bool>,
    /// When the level last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Edges detected since the device was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rising_edges: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub falling_edges: Option<u64>,
    /// Edges the kernel dropped because they were not read in time (sequence gaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost_edges: Option<u64>,
}

/// A line given as a number (`17`) or a string (`"17"`, `relay1`), kept as text.
fn line_ref<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a line offset or a line name")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.is_empty() {
                return Err(E::custom("a line name cannot be empty"));
            }
            Ok(v.to_owned())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(v.to_string())
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// An offset or a name: `x-kubernetes-int-or-string`, as Kubernetes writes such fields.
#[cfg(feature = "kube")]
fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "minLength": 1}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_with_an_output_by_name_and_a_counted_input_by_offset_parses() {
        let spec: GPIODeviceSpec = serde_yaml::from_str(
            r#"
chip: gpiochip0
syncInterval: 2s
properties:
  - {name: relay, line: relay1, direction: output, drive: open-drain, value: true}
  - {name: door, line: 17, direction: input, bias: pull-up, debounce: 10ms, edges: both, activeLow: true}
"#,
        )
        .unwrap();
        assert_eq!(spec.sync_interval(), "2s");
        assert_eq!(spec.properties[0].line, "relay1");
        assert_eq!(spec.properties[0].drive, Some(GPIODrive::OpenDrain));
        assert_eq!(spec.properties[1].line, "17");
        assert_eq!(spec.properties[1].edges, Some(GPIOEdges::Both));
        assert_eq!(spec.properties[1].bias, Some(GPIOBias::PullUp));
        let round = serde_json::to_value(&spec).unwrap();
        assert_eq!(round["properties"][1]["line"], "17");
        assert_eq!(round["properties"][1]["activeLow"], true);
    }

    #[test]
    fn unknown_directions_and_empty_line_names_are_refused() {
        for bad in [
            "{chip: c, properties: [{name: a, line: 1, direction: sideways}]}",
            "{chip: c, properties: [{name: a, line: '', direction: input}]}",
            "{chip: c, properties: [{name: a, line: -1, direction: input}]}",
        ] {
            assert!(
                serde_yaml::from_str::<GPIODeviceSpec>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
