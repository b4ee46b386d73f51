//! A `RateLimitRequest` → the checks to run: validation, the window of each descriptor, its kind
//! (request limit or token quota), its addend and its Redis key. Pure: no I/O, no clock.

use super::config::RlsConfig;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;

/// Bounds on what one request may ask (Envoy's real requests are far below them).
pub const MAX_DESCRIPTORS: usize = 64;
pub const MAX_ENTRIES: usize = 16;
pub const MAX_KEY_BYTES: usize = 2048;
/// Longest window: a year (envoyproxy/ratelimit's largest unit).
pub const MAX_WINDOW_MS: u64 = 366 * 24 * 3600 * 1000;
/// Largest addend: far beyond any token count, small enough for Lua's doubles to stay exact.
pub const MAX_ADDEND: u64 = 1 << 48;

/// Prefix of every counter key in Redis.
pub const KEY_PREFIX: &str = "llm-forward:rl:";

/// How a descriptor counts (fleet-contract.md "Built-in RLS semantics").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Over iff count + addend > limit; not counted when any descriptor of the call is over.
    Requests,
    /// Over iff the count before the call is >= limit; the addend is always added.
    Tokens,
}

/// One descriptor with a limit: what the script checks and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Counter key without the window suffix (the script appends `:<window_ms>:<index>`).
    pub key: String,
    pub window_ms: u64,
    pub limit: u32,
    /// The unit reported back in `current_limit` (UNKNOWN for a `window_ms` window).
    pub unit: i32,
    pub addend: u64,
    pub kind: Kind,
    pub sliding: bool,
    /// `is_negative_hits`: give `addend` back instead of taking it (never over).
    pub refund: bool,
}

/// What to do with one descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planned {
    Check(Check),
    /// No limit applies (no override, no matching `--config` rule): OK, like envoyproxy/ratelimit.
    NoLimit,
}

/// Envoy's `RateLimitUnit` / the response's `RateLimit.Unit` number → milliseconds.
/// Month and year are 30 and 365 days, as in envoyproxy/ratelimit.
pub fn unit_ms(unit: i32) -> Option<u64> {
    const S: u64 = 1000;
    match unit {
        1 => Some(S),
        2 => Some(60 * S),
        3 => Some(3600 * S),
        4 => Some(86_400 * S),
        5 => Some(30 * 86_400 * S),
        6 => Some(365 * 86_400 * S),
        7 => Some(7 * 86_400 * S),
        _ => None,
    }
}

/// The request → one plan per descriptor, in request order. `Err` is a message for
/// `INVALID_ARGUMENT` (it names the descriptor, never echoes its values).
pub fn plan(req: &RateLimitRequest, config: Option<&RlsConfig>) -> Result<Vec<Planned>, String> {
    if req.domain.is_empty() || req.domain.len() > 256 {
        return Err("domain must be 1 to 256 bytes".into());
    }
    if req.descriptors.is_empty() {
        return Err("rate limit descriptor list must not be empty".into());
    }
    if req.descriptors.len() > MAX_DESCRIPTORS {
        return Err(format!("more than {MAX_DESCRIPTORS} descriptors"));
    }
    // Envoy: "If the value is not set in the message, a request increases the matched limit by 1."
    let request_addend = if req.hits_addend == 0 {
        1
    } else {
        u64::from(req.hits_addend)
    };
    req.descriptors
        .iter()
        .enumerate()
        .map(|(i, d)| {
            plan_one(&req.domain, d, request_addend, config)
                .map_err(|e| format!("descriptor {i}: {e}"))
        })
        .collect()
}

fn plan_one(
    domain: &str,
    d: &RateLimitDescriptor,
    request_addend: u64,
    config: Option<&RlsConfig>,
) -> Result<Planned, String> {
    if d.entries.is_empty() {
        return Err("no entries".into());
    }
    if d.entries.len() > MAX_ENTRIES {
        return Err(format!("more than {MAX_ENTRIES} entries"));
    }
    if d.entries.iter().any(|e| e.key.is_empty()) {
        return Err("an entry has an empty key".into());
    }
    let entry = |k: &str| {
        d.entries
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.as_str())
    };
    let window_override = match entry("window_ms") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if (1..=MAX_WINDOW_MS).contains(&ms) => Some(ms),
            _ => return Err(format!("window_ms must be 1 to {MAX_WINDOW_MS}")),
        },
    };
    let (limit, unit) = match (&d.limit, config) {
        (Some(o), _) => (o.requests_per_unit, o.unit),
        (None, Some(c)) => match c.find(domain, &d.entries) {
            Some(found) => found,
            None => return Ok(Planned::NoLimit),
        },
        (None, None) => return Ok(Planned::NoLimit),
    };
    let window_ms = match window_override.or_else(|| unit_ms(unit)) {
        Some(ms) => ms,
        None => return Err("the limit has no known unit and no window_ms entry".into()),
    };
    let addend = match &d.hits_addend {
        Some(v) => v.value,
        None => request_addend,
    };
    if addend > MAX_ADDEND {
        return Err(format!("hits_addend above {MAX_ADDEND}"));
    }
    let kind = match entry("rule") {
        Some(r) if r.starts_with("tokens:") => Kind::Tokens,
        _ => Kind::Requests,
    };
    let key = counter_key(domain, d);
    if key.len() > MAX_KEY_BYTES {
        return Err(format!("descriptor longer than {MAX_KEY_BYTES} bytes"));
    }
    Ok(Planned::Check(Check {
        key,
        window_ms,
        limit,
        unit: if window_override.is_some() && unit_ms(unit) != window_override {
            0
        } else {
            unit
        },
        addend,
        kind,
        sliding: entry("strategy") == Some("sliding"),
        refund: d.is_negative_hits,
    }))
}

