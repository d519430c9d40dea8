//! The device models (`devices.edge.cattle.io/v1alpha1`) of the adaptors we ship, as
//! Rancher Octopus defined them, plus the two models of the per-language examples.
//!
//! Optional fields are `Option`s left out when unset, so a spec written by hand
//! round-trips unchanged. Octopus's defaults live in the CRD schemas (the apiserver
//! applies them) and in getters of the same name (for specs that never met one).

#[cfg(feature = "kube")]
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
#[cfg(feature = "kube")]
use kube::CustomResourceExt;
#[cfg(feature = "kube")]
use schemars::Schema;

pub mod ble;
pub mod dummy;
pub mod examples;
pub mod extension;
pub mod gpio;
pub mod modbus;
pub mod mqtt;
pub mod opcua;

/// The API version of every device model.
pub const API_VERSION: &str = "devices.edge.cattle.io/v1alpha1";

/// The annotation Octopus put on every device model CRD, so UIs can list the models.
pub const ENABLE_ANNOTATION: &str = "devices.edge.cattle.io/enable";

/// Every device model CRD, annotated `devices.edge.cattle.io/enable: "true"` as Octopus
/// did (each model's `#[kube(annotation(..))]`).
#[cfg(feature = "kube")]
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        dummy::DummySpecialDevice::crd(),
        dummy::DummyProtocolDevice::crd(),
        modbus::ModbusDevice::crd(),
        mqtt::MQTTDevice::crd(),
        opcua::OPCUADevice::crd(),
        gpio::GPIODevice::crd(),
        ble::BluetoothDevice::crd(),
        examples::CounterDevice::crd(),
        examples::RegisterDevice::crd(),
    ]
}

/// `null` as the type's default: an empty map or list, as a hand-written spec means it.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(deserializer)?.unwrap_or_default())
}

/// A string, or a non-negative whole number kept as its digits: Octopus's durations
/// were also written as bare seconds (`syncInterval: 5`).
pub(crate) fn string_or_count<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration string or a whole number of seconds")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// A string, or a number kept as its text: an operand written `value: 10` in a
/// standalone spec means `"10"`, as the Octopus schema's string does.
pub(crate) fn text_or_number<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(v.to_string())
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// Drops `null` from `enum` lists. schemars adds it for an `Option` of an enum, and
/// `kubectl apply` refuses the CRD for it; `nullable: true` already admits null.
#[cfg(feature = "kube")]
pub(crate) fn no_null_in_enums(schema: &mut Schema) {
    fn walk(map: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(serde_json::Value::Array(values)) = map.get_mut("enum") {
            values.retain(|v| !v.is_null());
        }
        for value in map.values_mut() {
            match value {
                serde_json::Value::Object(child) => walk(child),
                serde_json::Value::Array(items) => items
                    .iter_mut()
                    .filter_map(serde_json::Value::as_object_mut)
                    .for_each(walk),
                _ => {}
            }
        }
    }
    if let Some(map) = schema.as_object_mut() {
        walk(map);
    }
}

/// Any JSON value, kept as written (a property value whose type the spec decides).
#[cfg(feature = "kube")]
pub(crate) fn any_value(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true
    })
}

#[cfg(all(test, feature = "kube"))]
pub(crate) mod tests {
    use super::*;
    use serde_json::Value;

