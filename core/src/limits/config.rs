//! The `limits:` section of `llm-forward.yaml`: request limits, token quotas and output pacing, and
//! the pure decisions around them (which rule applies to a request, whose bucket it counts in, which
//! shared-data key holds that bucket).
//!
//! ```yaml
//! limits:
//!   strategy: sliding-window        # fixed-window | sliding-window (moving-window accepted)
//!   requests:                       # REQ_RATE_LIMIT
//!     - path: /v1/chat/completions  # full path prefix (route prefix included), segment-safe
//!       limit: "60/minute;600/hour"
//!       per: key                    # key | ip | level | global
//!       level: 1                    # optional: only callers of this level
//!   global: "200/minute"            # GLOBAL_RATE_LIMIT: paths without an entry, per (path, key)
//!   tokens:                         # token quotas (TPM/TPD)
//!     - path: /v1/chat/completions
//!       limit: "100000/day"
//!       per: key
//!   pacing:                         # TOKEN_RATE_LIMIT: streamed events per time
//!     - path: /v1/chat/completions
//!       limit: "60/second"
//!       level: 0
//! ```
//!
//! Rule choice follows OpenAI-Forward's `REQ_RATE_LIMIT` lookup, without its bugs: the first entry
//! whose `path` is a prefix of the request path names *the* path; among the entries with that same
//! path, the first whose `level` is absent or equals the caller's level applies. When the path has
//! no entry for the caller's level (or no path matches), requests fall back to `global`; quotas and
//! pacing simply do not apply. Paths match on segment boundaries (`/v1/chat` covers
//! `/v1/chat/completions`, never `/v1/chatx`), like routes do.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::grammar::{LimitSpec, Rate};
use super::window::Strategy;
use crate::config_base::{normalize_prefix, prefix_matches, ConfigError};

/// Whose bucket a request counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// The caller's forward key (its configured name), else the whole `Authorization` value,
    /// else one shared anonymous bucket (OpenAI-Forward's `default`).
    #[default]
    Key,
    /// The client address as Envoy computed it (`X-Forwarded-For` per `xff_num_trusted_hops`).
    Ip,
    /// The caller's level: every key of a level shares one bucket.
    Level,
    /// Everyone shares one bucket.
    Global,
}

impl Per {
    pub fn as_str(self) -> &'static str {
        match self {
            Per::Key => "key",
            Per::Ip => "ip",
            Per::Level => "level",
            Per::Global => "global",
        }
    }
}

/// One request-limit or token-quota entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitRule {
    /// Full request path prefix, route prefix included (`/gemini/v1beta/models`).
    pub path: String,
    pub limit: LimitSpec,
    #[serde(default)]
    pub per: Per,
    /// Only callers of this level; every level when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
}

/// One output-pacing entry (`TOKEN_RATE_LIMIT`): streamed SSE events per time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacingRule {
    pub path: String,
    pub limit: LimitSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u32>,
}

/// The `limits:` section. It is also exactly what the filter receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub strategy: Strategy,
    pub requests: Vec<LimitRule>,
    /// For paths without a `requests` entry for the caller (OpenAI-Forward's `GLOBAL_RATE_LIMIT`);
    /// one bucket per (path, key), as there.
    pub global: LimitSpec,
    pub tokens: Vec<LimitRule>,
    pub pacing: Vec<PacingRule>,
    /// Fleet-wide limits on Redis through the built-in rate-limit service (`redis://…`), started
    /// by `run`. Gateway-only: never sent to the filter (it may hold a password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Fleet-wide limits through an external rate-limit service (`grpc://host:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The rate-limit service domain.
    #[serde(skip_serializing_if = "is_default_domain")]
    pub domain: String,
    /// The service cannot answer in time: `open` lets requests through, `closed` answers 503.
    #[serde(skip_serializing_if = "super::fleet::FailureMode::is_open")]
    pub failure_mode: super::fleet::FailureMode,
    /// How long the filter waits for the service (milliseconds).
    #[serde(skip_serializing_if = "is_default_timeout")]
    pub timeout_ms: u64,
}

