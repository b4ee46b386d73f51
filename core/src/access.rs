//! Access control: forward keys → pooled upstream keys, model permissions per level, model routing,
//! upstream key cooldowns and IP allow/deny lists.
//!
//! Three forms of the same settings live here:
//!
//! - the **file form** ([`KeysConfig`], [`IpConfig`], and the route fields `key_location`,
//!   `pass_through_unknown_keys`, `model_paths`, `models` of [`crate::config::RouteConfig`]),
//!   checked (with the field path of every problem) and turned into the plugin form by
//!   `crate::config`, which holds the routes;
//! - the **plugin form** ([`AccessConfig`]) the gateway hands to the filter as JSON. Secrets given
//!   as `${VAR}` (or `file:`) stay *references* in it: the filter resolves them from its own
//!   environment at configure time, so `llm-forward render` output never contains a real key;
//! - the **compiled form** ([`Access`]), built once per VM by [`Access::compile`], which answers the
//!   per-request questions without allocating much: which forward key is this, which upstream key
//!   is next, may this level use this model, which target serves this model.
//!
//! Differences from OpenAI-Forward (on purpose): unknown or missing keys are rejected locally (401)
//! unless a route sets `pass_through_unknown_keys`; `Authorization` must really be `Bearer`; the model
//! check never depends on logging; keys are compared without early exit; upstream keys answered with
//! 401/403/429 cool down and rotation skips them.

pub mod model_of;

use crate::answer::ApiKind;
use crate::cidr::IpPolicy;
use crate::config_base::{ConfigError, RouteKind};
use crate::models::{ModelRouter, ModelSet};
use crate::secret::{bearer_token, constant_time_eq};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// File form
// ---------------------------------------------------------------------------------------------

/// `keys:` in `llm-forward.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Real keys the gateway sends upstream (OpenAI-Forward's `OPENAI_API_KEY_CONFIG`).
    pub upstream: Vec<UpstreamKeyConfig>,
    /// Keys clients use (OpenAI-Forward's `FORWARD_KEY_CONFIG`).
    pub forward: Vec<ForwardKeyConfig>,
    /// Models per level (OpenAI-Forward's `LEVEL_MODELS`); level 0 may use every model.
    /// Keys may be numbers (`1:`) or numeric strings (`"1":`, as JSON writes them).
    #[serde(deserialize_with = "de_levels")]
    pub levels: BTreeMap<u32, Vec<String>>,
    /// How long an upstream key answered with 401/403/429 is skipped by the rotation.
    pub cooldown_seconds: u32,
}

#[derive(Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(untagged)]
enum LevelKey {
    Number(u32),
    Text(String),
}

fn de_levels<'de, D>(d: D) -> Result<BTreeMap<u32, Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::de::Error;
    let raw: BTreeMap<LevelKey, Vec<String>> = BTreeMap::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let level = match k {
                LevelKey::Number(n) => n,
                LevelKey::Text(t) => t
                    .trim()
                    .parse()
                    .map_err(|_| D::Error::custom(format!("`{t}` is not a level number")))?,
            };
            Ok((level, v))
        })
        .collect()
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            upstream: Vec::new(),
            forward: Vec::new(),
            levels: BTreeMap::new(),
            cooldown_seconds: 60,
        }
    }
}

impl AsRef<KeysConfig> for KeysConfig {
    fn as_ref(&self) -> &KeysConfig {
        self
    }
}

impl KeysConfig {
    pub fn is_empty(&self) -> bool {
        self.upstream.is_empty() && self.forward.is_empty() && self.levels.is_empty()
    }
}

/// One pooled upstream key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamKeyConfig {
    /// The key, or `${ENV_VAR}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A file holding the key (read by `llm-forward run`, trailing newline removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Levels this key serves; `[0]` when omitted.
    #[serde(default = "default_levels")]
    pub levels: Vec<u32>,
    /// Route prefixes this key serves; every route when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

fn default_levels() -> Vec<u32> {
    vec![0]
}

