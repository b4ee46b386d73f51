//! The limit-string grammar of OpenAI-Forward (the python `limits` library).
//!
//! ```text
//! limit  := "inf…"                               (anything starting with `inf`: no limit)
//!         | rate ( (";" | "," | "|") rate )*      (every rate must hold)
//! rate   := count ("/" | "per") [n] unit
//! unit   := second | minute | hour | day | month | year   (optional plural `s`, any case)
//! ```
//!
//! Whitespace is allowed around every token (`"10 per second"`, `"5 / 1 minute"`), none is needed
//! (`"100/2minutes"`). Examples: `"100/2minutes"`, `"60/minute;600/hour"`, `"1/10seconds"`.
//!
//! Units, exactly as `limits` defines them: a **month is 30 days and a year is 360 days**
//! (`limits` uses `12 × 30` days, not 365), so a limit copied from an OpenAI-Forward config means
//! the same thing here.
//!
//! Decisions where `limits` is silent or odd:
//! - A count of `0` is allowed and blocks everything (`"0/minute"`): a way to switch a route off
//!   for a level without removing it.
//! - A multiplier of `0` (`"5/0minutes"`) is an error. (`limits` silently reads it as 1.)
//! - An empty part (`"60/minute;"`, `"60/minute;;600/hour"`) is an error, as in `limits`.
//! - `|` separates rates too, as in `limits`.
//! - Extension: `millisecond(s)` is accepted as a unit, so every [`Rate`] has a string form and
//!   [`LimitSpec`] round-trips through serde for any period.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;
/// A month is 30 days, as in `limits`.
pub const MONTH_MS: u64 = 30 * DAY_MS;
/// A year is 12 × 30 = 360 days, as in `limits` (not 365).
pub const YEAR_MS: u64 = 12 * MONTH_MS;

/// Units from the largest down: the display picks the first one that divides the period.
const UNITS: [(&str, u64); 7] = [
    ("year", YEAR_MS),
    ("month", MONTH_MS),
    ("day", DAY_MS),
    ("hour", HOUR_MS),
    ("minute", MINUTE_MS),
    ("second", SECOND_MS),
    ("millisecond", 1),
];

const UNIT_HINT: &str = "use second, minute, hour, day, month or year";

/// `amount` units per `period_ms` milliseconds.
///
/// Displays in the phrasing of OpenAI-Forward's 429 message: `"60 per 1 minute"`,
/// `"100 per 2 minute"` (the largest unit that divides the period).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    pub amount: u64,
    pub period_ms: u64,
}

impl Rate {
    /// Minimum spacing between two units for output pacing (OpenAI-Forward's token rate limit:
    /// `period / amount`), rounded **up** to whole milliseconds so pacing is never faster than the
    /// rate. `None` when `amount` is 0 (nothing may be sent).
    pub fn interval_ms(&self) -> Option<u64> {
        if self.amount == 0 {
            return None;
        }
        Some(self.period_ms.div_ceil(self.amount))
    }

    /// The period as (multiplier, unit name) with the largest unit that divides it.
    fn period_parts(&self) -> (u64, &'static str) {
        for (name, ms) in UNITS {
            if self.period_ms >= ms && self.period_ms.checked_rem(ms) == Some(0) {
                return (self.period_ms / ms, name);
            }
        }
        // Only a period of 0 ms gets here (not produced by the parser).
        (self.period_ms, "millisecond")
    }

    /// The compact form used in config files: `"60/minute"`, `"100/2minutes"`.
    fn compact(&self) -> String {
        match self.period_parts() {
            (1, unit) => format!("{}/{unit}", self.amount),
            (n, unit) => format!("{}/{n}{unit}s", self.amount),
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = self.period_parts();
        write!(f, "{} per {n} {unit}", self.amount)
    }
}

/// A parsed limit string: no limit, or rates that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitSpec {
    Unlimited,
    /// Never empty when produced by [`parse_limit`].
    Rates(Vec<Rate>),
}

