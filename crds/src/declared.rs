//! A device model as an adaptor declares it (contract 0.1.3, `models`): the schema of
//! its `spec` and `status` and how `kubectl get` shows it. The CRD of the model is made
//! from this alone ([`crd`]), so one `.wasm` file carries its model; [`from_crd`] goes the
//! other way, which is how the shipped adaptors' declarations are generated from the
//! Rust types in [`crate::models`].
//!
//! The plain types build without the `kube` feature, so guests parse the same JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One model's declaration; serialised, the format of a `models.json` an adaptor embeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclaredModel {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub description: String,
    /// The structural OpenAPI v3 schema of `spec`.
    pub spec: Value,
    /// The schema of `status`; `None` when the adaptor reports no status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    #[serde(default)]
    pub short_names: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub printer_columns: Vec<PrinterColumn>,
}

/// A `kubectl get` column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterColumn {
    pub name: String,
    pub json_path: String,
    #[serde(rename = "type")]
    pub type_: String,
    /// An OpenAPI format refining the type, e.g. `int32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

impl DeclaredModel {
    /// The API group, `devices.edge.cattle.io` of `devices.edge.cattle.io/v1alpha1`.
    pub fn group(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The version, `v1alpha1` of `devices.edge.cattle.io/v1alpha1`.
    pub fn version(&self) -> &str {
        self.api_version
            .split_once('/')
            .map_or(self.api_version.as_str(), |(_, v)| v)
    }

    /// The plural resource name, as kube-rs derives it for our kinds.
    pub fn plural(&self) -> String {
        format!("{}s", self.kind.to_ascii_lowercase())
    }

    /// What is wrong with this declaration for a CRD, if anything: the checks the API
    /// server would otherwise make at `octopus push`, made before anything is written.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.group().is_empty() || !self.group().contains('.') {
            out.push(format!(
                "apiVersion {} needs a group with a dot, e.g. devices.example.com/v1alpha1",
                self.api_version
            ));
        }
        let kind_ok = self.kind.chars().next().is_some_and(char::is_uppercase)
            && self.kind.chars().all(|c| c.is_ascii_alphanumeric());
        if !kind_ok {
            out.push(format!(
                "kind {:?} must be an upper-case ASCII word such as ThermoDevice",
                self.kind
            ));
        }
        for (what, schema) in [("spec", Some(&self.spec)), ("status", self.status.as_ref())] {
            let Some(schema) = schema else { continue };
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                out.push(format!("the {what} schema must have type: object"));
            }
        }
        out
    }
}

#[cfg(feature = "kube")]
mod crd {
    use std::collections::BTreeMap;

    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
        CustomResourceDefinitionSpec, CustomResourceDefinitionVersion,
        CustomResourceSubresourceStatus, CustomResourceSubresources, CustomResourceValidation,
        JSONSchemaProps,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::{Value, json};

    use super::{DeclaredModel, PrinterColumn};
    use crate::models::ENABLE_ANNOTATION;

    #[derive(Debug, thiserror::Error)]
    pub enum Error {
        #[error("{kind}: {0}", kind = .1)]
        Schema(serde_json::Error, String),
        #[error("the CRD {0} has no version with a schema")]
        NoSchema(String),
    }

