//! Lengths of time as operators and users type them: a whole number and one unit, `s`, `m`,
//! `h`, `d`, `w` or `y` (a year is 365 days), e.g. `90s`, `12h`, `90d`, `1y`.
//!
//! Invariant: one parser for the server's flags, the admin CLI and the client, so a duration
//! means the same everywhere; zero, fractions, signs and overflow are refused.

use std::time::Duration;

/// Parses `text` into a non-zero duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || format!("{text:?} is not a duration such as 90s, 30m, 12h, 90d, 2w or 1y");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        "y" => 365 * 86400,
        _ => return Err(bad()),
    };
    n.checked_mul(unit_secs)
        .filter(|s| *s > 0 && *s <= i64::MAX as u64)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// The shortest of those forms that states `d` exactly (whole seconds).
pub fn describe(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        _ if s.is_multiple_of(86400) => format!("{}d", s / 86400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_refusals() {
        assert_eq!(parse("90s").unwrap().as_secs(), 90);
        assert_eq!(parse("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse(" 12h ").unwrap().as_secs(), 12 * 3600);
        assert_eq!(parse("2w").unwrap().as_secs(), 14 * 86400);
        assert_eq!(parse("1y").unwrap().as_secs(), 365 * 86400);
        for bad in [
            "",
            "3",
            "y",
            "0d",
            "-1d",
            "+1d",
            "1.5d",
            "3 years",
            "1dd",
            "1D",
            "99999999999999999y",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        for s in [59, 60, 3600, 86400, 90061] {
            let d = Duration::from_secs(s);
            assert_eq!(parse(&describe(d)).unwrap(), d);
        }
        assert_eq!(describe(Duration::from_secs(7200)), "2h");
    }
}