impl LimitSpec {
    /// The rates to enforce; empty for [`LimitSpec::Unlimited`].
    pub fn rates(&self) -> &[Rate] {
        match self {
            LimitSpec::Unlimited => &[],
            LimitSpec::Rates(rates) => rates,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rates().is_empty()
    }
}

/// The canonical string form, which [`parse_limit`] reads back: `"inf"` or `"60/minute;600/hour"`.
impl fmt::Display for LimitSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitSpec::Unlimited => f.write_str("inf"),
            LimitSpec::Rates(rates) if rates.is_empty() => f.write_str("inf"),
            LimitSpec::Rates(rates) => {
                let parts: Vec<String> = rates.iter().map(Rate::compact).collect();
                f.write_str(&parts.join(";"))
            }
        }
    }
}

impl FromStr for LimitSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_limit(s)
    }
}

impl Serialize for LimitSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LimitSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        parse_limit(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses a limit string (see the module docs for the grammar).
///
/// Errors name the offending part: "`60/minit`: unknown unit `minit` (use second, minute, hour,
/// day, month or year)".
pub fn parse_limit(s: &str) -> Result<LimitSpec, String> {
    let whole = s.trim();
    if whole.is_empty() {
        return Err("empty limit string (use `inf` for no limit, or e.g. `60/minute`)".to_string());
    }
    if whole
        .get(..3)
        .is_some_and(|p| p.eq_ignore_ascii_case("inf"))
    {
        return Ok(LimitSpec::Unlimited);
    }
    let mut rates = Vec::new();
    for part in whole.split([';', ',', '|']) {
        if part.trim().is_empty() {
            return Err(format!(
                "`{whole}`: empty limit between separators (join rates like `60/minute;600/hour`)"
            ));
        }
        rates.push(parse_rate(part)?);
    }
    Ok(LimitSpec::Rates(rates))
}

/// One `count (/|per) [n] unit`.
fn parse_rate(part: &str) -> Result<Rate, String> {
    let part = part.trim();
    let bad = |problem: String| format!("`{part}`: {problem}");

    let (count, rest) = split_digits(part);
    if count.is_empty() {
        return Err(bad(
            "expected a count (a whole number) first, as in `60/minute`".into(),
        ));
    }
    let amount: u64 = count
        .parse()
        .map_err(|_| bad(format!("count `{count}` is too large")))?;

    let rest = rest.trim_start();
    let rest = if let Some(r) = rest.strip_prefix('/') {
        r
    } else if let Some(r) = strip_prefix_ignore_case(rest, "per") {
        r
    } else if rest.starts_with('.') {
        return Err(bad(format!(
            "the count must be a whole number, found `{count}{rest}`"
        )));
    } else if rest.is_empty() {
        return Err(bad(
            "missing period: expected `/` or `per` and a unit after the count".into(),
        ));
    } else {
        return Err(bad(format!(
            "expected `/` or `per` after the count, found `{rest}`"
        )));
    };

    let (multiplier, rest) = split_digits(rest.trim_start());
    let multiplier: u64 = if multiplier.is_empty() {
        1
    } else {
        multiplier
            .parse()
            .map_err(|_| bad(format!("period multiplier `{multiplier}` is too large")))?
    };
    if multiplier == 0 {
        return Err(bad("the period multiplier must be at least 1".into()));
    }

    let rest = rest.trim_start();
    let word_len = rest
        .find(|c: char| !c.is_alphabetic())
        .unwrap_or(rest.len());
    let (word, trailing) = rest.split_at_checked(word_len).unwrap_or((rest, ""));
    if word.is_empty() {
        return Err(if rest.is_empty() {
            bad(format!("missing unit ({UNIT_HINT})"))
        } else {
            bad(format!("expected a unit, found `{rest}` ({UNIT_HINT})"))
        });
    }
    let unit_ms =
        unit_ms(word).ok_or_else(|| bad(format!("unknown unit `{word}` ({UNIT_HINT})")))?;
    let trailing = trailing.trim();
    if !trailing.is_empty() {
        return Err(bad(format!(
            "unexpected `{trailing}` after the unit (separate rates with `;` or `,`)"
        )));
    }
    let period_ms = multiplier
        .checked_mul(unit_ms)
        .ok_or_else(|| bad("the period is too long".into()))?;
    Ok(Rate { amount, period_ms })
}

/// Milliseconds of a unit word, singular or plural, any case.
fn unit_ms(word: &str) -> Option<u64> {
    let lower = word.to_ascii_lowercase();
    let singular = lower.strip_suffix('s');
    UNITS
        .iter()
        .find(|(name, _)| *name == lower || Some(*name) == singular)
        .map(|(_, ms)| *ms)
}

/// Leading ASCII digits and the rest.
fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at_checked(end).unwrap_or((s, ""))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rate(amount: u64, period_ms: u64) -> Rate {
        Rate { amount, period_ms }
    }

    fn rates(s: &str) -> Vec<Rate> {
        match parse_limit(s) {
            Ok(LimitSpec::Rates(r)) => r,
            other => panic!("{s:?} parsed to {other:?}"),
        }
    }

    fn err(s: &str) -> String {
        match parse_limit(s) {
            Err(e) => e,
            Ok(spec) => panic!("{s:?} parsed to {spec:?}, expected an error"),
        }
    }

    #[test]
    fn reference_examples() {
        assert_eq!(rates("100/2minutes"), vec![rate(100, 2 * MINUTE_MS)]);
        assert_eq!(
            rates("60/minute;600/hour"),
            vec![rate(60, MINUTE_MS), rate(600, HOUR_MS)]
        );
        assert_eq!(rates("1/10seconds"), vec![rate(1, 10 * SECOND_MS)]);
        assert_eq!(rates("10 per second"), vec![rate(10, SECOND_MS)]);
        assert_eq!(rates("5/1 minute"), vec![rate(5, MINUTE_MS)]);
        assert_eq!(rates("2/second"), vec![rate(2, SECOND_MS)]);
        assert_eq!(rates("200/minute"), vec![rate(200, MINUTE_MS)]);
    }

    #[test]
    fn every_unit_singular_and_plural() {
        for (word, ms) in [
            ("second", SECOND_MS),
            ("minute", MINUTE_MS),
            ("hour", HOUR_MS),
            ("day", DAY_MS),
            ("month", 30 * DAY_MS),
            ("year", 360 * DAY_MS),
            ("millisecond", 1),
        ] {
            assert_eq!(rates(&format!("3/{word}")), vec![rate(3, ms)], "{word}");
            assert_eq!(rates(&format!("3/{word}s")), vec![rate(3, ms)], "{word}s");
            assert_eq!(
                rates(&format!("3/7{word}s")),
                vec![rate(3, 7 * ms)],
                "7{word}s"
            );
        }
    }

    #[test]
    fn case_and_whitespace() {
        for s in [
            "1/SECOND",
            "1 / Second",
            "1 PER second",
            "1per second",
            "1 persecond",
            "  1/second  ",
            "\t1 per 1 Seconds\n",
            "1/1second",
        ] {
            assert_eq!(rates(s), vec![rate(1, SECOND_MS)], "{s:?}");
        }
    }

    #[test]
    fn separators() {
        let want = vec![rate(60, MINUTE_MS), rate(600, HOUR_MS), rate(1000, DAY_MS)];
        for s in [
            "60/minute;600/hour;1000/day",
            "60/minute,600/hour,1000/day",
            "60/minute|600/hour|1000/day",
            "60 per minute ; 600 per hour , 1000 per day",
        ] {
            assert_eq!(rates(s), want, "{s:?}");
        }
    }

    #[test]
    fn inf_means_unlimited() {
        for s in ["inf", "INF", " inf ", "infinite", "Infinity", "inf/minute"] {
            assert_eq!(parse_limit(s), Ok(LimitSpec::Unlimited), "{s:?}");
        }
        assert!(LimitSpec::Unlimited.is_unlimited());
        assert!(LimitSpec::Unlimited.rates().is_empty());
    }

    #[test]
    fn zero_count_blocks_everything_and_is_allowed() {
        assert_eq!(rates("0/minute"), vec![rate(0, MINUTE_MS)]);
    }

    #[test]
    fn errors_name_the_bad_part() {
        assert_eq!(
            err("60/minit"),
            "`60/minit`: unknown unit `minit` (use second, minute, hour, day, month or year)"
        );
        assert_eq!(
            err("60/minute;10/fortnight"),
            "`10/fortnight`: unknown unit `fortnight` (use second, minute, hour, day, month or year)"
        );
        assert_eq!(
            err(""),
            "empty limit string (use `inf` for no limit, or e.g. `60/minute`)"
        );
        assert_eq!(
            err("   "),
            "empty limit string (use `inf` for no limit, or e.g. `60/minute`)"
        );
        assert_eq!(
            err("60/minute;"),
            "`60/minute;`: empty limit between separators (join rates like `60/minute;600/hour`)"
        );
        assert_eq!(
            err("60/minute;;600/hour"),
            "`60/minute;;600/hour`: empty limit between separators (join rates like `60/minute;600/hour`)"
        );
        assert_eq!(
            err("/minute"),
            "`/minute`: expected a count (a whole number) first, as in `60/minute`"
        );
        assert_eq!(
            err("-5/minute"),
            "`-5/minute`: expected a count (a whole number) first, as in `60/minute`"
        );
        assert_eq!(
            err("1.5/minute"),
            "`1.5/minute`: the count must be a whole number, found `1.5/minute`"
        );
        assert_eq!(
            err("60"),
            "`60`: missing period: expected `/` or `per` and a unit after the count"
        );
        assert_eq!(
            err("60 minute"),
            "`60 minute`: expected `/` or `per` after the count, found `minute`"
        );
        assert_eq!(
            err("60/"),
            "`60/`: missing unit (use second, minute, hour, day, month or year)"
        );
        assert_eq!(
            err("60/5"),
            "`60/5`: missing unit (use second, minute, hour, day, month or year)"
        );
        assert_eq!(
            err("60/-5minutes"),
            "`60/-5minutes`: expected a unit, found `-5minutes` (use second, minute, hour, day, month or year)"
        );
        assert_eq!(
            err("60/0minutes"),
            "`60/0minutes`: the period multiplier must be at least 1"
        );
        assert_eq!(
            err("60/minute 600/hour"),
            "`60/minute 600/hour`: unexpected `600/hour` after the unit (separate rates with `;` or `,`)"
        );
        assert_eq!(
            err("60/minutes!"),
            "`60/minutes!`: unexpected `!` after the unit (separate rates with `;` or `,`)"
        );
        assert_eq!(
            err("99999999999999999999/minute"),
            "`99999999999999999999/minute`: count `99999999999999999999` is too large"
        );
        assert_eq!(
            err("1/99999999999999999999minute"),
            "`1/99999999999999999999minute`: period multiplier `99999999999999999999` is too large"
        );
        assert_eq!(
            err("1/999999999999999years"),
            "`1/999999999999999years`: the period is too long"
        );
        assert_eq!(
            err("60/secondss"),
            "`60/secondss`: unknown unit `secondss` (use second, minute, hour, day, month or year)"
        );
        assert_eq!(
            err("60/mïnute"),
            "`60/mïnute`: unknown unit `mïnute` (use second, minute, hour, day, month or year)"
        );
    }

    #[test]
    fn display_uses_the_reference_phrasing() {
        assert_eq!(rate(5, MINUTE_MS).to_string(), "5 per 1 minute");
        assert_eq!(rate(100, 2 * MINUTE_MS).to_string(), "100 per 2 minute");
        assert_eq!(rate(1, 10 * SECOND_MS).to_string(), "1 per 10 second");
        assert_eq!(rate(600, HOUR_MS).to_string(), "600 per 1 hour");
        assert_eq!(rate(7, 48 * HOUR_MS).to_string(), "7 per 2 day");
        assert_eq!(rate(7, 30 * DAY_MS).to_string(), "7 per 1 month");
        assert_eq!(rate(7, 360 * DAY_MS).to_string(), "7 per 1 year");
        assert_eq!(rate(7, 1500).to_string(), "7 per 1500 millisecond");
        assert_eq!(rate(7, 0).to_string(), "7 per 0 millisecond");
    }

    #[test]
    fn interval_for_pacing() {
        assert_eq!(rate(20, SECOND_MS).interval_ms(), Some(50));
        assert_eq!(rate(100, SECOND_MS).interval_ms(), Some(10));
        // 1/60 s rounds up to 17 ms: never faster than 60 per second.
        assert_eq!(rate(60, SECOND_MS).interval_ms(), Some(17));
        assert_eq!(rate(1, 10 * SECOND_MS).interval_ms(), Some(10_000));
        assert_eq!(rate(0, SECOND_MS).interval_ms(), None);
    }

    #[test]
    fn canonical_string_and_serde() {
        let spec = parse_limit("60 per minute , 600/1 hours;100/2minutes").unwrap();
        assert_eq!(spec.to_string(), "60/minute;600/hour;100/2minutes");
        assert_eq!(LimitSpec::Unlimited.to_string(), "inf");

        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(json, r#""60/minute;600/hour;100/2minutes""#);
        let back: LimitSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);

        let inf: LimitSpec = serde_json::from_str(r#""inf""#).unwrap();
        assert_eq!(inf, LimitSpec::Unlimited);
        assert_eq!(serde_json::to_string(&inf).unwrap(), r#""inf""#);

        let bad = serde_json::from_str::<LimitSpec>(r#""60/minit""#)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("`60/minit`: unknown unit `minit`"), "{bad}");
        assert!(serde_json::from_str::<LimitSpec>("60").is_err());
        assert_eq!(
            "60/minute".parse::<LimitSpec>(),
            Ok(LimitSpec::Rates(vec![rate(60, MINUTE_MS)]))
        );
    }

    fn any_rate() -> impl Strategy<Value = Rate> {
        (0u64..1_000_000, 1u64..10_000, 0usize..UNITS.len()).prop_map(|(amount, n, unit)| Rate {
            amount,
            period_ms: n * UNITS.get(unit).map_or(1, |u| u.1),
        })
    }

    proptest! {
        #[test]
        fn display_round_trips(rs in proptest::collection::vec(any_rate(), 1..5)) {
            let spec = LimitSpec::Rates(rs);
            prop_assert_eq!(parse_limit(&spec.to_string()), Ok(spec.clone()));
            let json = serde_json::to_string(&spec).unwrap();
            prop_assert_eq!(serde_json::from_str::<LimitSpec>(&json).unwrap(), spec);
        }

        #[test]
        fn reference_phrasing_parses_back(r in any_rate()) {
            // "60 per 1 minute" is itself valid input.
            prop_assert_eq!(parse_limit(&r.to_string()), Ok(LimitSpec::Rates(vec![r])));
        }

        #[test]
        fn arbitrary_input_never_panics(s in "\\PC{0,40}") {
            let _ = parse_limit(&s);
        }

        #[test]
        fn grammar_like_input_never_panics(s in "[0-9 /perPERinfs;,|a-z]{0,30}") {
            if let Ok(LimitSpec::Rates(rs)) = parse_limit(&s) {
                prop_assert!(!rs.is_empty());
                prop_assert!(rs.iter().all(|r| r.period_ms >= 1));
            }
        }
    }
}