fn is_default_domain(d: &String) -> bool {
    d == super::fleet::DEFAULT_DOMAIN
}

fn is_default_timeout(t: &u64) -> bool {
    *t == super::fleet::DEFAULT_TIMEOUT_MS
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            strategy: Strategy::default(),
            requests: Vec::new(),
            global: LimitSpec::Unlimited,
            tokens: Vec::new(),
            pacing: Vec::new(),
            backend: None,
            service: None,
            domain: super::fleet::DEFAULT_DOMAIN.to_string(),
            failure_mode: super::fleet::FailureMode::Open,
            timeout_ms: super::fleet::DEFAULT_TIMEOUT_MS,
        }
    }
}

/// Which kind of limit a rule is; part of shared-data key names and of the 429 `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    Requests,
    Tokens,
}

impl LimitKind {
    /// `requests` / `tokens`: OpenAI's 429 `error.type` and the suffix of `x-ratelimit-*-<kind>`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::Tokens => "tokens",
        }
    }

    /// `x-ratelimit-limit-<kind>`, `x-ratelimit-remaining-<kind>`, `x-ratelimit-reset-<kind>`.
    pub fn header_names(self) -> [&'static str; 3] {
        match self {
            LimitKind::Requests => [
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
            LimitKind::Tokens => [
                "x-ratelimit-limit-tokens",
                "x-ratelimit-remaining-tokens",
                "x-ratelimit-reset-tokens",
            ],
        }
    }
}

/// Anything with a path prefix and an optional level.
pub trait Scoped {
    fn path(&self) -> &str;
    fn level(&self) -> Option<u32>;
}

impl Scoped for LimitRule {
    fn path(&self) -> &str {
        &self.path
    }
    fn level(&self) -> Option<u32> {
        self.level
    }
}

impl Scoped for PacingRule {
    fn path(&self) -> &str {
        &self.path
    }
    fn level(&self) -> Option<u32> {
        self.level
    }
}

/// The index of the rule that applies to `path` (query ignored) for a caller of `level`: the first
/// rule whose path matches decides the path; the first rule with that path and a fitting level
/// applies. `None`: no rule (requests then use `global`).
pub fn select<R: Scoped>(rules: &[R], path_and_query: &str, level: u32) -> Option<usize> {
    let path = path_and_query.split(['?', '#']).next().unwrap_or("");
    let first = rules.iter().find(|r| prefix_matches(r.path(), path))?;
    let chosen = first.path();
    rules
        .iter()
        .position(|r| r.path() == chosen && r.level().is_none_or(|l| l == level))
}

/// Who is asking, as far as limits care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    /// The forward key's configured name, when the access feature recognised one.
    pub key_name: Option<&'a str>,
    /// The whole `Authorization` header value otherwise (never split: a comma changes nothing).
    pub authorization: Option<&'a str>,
    pub ip: Option<IpAddr>,
    pub level: u32,
}

/// The bucket name of `who` under `per`, before hashing. Key names and raw keys never leave this
/// function unhashed (see [`storage_key`]).
pub fn subject(per: Per, who: &Identity<'_>) -> String {
    let mut out = String::new();
    push_subject(&mut out, per, who);
    out
}

/// [`subject`] appended to `out` (the filter builds its per-worker memo keys in one buffer).
pub fn push_subject(out: &mut String, per: Per, who: &Identity<'_>) {
    match per {
        Per::Key => match (who.key_name, who.authorization) {
            (Some(name), _) => {
                out.push_str("name:");
                out.push_str(name);
            }
            (None, Some(auth)) => {
                out.push_str("auth:");
                out.push_str(auth);
            }
            (None, None) => out.push_str("anonymous"),
        },
        Per::Ip => match who.ip {
            Some(ip) => {
                use std::fmt::Write;
                let _ = write!(out, "ip:{ip}");
            }
            None => out.push_str("ip:unknown"),
        },
        Per::Level => {
            out.push_str("level:");
            crate::limits::push_decimal(out, u64::from(who.level));
        }
        Per::Global => out.push_str("all"),
    }
}

