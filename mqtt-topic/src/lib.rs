//! Octopus's MQTT topic templates (`pkg/mqtt/topic.go`), as a pure function with no
//! dependencies: the limb's MQTT extension (native) and the MQTT adaptor (wasm) both
//! render topics with it, so one template names the same topic in either.
//!
//! A template is split on `/`; a segment `:namespace`, `:name` or `:uid` becomes the
//! DeviceLink's value, `:path` the message's path and `:operator` the operator for the
//! direction (the literal `null` counts as empty). A keyword with no value, an unknown
//! keyword, a bare `:` and an empty segment are dropped, and what is left is joined
//! with single slashes (`.` and `..` resolve as in a path).

/// The values a template can refer to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Values<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub path: Option<&'a str>,
    /// The operator for this direction (`operator.write` to publish, `.read` to subscribe).
    pub operator: Option<&'a str>,
}

/// Renders `template` with `values`.
pub fn render(template: &str, values: &Values<'_>) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for segment in template.split('/') {
        let value = match segment.strip_prefix(':') {
            None => segment,
            Some("namespace") => values.namespace,
            Some("name") => values.name,
            Some("uid") => values.uid,
            Some("path") => values.path.unwrap_or(""),
            Some("operator") => match values.operator {
                Some("null") | None => "",
                Some(op) => op,
            },
            Some(_) => "",
        };
        // A value may hold slashes of its own (a `:path` of `a/b`): its segments are
        // cleaned like the template's.
        for part in value.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                p => parts.push(p),
            }
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: Values<'static> = Values {
        namespace: "default",
        name: "case3",
        uid: "41478d1e-c3f8-46e3-a3b5-ba251f285277",
        path: None,
        operator: None,
    };

    #[test]
    fn templates_render_like_octopus() {
        let cases: &[(&str, Values<'_>, &str)] = &[
            // The example of the Octopus documentation.
            (
                "cattle.io/octopus/:operator/device/:namespace/:name",
                Values {
                    operator: Some("set"),
                    ..DEVICE
                },
                "cattle.io/octopus/set/device/default/case3",
            ),
            // No operator given: the keyword is dropped with its slash.
            (
                "cattle.io/octopus/:operator/device/:namespace/:name",
                DEVICE,
                "cattle.io/octopus/device/default/case3",
            ),
            // "null" renders empty.
            (
                "a/:operator/b",
                Values {
                    operator: Some("null"),
                    ..DEVICE
                },
                "a/b",
            ),
            (
                "devices/:uid",
                DEVICE,
                "devices/41478d1e-c3f8-46e3-a3b5-ba251f285277",
            ),
            // Repeated and leading/trailing slashes collapse.
            ("//a///:name//", DEVICE, "a/case3"),
            // A path with slashes of its own, and an empty path.
            (
                "home/:path/state",
                Values {
                    path: Some("kitchen/light"),
                    ..DEVICE
                },
                "home/kitchen/light/state",
            ),
            (
                "home/:path/state",
                Values {
                    path: Some(""),
                    ..DEVICE
                },
                "home/state",
            ),
            // Unknown keywords and a bare colon are dropped; a colon inside a segment is text.
            ("a/:unknown/:/b:c", DEVICE, "a/b:c"),
            // Empty identity values are dropped too.
            (
                ":namespace/:name",
                Values {
                    namespace: "",
                    ..DEVICE
                },
                "case3",
            ),
            // Wildcards and `$` are plain text to the renderer.
            ("x/:name/$will", DEVICE, "x/case3/$will"),
            ("a/./b/../c", DEVICE, "a/c"),
            ("", DEVICE, ""),
        ];
        for (template, values, want) in cases {
            assert_eq!(render(template, values), *want, "template {template:?}");
        }
    }
}
