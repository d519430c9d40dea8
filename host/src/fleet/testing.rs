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
}

pub const API: &str = "devices.edge.cattle.io/v1alpha1";
pub const DUMMY: &str = "adaptors.edge.cattle.io/dummy";

pub fn fake(digest: &'static str) -> Arc<Fake> {
    Arc::new(Fake {
        name: DUMMY,
        digest,
        kinds: &["DummySpecialDevice"],
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
