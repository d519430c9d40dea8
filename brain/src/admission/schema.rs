//! The structural-schema validator lives in `crds::structural` (the limb checks specs
//! and statuses with it too); these tests hold it to the CRDs and examples we ship.

pub use crds::structural::{Problem, validate};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn modbus_spec_schema() -> Value {
        let (_, crd) = crds::generated::all()
            .into_iter()
            .find(|(_, c)| c.spec.names.kind == "ModbusDevice")
            .unwrap();
        let crd = serde_json::to_value(crd).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    }

    fn gpio_spec_schema() -> Value {
        let (_, crd) = crds::generated::all()
            .into_iter()
            .find(|(_, c)| c.spec.names.kind == "GPIODevice")
            .unwrap();
        let crd = serde_json::to_value(crd).unwrap();
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
    }

    #[test]
    fn a_gpio_line_is_an_offset_or_a_name_and_its_settings_are_checked() {
        let ok = json!({
            "chip": "gpiochip0",
            "properties": [
                {"name": "relay", "line": "relay1", "direction": "output", "value": true},
                {"name": "door", "line": 17, "direction": "input", "edges": "both", "bias": "pull-up"}
            ]
        });
        let problems = validate(&gpio_spec_schema(), &ok, "spec.template.spec");
        assert!(problems.is_empty(), "{problems:?}");
        let bad = json!({
            "chip": "gpiochip0",
            "properties": [{"name": "door", "line": 17, "direction": "input", "edges": "sideways"}]
        });
        let got: Vec<String> = validate(&gpio_spec_schema(), &bad, "spec.template.spec")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("properties[0].edges"), "{got:?}");
    }

    /// The shipped BLE example (Octopus's thermometer) passes; a mode or a byte string
    /// Octopus's schema does not have is named with its path.
    #[test]
    fn the_shipped_ble_example_is_valid_and_bad_fields_are_named() {
        let (_, crd) = crds::generated::all()
            .into_iter()
            .find(|(_, c)| c.spec.names.kind == "BluetoothDevice")
            .unwrap();
        let crd = serde_json::to_value(crd).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let text = std::fs::read_to_string(octopus_tests::paths::repo_file(
            "examples/ble/thermometer.yaml",
        ))
        .unwrap();
        let link: Value = serde_yaml::from_str(&text).unwrap();
        let mut spec = link["spec"]["template"]["spec"].clone();
        let problems = validate(schema, &spec, "spec.template.spec");
        assert!(problems.is_empty(), "{problems:?}");
        spec["properties"][1]["accessMode"] = Value::from("WriteOnly");
        let got: Vec<String> = validate(schema, &spec, "spec.template.spec")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("properties[1].accessMode"), "{got:?}");
    }

    fn modbus_example() -> Value {
        let text = std::fs::read_to_string(octopus_tests::paths::repo_file(
            "examples/modbus/modbus-tcp.yaml",
        ))
        .unwrap();
        let link: Value = serde_yaml::from_str(&text).unwrap();
        link["spec"]["template"]["spec"].clone()
    }

    #[test]
    fn the_shipped_modbus_example_is_valid_against_the_generated_crd() {
        let problems = validate(
            &modbus_spec_schema(),
            &modbus_example(),
            "spec.template.spec",
        );
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn octopus_typo_read_onlye_is_named_with_its_path() {
        let mut spec = modbus_example();
        let first = &mut spec["properties"][0];
        let ro = first["readOnly"].take();
        first.as_object_mut().unwrap().remove("readOnly");
        first["readOnlye"] = ro;
        let got: Vec<String> = validate(&modbus_spec_schema(), &spec, "spec.template.spec")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "spec.template.spec.properties[0].readOnlye: unknown field (Kubernetes would silently drop it); did you mean `readOnly`?"
            ]
        );
    }

    #[test]
    fn an_unknown_field_names_the_closest_known_one() {
        let schema = json!({"type": "object", "properties": {
            "name": {"type": "string"}, "readOnly": {"type": "boolean"}, "on": {"type": "boolean"}
        }});
        for (key, hint) in [
            ("nmae", Some("name")),
            ("readonly", Some("readOnly")),
            ("readOnlye", Some("readOnly")),
            ("no", Some("on")),
            ("colour", None),
            ("x", None),
        ] {
            let got = validate(&schema, &json!({key: 1}), "spec")
                .into_iter()
                .map(|p| p.message)
                .collect::<Vec<_>>();
            let want = match hint {
                Some(k) => format!(
                    "unknown field (Kubernetes would silently drop it); did you mean `{k}`?"
                ),
                None => "unknown field (Kubernetes would silently drop it)".to_owned(),
            };
            assert_eq!(got, [want], "{key}");
        }
    }

    #[test]
    fn modbus_wrong_types_and_enums_are_named() {
        let mut spec = modbus_example();
        spec["protocol"]["tcp"]["workerID"] = json!("one");
        spec["properties"][0]["type"] = json!("int12");
        spec["properties"][0]["visitor"]["offset"] = json!(70000);
        let got: Vec<String> = validate(&modbus_spec_schema(), &spec, "spec.template.spec")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got.iter().any(|m| m.starts_with(
                "spec.template.spec.protocol.tcp.workerID: expected integer, got string"
            )),
            "{got:?}"
        );
        assert!(
            got.iter().any(|m| m
                .starts_with("spec.template.spec.properties[0].type: unsupported value \"int12\"")),
            "{got:?}"
        );
        assert!(
            got.iter().any(|m| m.starts_with(
                "spec.template.spec.properties[0].visitor.offset: 70000 must be <= 65535"
            )),
            "{got:?}"
        );
    }
}
