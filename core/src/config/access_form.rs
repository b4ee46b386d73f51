//! The access sections of [`Config`] (`keys`, `ip`, and each route's key location, model paths and
//! model targets): checked with the field path of every problem, and turned into the filter's
//! plugin form [`AccessConfig`]. Here rather than in `crate::access` because both read the whole
//! configuration (forward keys name routes by prefix), and `access` must not depend on `config`,
//! which holds its settings types.

use super::Config;
use crate::access::{
    forward_name, secret_env_vars, upstream_secret, AccessConfig, FilterForwardKey,
    FilterModelRule, FilterRouteAccess, FilterUpstreamKey, KeyLocation, KeysConfig, Secret,
};
use crate::cidr::IpNet;
use crate::config_base::{normalize_prefix, ConfigError, RouteKind};
use crate::models::{ModelPattern, ModelSet};
use crate::url::BaseUrl;

impl AsRef<KeysConfig> for Config {
    fn as_ref(&self) -> &KeysConfig {
        &self.keys
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `keys`, `ip` and the access fields of every route; problems are appended to `errors`
/// with their field paths.
pub(super) fn validate(config: &Config, errors: &mut Vec<ConfigError>) {
    let keys = &config.keys;
    let known_level = |l: u32| l == 0 || keys.levels.contains_key(&l);
    let prefixes: Vec<String> = config
        .routes
        .iter()
        .map(|r| normalize_prefix(&r.route))
        .collect();

    for (level, models) in &keys.levels {
        let at = format!("keys.levels.{level}");
        if *level == 0 {
            errors.push(ConfigError::new(
                at,
                "level 0 may use every model; list models only for levels 1 and up",
            ));
            continue;
        }
        if let Err(e) = ModelSet::parse(models) {
            errors.push(ConfigError::new(
                format!("{at}[{}]", e.index),
                e.error.to_string(),
            ));
        }
    }
    let mut seen_upstream: Vec<&str> = Vec::new();
    for (i, k) in keys.upstream.iter().enumerate() {
        let at = |f: &str| format!("keys.upstream[{i}]{f}");
        match upstream_secret(k) {
            Ok(Secret::Literal(v)) if seen_upstream.contains(&v.as_str()) => {
                errors.push(ConfigError::new(at(".key"), "the same key is listed twice"));
            }
            Ok(_) => {}
            Err(e) => errors.push(ConfigError::new(at(""), e)),
        }
        if let Some(key) = &k.key {
            seen_upstream.push(key.trim());
        }
        if k.levels.is_empty() {
            errors.push(ConfigError::new(
                at(".levels"),
                "at least one level is required",
            ));
        }
        for (j, l) in k.levels.iter().enumerate() {
            if !known_level(*l) {
                errors.push(ConfigError::new(
                    at(&format!(".levels[{j}]")),
                    format!("level {l} has no entry in keys.levels"),
                ));
            }
        }
        for (j, r) in k.routes.iter().enumerate() {
            if !prefixes.contains(&normalize_prefix(r)) {
                errors.push(ConfigError::new(
                    at(&format!(".routes[{j}]")),
                    format!("`{r}` is not a configured route"),
                ));
            }
        }
    }
    // Maps, not lists: 10,000 keys must not cost 10,000² comparisons at startup.
    let mut names: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut seen_forward: std::collections::HashMap<String, usize> =
        std::collections::HashMap::new();
    for (i, k) in keys.forward.iter().enumerate() {
        let at = |f: &str| format!("keys.forward[{i}].{f}");
        match Secret::parse(&k.key) {
            Ok(s @ (Secret::Literal(_) | Secret::Env(_))) => {
                let id = s.reference(None);
                if let Some(j) = seen_forward.get(&id) {
                    errors.push(ConfigError::new(
                        at("key"),
                        format!("the same key as keys.forward[{j}]"),
                    ));
                } else {
                    seen_forward.insert(id, i);
                }
            }
            Ok(Secret::File(_)) => {}
            Err(e) => errors.push(ConfigError::new(at("key"), e)),
        }
        let name = forward_name(k, i);
        if !valid_name(&name) {
            errors.push(ConfigError::new(
                at("name"),
                "1 to 64 letters, digits, `_` or `-`",
            ));
        } else if let Some(j) = names.get(&name) {
            errors.push(ConfigError::new(
                at("name"),
                format!("`{name}` is already used by keys.forward[{j}]"),
            ));
        }
        names.entry(name).or_insert(i);
        if !known_level(k.level) {
            errors.push(ConfigError::new(
                at("level"),
                format!("level {} has no entry in keys.levels", k.level),
            ));
        } else if !keys.upstream.is_empty()
            && !keys.upstream.iter().any(|u| u.levels.contains(&k.level))
        {
            errors.push(ConfigError::new(
                at("level"),
                format!("no upstream key (keys.upstream) serves level {}", k.level),
            ));
        }
    }
    if keys.cooldown_seconds > 86_400 {
        errors.push(ConfigError::new("keys.cooldown_seconds", "at most 86400"));
    }
    for (list, entries) in [("allow", &config.ip.allow), ("deny", &config.ip.deny)] {
        for (i, e) in entries.iter().enumerate() {
            if let Err(err) = IpNet::parse(e) {
                errors.push(ConfigError::new(
                    format!("ip.{list}[{i}]"),
                    format!("`{e}`: {err}"),
                ));
            }
        }
    }
    for (i, r) in config.routes.iter().enumerate() {
        let at = |f: &str| format!("routes[{i}].{f}");
        if let Some(loc) = &r.key_location {
            if let Err(e) = KeyLocation::parse(loc) {
                errors.push(ConfigError::new(at("key_location"), e));
            }
        }
        for (j, p) in r.model_paths.iter().enumerate() {
            if !p.starts_with('/') || p.contains(['?', '#', '*', ' ']) {
                errors.push(ConfigError::new(
                    at(&format!("model_paths[{j}]")),
                    format!(
                        "`{p}` must be a plain path starting with `/` (after the route prefix)"
                    ),
                ));
            }
        }
        if !r.models.is_empty() && r.kind == RouteKind::General && r.model_paths.is_empty() {
            errors.push(ConfigError::new(
                at("models"),
                "a general route needs model_paths to know which requests carry a JSON `model`",
            ));
        }
        for (j, m) in r.models.iter().enumerate() {
            let at = |f: &str| format!("routes[{i}].models[{j}].{f}");
            if let Err(e) = ModelPattern::parse(&m.pattern) {
                errors.push(ConfigError::new(at("match"), e.to_string()));
            }
            if let Err(e) = BaseUrl::parse(&m.base_url) {
                errors.push(ConfigError::new(at("base_url"), e));
            }
            if let Some(rename) = &m.rename {
                if rename.trim().is_empty() {
                    errors.push(ConfigError::new(at("rename"), "must not be empty"));
                }
            }
        }
    }
}

impl AccessConfig {
    /// The plugin form of a validated config. `file:` secrets become `${LLM_FORWARD_SECRET_<n>}`.
    pub fn from_config(config: &Config) -> AccessConfig {
        let keys = &config.keys;
        let prefixes: Vec<String> = config
            .routes
            .iter()
            .map(|r| normalize_prefix(&r.route))
            .collect();
        let env_vars = secret_env_vars(config);
        let file_var = |s: &Secret| {
            env_vars
                .iter()
                .find(|(_, src)| src == s)
                .map(|(v, _)| v.as_str())
        };
        let access = AccessConfig {
            upstream_keys: keys
                .upstream
                .iter()
                .map(|k| {
                    let key = upstream_secret(k)
                        .map(|s| s.reference(file_var(&s)))
                        .unwrap_or_default();
                    FilterUpstreamKey {
                        key,
                        levels: k.levels.clone(),
                        routes: k
                            .routes
                            .iter()
                            .filter_map(|r| {
                                let p = normalize_prefix(r);
                                prefixes.iter().position(|x| *x == p)
                            })
                            .collect(),
                    }
                })
                .collect(),
            forward_keys: keys
                .forward
                .iter()
                .enumerate()
                .map(|(i, k)| FilterForwardKey {
                    name: forward_name(k, i),
                    key: Secret::parse(&k.key)
                        .map(|s| s.reference(None))
                        .unwrap_or_default(),
                    level: k.level,
                })
                .collect(),
            levels: keys.levels.clone(),
            cooldown_seconds: keys.cooldown_seconds,
            ip_allow: config.ip.allow.clone(),
            ip_deny: config.ip.deny.clone(),
            routes: config
                .routes
                .iter()
                .map(|r| FilterRouteAccess {
                    key_location: r
                        .key_location
                        .clone()
                        .unwrap_or_else(|| KeyLocation::DEFAULT.to_string()),
                    pass_through_unknown_keys: r.pass_through_unknown_keys,
                    model_paths: r.model_paths.clone(),
                    models: r
                        .models
                        .iter()
                        .map(|m| FilterModelRule {
                            pattern: m.pattern.clone(),
                            rename: m.rename.clone(),
                        })
                        .collect(),
                })
                .collect(),
        };
        // Canonical empty form: it is left out of the plugin JSON and must read back equal.
        if access.is_open() {
            AccessConfig::default()
        } else {
            access
        }
    }
}
