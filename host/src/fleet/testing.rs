//! Adaptor versions and links for tests of the fleet and the modes that feed it.

use std::sync::Arc;

use crds::DeviceLink;

use super::Version;

/// An adaptor version without WebAssembly: a name, a digest and the kinds it serves.
#[derive(Debug, PartialEq)]
pub struct Fake {
    pub name: &'static str,
    pub digest: &'static str,
    pub kinds: &'static [&'static str],
    /// The `gear` values its declared schema accepts; `None`: it declares no schema.
    pub gears: Option<&'static [&'static str]>,
    /// The status schema it declares.
    pub status: Option<serde_json::Value>,
    pub forced: bool,
}

impl Version for Fake {
    fn name(&self) -> &str {
        self.name
    }
    fn digest(&self) -> &str {
        self.digest
    }
    fn serves(&self, api_version: &str, kind: &str) -> bool {
        api_version == API && self.kinds.contains(&kind)
    }
    fn spec_problems(&self, link: &DeviceLink) -> Vec<String> {
        let Some(gears) = self.gears else {
            return Vec::new();
        };
        let gear = link.spec.template.spec["gear"].as_str().unwrap_or_default();
        if gears.contains(&gear) {
            return Vec::new();
        }
        vec![format!(
            "spec.template.spec.gear: must be one of {}",
            gears.join(", ")
        )]
    }
    fn forced(&self) -> bool {
        self.forced
    }
    fn label(&self) -> String {
        self.digest.to_owned()
    }
    fn status_schema(&self, _: &str, _: &str) -> Option<&serde_json::Value> {
        self.status.as_ref()
    }
}

pub const API: &str = "devices.edge.cattle.io/v1alpha1";
pub const DUMMY: &str = "adaptors.edge.cattle.io/dummy";

pub fn fake(digest: &'static str) -> Arc<Fake> {
    Arc::new(Fake {
        name: DUMMY,
        digest,
        kinds: &["DummySpecialDevice"],
        gears: None,
        status: None,
        forced: false,
    })
}

/// A version declaring a schema that accepts only `gears`; `forced`: pushed with
/// `--force`.
pub fn strict(digest: &'static str, gears: &'static [&'static str], forced: bool) -> Arc<Fake> {
    Arc::new(Fake {
        name: DUMMY,
        digest,
        kinds: &["DummySpecialDevice"],
        gears: Some(gears),
        status: None,
        forced,
    })
}

/// A version declaring a status schema with only the fields `fields`.
pub fn reporting(digest: &'static str, fields: &[&str]) -> Arc<Fake> {
    let properties: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|f| ((*f).to_owned(), serde_json::json!({"type": "integer"})))
        .collect();
    Arc::new(Fake {
        name: DUMMY,
        digest,
        kinds: &["DummySpecialDevice"],
        gears: None,
        status: Some(serde_json::json!({"type": "object", "properties": properties})),
        forced: false,
    })
}

/// A link to the dummy adaptor; `pin`: its `spec.adaptor.digest`.
pub fn link(kind: &str, gear: &str, pin: Option<&str>, uid: &str) -> DeviceLink {
    let digest = pin
        .map(|p| format!(", digest: \"{p}\""))
        .unwrap_or_default();
    let yaml = format!(
        "apiVersion: edge.cattle.io/v1alpha1\nkind: DeviceLink\nmetadata: {{name: fan, uid: {uid}}}\nspec:\n  adaptor: {{node: n, name: {DUMMY}{digest}}}\n  model: {{apiVersion: {API}, kind: {kind}}}\n  template: {{spec: {{gear: {gear}}}}}\n"
    );
    crds::parse::device_links(&yaml).unwrap().remove(0)
}
