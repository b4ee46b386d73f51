//! Fleet-wide limits: the filter's side of Envoy's rate-limit service protocol
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`, see /work/fleet-contract.md and
//! docs/fleet-limits.md).
//!
//! - [`Descriptor`]s for one request, built from the `limits:` rules and the caller's identity:
//!   entries `rule`, `subject`, optionally `window_ms` and `strategy`, a `limit` override and a
//!   per-descriptor `hits_addend`.
//! - [`encode_request`] / [`decode_response`]: the protobuf wire form. The message structs are
//!   declared here with Envoy's field numbers and `prost`'s derive (pure Rust, fits wasm); only the
//!   fields the filter reads or writes are declared, the others are skipped on decode.
//! - [`verdict`]: a response turned into the filter's existing form (a [`Combined`] per limit kind:
//!   the same 429 bodies, `Retry-After` and `x-ratelimit-*` headers as shared-data limits).
//!
//! Nothing here panics on any input: a response that does not fit the request (garbage, fewer
//! statuses) is an error or is read conservatively.

use serde::{Deserialize, Serialize};

use super::config::{hex16, subject, Identity, LimitKind, LimitRule, Per};
use super::grammar::{LimitSpec, Rate};
use super::window::{Combined, Strategy};

/// The Envoy cluster the filter calls (rendered by the gateway, HTTP/2).
pub const CLUSTER: &str = "llm_forward_ratelimit";
/// gRPC service and method of the rate-limit service protocol.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// `limits.domain` default.
pub const DEFAULT_DOMAIN: &str = "llm-forward";
/// `limits.timeout_ms` default: Envoy's own rate-limit filter default.
pub const DEFAULT_TIMEOUT_MS: u64 = 20;

/// What happens when the rate-limit service cannot answer in time (`limits.failure_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Let the request through (Envoy's default, `failure_mode_deny: false`).
    #[default]
    Open,
    /// Refuse with 503 (OpenAI-shaped).
    Closed,
}

impl FailureMode {
    pub fn is_open(&self) -> bool {
        *self == FailureMode::Open
    }
}

/// What the filter receives in fleet mode (no Redis URL, no service address: Envoy's cluster
/// carries the address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    /// The built-in service (extra `window_ms`/`strategy` entries allowed); false for an external
    /// `limits.service`, where rules with non-unit windows were refused at config load.
    pub builtin: bool,
}

/// `grpc://host:port` → `(host, port)`; `None` when it is not that form.
pub fn parse_service_address(addr: &str) -> Option<(String, u16)> {
    let rest = addr.strip_prefix("grpc://")?.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    Some((host.to_string(), port))
}

/// Which list a descriptor's rule comes from: the first part of its `rule` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Requests,
    Tokens,
    Global,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Requests => "requests",
            RuleKind::Tokens => "tokens",
            RuleKind::Global => "global",
        }
    }

    /// The limit kind a client sees (429 type, `x-ratelimit-*-<kind>`).
    pub fn limit_kind(self) -> LimitKind {
        match self {
            RuleKind::Tokens => LimitKind::Tokens,
            RuleKind::Requests | RuleKind::Global => LimitKind::Requests,
        }
    }
}

/// `RateLimitUnit` / `RateLimitResponse.RateLimit.Unit` (same numbers).
pub mod unit {
    pub const UNKNOWN: i32 = 0;
    pub const SECOND: i32 = 1;
    pub const MINUTE: i32 = 2;
    pub const HOUR: i32 = 3;
    pub const DAY: i32 = 4;
}

const UNITS: [(i32, u64, &str); 4] = [
    (unit::DAY, 86_400_000, "day"),
    (unit::HOUR, 3_600_000, "hour"),
    (unit::MINUTE, 60_000, "minute"),
    (unit::SECOND, 1_000, "second"),
];

/// The unit whose length is exactly `period_ms`, if any (`10/minute` yes, `10/2minutes` no).
pub fn exact_unit(period_ms: u64) -> Option<(i32, &'static str)> {
    UNITS
        .iter()
        .find(|(_, ms, _)| *ms == period_ms)
        .map(|(u, _, name)| (*u, *name))
}

/// The largest unit dividing `period_ms`, else UNKNOWN (the RLS then uses `window_ms`).
fn dividing_unit(period_ms: u64) -> i32 {
    UNITS
        .iter()
        .find(|(_, ms, _)| period_ms >= *ms && period_ms.checked_rem(*ms) == Some(0))
        .map_or(unit::UNKNOWN, |(u, _, _)| *u)
}

