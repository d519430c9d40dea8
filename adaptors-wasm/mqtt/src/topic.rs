//! Topic filters: checking them and matching topics against them. Templates are
//! rendered by the `mqtt-topic` crate, which the limb's MQTT extension shares.

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
