//! The models an adaptor declares (contract 0.1.3, the optional `models` export): read
//! once at load next to `describe`, checked, and kept as [`DeclaredModel`]s so that the
//! limb checks every spec and status against them.
//!
//! Optional on purpose: components built against 0.1.0 to 0.1.2 (and 0.1.3 ones that
//! target the plain `adaptor` world) export no `models`, declare nothing, and run
//! unchecked as before.

use crds::declared::{DeclaredModel, PrinterColumn};
use serde_json::Value;
use wasmtime::Engine;
use wasmtime::component::{Component, ComponentExportIndex, ComponentType, Lift};

use super::DescriptionError;
use crate::bindings::{AdaptorInfo, Model};
use crate::bounds;

/// The largest schema (spec or status) one model may declare. The API server refuses
/// CRDs over about 1.5 MiB in etcd; a schema near this is already unusual.
pub const MAX_SCHEMA_BYTES: usize = 512 << 10;

/// The WIT `printer-column`.
#[derive(ComponentType, Lift, Clone, Debug)]
#[component(record)]
pub struct WitColumn {
    name: String,
    #[component(name = "json-path")]
    json_path: String,
    #[component(name = "type")]
    type_: String,
    format: Option<String>,
    description: Option<String>,
    priority: i32,
}

/// The WIT `model-schema`.
#[derive(ComponentType, Lift, Clone, Debug)]
#[component(record)]
pub struct WitModelSchema {
    model: Model,
    description: String,
    spec: String,
    status: String,
    #[component(name = "short-names")]
    short_names: Vec<String>,
    categories: Vec<String>,
    #[component(name = "printer-columns")]
    printer_columns: Vec<WitColumn>,
}

/// The index of `describe-models` in `component`, if it exports `models` at a version
/// this limb speaks.
pub fn export(engine: &Engine, component: &Component) -> Option<ComponentExportIndex> {
    let ty = component.component_type();
    let name = ty.exports(engine).map(|(n, _)| n).find(|n| {
        n.strip_prefix("octopus:adaptor/models@")
            .is_some_and(|v| v.starts_with("0.1."))
    })?;
    let iface = component.get_export_index(None, name)?;
    component.get_export_index(Some(&iface), "describe-models")
}

/// Checks what `describe-models` returned against the self-description and the bounds,
/// and parses the schemas. A broken declaration refuses the component: running it
/// unchecked would hide the author's mistake until a spec slipped through.
pub fn check(
    info: &AdaptorInfo,
    declared: Vec<WitModelSchema>,
) -> Result<Vec<DeclaredModel>, DescriptionError> {
    bounds::check_count("declared models", declared.len(), bounds::MAX_MODELS)?;
    let mut out: Vec<DeclaredModel> = Vec::with_capacity(declared.len());
    for (i, d) in declared.into_iter().enumerate() {
        let at = |field: &str| format!("models[{i}].{field}");
        let (api_version, kind) = (d.model.api_version, d.model.kind);
        if !info
            .models
            .iter()
            .any(|m| m.model.api_version == api_version && m.model.kind == kind)
        {
            return Err(DescriptionError::Declaration(format!(
                "{} declares {api_version}/{kind}, which describe does not name",
                at("model")
            )));
        }
        if out
            .iter()
            .any(|o| o.api_version == api_version && o.kind == kind)
        {
            return Err(DescriptionError::Declaration(format!(
                "{api_version}/{kind} is declared twice"
            )));
        }
        let schema = |field: &str, text: &str| -> Result<Option<Value>, DescriptionError> {
            if text.is_empty() {
                return Ok(None);
            }
            bounds::check(at(field).as_str(), text, MAX_SCHEMA_BYTES)?;
            serde_json::from_str(text).map(Some).map_err(|e| {
                DescriptionError::Declaration(format!("{} is not JSON: {e}", at(field)))
            })
        };
        let spec = schema("spec", &d.spec)?
            .ok_or_else(|| DescriptionError::Declaration(format!("{} is empty", at("spec"))))?;
        let status = schema("status", &d.status)?;
        let model = DeclaredModel {
            api_version,
            kind,
            description: d.description,
            spec,
            status,
            short_names: d.short_names,
            categories: d.categories,
            printer_columns: d
                .printer_columns
                .into_iter()
                .map(|c| PrinterColumn {
                    name: c.name,
                    json_path: c.json_path,
                    type_: c.type_,
                    format: c.format,
                    description: c.description,
                    priority: c.priority,
                })
                .collect(),
        };
        if let Some(problem) = model.problems().into_iter().next() {
            return Err(DescriptionError::Declaration(format!(
                "{}: {problem}",
                at("model")
            )));
        }
        out.push(model);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::ModelInfo;

    fn info() -> AdaptorInfo {
        AdaptorInfo {
            name: "adaptors.example.com/thermo".into(),
            version: "1.0.0".into(),
            models: vec![ModelInfo {
                model: Model {
                    api_version: "devices.example.com/v1".into(),
                    kind: "ThermoDevice".into(),
                },
                resource_fields: vec![],
            }],
        }
    }

    fn schema(kind: &str, spec: &str, status: &str) -> WitModelSchema {
        WitModelSchema {
            model: Model {
                api_version: "devices.example.com/v1".into(),
                kind: kind.into(),
            },
            description: String::new(),
            spec: spec.into(),
            status: status.into(),
            short_names: vec![],
            categories: vec![],
            printer_columns: vec![],
        }
    }

    #[test]
    fn declarations_are_checked_before_the_limb_keeps_them() {
        let object = r#"{"type": "object"}"#;
        let ok = check(&info(), vec![schema("ThermoDevice", object, "")]).unwrap();
        assert_eq!(ok[0].status, None);
        assert_eq!(check(&info(), vec![]).unwrap().len(), 0);
        for (what, declared, needle) in [
            (
                "a model describe does not name",
                vec![schema("OtherDevice", object, "")],
                "which describe does not name",
            ),
            (
                "twice",
                vec![
                    schema("ThermoDevice", object, ""),
                    schema("ThermoDevice", object, ""),
                ],
                "declared twice",
            ),
            (
                "not JSON",
                vec![schema("ThermoDevice", "{type", "")],
                "models[0].spec is not JSON",
            ),
            (
                "no spec",
                vec![schema("ThermoDevice", "", object)],
                "models[0].spec is empty",
            ),
            (
                "a spec that is no object",
                vec![schema("ThermoDevice", r#"{"type": "string"}"#, "")],
                "spec schema must have type: object",
            ),
            (
                "oversized",
                vec![schema(
                    "ThermoDevice",
                    &format!(
                        r#"{{"type": "object", "description": "{}"}}"#,
                        "x".repeat(600 << 10)
                    ),
                    "",
                )],
                "models[0].spec is",
            ),
        ] {
            let err = check(&info(), declared).unwrap_err().to_string();
            assert!(err.contains(needle), "{what}: {err}");
            assert!(err.len() < 512, "{what}: the refusal stays short");
        }
    }
}
