//! RFC 3339 UTC timestamps, the form of the sign-in challenge's `Issued At`
//! and `Expiration Time` (and of JavaScript's `toISOString`): unix seconds
//! to text and back, on Howard Hinnant's civil-calendar algorithms, with no
//! clock and no time-zone database.

use crate::challenge_error::{ChallengeError, quote};

/// The latest time RFC 3339 can write (four-digit year):
/// `9999-12-31T23:59:59Z`.
pub const MAX_RFC3339_UNIX_SECONDS: u64 = 253_402_300_799;

const SECONDS_PER_DAY: u64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`). `month` is 1..=12, `day` 1..=31.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Counting years from March puts the leap day at the end of the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400); // 0..=399
    let month = i64::from(month);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 }; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`), for days >= 0. Returns (year, month 1..=12, day 1..=31).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    // Shift the epoch to 0000-03-01 so eras (400 years) and years start on
    // March 1st and the leap day is the last day of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097; // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // 0..=399
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // 0..=365
    let shifted_month = (5 * day_of_year + 2) / 153; // 0..=11, March = 0
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32; // 1..=31
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap_year(year) => 29,
        _ => 28,
    }
}

/// Formats unix seconds as RFC 3339 UTC with whole seconds, e.g.
/// `2026-11-25T09:46:16Z` (the form EIP-4361 messages and JavaScript's
/// `toISOString` without milliseconds use).
///
/// Times after [`MAX_RFC3339_UNIX_SECONDS`] (year 9999) get a year with more
/// than four digits, which is not RFC 3339; [`parse_rfc3339_utc`] refuses it
/// and [`SignInChallenge::validate`](crate::SignInChallenge::validate) refuses such times.
pub fn format_rfc3339_utc(unix_seconds: u64) -> String {
    let (year, month, day) = civil_from_days(unix_seconds / SECONDS_PER_DAY);
    let second_of_day = unix_seconds % SECONDS_PER_DAY;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// Parses an RFC 3339 UTC timestamp into unix seconds.
///
/// Accepts `YYYY-MM-DDTHH:MM:SSZ` (what [`format_rfc3339_utc`] writes),
/// optionally with fractional seconds (`.123`, dropped: the result is the
/// whole second) and with `+00:00` instead of `Z`. `T` and `Z` may be lower
/// case, as RFC 3339 allows. Refused: other offsets, times before 1970,
/// leap seconds (`:60`, which unix time cannot represent), and impossible
/// dates such as `2023-02-29`.
pub fn parse_rfc3339_utc(s: &str) -> Result<u64, ChallengeError> {
    let fail = |reason: &'static str| ChallengeError::InvalidTimestamp {
        value: quote(s),
        reason,
    };
    const SHAPE: &str = "expected YYYY-MM-DDTHH:MM:SSZ";
    let bytes = s.as_bytes();
    if bytes.len() < 20 {
        return Err(fail(SHAPE));
    }
    let separators_ok = bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
        && bytes[13] == b':'
        && bytes[16] == b':';
    if !separators_ok {
        return Err(fail(SHAPE));
    }
    let number = |range: std::ops::Range<usize>| -> Result<u32, ChallengeError> {
        let digits = &bytes[range];
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(fail(SHAPE));
        }
        Ok(digits
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0')))
    };
    let year = i64::from(number(0..4)?);
    let month = number(5..7)?;
    let day = number(8..10)?;
    let hour = number(11..13)?;
    let minute = number(14..16)?;
    let second = number(17..19)?;

    // Everything after the seconds: an optional fraction, then the offset.
    // Slicing at 19 is safe: bytes 0..19 were all checked to be ASCII.
    let mut rest = &s[19..];
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(fail("a `.` must be followed by fractional-second digits"));
        }
        rest = &after_dot[digits..];
    }
    if !matches!(rest, "Z" | "z" | "+00:00") {
        return Err(fail("must end in `Z` or `+00:00` (only UTC is accepted)"));
    }

    if !(1..=12).contains(&month) {
        return Err(fail("month must be 01 to 12"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(fail("no such day in that month"));
    }
    if hour > 23 {
        return Err(fail("hour must be 00 to 23"));
    }
    if minute > 59 {
        return Err(fail("minute must be 00 to 59"));
    }
    if second > 59 {
        return Err(fail(
            "second must be 00 to 59 (leap seconds are not supported)",
        ));
    }
    let days = days_from_civil(year, month, day);
    let days = u64::try_from(days).map_err(|_| fail("times before 1970 are not supported"))?;
    Ok(
        days * SECONDS_PER_DAY
            + u64::from(hour) * 3600
            + u64::from(minute) * 60
            + u64::from(second),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_algorithms_agree_with_counting_days() {
        // Walk every day from 1970 to 2400 and check both directions against
        // a naive calendar: covers all month lengths and the 2000 / 2100 /
        // 2400 century rules.
        let (mut year, mut month, mut day) = (1970i64, 1u32, 1u32);
        for days in 0..(430 * 366) {
            assert_eq!(days_from_civil(year, month, day), days as i64);
            assert_eq!(civil_from_days(days), (year as u64, month, day));
            day += 1;
            if day > days_in_month(year, month) {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
        }
    }

    #[test]
    fn format_does_not_overflow_at_the_extremes() {
        let text = format_rfc3339_utc(u64::MAX);
        assert!(text.ends_with('Z'), "{text}");
        assert!(parse_rfc3339_utc(&text).is_err());
        assert_eq!(
            format_rfc3339_utc(MAX_RFC3339_UNIX_SECONDS),
            "9999-12-31T23:59:59Z"
        );
    }
}
