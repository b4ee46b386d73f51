//! Durations in the formats clients read from a 429 or from OpenAI's rate-limit headers.

/// A duration in OpenAI's `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` format, which
/// is Go's `time.Duration` string at millisecond precision: `"20ms"`, `"1s"`, `"8.64s"`, `"6m0s"`,
/// `"1h2m3s"`, and `"0s"` for zero.
pub fn format_reset(ms: u64) -> String {
    let mut out = String::with_capacity(12);
    push_reset(&mut out, ms);
    out
}

/// [`format_reset`] appended to `out` (written by hand: this runs on every limited response).
pub fn push_reset(out: &mut String, ms: u64) {
    if ms == 0 {
        out.push_str("0s");
        return;
    }
    if ms < 1_000 {
        push_decimal(out, ms);
        out.push_str("ms");
        return;
    }
    let hours = ms / 3_600_000;
    let minutes = ms / 60_000 % 60;
    let seconds = ms / 1_000 % 60;
    let millis = ms % 1_000;
    if hours > 0 {
        push_decimal(out, hours);
        out.push('h');
    }
    if hours > 0 || minutes > 0 {
        push_decimal(out, minutes);
        out.push('m');
    }
    push_decimal(out, seconds);
    if millis > 0 {
        // Three digits, trailing zeros dropped: 50 → ".05", 500 → ".5".
        let digits = [millis / 100, millis / 10 % 10, millis % 10];
        let len = if millis.is_multiple_of(100) {
            1
        } else if millis.is_multiple_of(10) {
            2
        } else {
            3
        };
        out.push('.');
        for d in digits.iter().take(len) {
            out.push(digit(*d));
        }
    }
    out.push('s');
}

/// `n` in decimal, appended to `out`: what `n.to_string()` gives, without the formatting
/// machinery (header values are written on every limited request).
pub fn push_decimal(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `n` in decimal (see [`push_decimal`]).
pub fn decimal(n: u64) -> String {
    let mut out = String::with_capacity(20);
    push_decimal(&mut out, n);
    out
}

fn digit(d: u64) -> char {
    char::from(b'0' + (d % 10) as u8)
}

/// `Retry-After` in whole seconds: rounded up, at least 1 (a client told 0 would retry at once).
pub fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1_000).max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn openai_examples() {
        assert_eq!(format_reset(1_000), "1s");
        assert_eq!(format_reset(360_000), "6m0s");
        assert_eq!(format_reset(20), "20ms");
        assert_eq!(format_reset(3_723_000), "1h2m3s");
        assert_eq!(format_reset(8_640), "8.64s");
    }

    #[test]
    fn edges() {
        assert_eq!(format_reset(0), "0s");
        assert_eq!(format_reset(1), "1ms");
        assert_eq!(format_reset(999), "999ms");
        assert_eq!(format_reset(1_001), "1.001s");
        assert_eq!(format_reset(1_500), "1.5s");
        assert_eq!(format_reset(59_999), "59.999s");
        assert_eq!(format_reset(60_000), "1m0s");
        assert_eq!(format_reset(61_050), "1m1.05s");
        assert_eq!(format_reset(3_600_000), "1h0m0s");
        assert_eq!(format_reset(90_000_000), "25h0m0s");
        assert_eq!(format_reset(u64::MAX), "5124095576030h25m51.615s");
    }

    #[test]
    fn retry_after_rounds_up_to_at_least_one_second() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1), 1);
        assert_eq!(retry_after_secs(1_000), 1);
        assert_eq!(retry_after_secs(1_001), 2);
        assert_eq!(retry_after_secs(59_500), 60);
        assert_eq!(retry_after_secs(u64::MAX), u64::MAX / 1_000 + 1);
    }

    /// Parses the format back, to check it is unambiguous.
    fn parse_go_duration(s: &str) -> u64 {
        if let Some(ms) = s.strip_suffix("ms") {
            return ms.parse().unwrap();
        }
        let mut total = 0u64;
        let mut rest = s;
        for (suffix, scale) in [("h", 3_600_000u64), ("m", 60_000)] {
            if let Some((n, tail)) = rest.split_once(suffix) {
                total += n.parse::<u64>().unwrap() * scale;
                rest = tail;
            }
        }
        let secs = rest.strip_suffix('s').unwrap();
        let (whole, frac) = secs.split_once('.').unwrap_or((secs, ""));
        total += whole.parse::<u64>().unwrap() * 1_000;
        if !frac.is_empty() {
            total += format!("{frac:0<3}").parse::<u64>().unwrap();
        }
        total
    }

    #[test]
    fn decimals_match_to_string() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            12_345,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(decimal(n), n.to_string());
        }
    }

    /// The previous, `format!`-based writer: the hand-written one must agree with it everywhere.
    fn format_reset_fmt(ms: u64) -> String {
        if ms == 0 {
            return "0s".to_string();
        }
        if ms < 1_000 {
            return format!("{ms}ms");
        }
        let hours = ms / 3_600_000;
        let minutes = ms / 60_000 % 60;
        let seconds = ms / 1_000 % 60;
        let millis = ms % 1_000;
        let mut out = String::new();
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&seconds.to_string());
        if millis > 0 {
            let fraction = format!("{millis:03}");
            out.push('.');
            out.push_str(fraction.trim_end_matches('0'));
        }
        out.push('s');
        out
    }

    proptest! {
        #[test]
        fn decimal_is_to_string(n in any::<u64>()) {
            prop_assert_eq!(decimal(n), n.to_string());
        }

        #[test]
        fn format_reset_matches_the_fmt_version(ms in any::<u64>()) {
            prop_assert_eq!(format_reset(ms), format_reset_fmt(ms));
        }

        #[test]
        fn format_reset_round_trips(ms in 0u64..1_000_000_000_000) {
            prop_assert_eq!(parse_go_duration(&format_reset(ms)), ms);
        }

        #[test]
        fn retry_after_covers_the_wait(ms in any::<u64>()) {
            let secs = retry_after_secs(ms);
            prop_assert!(u128::from(secs) * 1_000 >= u128::from(ms));
            prop_assert!(secs >= 1);
        }
    }
}