/// One descriptor of a `ShouldRateLimit` call, with what the filter needs to read its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub kind: RuleKind,
    /// Index of the rate in its limit spec (`60/minute;600/hour` → 0, 1).
    pub rate_index: usize,
    pub rate: Rate,
    /// `(key, value)` in the contract's order.
    pub entries: Vec<(String, String)>,
    pub hits_addend: u64,
}

/// A limit subject as sent over the wire: the `auth:` form (callers without a forward key) is
/// hashed, so a raw credential never leaves the filter.
pub fn wire_subject(per: Per, who: &Identity<'_>) -> String {
    let plain = subject(per, who);
    match plain.strip_prefix("auth:") {
        Some(auth) => format!("auth:{}", hex16(&[auth])),
        None => plain,
    }
}

/// The global limit's subject (OpenAI-Forward's `"<path>,<key>"` bucket), key part hashed as in
/// [`wire_subject`].
pub fn wire_global_subject(path_and_query: &str, who: &Identity<'_>) -> String {
    let path = path_and_query.split(['?', '#']).next().unwrap_or("");
    format!("path:{path}|{}", wire_subject(Per::Key, who))
}

/// The descriptors of one limit (one per rate), each counting `hits_addend`.
pub fn descriptors(
    kind: RuleKind,
    rule_id: &str,
    spec: &LimitSpec,
    subject: &str,
    strategy: Strategy,
    hits_addend: u64,
) -> Vec<Descriptor> {
    spec.rates()
        .iter()
        .enumerate()
        .map(|(i, rate)| {
            let mut entries = vec![
                (
                    "rule".to_string(),
                    format!("{}:{rule_id}:{i}", kind.as_str()),
                ),
                ("subject".to_string(), subject.to_string()),
            ];
            if exact_unit(rate.period_ms).is_none() {
                entries.push(("window_ms".to_string(), rate.period_ms.to_string()));
            }
            if strategy == Strategy::SlidingWindow {
                entries.push(("strategy".to_string(), "sliding".to_string()));
            }
            Descriptor {
                kind,
                rate_index: i,
                rate: *rate,
                entries,
                hits_addend,
            }
        })
        .collect()
}

/// The `rule` of a limit that an external service (fixed units only) cannot express, as
/// `(rate text, reason)`; `None` when every rate has an exact unit.
pub fn unit_problem(spec: &LimitSpec) -> Option<String> {
    spec.rates()
        .iter()
        .find(|r| exact_unit(r.period_ms).is_none())
        .map(|r| {
            format!(
                "`{r}` has no exact unit (second, minute, hour or day): an external rate-limit \
                 service (limits.service) counts only those; use the built-in one (limits.backend) \
                 or change the rate"
            )
        })
}

/// Every rule of `limits` that [`unit_problem`] refuses, as `(config path, message)`.
pub fn external_service_problems(
    requests: &[LimitRule],
    global: &LimitSpec,
    tokens: &[LimitRule],
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (list, rules) in [("requests", requests), ("tokens", tokens)] {
        for (i, r) in rules.iter().enumerate() {
            if let Some(p) = unit_problem(&r.limit) {
                out.push((format!("limits.{list}[{i}].limit"), p));
            }
        }
    }
    if let Some(p) = unit_problem(global) {
        out.push(("limits.global".to_string(), p));
    }
    out
}

