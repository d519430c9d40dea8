//! The brain's admission checks: the structural-schema validator
//! (`brain/src/admission/schema.rs`) with arbitrary JSON against the CRD schemas we
//! generate (`crds::generated::all()`), and the whole `decide` on a DeviceLink.
//!
//! Input, by its first byte: the CRD (modulo their count) and the mode (the byte / 16,
//! modulo 3); the rest is JSON:
//! - 0: a value checked against the CRD's whole `openAPIV3Schema` and its `spec`;
//! - 1: a DeviceLink, decided as a create with the CRD as its model's schema;
//! - 2: `[schema, value]`, an arbitrary schema (a CRD someone else installed).
#![no_main]

use std::sync::OnceLock;

use brain::admission::decide::{self, AdaptorLookup, ModelLookup, Observed};
use brain::admission::schema;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn schemas() -> &'static [Value] {
    static SCHEMAS: OnceLock<Vec<Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        crds::generated::all()
            .into_iter()
            .map(|(_, crd)| {
                let version = crd.spec.versions.into_iter().next().expect("one version");
                let schema = version.schema.and_then(|s| s.open_api_v3_schema);
                serde_json::to_value(schema).expect("a schema serializes")
            })
            .collect()
    })
}

fn validate(schema: &Value, value: &Value, path: &str) {
    for p in schema::validate(schema, value, path) {
        assert!(p.path.starts_with(path), "{p}");
        assert!(!p.message.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = serde_json::from_slice::<Value>(rest) else {
        return;
    };
    let all = schemas();
    let root = &all[usize::from(selector) % all.len()];
    match (selector / 16) % 3 {
        0 => {
            validate(root, &value, "object");
            if let Some(spec) = root.pointer("/properties/spec") {
                validate(spec, &value, "spec");
            }
        }
        1 => {
            let Ok(link) = serde_json::from_value::<crds::DeviceLink>(value) else {
                return;
            };
            let seen = Observed {
                model: ModelLookup::Served(Some(root.clone())),
                adaptor: AdaptorLookup::Serves(vec![format!(
                    "{}/{}",
                    link.spec.model.api_version, link.spec.model.kind
                )]),
                references: Vec::new(),
            };
            let verdict = decide::decide(&link, None, &seen);
            let _ = (verdict.allowed(), verdict.outcome());
            let again = decide::decide(&link, Some(&link), &seen);
            assert_eq!(again, verdict, "an unchanged link is decided the same");
            for (i, g) in link.spec.grants.iter().enumerate() {
                let _ = decide::grant_problem(i, g);
            }
        }
        _ => {
            if let Value::Array(pair) = &value
                && let [schema, value] = pair.as_slice()
            {
                validate(schema, value, "spec");
            }
        }
    }
});