/// The subject of the global limit: OpenAI-Forward's `"<path>,<key>"` bucket (query ignored).
pub fn global_subject(path_and_query: &str, who: &Identity<'_>) -> String {
    let mut out = String::new();
    push_global_subject(&mut out, path_and_query, who);
    out
}

/// [`global_subject`] appended to `out`.
pub fn push_global_subject(out: &mut String, path_and_query: &str, who: &Identity<'_>) {
    let path = path_and_query.split(['?', '#']).next().unwrap_or("");
    out.push_str("path:");
    out.push_str(path);
    out.push('|');
    push_subject(out, Per::Key, who);
}

pub(crate) fn hex16(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    crate::chatlog::hex(digest.get(..12).unwrap_or(&digest))
}

/// A stable identity of a rule: kind, path, limit, per and level. Part of its key names, so a
/// config change gives changed rules fresh buckets and leaves unchanged ones counting.
pub fn rule_id(kind: LimitKind, rule: &LimitRule) -> String {
    let level = rule.level.map(|l| l.to_string()).unwrap_or_default();
    hex16(&[
        kind.as_str(),
        &rule.path,
        &rule.limit.to_string(),
        rule.per.as_str(),
        &level,
    ])
}

/// The id of the global limit.
pub fn global_id(limit: &LimitSpec) -> String {
    hex16(&["global", &limit.to_string()])
}

/// The one fixed shared-data key of (rule, rate, subject). The window lives in the value, never in
/// the name; the subject is hashed, so no key or key name is readable from shared data.
pub fn storage_key(rule_id: &str, rate_index: usize, subject: &str) -> String {
    format!("llmf:l:{rule_id}:{rate_index}:{}", hex16(&[subject]))
}

/// Milliseconds between two paced events for a pacing limit: the slowest of its rates (all must
/// hold). `None` for `inf` (no pacing).
pub fn pacing_interval_ms(limit: &LimitSpec) -> Option<u64> {
    limit.rates().iter().filter_map(Rate::interval_ms).max()
}

impl LimitsConfig {
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.tokens.is_empty()
            && self.pacing.is_empty()
            && self.global.is_unlimited()
    }

    /// Whether any token quota exists (the filter then reads usage from responses).
    pub fn has_tokens(&self) -> bool {
        self.tokens.iter().any(|r| !r.limit.is_unlimited())
    }

    /// Paths normalised (`v1//chat/` → `/v1/chat`), so the filter compares them directly.
    pub fn normalized(mut self) -> Self {
        for r in self.requests.iter_mut().chain(self.tokens.iter_mut()) {
            r.path = normalize_prefix(&r.path);
        }
        for r in &mut self.pacing {
            r.path = normalize_prefix(&r.path);
        }
        self
    }

    /// Adds every problem to `errors`, with field paths under `limits.`.
    /// Limits are counted fleet-wide (a rate-limit service), not in this Envoy's shared data.
    pub fn is_fleet(&self) -> bool {
        self.backend.is_some() || self.service.is_some()
    }

    pub fn check(&self, errors: &mut Vec<ConfigError>) {
        self.check_fleet(errors);
        let path_ok = |at: String, path: &str, errors: &mut Vec<ConfigError>| {
            if !path.starts_with('/') || path.contains(['?', '#', '*', ' ']) {
                errors.push(ConfigError::new(
                    at,
                    format!("`{path}` must be a plain path prefix starting with `/`"),
                ));
            }
        };
        for (list, rules) in [("requests", &self.requests), ("tokens", &self.tokens)] {
            for (i, r) in rules.iter().enumerate() {
                path_ok(format!("limits.{list}[{i}].path"), &r.path, errors);
                let dup = rules.get(..i).and_then(|earlier| {
                    earlier.iter().position(|o| {
                        normalize_prefix(&o.path) == normalize_prefix(&r.path) && o.level == r.level
                    })
                });
                if let Some(j) = dup {
                    errors.push(ConfigError::new(
                        format!("limits.{list}[{i}]"),
                        format!(
                            "same path and level as limits.{list}[{j}], which always wins: remove one"
                        ),
                    ));
                }
            }
        }
        for (i, r) in self.pacing.iter().enumerate() {
            path_ok(format!("limits.pacing[{i}].path"), &r.path, errors);
            if r.limit.rates().iter().any(|rate| rate.amount == 0) {
                errors.push(ConfigError::new(
                    format!("limits.pacing[{i}].limit"),
                    "a pacing rate of 0 would never send anything: use at least 1 (or `inf`)",
                ));
            }
            if pacing_interval_ms(&r.limit).is_some_and(|ms| ms > 60_000) {
                errors.push(ConfigError::new(
                    format!("limits.pacing[{i}].limit"),
                    "pacing slower than one event per minute would hit stream idle timeouts",
                ));
            }
        }
    }
}

