//! Go's `time.ParseDuration` syntax, which Consul uses for `?wait=` (`10s`, `1m30s`, `500ms`).

use std::time::Duration;

/// Nanoseconds per unit, longest suffix first so `ms` wins over `m`.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Parses a Go duration string. Negative durations come back as zero: Consul
/// treats every non-positive wait the same way (it uses the default).
pub(crate) fn parse(text: &str) -> Option<Duration> {
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // Go accepts a bare "0" without a unit and nothing else unit-less.
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (nanos, tail) = parse_segment(rest)?;
        total = total.checked_add(nanos)?;
        rest = tail;
    }
    if negative {
        return Some(Duration::ZERO);
    }
    let nanos = u64::try_from(total).ok()?;
    Some(Duration::from_nanos(nanos))
}

/// Parses one `<number>[.<fraction>]<unit>` group and returns its length in
/// nanoseconds with the unparsed tail.
fn parse_segment(text: &str) -> Option<(u128, &str)> {
    let int_len = text.bytes().take_while(u8::is_ascii_digit).count();
    let (int_digits, rest) = text.split_at(int_len);
    let (frac_digits, rest) = match rest.strip_prefix('.') {
        Some(after_dot) => {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            after_dot.split_at(frac_len)
        }
        None => ("", rest),
    };
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let (unit_nanos, rest) =
        UNITS.iter().find_map(|(suffix, nanos)| rest.strip_prefix(suffix).map(|tail| (*nanos, tail)))?;
    let whole = if int_digits.is_empty() { 0 } else { int_digits.parse::<u128>().ok()? };
    let mut nanos = whole.checked_mul(unit_nanos)?;
    // Fractions are scaled digit by digit so "1.5s" stays exact.
    let mut scale = unit_nanos;
    for digit in frac_digits.bytes().take(18) {
        scale /= 10;
        nanos = nanos.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some((nanos, rest))
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("250us"), Some(Duration::from_micros(250)));
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse("-3s"), Some(Duration::ZERO));
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in ["", "10", "s", "1x", "1.s5", "abc", "-", "1m 2s"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
