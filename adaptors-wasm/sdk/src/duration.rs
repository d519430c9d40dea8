//! Go-style durations (`"500ms"`, `"15s"`, `"1m30s"`), the form Octopus specs use for
//! `parameters.syncInterval` and `parameters.timeout`.

/// Parses a Go `time.Duration` string into whole milliseconds, rounding up so that a
/// tiny positive duration never becomes 0. Negative durations are refused.
pub fn parse_ms(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err("negative durations are not allowed".to_owned());
    }
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let scale = unit_ns(unit)?;
        total_ns = total_ns
            .checked_add(number_ns(number, scale)?)
            .ok_or("duration out of range")?;
        rest = after;
    }
    u64::try_from(total_ns.div_ceil(1_000_000)).map_err(|_| "duration out of range".to_owned())
}

/// Nanoseconds per unit.
fn unit_ns(unit: &str) -> Result<u128, String> {
    Ok(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" => return Err("missing unit (use ns, us, ms, s, m or h)".to_owned()),
        other => {
            return Err(format!(
                "unknown unit {other:?} (use ns, us, ms, s, m or h)"
            ));
        }
    })
}

/// `number` (digits with an optional fraction) times `scale` nanoseconds.
fn number_ns(number: &str, scale: u128) -> Result<u128, String> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(format!("{number:?} is not a number"));
    }
    let whole: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| "number out of range".to_owned())?
    };
    let mut ns = whole.checked_mul(scale).ok_or("duration out of range")?;
    // Digits past the 18th cannot matter at nanosecond precision.
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let digits: u128 = frac.parse().map_err(|_| "bad fraction".to_owned())?;
        let denominator = 10u128.pow(u32::try_from(frac.len()).unwrap_or(18));
        ns += digits * scale / denominator;
    }
    Ok(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (text, ms) in [
            ("15s", 15_000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1.5s", 1_500),
            ("2h", 7_200_000),
            ("1h1m1s1ms", 3_661_001),
            ("10us", 1),
            ("1ns", 1),
            (".5s", 500),
            ("0", 0),
            ("0s", 0),
            ("+3s", 3_000),
            (" 10s ", 10_000),
        ] {
            assert_eq!(parse_ms(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("10", "missing unit"),
            ("10x", "unknown unit"),
            ("-1s", "negative"),
            ("s", "not a number"),
            ("1..2s", "not a number"),
            ("99999999999999999999999999999999999999999h", "range"),
        ] {
            let err = parse_ms(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