/// One key a client may present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardKeyConfig {
    /// Shown in logs, limits and metrics instead of the key; `forward-<index>` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key, or `${ENV_VAR}`.
    pub key: String,
    #[serde(default)]
    pub level: u32,
}

/// `ip:` in `llm-forward.yaml` (OpenAI-Forward's `IP_WHITELIST` / `IP_BLACKLIST`, with CIDR).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl IpConfig {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// One model-routing rule of a route: models matching `match` go to `base_url`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTargetConfig {
    #[serde(rename = "match")]
    pub pattern: String,
    pub base_url: String,
    /// The model name sent upstream instead of the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rename: Option<String>,
}

/// Where a route carries the API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// `Authorization: Bearer <key>` (the default).
    Bearer,
    /// The whole value of a header (`x-api-key`, `x-goog-api-key`, `api-key`); lower-case name.
    Header(String),
    /// A query parameter (`query:key` → `?key=…`, Gemini).
    Query(String),
}

impl KeyLocation {
    pub const DEFAULT: &'static str = "authorization";

    pub fn parse(s: &str) -> Result<KeyLocation, String> {
        let t = s.trim();
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "authorization" | "bearer" => return Ok(KeyLocation::Bearer),
            "x-api-key" | "x-goog-api-key" | "api-key" => {
                return Ok(KeyLocation::Header(lower));
            }
            _ => {}
        }
        if let Some(name) = t.strip_prefix("query:") {
            let ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
            return if ok {
                Ok(KeyLocation::Query(name.to_string()))
            } else {
                Err(format!(
                    "`{s}`: the query parameter name must be letters, digits, `_`, `-` or `.`"
                ))
            };
        }
        Err(format!(
            "`{s}` is not a key location; use authorization, x-api-key, x-goog-api-key, api-key or query:<name>"
        ))
    }

    /// The key the client presented here, if any. `headers` are lower-case names; `path` is `:path`.
    pub fn extract(&self, headers: &[(String, String)], path: &str) -> Option<String> {
        match self {
            KeyLocation::Bearer => {
                let v = header(headers, "authorization")?;
                bearer_token(v).map(str::to_string)
            }
            KeyLocation::Header(name) => {
                let v = header(headers, name)?.trim();
                (!v.is_empty()).then(|| v.to_string())
            }
            KeyLocation::Query(name) => {
                let v = query_param(path, name)?;
                (!v.is_empty()).then_some(v)
            }
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Request header Envoy routes on when a model routing rule matched (value: the rule's index in
/// the route's `models`). The rendered config has one header-matching route per rule in front of the
/// route's normal ones and removes the header before the request goes upstream.
pub const TARGET_HEADER: &str = "x-llm-forward-target";

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

/// Where a key's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Literal(String),
    /// `${VAR}`: read from the environment (the filter's, passed in by Envoy).
    Env(String),
    /// `file:` (upstream keys only): read by `llm-forward run`.
    File(String),
}

impl Secret {
    /// `${VAR}` is an environment reference; anything else is the key itself. A `${` elsewhere in
    /// the value is an error (a half-written reference would otherwise be sent as a key).
    pub fn parse(s: &str) -> Result<Secret, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("empty key".into());
        }
        if let Some(name) = t.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
            return if is_env_name(name) {
                Ok(Secret::Env(name.to_string()))
            } else {
                Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference"
                ))
            };
        }
        if t.contains("${") {
            return Err("a `${VAR}` reference must be the whole value".into());
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a key must not contain whitespace".into());
        }
        Ok(Secret::Literal(t.to_string()))
    }

    /// The form written into the plugin configuration: the literal, or `${VAR}`.
    pub fn reference(&self, file_var: Option<&str>) -> String {
        match self {
            Secret::Literal(k) => k.clone(),
            Secret::Env(v) => format!("${{{v}}}"),
            Secret::File(_) => format!("${{{}}}", file_var.unwrap_or("")),
        }
    }
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Environment variable through which `llm-forward run` hands the `n`-th `file:` secret to Envoy.
pub fn file_secret_var(n: usize) -> String {
    format!("LLM_FORWARD_SECRET_{n}")
}

