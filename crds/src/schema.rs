//! Schema helpers for fields whose shape the OpenAPI generator cannot know.

use schemars::Schema;

/// An object whose fields are the model's business (`template.spec`, parameters):
/// kept as written, validated elsewhere against the model's own CRD.
pub fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
