//! Bounds on what crosses the WIT boundary from a guest. Every string and list an
//! adaptor hands the host is checked against these before the host keeps, copies or
//! repeats it: over a bound is a refusal that says which bound, never a silent cut.
//!
//! The one copy made before the check (lifting the value out of guest memory) is
//! itself bounded by the instance's memory limit.

/// Longest adaptor name (`adaptors.edge.cattle.io/modbus`): a Kubernetes qualified name.
pub const MAX_NAME: usize = 253;
/// Longest adaptor version string.
pub const MAX_VERSION: usize = 128;
/// Most models one adaptor may serve.
pub const MAX_MODELS: usize = 64;
/// Longest `apiVersion` or `kind` of a model.
pub const MAX_MODEL_FIELD: usize = 253;
/// Most resource fields per model.
pub const MAX_RESOURCE_FIELDS: usize = 64;
/// Longest resource field path (`protocol.tcp.endpoint`).
pub const MAX_FIELD_PATH: usize = 256;
/// Longest event reason (a CamelCase word).
pub const MAX_EVENT_REASON: usize = 64;
/// Longest event message.
pub const MAX_EVENT_MESSAGE: usize = 1024;
/// Longest log message, in bytes (longer ones are cut and say so: logs are best-effort).
pub const MAX_LOG_MESSAGE: usize = 2048;
/// Largest snapshot an adaptor may hand over during a hot swap.
pub const MAX_SNAPSHOT: usize = 1 << 20;
/// Most bytes one `wasi:random` call may ask for.
pub const MAX_RANDOM_BYTES: u64 = 64 << 10;

/// A value over its bound: what, how big, and the bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {len} bytes long, over the limit of {max}")]
pub struct TooLong {
    pub what: String,
    pub len: usize,
    pub max: usize,
}

/// Refuses `value` if it is longer than `max` bytes.
pub fn check(what: impl Into<String>, value: &str, max: usize) -> Result<(), TooLong> {
    check_len(what, value.len(), max)
}

/// Refuses a length in bytes over `max`.
pub fn check_len(what: impl Into<String>, len: usize, max: usize) -> Result<(), TooLong> {
    if len > max {
        return Err(TooLong {
            what: what.into(),
            len,
            max,
        });
    }
    Ok(())
}

/// A list with more entries than its bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} has {len} entries, over the limit of {max}")]
pub struct TooMany {
    pub what: String,
    pub len: usize,
    pub max: usize,
}

/// Refuses a list of more than `max` entries.
pub fn check_count(what: impl Into<String>, len: usize, max: usize) -> Result<(), TooMany> {
    if len > max {
        return Err(TooMany {
            what: what.into(),
            len,
            max,
        });
    }
    Ok(())
}

/// Escapes control characters (newlines, escape sequences, carriage returns) in guest
/// text so it cannot forge lines or colours in the limb's output. Printable text,
/// including non-ASCII letters, passes unchanged.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}')
}

/// Cuts `s` to at most `max` bytes on a character boundary, saying how much was cut.
pub fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [truncated {} bytes]", &s[..end], s.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        assert_eq!(escape("plain text, été"), "plain text, été");
        assert_eq!(
            escape("ok\n2026-01-01T00:00:00Z  INFO limb: forged"),
            "ok\\n2026-01-01T00:00:00Z  INFO limb: forged"
        );
        assert_eq!(escape("\x1b[31mred\r"), "\\u{1b}[31mred\\r");
        assert_eq!(escape("\u{202e}evil"), "\\u{202e}evil");
    }

    #[test]
    fn over_a_bound_is_refused_with_the_numbers() {
        assert!(check("version", "1.0", MAX_VERSION).is_ok());
        let e = check("version", &"9".repeat(200), MAX_VERSION).unwrap_err();
        assert_eq!(
            e.to_string(),
            "version is 200 bytes long, over the limit of 128"
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(10);
        let t = truncate(&s, 5);
        assert!(t.starts_with("éé"));
        assert!(t.contains("truncated"));
        assert_eq!(truncate("short", 10), "short");
    }
}