pub(crate) fn upstream_secret(k: &UpstreamKeyConfig) -> Result<Secret, String> {
    match (&k.key, &k.file) {
        (Some(_), Some(_)) => Err("give either `key` or `file`, not both".into()),
        (None, None) => Err("`key` or `file` is required".into()),
        (Some(key), None) => Secret::parse(key),
        (None, Some(f)) if f.trim().is_empty() => Err("empty file path".into()),
        (None, Some(f)) => Ok(Secret::File(f.trim().to_string())),
    }
}

/// Every secret that is not written literally into the plugin configuration: the environment
/// variable the filter reads it from, and its source. Envoy must pass these variables into the VM
/// (`vm_config.environment_variables.host_env_keys`); `run` sets the `file:` ones itself.
///
/// Takes anything holding the `keys:` section (`&Config` as well as `&KeysConfig`), so this module
/// does not depend on the configuration that aggregates it.
pub fn secret_env_vars(keys: &impl AsRef<KeysConfig>) -> Vec<(String, Secret)> {
    let keys = keys.as_ref();
    let mut out: Vec<(String, Secret)> = Vec::new();
    let mut files = 0;
    let mut push = |s: Secret, out: &mut Vec<(String, Secret)>| {
        let var = match &s {
            Secret::Literal(_) => return,
            Secret::Env(v) => v.clone(),
            Secret::File(_) => {
                files += 1;
                file_secret_var(files - 1)
            }
        };
        if !out.iter().any(|(v, _)| *v == var) {
            out.push((var, s));
        }
    };
    for k in &keys.upstream {
        if let Ok(s) = upstream_secret(k) {
            push(s, &mut out);
        }
    }
    for k in &keys.forward {
        if let Ok(s) = Secret::parse(&k.key) {
            push(s, &mut out);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// The JSON-ish request paths (after the route prefix) whose body `model` is checked on openai routes.
pub const OPENAI_JSON_PATHS: [(&str, ApiKind); 3] = [
    ("/chat/completions", ApiKind::Chat),
    ("/completions", ApiKind::Completion),
    ("/embeddings", ApiKind::Embedding),
];

pub(crate) fn forward_name(k: &ForwardKeyConfig, index: usize) -> String {
    k.name
        .as_ref()
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|| format!("forward-{index}"))
}

// ---------------------------------------------------------------------------------------------
// Plugin form
// ---------------------------------------------------------------------------------------------

/// What the filter receives. Secrets are literals or `${VAR}` references.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    pub upstream_keys: Vec<FilterUpstreamKey>,
    pub forward_keys: Vec<FilterForwardKey>,
    pub levels: BTreeMap<u32, Vec<String>>,
    pub cooldown_seconds: u32,
    pub ip_allow: Vec<String>,
    pub ip_deny: Vec<String>,
    /// One entry per route, same order as `FilterConfig.routes` (missing entries mean defaults).
    pub routes: Vec<FilterRouteAccess>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterUpstreamKey {
    pub key: String,
    pub levels: Vec<u32>,
    /// Route indexes this key serves; every route when empty.
    #[serde(default)]
    pub routes: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterForwardKey {
    pub name: String,
    pub key: String,
    pub level: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterRouteAccess {
    pub key_location: String,
    pub pass_through_unknown_keys: bool,
    /// Route-relative paths whose JSON body `model` is checked, besides the OpenAI ones.
    pub model_paths: Vec<String>,
    /// Model routing rules; the target number of a rule is its position.
    pub models: Vec<FilterModelRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterModelRule {
    pub pattern: String,
    #[serde(default)]
    pub rename: Option<String>,
}

impl AccessConfig {
    /// No keys, no IP lists, no per-route access settings: left out of the plugin JSON.
    pub fn is_open(&self) -> bool {
        self.upstream_keys.is_empty()
            && self.forward_keys.is_empty()
            && self.levels.is_empty()
            && self.ip_allow.is_empty()
            && self.ip_deny.is_empty()
            && self.routes.iter().all(|r| {
                !r.pass_through_unknown_keys
                    && r.model_paths.is_empty()
                    && r.models.is_empty()
                    && (r.key_location.is_empty() || r.key_location == KeyLocation::DEFAULT)
            })
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct ForwardKey {
    pub name: String,
    key: Vec<u8>,
    pub level: u32,
}

#[derive(Debug, Clone)]
pub struct UpstreamKey {
    key: String,
}

impl UpstreamKey {
    /// The real key; only ever written into the upstream request.
    pub fn secret(&self) -> &str {
        &self.key
    }
}

#[derive(Debug, Clone)]
pub struct RouteAccess {
    pub location: KeyLocation,
    pub pass_through_unknown_keys: bool,
    pub model_paths: Vec<String>,
    pub router: ModelRouter,
}

/// Access rules ready for requests. Built once per VM at configure time.
#[derive(Debug, Clone, Default)]
pub struct Access {
    ip: IpPolicy,
    forward: Vec<ForwardKey>,
    upstream: Vec<UpstreamKey>,
    /// Level → allowed models (levels ≥ 1 only; level 0 allows everything).
    levels: BTreeMap<u32, ModelSet>,
    /// Per route: level → indexes of the upstream keys serving it, in config order.
    pools: Vec<BTreeMap<u32, Vec<usize>>>,
    routes: Vec<RouteAccess>,
    cooldown_ms: u64,
    /// SHA-256 of each forward key → its index (the first, for duplicates): a lookup costs one
    /// hash whatever the number of keys.
    by_digest: std::collections::HashMap<[u8; 32], usize>,
}

fn key_digest(key: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(key).into()
}

/// What the key in a request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDecision {
    /// No forward keys are configured: the request goes as it came.
    Open,
    /// A forward key (index into the forward keys) matched.
    Forward(usize),
    /// Unknown or missing key on a route with `pass_through_unknown_keys`: forwarded unchanged.
    PassThrough,
    /// Unknown (`missing == false`) or missing key: answer 401.
    Reject { missing: bool },
}

/// Which JSON body, if any, a request path carries for the access checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonPath {
    /// The OpenAI API, when the path is one of them.
    pub api: Option<ApiKind>,
}

impl Access {
    /// Builds the rules. `env` resolves `${VAR}` secrets (the filter passes `std::env::var`);
    /// `route_count` is the number of routes in the plugin configuration.
    pub fn compile(
        cfg: &AccessConfig,
        route_count: usize,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Access, ConfigError> {
        let resolve = |path: String, value: &str| -> Result<String, ConfigError> {
            match Secret::parse(value).map_err(|e| ConfigError::new(path.clone(), e))? {
                Secret::Literal(k) => Ok(k),
                Secret::Env(var) => match env(&var).map(|v| v.trim().to_string()) {
                    Some(v) if !v.is_empty() => Ok(v),
                    _ => Err(ConfigError::new(
                        path,
                        format!("environment variable {var} is not set or empty"),
                    )),
                },
                Secret::File(_) => Err(ConfigError::new(path, "file secrets must be references")),
            }
        };
        let nets = |list: &str, entries: &[String]| -> Result<crate::cidr::IpList, ConfigError> {
            crate::cidr::IpList::parse(entries).map_err(|e| {
                ConfigError::new(
                    format!("access.ip_{list}[{}]", e.index),
                    e.error.to_string(),
                )
            })
        };
        let ip = IpPolicy::new(nets("allow", &cfg.ip_allow)?, nets("deny", &cfg.ip_deny)?);
        let mut levels = BTreeMap::new();
        for (level, models) in &cfg.levels {
            let set = ModelSet::parse(models).map_err(|e| {
                ConfigError::new(
                    format!("access.levels.{level}[{}]", e.index),
                    e.error.to_string(),
                )
            })?;
            levels.insert(*level, set);
        }
        let mut upstream = Vec::with_capacity(cfg.upstream_keys.len());
        for (i, k) in cfg.upstream_keys.iter().enumerate() {
            let key = resolve(format!("access.upstream_keys[{i}].key"), &k.key)?;
            upstream.push(UpstreamKey { key });
        }
        let mut forward = Vec::with_capacity(cfg.forward_keys.len());
        for (i, k) in cfg.forward_keys.iter().enumerate() {
            let key = resolve(format!("access.forward_keys[{i}].key"), &k.key)?;
            if k.level != 0 && !levels.contains_key(&k.level) {
                return Err(ConfigError::new(
                    format!("access.forward_keys[{i}].level"),
                    format!("level {} has no models", k.level),
                ));
            }
            forward.push(ForwardKey {
                name: k.name.clone(),
                key: key.into_bytes(),
                level: k.level,
            });
        }
        let mut routes = Vec::with_capacity(route_count);
        let mut pools = Vec::with_capacity(route_count);
        for r in 0..route_count {
            let rc = cfg.routes.get(r).cloned().unwrap_or_default();
            let loc = if rc.key_location.is_empty() {
                KeyLocation::Bearer
            } else {
                KeyLocation::parse(&rc.key_location)
                    .map_err(|e| ConfigError::new(format!("access.routes[{r}].key_location"), e))?
            };
            let router = ModelRouter::parse(
                rc.models
                    .iter()
                    .enumerate()
                    .map(|(j, m)| (m.pattern.as_str(), j, m.rename.as_deref())),
            )
            .map_err(|e| {
                ConfigError::new(
                    format!("access.routes[{r}].models[{}]", e.index),
                    e.error.to_string(),
                )
            })?;
            routes.push(RouteAccess {
                location: loc,
                pass_through_unknown_keys: rc.pass_through_unknown_keys,
                model_paths: rc.model_paths.clone(),
                router,
            });
            let mut pool: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            for (i, k) in cfg.upstream_keys.iter().enumerate() {
                if !k.routes.is_empty() && !k.routes.contains(&r) {
                    continue;
                }
                for l in &k.levels {
                    let entry = pool.entry(*l).or_default();
                    if !entry.contains(&i) {
                        entry.push(i);
                    }
                }
            }
            pools.push(pool);
        }
        let mut by_digest = std::collections::HashMap::with_capacity(forward.len());
        for (i, k) in forward.iter().enumerate() {
            by_digest.entry(key_digest(&k.key)).or_insert(i);
        }
        Ok(Access {
            by_digest,
            ip,
            forward,
            upstream,
            levels,
            pools,
            routes,
            cooldown_ms: u64::from(cfg.cooldown_seconds) * 1000,
        })
    }

    /// True when no IP list is configured (the client address need not be looked up).
    pub fn ip_open(&self) -> bool {
        self.ip.is_open()
    }

    pub fn ip_permits(&self, ip: &std::net::IpAddr) -> bool {
        self.ip.permits(ip)
    }

    /// True when forward keys are configured (every request must present one).
    pub fn keys_required(&self) -> bool {
        !self.forward.is_empty()
    }

    pub fn forward_key(&self, index: usize) -> Option<&ForwardKey> {
        self.forward.get(index)
    }

    pub fn upstream_key(&self, index: usize) -> Option<&UpstreamKey> {
        self.upstream.get(index)
    }

    pub fn upstream_count(&self) -> usize {
        self.upstream.len()
    }

    pub fn route(&self, route: usize) -> Option<&RouteAccess> {
        self.routes.get(route)
    }

    pub fn cooldown_ms(&self) -> u64 {
        self.cooldown_ms
    }

    /// The forward key equal to `presented`. The presented key is hashed (SHA-256) and the digest
    /// looked up, then compared in constant time: the time taken does not depend on how many keys
    /// there are, nor reveal which key or which byte came close (an attacker cannot steer digest
    /// prefixes).
    pub fn lookup(&self, presented: &str) -> Option<usize> {
        let i = *self.by_digest.get(&key_digest(presented.as_bytes()))?;
        let key = self.forward.get(i)?;
        constant_time_eq(&key.key, presented.as_bytes()).then_some(i)
    }

    /// Decides what the presented key (from the route's key location) means.
    pub fn authenticate(&self, route: usize, presented: Option<&str>) -> KeyDecision {
        if self.forward.is_empty() {
            return KeyDecision::Open;
        }
        if let Some(i) = presented.and_then(|p| self.lookup(p)) {
            return KeyDecision::Forward(i);
        }
        if self
            .routes
            .get(route)
            .is_some_and(|r| r.pass_through_unknown_keys)
        {
            return KeyDecision::PassThrough;
        }
        KeyDecision::Reject {
            missing: presented.is_none(),
        }
    }

    /// Upstream keys serving `level` on `route`, in config order (empty: no key is swapped in).
    pub fn pool(&self, route: usize, level: u32) -> &[usize] {
        self.pools
            .get(route)
            .and_then(|p| p.get(&level))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Every `(route, level)` that has a pool: the rotation counters the filter keeps.
    pub fn pool_ids(&self) -> Vec<(usize, u32)> {
        self.pools
            .iter()
            .enumerate()
            .flat_map(|(r, p)| p.keys().map(move |l| (r, *l)))
            .collect()
    }

    /// True when `level` may use every model (level 0).
    pub fn level_allows_all(&self, level: u32) -> bool {
        level == 0 || self.levels.get(&level).is_some_and(ModelSet::allows_all)
    }

    pub fn model_allowed(&self, level: u32, model: &str) -> bool {
        level == 0 || self.levels.get(&level).is_some_and(|s| s.allows(model))
    }

    /// Whether `route_path` (the path after the route prefix, query removed) carries a JSON body
    /// with a `model` the access checks look at.
    pub fn json_path(&self, route: usize, kind: RouteKind, route_path: &str) -> Option<JsonPath> {
        let r = self.routes.get(route);
        if kind == RouteKind::Openai {
            if let Some(api) = api_kind(route_path) {
                return Some(JsonPath { api: Some(api) });
            }
        }
        r.filter(|r| r.model_paths.iter().any(|p| p == route_path))
            .map(|_| JsonPath { api: None })
    }

    /// `(target, rename)` for `model` on `route` when the route routes models and one rule matches.
    pub fn route_model(&self, route: usize, model: &str) -> Option<(usize, Option<&str>)> {
        self.routes.get(route)?.router.route(model)
    }

    /// True when the route has model routing rules.
    pub fn routes_models(&self, route: usize) -> bool {
        self.routes.get(route).is_some_and(|r| !r.router.is_empty())
    }
}

/// The OpenAI API a route-relative path targets: `/v1/chat/completions` or `/chat/completions`
/// (for base URLs that already end in `/v1`), and likewise completions and embeddings.
pub fn api_kind(route_path: &str) -> Option<ApiKind> {
    let p = route_path.trim_end_matches('/');
    let p = p.strip_prefix("/v1").unwrap_or(p);
    OPENAI_JSON_PATHS
        .iter()
        .find(|(suffix, _)| p == *suffix)
        .map(|(_, k)| *k)
}

// ---------------------------------------------------------------------------------------------
// Rotation and cooldowns (the filter keeps the state in shared data)
// ---------------------------------------------------------------------------------------------

/// Picks the upstream key for one request.
///
/// `counter` is the rotation position of the pool; `cooling_until[i]` is the wall-clock ms until
/// which upstream key `i` cools down (missing = not cooling). Starting at `counter % len`, the first
/// key that is not cooling is taken; when all are cooling, the one whose cooldown ends first (the
/// least recently failed). Returns the key index and the next counter value (past the pick, so the
/// rotation continues after it).
pub fn pick_key(
    pool: &[usize],
    counter: u64,
    cooling_until: &[u64],
    now_ms: u64,
) -> Option<(usize, u64)> {
    let len = pool.len() as u64;
    if len == 0 {
        return None;
    }
    let until = |k: usize| cooling_until.get(k).copied().unwrap_or(0);
    let start = counter % len;
    let mut best: Option<(u64, usize, u64)> = None; // (until, key, offset)
    for off in 0..len {
        let slot = usize::try_from((start + off) % len).unwrap_or(0);
        let key = *pool.get(slot)?;
        let u = until(key);
        if u <= now_ms {
            return Some((key, counter.wrapping_add(off + 1)));
        }
        if !matches!(best, Some((bu, _, _)) if bu <= u) {
            best = Some((u, key, off));
        }
    }
    best.map(|(_, key, off)| (key, counter.wrapping_add(off + 1)))
}

/// Reads the cooldown table (8 bytes little-endian per upstream key); short or missing data is zero.
pub fn decode_cooldowns(bytes: &[u8], keys: usize) -> Vec<u64> {
    (0..keys)
        .map(|i| {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_le_bytes)
                .unwrap_or(0)
        })
        .collect()
}

pub fn encode_cooldowns(table: &[u64]) -> Vec<u8> {
    table.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A rotation counter from shared data (8 bytes little-endian; anything else counts as 0).
pub fn decode_counter(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Statuses that put the upstream key in cooldown.
pub fn is_key_failure(status: u32) -> bool {
    matches!(status, 401 | 403 | 429)
}

// ---------------------------------------------------------------------------------------------
// Query strings and bodies
// ---------------------------------------------------------------------------------------------

/// The decoded value of query parameter `name` in `path` (`/x?key=abc` → `abc`).
pub fn query_param(path: &str, name: &str) -> Option<String> {
    let (_, query) = path.split_once('?')?;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// `path` with every `name=` parameter replaced by `name=<value>` (percent-encoded), or removed
/// when `value` is `None`. Other parameters keep their order and bytes.
pub fn replace_query_param(path: &str, name: &str, value: Option<&str>) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return match value {
            Some(v) => format!("{path}?{name}={}", percent_encode(v)),
            None => path.to_string(),
        };
    };
    let mut out: Vec<String> = Vec::new();
    let mut replaced = false;
    for pair in query.split('&') {
        let k = pair.split_once('=').map(|(k, _)| k).unwrap_or(pair);
        if percent_decode(k) == name {
            if let (Some(v), false) = (value, replaced) {
                out.push(format!("{name}={}", percent_encode(v)));
                replaced = true;
            }
        } else if !pair.is_empty() {
            out.push(pair.to_string());
        }
    }
    if let (Some(v), false) = (value, replaced) {
        out.push(format!("{name}={}", percent_encode(v)));
    }
    if out.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", out.join("&"))
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or(0);
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if c == b'+' { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the access checks need from a JSON request body.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestBody {
    pub json: serde_json::Value,
    pub model: Option<String>,
    pub stream: bool,
}

/// Parses a JSON request body. Not JSON, not an object, or a non-string `model` → the message of
/// a 400 reply.
pub fn parse_body(bytes: &[u8]) -> Result<RequestBody, String> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("We could not parse the JSON body of your request: {e}"))?;
    let obj = json
        .as_object()
        .ok_or_else(|| "The request body must be a JSON object".to_string())?;
    let model = match obj.get("model") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(m)) => Some(m.clone()),
        Some(_) => return Err("`model` must be a string".into()),
    };
    let stream = obj
        .get("stream")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Ok(RequestBody {
        json,
        model,
        stream,
    })
}

/// True when a `content-type` is one whose body may be buffered and parsed as JSON: JSON, or no
/// type at all (many clients omit it). Multipart uploads and forms are never buffered.
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    match content_type.map(|c| c.trim().to_ascii_lowercase()) {
        None => true,
        Some(c) => {
            !(c.starts_with("multipart/") || c.starts_with("application/x-www-form-urlencoded"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
