//! Small formatting helpers shared by the commands' text output; they know numbers and
//! digests, never a command's report.

/// A byte count for people: `812 B`, `184.5 KiB`, `2.1 MiB`.
pub fn bytes(n: usize) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f < KIB {
        format!("{n} B")
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else {
        format!("{:.1} MiB", f / (KIB * KIB))
    }
}

/// `part / whole` as a whole percentage, for compression ratios.
pub fn percent(part: usize, whole: usize) -> usize {
    (part.saturating_mul(100) + whole / 2)
        .checked_div(whole)
        .unwrap_or(100)
}

/// `1 link`, `2 links`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The start of a `sha256:<hex>` digest as people read it: `sha256:` and 12 hex digits.
pub fn short_digest(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}", hex.get(..12).unwrap_or(hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ratios_read_well() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(188_893), "184.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(percent(37, 100), 37);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(0, 0), 100);
        assert_eq!(plural(1, "link", "links"), "1 link");
        assert_eq!(plural(0, "link", "links"), "0 links");
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "sha256:abababababab"
        );
        assert_eq!(short_digest("sha256:abc"), "sha256:abc");
    }
}