    /// Reasons `schema` (at `path`) is not a structural schema, in the sense of
    /// <https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema>.
    pub(crate) fn structural_errors(path: &str, schema: &Value, errors: &mut Vec<String>) {
        let Some(node) = schema.as_object() else {
            errors.push(format!("{path}: schema is not an object: {schema}"));
            return;
        };
        let preserve = node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        let int_or_string = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        match node.get("type") {
            Some(Value::String(_)) => {}
            Some(other) => errors.push(format!("{path}: type must be one string, not {other}")),
            None if preserve || int_or_string => {}
            None => errors.push(format!("{path}: no type")),
        }
        if let Some(values) = node.get("enum").and_then(Value::as_array)
            && values.iter().any(Value::is_null)
        {
            errors.push(format!("{path}: null in enum (kubectl refuses it)"));
        }
        for key in ["$ref", "$defs", "definitions", "const", "uniqueItems"] {
            if node.contains_key(key) {
                errors.push(format!("{path}: {key} is not allowed"));
            }
        }
        if node.contains_key("properties") && node.contains_key("additionalProperties") {
            errors.push(format!("{path}: both properties and additionalProperties"));
        }
        for junctor in ["allOf", "anyOf", "oneOf", "not"] {
            let branches = match node.get(junctor) {
                None => continue,
                Some(Value::Array(branches)) => branches.clone(),
                Some(branch) => vec![branch.clone()],
            };
            for (i, branch) in branches.iter().enumerate() {
                junctor_errors(
                    &format!("{path}.{junctor}[{i}]"),
                    branch,
                    node.get("properties"),
                    errors,
                );
            }
        }
        if let Some(properties) = node.get("properties") {
            match properties.as_object() {
                Some(properties) => {
                    for (name, property) in properties {
                        structural_errors(&format!("{path}.{name}"), property, errors);
                    }
                }
                None => errors.push(format!("{path}: properties is not an object")),
            }
        }
        match node.get("additionalProperties") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => errors.push(format!("{path}: additionalProperties: true")),
            Some(additional) => structural_errors(&format!("{path}.*"), additional, errors),
        }
        if node.get("type").and_then(Value::as_str) == Some("array") {
            match node.get("items") {
                Some(items) => structural_errors(&format!("{path}[]"), items, errors),
                None => errors.push(format!("{path}: array without items")),
            }
        }
        if node.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
            let items = node.get("items").cloned().unwrap_or_default();
            let required: Vec<&str> = items
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match node
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
            {
                Some(keys) if !keys.is_empty() => {
                    for key in keys.iter().filter_map(Value::as_str) {
                        let defaulted = items
                            .pointer(&format!("/properties/{key}/default"))
                            .is_some();
                        if !required.contains(&key) && !defaulted {
                            errors.push(format!(
                                "{path}: list-map key {key} is neither required nor defaulted"
                            ));
                        }
                    }
                }
                _ => errors.push(format!("{path}: list-type map without list-map-keys")),
            }
        }
    }

    /// Inside allOf/anyOf/oneOf/not only value validations are allowed, and only on
    /// properties the node itself declares.
    fn junctor_errors(
        path: &str,
        branch: &Value,
        declared: Option<&Value>,
        errors: &mut Vec<String>,
    ) {
        let Some(branch) = branch.as_object() else {
            errors.push(format!("{path}: not an object"));
            return;
        };
        for key in [
            "type",
            "description",
            "default",
            "nullable",
            "additionalProperties",
            "$ref",
        ] {
            if branch.contains_key(key) {
                errors.push(format!("{path}: {key} inside a logical junctor"));
            }
        }
        if let Some(properties) = branch.get("properties").and_then(Value::as_object) {
            for name in properties.keys() {
                if declared.and_then(|d| d.get(name)).is_none() {
                    errors.push(format!(
                        "{path}: property {name} is not declared outside the junctor"
                    ));
                }
            }
        }
        if let Some(required) = branch.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if declared.and_then(|d| d.get(name)).is_none() {
                    errors.push(format!(
                        "{path}: required {name} is not declared outside the junctor"
                    ));
                }
            }
        }
    }

    #[test]
    fn the_structural_checker_catches_what_the_apiserver_refuses() {
        let mut errors = Vec::new();
        let bad = serde_json::json!({
            "type": "object",
            "properties": {
                "bare": {},
                "kept": {"x-kubernetes-preserve-unknown-fields": true},
                "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}},
                         "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["n"]},
                "union": {"type": "object", "properties": {"a": {"type": "string"}},
                          "oneOf": [{"required": ["a"]}, {"type": "object", "required": ["b"]}]}
            }
        });
        structural_errors("", &bad, &mut errors);
        assert_eq!(
            errors,
            [
                ".bare: no type",
                ".list: list-map key n is neither required nor defaulted",
                ".union.oneOf[1]: type inside a logical junctor",
                ".union.oneOf[1]: required b is not declared outside the junctor",
            ],
        );
    }

    #[test]
    fn every_model_crd_is_an_octopus_device_model_with_a_structural_schema() {
        let expected = [
            ("DummySpecialDevice", "dummyspecialdevices", "dummyspecial"),
            (
                "DummyProtocolDevice",
                "dummyprotocoldevices",
                "dummyprotocol",
            ),
            ("ModbusDevice", "modbusdevices", "modbus"),
            ("MQTTDevice", "mqttdevices", "mqtt"),
            ("OPCUADevice", "opcuadevices", "opcua"),
            ("GPIODevice", "gpiodevices", "gpio"),
            ("BluetoothDevice", "bluetoothdevices", "ble"),
            ("CounterDevice", "counterdevices", "counter"),
            ("RegisterDevice", "registerdevices", "registers"),
        ];
        let crds = crds();
        assert_eq!(crds.len(), expected.len());
        for (crd, (kind, plural, short)) in crds.iter().zip(expected) {
            assert_eq!(crd.spec.group, "devices.edge.cattle.io", "{kind}");
            assert_eq!(crd.spec.names.kind, kind);
            assert_eq!(crd.spec.names.plural, plural, "{kind}");
            assert_eq!(
                crd.metadata.name.as_deref(),
                Some(format!("{plural}.devices.edge.cattle.io").as_str())
            );
            assert_eq!(crd.spec.scope, "Namespaced", "{kind}");
            assert_eq!(
                crd.spec.names.short_names,
                Some(vec![short.to_owned()]),
                "{kind}"
            );
            assert_eq!(
                crd.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ENABLE_ANNOTATION))
                    .map(String::as_str),
                Some("true"),
                "{kind}"
            );
            assert_eq!(crd.spec.versions.len(), 1, "{kind}");
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, "v1alpha1", "{kind}");
            assert!(version.served && version.storage, "{kind}");
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
                "{kind}"
            );
            let columns = version
                .additional_printer_columns
                .as_deref()
                .unwrap_or_default();
            assert_eq!(
                columns.last().map(|c| c.name.as_str()),
                Some("AGE"),
                "{kind}"
            );
            for column in columns {
                assert!(
                    column.json_path.starts_with('.'),
                    "{kind}: {}",
                    column.json_path
                );
            }

            let schema =
                serde_json::to_value(&version.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
            let mut errors = Vec::new();
            structural_errors(kind, &schema, &mut errors);
            assert!(
                errors.is_empty(),
                "{kind} schema is not structural:\n{}",
                errors.join("\n")
            );
            let spec = &schema["properties"]["spec"];
            let status = &schema["properties"]["status"];
            assert_eq!(spec["type"], "object", "{kind}");
            assert_eq!(status["type"], "object", "{kind}");
            assert!(
                status
                    .get("required")
                    .is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)),
                "{kind}: status fields are all optional"
            );
        }
    }

    #[test]
    fn properties_lists_are_maps_keyed_by_name() {
        for crd in crds() {
            let kind = &crd.spec.names.kind;
            let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
            let properties =
                &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["properties"];
            if properties["type"] == "array" {
                assert_eq!(properties["x-kubernetes-list-type"], "map", "{kind}");
                assert_eq!(
                    properties["x-kubernetes-list-map-keys"],
                    serde_json::json!(["name"]),
                    "{kind}"
                );
            }
        }
    }
}
