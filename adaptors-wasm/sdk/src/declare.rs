//! The schemas of the models an adaptor serves (contract 0.1.3 `models`), from the
//! `models.json` declaration each model embeds ([`crate::ModelInfo::declared`]). The
//! format is `crds::declared::DeclaredModel` of the Octopus repository: `crdgen` writes
//! one per shipped model, and any tool that emits the same JSON (schemars, a hand-written
//! file) works.

use serde_json::Value;

use crate::error::{Error, Result};
use crate::info::{Info, Model};

/// A `kubectl get` column of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub json_path: String,
    pub type_: String,
    pub format: Option<String>,
    pub description: Option<String>,
    pub priority: i32,
}

/// One model's schema, as `describe-models` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    pub model: Model,
    pub description: String,
    /// The `spec` schema, as JSON.
    pub spec: String,
    /// The `status` schema, as JSON; empty for none.
    pub status: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub columns: Vec<Column>,
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn words(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Parses one declaration and checks that it is for `model`.
pub fn parse(model: &Model, json: &str) -> Result<Declaration> {
    let bad = |why: String| Error::Internal(format!("the declaration of {model}: {why}"));
    let v: Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let declared = Model::new(
        text(&v, "apiVersion").unwrap_or_default(),
        text(&v, "kind").unwrap_or_default(),
    );
    if &declared != model {
        return Err(bad(format!("it declares {declared}")));
    }
    let spec = v
        .get("spec")
        .filter(|s| s.is_object())
        .ok_or_else(|| bad("no spec schema".into()))?;
    let columns = v
        .get("printerColumns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| Column {
                    name: text(c, "name").unwrap_or_default(),
                    json_path: text(c, "jsonPath").unwrap_or_default(),
                    type_: text(c, "type").unwrap_or_default(),
                    format: text(c, "format"),
                    description: text(c, "description"),
                    priority: c
                        .get("priority")
                        .and_then(Value::as_i64)
                        .and_then(|p| i32::try_from(p).ok())
                        .unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Declaration {
        model: model.clone(),
        description: text(&v, "description").unwrap_or_default(),
        spec: spec.to_string(),
        status: v.get("status").map(Value::to_string).unwrap_or_default(),
        short_names: words(&v, "shortNames"),
        categories: words(&v, "categories"),
        columns,
    })
}

impl Info {
    /// The declarations of the models that carry one; an adaptor's unit test should call
    /// this, since in the component a broken declaration is only logged (the model is
    /// then served unchecked).
    pub fn declarations(&self) -> Result<Vec<Declaration>> {
        self.models
            .iter()
            .filter_map(|m| m.declaration.map(|json| parse(&m.model, json)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelInfo;

    const THERMO: &str = r#"{"apiVersion": "devices.example.com/v1", "kind": "ThermoDevice",
        "description": "A thermometer.",
        "spec": {"type": "object", "properties": {"unit": {"type": "string"}}},
        "status": {"type": "object", "nullable": true},
        "shortNames": ["thermo"],
        "printerColumns": [{"name": "UNIT", "jsonPath": ".spec.unit", "type": "string"}]}"#;

    #[test]
    fn a_declaration_is_parsed_and_checked_against_its_model() {
        let info = Info::new("adaptors.example.com/thermo", "1.0.0")
            .model(ModelInfo::new("devices.example.com/v1", "ThermoDevice").declared(THERMO));
        let d = info.declarations().unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].short_names, ["thermo"]);
        assert_eq!(d[0].columns[0].json_path, ".spec.unit");
        assert!(d[0].spec.contains("unit"));
        assert!(d[0].status.contains("nullable"));

        let wrong = Info::new("a", "1")
            .model(ModelInfo::new("devices.example.com/v1", "OtherDevice").declared(THERMO));
        let err = wrong.declarations().unwrap_err().to_string();
        assert!(
            err.contains("declares devices.example.com/v1/ThermoDevice"),
            "{err}"
        );

        let broken = Info::new("a", "1")
            .model(ModelInfo::new("devices.example.com/v1", "ThermoDevice").declared("{"));
        assert!(broken.declarations().is_err());
    }
}
