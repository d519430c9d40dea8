//! RFC 3339 timestamps for `updatedAt`, from the host's wall clock (the guest has no
//! time zone data and needs none: everything is UTC).

use crate::text::push_padded;

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(epoch_ms: u64) -> String {
    let mut out = String::with_capacity(LEN);
    write_rfc3339(&mut out, epoch_ms);
    out
}

/// Length of a timestamp from [`rfc3339`] for years up to 9999.
const LEN: usize = 20;

/// Appends the [`rfc3339`] form of `epoch_ms` to `out`, without `format!`, which cost
/// more than the rest of a Modbus poll in the guest.
pub fn write_rfc3339(out: &mut String, epoch_ms: u64) {
    let secs = epoch_ms / 1_000;
    let (year, month, day) = civil_date(secs / 86_400);
    let of_day = secs % 86_400;
    // Years past 9999 only come from a broken clock; they still get all their digits.
    push_padded(out, year, 4);
    for (separator, n) in [
        ('-', month),
        ('-', day),
        ('T', of_day / 3_600),
        (':', of_day / 60 % 60),
        (':', of_day % 60),
    ] {
        out.push(separator);
        push_padded(out, n, 2);
    }
    out.push('Z');
}

/// The proleptic Gregorian date of a day count since 1970-01-01, computed over
/// 400-year eras (146 097 days each) starting on March 1st so leap days come last.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_714_557_600_999), "2024-05-01T10:00:00Z");
        assert_eq!(rfc3339(951_868_799_000), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(951_868_800_000), "2000-03-01T00:00:00Z");
        assert_eq!(rfc3339(4_102_444_800_000), "2100-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799_000), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800_000), "10000-01-01T00:00:00Z");
        assert!(rfc3339(u64::MAX).ends_with('Z'));
    }

    #[test]
    fn appends_to_what_is_there() {
        let mut out = String::from("at ");
        write_rfc3339(&mut out, 1_714_557_600_999);
        assert_eq!(out, "at 2024-05-01T10:00:00Z");
    }
}
