//! The **compiled form** ([`Access`]), built once per VM by [`Access::compile`]: answers the
//! per-request questions (which forward key is this, which upstream keys serve it, may this level
//! use this model, which target serves this model) without allocating much.

use super::key_location::KeyLocation;
use super::key_memo::KeyMemo;
use super::secrets::Secret;
use super::settings::AccessConfig;
use crate::answer::ApiKind;
use crate::cidr::IpPolicy;
use crate::config_base::{ConfigError, RouteKind};
use crate::models::{ModelRouter, ModelSet};
use crate::secret::constant_time_eq;
use std::collections::BTreeMap;

/// Request header Envoy routes on when a model routing rule matched (value: the rule's index in
/// the route's `models`). The rendered config has one header-matching route per rule in front of the
/// route's normal ones and removes the header before the request goes upstream.
pub const TARGET_HEADER: &str = "x-llm-forward-target";

/// The JSON-ish request paths (after the route prefix) whose body `model` is checked on openai routes.
pub const OPENAI_JSON_PATHS: [(&str, ApiKind); 3] = [
    ("/chat/completions", ApiKind::Chat),
    ("/completions", ApiKind::Completion),
    ("/embeddings", ApiKind::Embedding),
];

#[derive(Debug, Clone)]
pub struct ForwardKey {
    pub name: String,
    key: Vec<u8>,
    pub level: u32,
}

#[derive(Debug, Clone)]
pub struct UpstreamKey {
    key: String,
    /// `Bearer <key>`, built once: the `authorization` value swapped into every keyed request.
    bearer: String,
}

impl UpstreamKey {
    pub fn new(key: String) -> UpstreamKey {
        let bearer = format!("Bearer {key}");
        UpstreamKey { key, bearer }
    }

    /// The real key; only ever written into the upstream request.
    pub fn secret(&self) -> &str {
        &self.key
    }

    /// `Bearer <key>` (see [`UpstreamKey::secret`]).
    pub fn bearer(&self) -> &str {
        &self.bearer
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
    /// The keys this worker accepted last (rebuilt empty with the rules on every reload).
    memo: KeyMemo,
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
            upstream.push(UpstreamKey::new(key));
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
            memo: KeyMemo::default(),
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
    /// prefixes). Keys accepted lately are answered from the [`KeyMemo`] (same answer, no hash).
    pub fn lookup(&self, presented: &str) -> Option<usize> {
        if let Some(i) = self.memo.get(presented.as_bytes()) {
            return Some(i);
        }
        let i = *self.by_digest.get(&key_digest(presented.as_bytes()))?;
        let key = self.forward.get(i)?;
        if !constant_time_eq(&key.key, presented.as_bytes()) {
            return None;
        }
        self.memo.remember(presented.as_bytes(), i);
        Some(i)
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
