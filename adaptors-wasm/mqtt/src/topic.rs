//! Topic templates (Octopus `pkg/mqtt/topic.go`) and topic filter matching.
//!
//! A template's levels may be the keywords `:namespace`, `:name`, `:uid` (of the
//! DeviceLink), `:path` and `:operator`. A keyword is replaced by its value; a keyword
//! without a value (or the operator `null`) disappears, and so do empty levels, so
//! `a//:operator/b` with no operator renders `a/b`. A value holding `/` adds levels.

/// The values of the keywords.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keywords<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub path: Option<&'a str>,
    pub operator: Option<&'a str>,
}

/// Renders a template; `None` when nothing is left.
pub fn render(template: &str, keywords: &Keywords<'_>) -> Option<String> {
    let mut levels: Vec<&str> = Vec::new();
    for level in template.split('/') {
        let value = match level {
            ":namespace" => Some(keywords.namespace),
            ":name" => Some(keywords.name),
            ":uid" => Some(keywords.uid),
            ":path" => keywords.path,
            ":operator" => keywords.operator.filter(|o| *o != "null"),
            literal => Some(literal),
        };
        if let Some(value) = value {
            levels.extend(value.split('/').filter(|l| !l.is_empty()));
        }
    }
    (!levels.is_empty()).then(|| levels.join("/"))
}

/// Whether a topic filter is well formed: `#` only as the last level, wildcards only as
/// whole levels.
pub fn valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    let last = levels.len().saturating_sub(1);
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == last,
        "+" => true,
        other => !other.contains(['#', '+']),
    })
}

/// Whether a topic name (for publishing) has no wildcards.
pub fn valid_name(topic: &str) -> bool {
    !topic.contains(['#', '+'])
}

/// Whether `topic` matches `filter`. Topics starting with `$` are matched only by
/// filters that spell out their first level.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<'a>(path: Option<&'a str>, operator: Option<&'a str>) -> Keywords<'a> {
        Keywords {
            namespace: "default",
            name: "case3",
            uid: "u-1",
            path,
            operator,
        }
    }

    #[test]
    fn renders_octopus_examples() {
        assert_eq!(
            render(
                "cattle.io/octopus/:operator/device/:namespace/:name",
                &keys(None, Some("set"))
            )
            .as_deref(),
            Some("cattle.io/octopus/set/device/default/case3")
        );
        assert_eq!(
            render(
                "cattle.io/octopus/home/:operator/kitchen/light/:path",
                &keys(Some("parameter_power"), Some("status"))
            )
            .as_deref(),
            Some("cattle.io/octopus/home/status/kitchen/light/parameter_power")
        );
    }

    #[test]
    fn missing_keywords_and_empty_levels_collapse() {
        assert_eq!(
            render("a//:operator/b/:path//c/", &keys(None, None)).as_deref(),
            Some("a/b/c")
        );
        assert_eq!(
            render("a/:operator/b", &keys(None, Some("null"))).as_deref(),
            Some("a/b")
        );
        assert_eq!(
            render("/a/:uid", &keys(None, None)).as_deref(),
            Some("a/u-1")
        );
        assert_eq!(
            render("a/:path", &keys(Some("x/y"), None)).as_deref(),
            Some("a/x/y")
        );
        assert_eq!(
            render("a/:unknown", &keys(None, None)).as_deref(),
            Some("a/:unknown")
        );
        assert_eq!(render(":path", &keys(None, None)), None);
    }

    #[test]
    fn filters_match_like_a_broker() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/c"));
        assert!(matches("a/+/c", "a/x/c"));
        assert!(!matches("a/+", "a/x/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/x/y"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
    }

    #[test]
    fn validates_filters_and_names() {
        assert!(valid_filter("a/+/b/#"));
        assert!(!valid_filter("a/#/b"));
        assert!(!valid_filter("a/b+"));
        assert!(valid_name("a/b"));
        assert!(!valid_name("a/+"));
    }
}