// ---- wire messages (Envoy's field numbers) ----

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
    /// `google.protobuf.UInt64Value`.
    #[prost(message, optional, tag = "3")]
    pub hits_addend: Option<UInt64Value>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UInt64Value {
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse` (the fields the filter reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(int32, tag = "1")]
    pub overall_code: i32,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<CurrentLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CurrentLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(int32, tag = "2")]
    pub unit: i32,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `RateLimitResponse.Code`.
pub mod code {
    pub const UNKNOWN: i32 = 0;
    pub const OK: i32 = 1;
    pub const OVER_LIMIT: i32 = 2;
}

/// The serialized `RateLimitRequest` for `descriptors` (the message body of the gRPC call).
/// Amounts above `u32::MAX` are sent as `u32::MAX` (the protocol's field is 32-bit).
pub fn encode_request(domain: &str, descriptors: &[Descriptor]) -> Vec<u8> {
    use prost::Message;
    let request = RateLimitRequest {
        domain: domain.to_string(),
        descriptors: descriptors
            .iter()
            .map(|d| RateLimitDescriptor {
                entries: d
                    .entries
                    .iter()
                    .map(|(k, v)| Entry {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                limit: Some(RateLimitOverride {
                    requests_per_unit: u32::try_from(d.rate.amount).unwrap_or(u32::MAX),
                    unit: dividing_unit(d.rate.period_ms),
                }),
                hits_addend: Some(UInt64Value {
                    value: d.hits_addend,
                }),
            })
            .collect(),
        // 0 = "1 unless a descriptor says otherwise"; every descriptor says.
        hits_addend: 0,
    };
    request.encode_to_vec()
}

/// Parses a `RateLimitResponse`; `None` for bytes that are not one.
pub fn decode_response(bytes: &[u8]) -> Option<RateLimitResponse> {
    use prost::Message;
    RateLimitResponse::decode(bytes).ok()
}

/// A response read against the descriptors that were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// For `x-ratelimit-*-requests` and a request 429.
    pub requests: Option<Combined>,
    /// For `x-ratelimit-*-tokens` and a token 429.
    pub tokens: Option<Combined>,
    /// The refusing limit: its kind and the index of its first refusing rate (for the message).
    pub refused: Option<(RuleKind, usize)>,
}

/// Reads `response` for `sent` (same order). A response whose overall code is neither OK nor
/// OVER_LIMIT is `None` (the caller applies the failure mode). Missing statuses (a service with no
/// matching rule answers OK with none) count as allowed with the configured limit.
/// `now_ms` fills a missing `duration_until_reset` with the end of the fixed window.
pub fn verdict(response: &RateLimitResponse, sent: &[Descriptor], now_ms: u64) -> Option<Verdict> {
    if response.overall_code != code::OK && response.overall_code != code::OVER_LIMIT {
        return None;
    }
    let mut rows: Vec<(RuleKind, usize, Row)> = Vec::with_capacity(sent.len());
    for (i, d) in sent.iter().enumerate() {
        let status = response.statuses.get(i);
        let over = match status {
            Some(s) => s.code == code::OVER_LIMIT,
            // No status for it: over only if the whole answer is and nothing else explains it.
            None => response.overall_code == code::OVER_LIMIT && response.statuses.is_empty(),
        };
        let limit = status
            .and_then(|s| s.current_limit.as_ref())
            .filter(|l| l.requests_per_unit > 0 || d.rate.amount == 0)
            .map_or(d.rate.amount, |l| u64::from(l.requests_per_unit));
        let remaining = status.map_or(limit, |s| u64::from(s.limit_remaining));
        let fixed_reset = d.rate.period_ms - now_ms % d.rate.period_ms.max(1);
        let reset_after_ms = status
            .and_then(|s| s.duration_until_reset.as_ref())
            .map(|dur| {
                let secs = u64::try_from(dur.seconds).unwrap_or(0);
                let nanos = u64::try_from(dur.nanos).unwrap_or(0);
                secs.saturating_mul(1_000)
                    .saturating_add(nanos.div_ceil(1_000_000))
            })
            .unwrap_or(fixed_reset);
        rows.push((
            d.kind,
            d.rate_index,
            Row {
                allowed: !over,
                remaining,
                limit,
                reset_after_ms,
            },
        ));
    }
    let summarise =
        |wanted: &dyn Fn(RuleKind) -> bool| -> Option<(Combined, Option<(RuleKind, usize)>)> {
            let picked: Vec<&(RuleKind, usize, Row)> =
                rows.iter().filter(|(k, _, _)| wanted(*k)).collect();
            if picked.is_empty() {
                return None;
            }
            let first = picked.iter().find(|(_, _, r)| !r.allowed);
            let shown = match first {
                Some(f) => Some(*f),
                None => picked.iter().min_by_key(|(_, _, r)| r.remaining).copied(),
            };
            let reset = picked
                .iter()
                .filter(|(_, _, r)| first.is_none() || !r.allowed)
                .map(|(_, _, r)| r.reset_after_ms)
                .max()
                .unwrap_or(0);
            Some((
                Combined {
                    allowed: first.is_none(),
                    first_failing: first.map(|(_, i, _)| *i),
                    remaining: shown.map_or(u64::MAX, |(_, _, r)| r.remaining),
                    limit: shown.map_or(u64::MAX, |(_, _, r)| r.limit),
                    reset_after_ms: reset,
                },
                first.map(|(k, i, _)| (*k, *i)),
            ))
        };
    let tokens = summarise(&|k| k == RuleKind::Tokens);
    let requests = summarise(&|k| k != RuleKind::Tokens);
    // Tokens first, as shared-data limits check the quota before the request limit.
    let mut refused = tokens
        .as_ref()
        .and_then(|(_, r)| *r)
        .or_else(|| requests.as_ref().and_then(|(_, r)| *r));
    if refused.is_none() && response.overall_code == code::OVER_LIMIT {
        // Over overall, yet no status says which: blame the first descriptor.
        refused = sent.first().map(|d| (d.kind, d.rate_index));
    }
    Some(Verdict {
        allowed: refused.is_none(),
        requests: requests.map(|(c, _)| c),
        tokens: tokens.map(|(c, _)| c),
        refused,
    })
}

#[derive(Debug, Clone, Copy)]
struct Row {
    allowed: bool,
    remaining: u64,
    limit: u64,
    reset_after_ms: u64,
}

/// Tokens a response is charged when its real usage is unknown (client abort before the usage
/// chunk, or a body the filter could not parse so `include_usage` was not injected): about one
/// token per 4 bytes of the request body plus one per 4 bytes streamed to the client, at least 1.
pub fn estimate_tokens(request_bytes: u64, response_bytes: u64) -> u64 {
    (request_bytes.div_ceil(4))
        .saturating_add(response_bytes.div_ceil(4))
        .max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::limits::parse_limit;
    use prost::Message;

    fn who<'a>(key: Option<&'a str>, auth: Option<&'a str>) -> Identity<'a> {
        Identity {
            key_name: key,
            authorization: auth,
            ip: None,
            level: 2,
        }
    }

    #[test]
    fn descriptors_follow_the_contract() {
        let spec = parse_limit("60/minute;100/10seconds").unwrap();
        let d = descriptors(
            RuleKind::Requests,
            "abc",
            &spec,
            "name:team",
            Strategy::FixedWindow,
            1,
        );
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0].entries,
            vec![
                ("rule".into(), "requests:abc:0".into()),
                ("subject".into(), "name:team".into())
            ]
        );
        assert_eq!(
            d[1].entries,
            vec![
                ("rule".into(), "requests:abc:1".into()),
                ("subject".into(), "name:team".into()),
                ("window_ms".into(), "10000".into()),
            ]
        );
        let sliding = descriptors(
            RuleKind::Tokens,
            "t",
            &parse_limit("5/hour").unwrap(),
            "all",
            Strategy::SlidingWindow,
            0,
        );
        assert_eq!(sliding[0].entries[2], ("strategy".into(), "sliding".into()));
        assert_eq!(sliding[0].hits_addend, 0);
        assert!(descriptors(
            RuleKind::Global,
            "g",
            &LimitSpec::Unlimited,
            "all",
            Strategy::FixedWindow,
            1
        )
        .is_empty());
    }

    #[test]
    fn raw_credentials_never_reach_the_wire() {
        let anon = who(None, Some("Bearer sk-secret"));
        let s = wire_subject(Per::Key, &anon);
        assert!(s.starts_with("auth:"));
        assert!(!s.contains("sk-secret"));
        assert_eq!(s, wire_subject(Per::Key, &anon));
        assert_ne!(s, wire_subject(Per::Key, &who(None, Some("Bearer other"))));
        let g = wire_global_subject("/v1/models?x=1", &anon);
        assert!(g.starts_with("path:/v1/models|auth:"));
        assert!(!g.contains("sk-secret"));
        assert_eq!(
            wire_subject(Per::Key, &who(Some("team"), Some("Bearer fk"))),
            "name:team"
        );
        assert_eq!(wire_subject(Per::Level, &anon), "level:2");
    }

    #[test]
    fn request_round_trips_through_the_wire_structs() {
        let spec = parse_limit("10/minute;7/2hours;3/10seconds").unwrap();
        let d = descriptors(
            RuleKind::Tokens,
            "r",
            &spec,
            "ip:1.2.3.4",
            Strategy::FixedWindow,
            42,
        );
        let bytes = encode_request("llm-forward", &d);
        let back = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.domain, "llm-forward");
        assert_eq!(back.descriptors.len(), 3);
        let first = &back.descriptors[0];
        assert_eq!(first.entries[0].key, "rule");
        assert_eq!(first.entries[0].value, "tokens:r:0");
        assert_eq!(
            first.limit,
            Some(RateLimitOverride {
                requests_per_unit: 10,
                unit: unit::MINUTE
            })
        );
        assert_eq!(first.hits_addend, Some(UInt64Value { value: 42 }));
        // 2 hours: the largest dividing unit; 10 seconds: seconds, with window_ms.
        assert_eq!(back.descriptors[1].limit.as_ref().unwrap().unit, unit::HOUR);
        assert_eq!(
            back.descriptors[2].limit.as_ref().unwrap().unit,
            unit::SECOND
        );
        // The known byte layout of a minimal request: field 1 (domain), length-delimited.
        assert_eq!(&encode_request("d", &[])[..], &[0x0a, 0x01, b'd']);
    }

    #[test]
    fn huge_amounts_saturate() {
        let d = descriptors(
            RuleKind::Tokens,
            "r",
            &parse_limit("99999999999/day").unwrap(),
            "all",
            Strategy::FixedWindow,
            0,
        );
        let back = RateLimitRequest::decode(encode_request("x", &d).as_slice()).unwrap();
        assert_eq!(
            back.descriptors[0]
                .limit
                .as_ref()
                .unwrap()
                .requests_per_unit,
            u32::MAX
        );
    }

    fn status(code: i32, limit: u32, remaining: u32, reset_s: i64) -> DescriptorStatus {
        DescriptorStatus {
            code,
            current_limit: Some(CurrentLimit {
                requests_per_unit: limit,
                unit: unit::MINUTE,
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(ProtoDuration {
                seconds: reset_s,
                nanos: 0,
            }),
        }
    }

    fn sent() -> Vec<Descriptor> {
        let mut d = descriptors(
            RuleKind::Tokens,
            "t",
            &parse_limit("1000/day").unwrap(),
            "name:a",
            Strategy::FixedWindow,
            0,
        );
        d.extend(descriptors(
            RuleKind::Requests,
            "r",
            &parse_limit("10/minute;100/hour").unwrap(),
            "name:a",
            Strategy::FixedWindow,
            1,
        ));
        d
    }

    #[test]
    fn verdict_allowed_gives_both_header_sets() {
        let r = RateLimitResponse {
            overall_code: code::OK,
            statuses: vec![
                status(code::OK, 1000, 900, 3600),
                status(code::OK, 10, 7, 30),
                status(code::OK, 100, 50, 1800),
            ],
        };
        let bytes = r.encode_to_vec();
        let v = verdict(&decode_response(&bytes).unwrap(), &sent(), 0).unwrap();
        assert!(v.allowed);
        assert_eq!(v.refused, None);
        let req = v.requests.unwrap();
        assert_eq!(
            (req.limit, req.remaining, req.reset_after_ms),
            (10, 7, 1_800_000)
        );
        let tok = v.tokens.unwrap();
        assert_eq!((tok.limit, tok.remaining), (1000, 900));
    }

    #[test]
    fn verdict_names_the_refusing_rate() {
        let r = RateLimitResponse {
            overall_code: code::OVER_LIMIT,
            statuses: vec![
                status(code::OK, 1000, 900, 3600),
                status(code::OK, 10, 7, 30),
                status(code::OVER_LIMIT, 100, 0, 1800),
            ],
        };
        let v = verdict(&r, &sent(), 0).unwrap();
        assert!(!v.allowed);
        assert_eq!(v.refused, Some((RuleKind::Requests, 1)));
        let req = v.requests.unwrap();
        assert_eq!(req.first_failing, Some(1));
        assert_eq!(
            (req.limit, req.remaining, req.reset_after_ms),
            (100, 0, 1_800_000)
        );
        // A spent token budget is reported before a request limit.
        let r = RateLimitResponse {
            overall_code: code::OVER_LIMIT,
            statuses: vec![
                status(code::OVER_LIMIT, 1000, 0, 3600),
                status(code::OVER_LIMIT, 10, 0, 30),
                status(code::OK, 100, 50, 1800),
            ],
        };
        assert_eq!(
            verdict(&r, &sent(), 0).unwrap().refused,
            Some((RuleKind::Tokens, 0))
        );
    }

    #[test]
    fn odd_responses_never_panic_and_are_read_conservatively() {
        // Unknown overall code: the failure mode decides.
        let r = RateLimitResponse {
            overall_code: code::UNKNOWN,
            statuses: vec![],
        };
        assert_eq!(verdict(&r, &sent(), 0), None);
        // OK with no statuses (an external service without a matching rule): allowed, our limits.
        let r = RateLimitResponse {
            overall_code: code::OK,
            statuses: vec![],
        };
        let v = verdict(&r, &sent(), 61_000).unwrap();
        assert!(v.allowed);
        assert_eq!(v.requests.unwrap().limit, 10);
        assert_eq!(v.requests.unwrap().reset_after_ms, 3_600_000 - 61_000);
        // OVER_LIMIT with no statuses: refused.
        let r = RateLimitResponse {
            overall_code: code::OVER_LIMIT,
            statuses: vec![],
        };
        assert!(!verdict(&r, &sent(), 0).unwrap().allowed);
        // Garbage bytes.
        assert!(decode_response(&[0xff, 0xff, 0xff]).is_none());
        // Negative or huge durations.
        let mut s = status(code::OVER_LIMIT, 10, 0, -5);
        s.duration_until_reset = Some(ProtoDuration {
            seconds: i64::MAX,
            nanos: -1,
        });
        let r = RateLimitResponse {
            overall_code: code::OVER_LIMIT,
            statuses: vec![status(code::OK, 0, 0, -5), s],
        };
        let v = verdict(&r, &sent(), u64::MAX).unwrap();
        assert!(!v.allowed);
    }

    proptest::proptest! {
        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256), now in proptest::num::u64::ANY) {
            if let Some(r) = decode_response(&bytes) {
                let _ = verdict(&r, &sent(), now);
            }
        }
    }

    #[test]
    fn external_service_refuses_non_unit_windows_naming_the_rule() {
        let rules = vec![LimitRule {
            path: "/v1".into(),
            limit: parse_limit("10/minute;5/10seconds").unwrap(),
            per: Per::Key,
            level: None,
        }];
        let p = external_service_problems(&rules, &parse_limit("2/2minutes").unwrap(), &[]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, "limits.requests[0].limit");
        assert!(p[0].1.contains("5 per 10 second"), "{}", p[0].1);
        assert_eq!(p[1].0, "limits.global");
        assert!(external_service_problems(&rules[..0], &LimitSpec::Unlimited, &[]).is_empty());
    }

    #[test]
    fn estimate_is_bytes_over_four() {
        assert_eq!(estimate_tokens(0, 0), 1);
        assert_eq!(estimate_tokens(400, 41), 111);
        assert_eq!(estimate_tokens(u64::MAX, u64::MAX), 1 << 63);
    }

    fn fleet_errors(yaml: serde_json::Value) -> Vec<(String, String)> {
        let limits: crate::limits::config::LimitsConfig = serde_json::from_value(yaml).unwrap();
        let mut errors = Vec::new();
        limits.check(&mut errors);
        errors.into_iter().map(|e| (e.path, e.message)).collect()
    }

    #[test]
    fn fleet_settings_are_validated_naming_the_field() {
        let ok = fleet_errors(serde_json::json!({"backend": "redis://:pw@127.0.0.1:6379/0"}));
        assert!(ok.is_empty(), "{ok:?}");
        let e = fleet_errors(serde_json::json!({"backend": "http://x"}));
        assert_eq!(e[0].0, "limits.backend");
        let e = fleet_errors(serde_json::json!({"backend": "rediss://r:6380"}));
        assert!(e[0].1.contains("not built in"), "{e:?}");
        let e = fleet_errors(serde_json::json!({"service": "localhost:8081"}));
        assert_eq!(e[0].0, "limits.service");
        let e =
            fleet_errors(serde_json::json!({"service": "grpc://rls:8081", "backend": "redis://r"}));
        assert_eq!(e[0].0, "limits.service");
        let e = fleet_errors(serde_json::json!({"timeout_ms": 0, "domain": "a b"}));
        let fields: Vec<&str> = e.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["limits.domain", "limits.timeout_ms"]);
        assert!(
            serde_json::from_value::<crate::limits::config::LimitsConfig>(
                serde_json::json!({"failure_mode": "maybe"})
            )
            .is_err()
        );
        // External service: a non-unit window is refused, naming the rule.
        let e = fleet_errors(serde_json::json!({
            "service": "grpc://rls:8081",
            "requests": [{"path": "/v1", "limit": "10/10seconds"}]
        }));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, "limits.requests[0].limit");
        // The built-in one counts any window.
        assert!(fleet_errors(serde_json::json!({
            "backend": "redis://r",
            "requests": [{"path": "/v1", "limit": "10/10seconds"}]
        }))
        .is_empty());
        assert_eq!(
            parse_service_address("grpc://[::1]:81"),
            Some(("::1".into(), 81))
        );
        assert_eq!(parse_service_address("grpc://rls:0"), None);
    }
}