/// `llm-forward:rl:<domain>|<key>=<value>|…` with `\`, `|` and `=` escaped, so two different
/// descriptors never share a key. The window (`:<window_ms>:<index>`) is appended by the script.
pub fn counter_key(domain: &str, d: &RateLimitDescriptor) -> String {
    fn push_escaped(out: &mut String, s: &str) {
        for c in s.chars() {
            if matches!(c, '\\' | '|' | '=') {
                out.push('\\');
            }
            out.push(c);
        }
    }
    let mut key = String::from(KEY_PREFIX);
    push_escaped(&mut key, domain);
    for e in &d.entries {
        key.push('|');
        push_escaped(&mut key, &e.key);
        key.push('=');
        push_escaped(&mut key, &e.value);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::{
        Entry, RateLimitOverride,
    };
    use envoy_types::pb::google::protobuf::UInt64Value;

    fn descriptor(entries: &[(&str, &str)], limit: Option<(u32, i32)>) -> RateLimitDescriptor {
        RateLimitDescriptor {
            entries: entries
                .iter()
                .map(|(k, v)| Entry {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            limit: limit.map(|(n, unit)| RateLimitOverride {
                requests_per_unit: n,
                unit,
            }),
            hits_addend: None,
            is_negative_hits: false,
        }
    }

    fn request(descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
        RateLimitRequest {
            domain: "llm-forward".into(),
            descriptors,
            hits_addend: 0,
        }
    }

    fn check(p: &Planned) -> &Check {
        match p {
            Planned::Check(c) => c,
            Planned::NoLimit => panic!("no limit"),
        }
    }

    #[test]
    fn kinds_windows_and_addends() {
        let mut tokens = descriptor(
            &[("rule", "tokens:ab:0"), ("subject", "all")],
            Some((100, 3)),
        );
        tokens.hits_addend = Some(UInt64Value { value: 0 });
        let req = request(vec![
            descriptor(
                &[("rule", "requests:ab:0"), ("subject", "ip:1.2.3.4")],
                Some((10, 2)),
            ),
            tokens,
            descriptor(
                &[
                    ("rule", "requests:cd:0"),
                    ("subject", "all"),
                    ("window_ms", "10000"),
                    ("strategy", "sliding"),
                ],
                Some((5, 1)),
            ),
        ]);
        let p = plan(&req, None).unwrap();
        let (a, b, c) = (check(&p[0]), check(&p[1]), check(&p[2]));
        assert_eq!(
            (a.kind, a.window_ms, a.limit, a.addend, a.sliding),
            (Kind::Requests, 60_000, 10, 1, false)
        );
        assert_eq!(
            (b.kind, b.window_ms, b.addend),
            (Kind::Tokens, 3_600_000, 0)
        );
        // window_ms wins over the unit, which is then reported as UNKNOWN.
        assert_eq!((c.window_ms, c.unit, c.sliding), (10_000, 0, true));
    }

    #[test]
    fn garbage_is_refused_with_a_message_not_a_panic() {
        assert!(plan(&request(vec![]), None).unwrap_err().contains("empty"));
        let mut no_domain = request(vec![descriptor(&[("a", "b")], Some((1, 1)))]);
        no_domain.domain.clear();
        assert!(plan(&no_domain, None).is_err());
        assert!(plan(&request(vec![descriptor(&[], Some((1, 1)))]), None).is_err());
        assert!(plan(
            &request(vec![descriptor(&[("a", "b")], Some((1, 0)))]),
            None
        )
        .unwrap_err()
        .contains("descriptor 0"));
        for bad in ["0", "-1", "x", "99999999999999999999"] {
            let d = descriptor(&[("a", "b"), ("window_ms", bad)], Some((1, 1)));
            assert!(plan(&request(vec![d]), None).is_err(), "{bad}");
        }
        let long = "x".repeat(MAX_KEY_BYTES);
        assert!(plan(
            &request(vec![descriptor(&[("a", &long)], Some((1, 1)))]),
            None
        )
        .is_err());
        let mut huge = descriptor(&[("a", "b")], Some((1, 1)));
        huge.hits_addend = Some(UInt64Value { value: u64::MAX });
        assert!(plan(&request(vec![huge]), None).is_err());
        // No override and no config: no limit (OK), like envoyproxy/ratelimit's unknown descriptors.
        assert_eq!(
            plan(&request(vec![descriptor(&[("a", "b")], None)]), None).unwrap(),
            vec![Planned::NoLimit]
        );
    }

    #[test]
    fn keys_are_unambiguous() {
        let k1 = counter_key("d", &descriptor(&[("a", "b|c=d")], None));
        let k2 = counter_key("d", &descriptor(&[("a", "b"), ("c", "d")], None));
        assert_ne!(k1, k2);
        assert!(k1.starts_with(KEY_PREFIX));
    }
}
