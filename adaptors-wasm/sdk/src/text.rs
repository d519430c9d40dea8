//! Numbers written into status strings by hand. `core::fmt` goes through a formatter
//! and padding logic for each one, which in a guest polling thousands of times a second
//! cost more than reading the device.

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut String, n: u64) {
    push_padded(out, n, 1);
}

/// Appends `n` in decimal, zero-padded to at least `width` digits (at most 20).
pub fn push_padded(out: &mut String, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let stop = buf.len().saturating_sub(width);
    let mut start = buf.len();
    while n > 0 || start > stop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.push_str(std::str::from_utf8(&buf[start..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_display_writes() {
        for n in [0, 1, 9, 10, 65_535, u64::from(u32::MAX), u64::MAX] {
            let mut out = String::from(">");
            push_decimal(&mut out, n);
            assert_eq!(out, format!(">{n}"));
        }
    }

    #[test]
    fn pads_to_the_width_and_never_cuts() {
        let mut out = String::new();
        for (n, width) in [(7, 2), (2024, 4), (12_345, 4), (0, 3), (u64::MAX, 20)] {
            out.clear();
            push_padded(&mut out, n, width);
            assert_eq!(out, format!("{n:0width$}"));
        }
    }
}