/// A JSON object's entries in the order written.
impl LimitsConfig {
    fn check_fleet(&self, errors: &mut Vec<ConfigError>) {
        if let Some(url) = &self.backend {
            if !url.starts_with("redis://") {
                errors.push(ConfigError::new(
                    "limits.backend",
                    "must be a Redis URL `redis://[[user]:password@]host[:port][/db]` (TLS `rediss://` \
                     is not built in: see docs/ratelimit-service.md)",
                ));
            }
        }
        if let Some(addr) = &self.service {
            if self.backend.is_some() {
                errors.push(ConfigError::new(
                    "limits.service",
                    "set either limits.backend (built-in rate-limit service) or limits.service \
                     (external), not both",
                ));
            }
            if super::fleet::parse_service_address(addr).is_none() {
                errors.push(ConfigError::new(
                    "limits.service",
                    "must be `grpc://host:port` (an Envoy rate-limit service)",
                ));
            }
            for (at, problem) in
                super::fleet::external_service_problems(&self.requests, &self.global, &self.tokens)
            {
                errors.push(ConfigError::new(at, problem));
            }
        }
        if self.domain.is_empty()
            || self.domain.len() > 128
            || !self
                .domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            errors.push(ConfigError::new(
                "limits.domain",
                "must be 1 to 128 letters, digits, `-`, `_` or `.`",
            ));
        }
        if !(1..=10_000).contains(&self.timeout_ms) {
            errors.push(ConfigError::new(
                "limits.timeout_ms",
                "must be 1 to 10000 (milliseconds)",
            ));
        }
    }
}