    /// The model's CRD, exactly as `crdgen` renders one for a model of ours.
    pub fn crd(model: &DeclaredModel) -> Result<CustomResourceDefinition, Error> {
        let plural = model.plural();
        let mut properties = serde_json::Map::new();
        properties.insert("spec".into(), model.spec.clone());
        if let Some(status) = &model.status {
            properties.insert("status".into(), status.clone());
        }
        let mut root = json!({
            "properties": properties,
            "required": ["spec"],
            "title": model.kind,
            "type": "object",
        });
        if !model.description.is_empty() {
            root["description"] = Value::from(model.description.clone());
        }
        let schema: JSONSchemaProps =
            serde_json::from_value(root).map_err(|e| Error::Schema(e, model.kind.clone()))?;
        let columns = model
            .printer_columns
            .iter()
            .map(|c| CustomResourceColumnDefinition {
                name: c.name.clone(),
                json_path: c.json_path.clone(),
                type_: c.type_.clone(),
                description: c.description.clone(),
                priority: (c.priority != 0).then_some(c.priority),
                format: c.format.clone(),
            })
            .collect::<Vec<_>>();
        Ok(CustomResourceDefinition {
            metadata: ObjectMeta {
                name: Some(format!("{plural}.{}", model.group())),
                annotations: Some(BTreeMap::from([(
                    ENABLE_ANNOTATION.to_owned(),
                    "true".to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            spec: CustomResourceDefinitionSpec {
                group: model.group().to_owned(),
                names: CustomResourceDefinitionNames {
                    kind: model.kind.clone(),
                    plural,
                    singular: Some(model.kind.to_ascii_lowercase()),
                    short_names: (!model.short_names.is_empty()).then(|| model.short_names.clone()),
                    categories: (!model.categories.is_empty()).then(|| model.categories.clone()),
                    list_kind: None,
                },
                scope: "Namespaced".to_owned(),
                versions: vec![CustomResourceDefinitionVersion {
                    name: model.version().to_owned(),
                    served: true,
                    storage: true,
                    schema: Some(CustomResourceValidation {
                        open_api_v3_schema: Some(schema),
                    }),
                    additional_printer_columns: (!columns.is_empty()).then_some(columns),
                    subresources: model.status.as_ref().map(|_| CustomResourceSubresources {
                        status: Some(CustomResourceSubresourceStatus(json!({}))),
                        scale: None,
                    }),
                    ..CustomResourceDefinitionVersion::default()
                }],
                ..CustomResourceDefinitionSpec::default()
            },
            status: None,
        })
    }

    /// The declaration a CRD stands for: how the shipped adaptors' `models.json` files
    /// are made from the Rust model types.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Result<DeclaredModel, Error> {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let version = crd
            .spec
            .versions
            .iter()
            .find(|v| v.storage)
            .ok_or_else(|| Error::NoSchema(name.clone()))?;
        let root = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or_else(|| Error::NoSchema(name.clone()))?;
        let root = serde_json::to_value(root).map_err(|e| Error::Schema(e, name.clone()))?;
        Ok(DeclaredModel {
            api_version: format!("{}/{}", crd.spec.group, version.name),
            kind: crd.spec.names.kind.clone(),
            description: root["description"].as_str().unwrap_or_default().to_owned(),
            spec: root["properties"]["spec"].clone(),
            status: root["properties"].get("status").cloned(),
            short_names: crd.spec.names.short_names.clone().unwrap_or_default(),
            categories: crd.spec.names.categories.clone().unwrap_or_default(),
            printer_columns: version
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| PrinterColumn {
                    name: c.name.clone(),
                    json_path: c.json_path.clone(),
                    type_: c.type_.clone(),
                    format: c.format.clone(),
                    description: c.description.clone(),
                    priority: c.priority.unwrap_or(0),
                })
                .collect(),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Every model CRD we ship survives the round trip through a declaration, so a
        /// component declaring `from_crd(x)` makes exactly `x`.
        #[test]
        fn every_shipped_model_round_trips_through_its_declaration() {
            for crd in crate::models::crds() {
                let declared = from_crd(&crd).unwrap();
                assert!(declared.problems().is_empty(), "{:?}", declared.problems());
                let back = serde_json::to_value(crd_of(&declared)).unwrap();
                let want = serde_json::to_value(&crd).unwrap();
                assert_eq!(
                    difference(&back, &want, ""),
                    None,
                    "{}",
                    crd.spec.names.kind
                );
            }
        }

        /// The first path where `a` and `b` differ, with both values there.
        fn difference(a: &Value, b: &Value, at: &str) -> Option<String> {
            match (a, b) {
                (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys()).find_map(|k| {
                    let (l, r) = (
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    );
                    difference(l, r, &format!("{at}.{k}"))
                }),
                (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
                    .iter()
                    .zip(y)
                    .enumerate()
                    .find_map(|(i, (l, r))| difference(l, r, &format!("{at}[{i}]"))),
                _ if a == b => None,
                _ => Some(format!("{at}: {a} != {b}")),
            }
        }

        fn crd_of(d: &DeclaredModel) -> CustomResourceDefinition {
            crd(d).unwrap()
        }

        #[test]
        fn a_declaration_without_status_has_no_status_subresource() {
            let d = DeclaredModel {
                api_version: "devices.example.com/v1".into(),
                kind: "ThermoDevice".into(),
                description: String::new(),
                spec: json!({"type": "object"}),
                status: None,
                short_names: vec![],
                categories: vec!["devices".into()],
                printer_columns: vec![],
            };
            let crd = crd_of(&d);
            assert_eq!(
                crd.metadata.name.as_deref(),
                Some("thermodevices.devices.example.com")
            );
            assert!(crd.spec.versions[0].subresources.is_none());
            assert_eq!(
                crd.spec.names.categories.as_deref(),
                Some(&["devices".to_owned()][..])
            );
        }

        #[test]
        fn bad_declarations_are_named() {
            let d = DeclaredModel {
                api_version: "v1".into(),
                kind: "thermo device".into(),
                description: String::new(),
                spec: json!({"type": "string"}),
                status: None,
                short_names: vec![],
                categories: vec![],
                printer_columns: vec![],
            };
            let p = d.problems();
            assert_eq!(p.len(), 3, "{p:?}");
        }
    }
}

#[cfg(feature = "kube")]
pub use crd::{Error, crd, from_crd};