struct InOrder(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for InOrder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = InOrder;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<InOrder, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, serde_json::Value>()? {
                    out.push(entry);
                }
                Ok(InOrder(out))
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// OpenAI-Forward's `REQ_RATE_LIMIT` / `TOKEN_RATE_LIMIT` JSON: `{route: [{"level": n, "limit":
/// "…"}]}`, or the pre-0.7 form `{route: "limit"}`. Entries keep the file's order; levels given as
/// strings (`"0"`, as 0.8.1's `gen_config` writes them) are read as numbers. Request limits are
/// per key, as in OpenAI-Forward.
pub fn parse_openai_forward_limits(name: &str, text: &str) -> Result<Vec<LimitRule>, ConfigError> {
    // The file's order decides which path wins: read the object as an ordered list of entries.
    let routes: InOrder = serde_json::from_str(text).map_err(|e| {
        ConfigError::new(
            name,
            format!("expected a JSON object {{route: [{{level, limit}}]}}: {e}"),
        )
    })?;
    let mut rules = Vec::new();
    for (route, entries) in routes.0 {
        let at = format!("{name}.{route}");
        let list = match entries {
            serde_json::Value::String(limit) => vec![(None, limit)],
            serde_json::Value::Array(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let level = match item.get("level") {
                        None | Some(serde_json::Value::Null) => None,
                        Some(l) => Some(
                            l.as_u64()
                                .or_else(|| l.as_str().and_then(|s| s.trim().parse().ok()))
                                .and_then(|l| u32::try_from(l).ok())
                                .ok_or_else(|| {
                                    ConfigError::new(
                                        format!("{at}[{i}].level"),
                                        "not a level number",
                                    )
                                })?,
                        ),
                    };
                    let limit = item.get("limit").and_then(|l| l.as_str()).ok_or_else(|| {
                        ConfigError::new(format!("{at}[{i}].limit"), "missing limit string")
                    })?;
                    out.push((level, limit.to_string()));
                }
                out
            }
            _ => {
                return Err(ConfigError::new(
                    at,
                    "expected a limit string or a list of {level, limit}",
                ))
            }
        };
        for (level, limit) in list {
            let limit = super::grammar::parse_limit(&limit)
                .map_err(|e| ConfigError::new(format!("{at}.limit"), e))?;
            rules.push(LimitRule {
                path: normalize_prefix(&route),
                limit,
                per: Per::Key,
                level,
            });
        }
    }
    Ok(rules)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::limits::parse_limit;
    use proptest::prelude::*;

    #[test]
    fn header_names_follow_the_kind() {
        for kind in [LimitKind::Requests, LimitKind::Tokens] {
            let k = kind.as_str();
            assert_eq!(
                kind.header_names(),
                [
                    format!("x-ratelimit-limit-{k}"),
                    format!("x-ratelimit-remaining-{k}"),
                    format!("x-ratelimit-reset-{k}"),
                ]
            );
        }
    }

    fn rule(path: &str, limit: &str, per: Per, level: Option<u32>) -> LimitRule {
        LimitRule {
            path: path.into(),
            limit: parse_limit(limit).unwrap(),
            per,
            level,
        }
    }

    fn who<'a>(key: Option<&'a str>, auth: Option<&'a str>, ip: &str, level: u32) -> Identity<'a> {
        Identity {
            key_name: key,
            authorization: auth,
            ip: ip.parse().ok(),
            level,
        }
    }

    #[test]
    fn openai_forward_env_forms() {
        let rules = parse_openai_forward_limits(
            "REQ_RATE_LIMIT",
            r#"{"/v1/chat/completions":[{"level":0,"limit":"100/2minutes"},{"level":"1","limit":"60/minute;600/hour"}],"/openai/v1/x":"1/10seconds"}"#,
        )
        .unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].level, Some(0));
        assert_eq!(rules[1].level, Some(1));
        assert_eq!(rules[1].limit.rates().len(), 2);
        assert_eq!(rules[2].path, "/openai/v1/x");
        // File order, not alphabetical: `/v1` written first wins for every `/v1/...` path.
        let ordered =
            parse_openai_forward_limits("R", r#"{"/v1":"1/second","/v1/chat":"2/second"}"#)
                .unwrap();
        assert_eq!(select(&ordered, "/v1/chat", 0), Some(0));
        let ordered =
            parse_openai_forward_limits("R", r#"{"/v1/chat":"2/second","/v1":"1/second"}"#)
                .unwrap();
        assert_eq!(select(&ordered, "/v1/chat", 0), Some(0));
        assert_eq!(ordered[0].path, "/v1/chat");
        assert_eq!(rules[2].level, None);
        let err = parse_openai_forward_limits(
            "REQ_RATE_LIMIT",
            r#"{"/v1":[{"level":0,"limit":"5/minit"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "REQ_RATE_LIMIT./v1.limit");
        assert!(parse_openai_forward_limits("X", "[1]").is_err());
    }

    #[test]
    fn first_matching_path_wins_then_level() {
        let rules = vec![
            rule("/v1/chat/completions", "5/minute", Per::Key, Some(1)),
            rule("/v1/chat/completions", "3/minute", Per::Key, None),
            rule("/v1/chat", "1/minute", Per::Key, None),
            rule("/v1", "9/minute", Per::Key, Some(2)),
        ];
        assert_eq!(select(&rules, "/v1/chat/completions", 1), Some(0));
        assert_eq!(select(&rules, "/v1/chat/completions?x=1", 0), Some(1));
        assert_eq!(select(&rules, "/v1/chat/completions/abc", 7), Some(1));
        // `/v1/chat` matched first for this path; it has an any-level entry.
        assert_eq!(select(&rules, "/v1/chat/other", 1), Some(2));
        // `/v1` decides the path; no entry for level 0 there → none (global applies).
        assert_eq!(select(&rules, "/v1/models", 0), None);
        assert_eq!(select(&rules, "/v1/models", 2), Some(3));
        assert_eq!(select(&rules, "/v2/x", 2), None);
    }

    #[test]
    fn paths_are_segment_safe() {
        let rules = vec![rule("/v1/chat", "1/minute", Per::Key, None)];
        assert_eq!(select(&rules, "/v1/chatx", 0), None);
        assert_eq!(select(&rules, "/v1/chat", 0), Some(0));
        let root = vec![rule("/", "1/minute", Per::Key, None)];
        assert_eq!(select(&root, "/anything", 0), Some(0));
    }

    #[test]
    fn path_matched_without_level_entry_falls_back() {
        // The reference's per-level lookup: a level with no entry uses GLOBAL_RATE_LIMIT.
        let rules = vec![rule("/v1/chat/completions", "1/minute", Per::Key, Some(1))];
        assert_eq!(select(&rules, "/v1/chat/completions", 0), None);
        assert_eq!(select(&rules, "/v1/chat/completions", 1), Some(0));
    }

    #[test]
    fn subjects() {
        let w = who(Some("team-a"), Some("Bearer fk-1"), "10.0.0.1", 3);
        assert_eq!(subject(Per::Key, &w), "name:team-a");
        assert_eq!(subject(Per::Ip, &w), "ip:10.0.0.1");
        assert_eq!(subject(Per::Level, &w), "level:3");
        assert_eq!(subject(Per::Global, &w), "all");
        let anon = who(None, None, "", 0);
        assert_eq!(subject(Per::Key, &anon), "anonymous");
        assert_eq!(subject(Per::Ip, &anon), "ip:unknown");
        // The whole header is the subject: a comma is just another character.
        let comma = who(None, Some("Bearer x,y"), "", 0);
        assert_eq!(subject(Per::Key, &comma), "auth:Bearer x,y");
        assert_ne!(
            subject(Per::Key, &comma),
            subject(Per::Key, &who(None, Some("Bearer x"), "", 0))
        );
        assert_eq!(
            global_subject("/v1/models?a=1", &comma),
            "path:/v1/models|auth:Bearer x,y"
        );
    }

    #[test]
    fn storage_keys_hide_subjects_and_are_stable() {
        let r = rule("/v1", "5/minute;100/hour", Per::Key, None);
        let id = rule_id(LimitKind::Requests, &r);
        let k = storage_key(&id, 1, "auth:Bearer sk-secret");
        assert!(!k.contains("secret") && !k.contains("Bearer"), "{k}");
        assert_eq!(k, storage_key(&id, 1, "auth:Bearer sk-secret"));
        assert_ne!(k, storage_key(&id, 0, "auth:Bearer sk-secret"));
        assert_ne!(k, storage_key(&id, 1, "auth:Bearer sk-other"));
        assert_ne!(id, rule_id(LimitKind::Tokens, &r));
        let changed = rule("/v1", "6/minute;100/hour", Per::Key, None);
        assert_ne!(id, rule_id(LimitKind::Requests, &changed));
        assert!(k.len() < 64, "{k}");
    }

    #[test]
    fn yaml_shape_and_defaults() {
        let json = br#"{"strategy":"moving-window","requests":[{"path":"/v1/chat/completions","limit":"60/minute;600/hour","level":1}],"global":"200/minute","tokens":[{"path":"/v1","limit":"100000/day","per":"ip"}],"pacing":[{"path":"/v1/chat/completions","limit":"60/second","level":0}]}"#;
        let c: LimitsConfig = serde_json::from_slice(json).unwrap();
        assert_eq!(c.strategy, super::Strategy::SlidingWindow);
        assert_eq!(c.requests[0].per, Per::Key);
        assert_eq!(c.requests[0].limit.rates().len(), 2);
        assert_eq!(c.tokens[0].per, Per::Ip);
        assert_eq!(pacing_interval_ms(&c.pacing[0].limit), Some(17));
        let back: LimitsConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let d: LimitsConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, LimitsConfig::default());
        assert!(d.is_empty());
        assert!(d.global.is_unlimited());
    }

    #[test]
    fn bad_values_name_the_field() {
        let mut de = serde_json::Deserializer::from_str(
            r#"{"requests":[{"path":"/v1","limit":"5/minit"}]}"#,
        );
        let err = serde_path_to_error::deserialize::<_, LimitsConfig>(&mut de).unwrap_err();
        assert_eq!(err.path().to_string(), "requests[0].limit");
        let mut de = serde_json::Deserializer::from_str(
            r#"{"requests":[{"path":"/v1","limit":"5/minute","per":"tenant"}]}"#,
        );
        let err = serde_path_to_error::deserialize::<_, LimitsConfig>(&mut de).unwrap_err();
        assert_eq!(err.path().to_string(), "requests[0].per");
        let mut de =
            serde_json::Deserializer::from_str(r#"{"strategy":"fixed-window-elastic-expiry"}"#);
        let err = serde_path_to_error::deserialize::<_, LimitsConfig>(&mut de).unwrap_err();
        assert_eq!(err.path().to_string(), "strategy");
    }

    #[test]
    fn check_reports_paths() {
        let c = LimitsConfig {
            requests: vec![
                rule("v1", "1/minute", Per::Key, None),
                rule("/a", "1/minute", Per::Key, Some(1)),
                rule("/a/", "2/minute", Per::Ip, Some(1)),
            ],
            pacing: vec![
                PacingRule {
                    path: "/x".into(),
                    limit: parse_limit("0/second").unwrap(),
                    level: None,
                },
                PacingRule {
                    path: "/y?".into(),
                    limit: parse_limit("1/hour").unwrap(),
                    level: None,
                },
            ],
            ..LimitsConfig::default()
        };
        let mut errors = Vec::new();
        c.check(&mut errors);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "limits.requests[0].path",
                "limits.requests[2]",
                "limits.pacing[0].limit",
                "limits.pacing[1].path",
                "limits.pacing[1].limit",
            ],
            "{errors:?}"
        );
    }

    proptest! {
        #[test]
        fn selection_is_the_first_fitting_entry_of_the_first_matching_path(
            paths in proptest::collection::vec(0usize..4, 0..8),
            levels in proptest::collection::vec(proptest::option::of(0u32..3), 8),
            req in 0usize..4,
            level in 0u32..3,
        ) {
            let names = ["/a", "/a/b", "/c", "/"];
            let rules: Vec<LimitRule> = paths.iter().zip(&levels)
                .map(|(p, l)| rule(names[*p], "1/second", Per::Key, *l)).collect();
            let request = ["/a/b/c", "/a/x", "/c", "/d"][req];
            let got = select(&rules, request, level);
            if let Some(i) = got {
                prop_assert!(prefix_matches(&rules[i].path, request));
                prop_assert!(rules[i].level.is_none_or(|l| l == level));
                // No earlier rule matches the path with a different path string.
                let first = rules.iter().position(|r| prefix_matches(&r.path, request)).unwrap();
                prop_assert_eq!(&rules[first].path, &rules[i].path);
                prop_assert!(first <= i);
            } else if let Some(first) = rules.iter().position(|r| prefix_matches(&r.path, request)) {
                let p = &rules[first].path;
                prop_assert!(!rules.iter().any(|r| &r.path == p && r.level.is_none_or(|l| l == level)));
            }
        }

        #[test]
        fn subjects_never_collide_across_kinds(name in "[a-z,: ]{0,12}", auth in "[a-z,: ]{0,12}") {
            let a = subject(Per::Key, &who(Some(&name), None, "", 0));
            let b = subject(Per::Key, &who(None, Some(&auth), "", 0));
            prop_assert_ne!(a, b);
        }
    }
}
