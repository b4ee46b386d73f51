//! OpenAI-Forward's key, level, IP-list and cache-folder variables (`OPENAI_API_KEY_CONFIG`,
//! `FORWARD_KEY_CONFIG`, `LEVEL_MODELS`, `IP_WHITELIST`, `IP_BLACKLIST`, `CACHE_ROOT_PATH_OR_URL`)
//! mapped onto [`Config`], and the variables that carry their keys to Envoy.
//!
//! A leaf module: `config_file` applies these variables with the rest of the environment,
//! and `migrate` uses the same parsing for `llm-forward migrate` and its notes.

use llm_forward_core::access::{ForwardKeyConfig, UpstreamKeyConfig};
use llm_forward_core::config::{Config, ConfigError};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The variable holding the `n`-th upstream key of `OPENAI_API_KEY_CONFIG`.
pub fn upstream_key_var(n: usize) -> String {
    format!("LLM_FORWARD_UPSTREAM_KEY_{n}")
}

/// The variable holding the `n`-th forward key of `FORWARD_KEY_CONFIG`.
pub fn forward_key_var(n: usize) -> String {
    format!("LLM_FORWARD_FORWARD_KEY_{n}")
}

fn json_object(name: &str, text: &str) -> Result<Map<String, Value>, ConfigError> {
    // The file's order matters (key rotation order): serde_json keeps it (preserve_order) or sorts;
    // read entries in order ourselves.
    let v: Value = serde_json::from_str(text.trim())
        .map_err(|e| ConfigError::new(name, format!("not valid JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ConfigError::new(name, "expected a JSON object")),
    }
}

/// A level given as `1` or `"1"`.
fn level_of(v: &Value) -> Option<u32> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .and_then(|n| u32::try_from(n).ok())
}

/// Object entries in the text's order (serde_json's map may sort them).
fn ordered_entries(text: &str) -> Vec<String> {
    #[derive(Default)]
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, _)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                        out.push(k);
                    }
                    Ok(Keys(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Keys>(text.trim())
        .map(|k| k.0)
        .unwrap_or_default()
}

/// `OPENAI_API_KEY_CONFIG`: `{"sk-…": [levels]}` (a single level or `"0"` strings accepted), in
/// the file's order (the rotation order).
pub fn parse_upstream_keys(text: &str) -> Result<Vec<(String, Vec<u32>)>, ConfigError> {
    const NAME: &str = "OPENAI_API_KEY_CONFIG";
    let map = json_object(NAME, text)?;
    let mut out = Vec::new();
    for key in ordered_entries(text) {
        let Some(v) = map.get(&key) else { continue };
        let at = || {
            ConfigError::new(
                NAME,
                "each key needs a list of levels, like {\"sk-…\": [0, 1]}",
            )
        };
        let levels = match v {
            Value::Array(items) => items
                .iter()
                .map(level_of)
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(at)?,
            single => vec![level_of(single).ok_or_else(at)?],
        };
        // `""` is the placeholder `aifd gen_config` writes: no key (see `behaviour_notes`).
        if key.trim().is_empty() || out.iter().any(|(k, _): &(String, Vec<u32>)| *k == key) {
            continue;
        }
        out.push((key, levels));
    }
    Ok(out)
}

/// Forward keys with their levels, and notes.
pub type ForwardKeys = (Vec<(String, u32)>, Vec<String>);

/// `FORWARD_KEY_CONFIG` in either shape: 0.8.1's `{"fk-0": 0}` (key → level; the special key
/// `default`, the level of requests without a key, has no equivalent and is reported) or HEAD's
/// `{"0": ["fk-0"]}` (level → keys). Levels may be strings. Returns (key, level) in file order and
/// notes.
pub fn parse_forward_keys(text: &str) -> Result<ForwardKeys, ConfigError> {
    const NAME: &str = "FORWARD_KEY_CONFIG";
    let map = json_object(NAME, text)?;
    let mut out: Vec<(String, u32)> = Vec::new();
    let mut notes = Vec::new();
    let add = |key: &str, level: u32, out: &mut Vec<(String, u32)>| -> Result<(), ConfigError> {
        let key = key.trim();
        if key.is_empty() {
            // The placeholder `aifd gen_config` writes (`{"": 0}`): no key.
            return Ok(());
        }
        if let Some((_, other)) = out.iter().find(|(k, _)| k == key) {
            if *other != level {
                return Err(ConfigError::new(
                    NAME,
                    format!("a forward key is listed under levels {other} and {level}; a key has one level"),
                ));
            }
            return Ok(());
        }
        out.push((key.to_string(), level));
        Ok(())
    };
    for name in ordered_entries(text) {
        let Some(v) = map.get(&name) else { continue };
        let bad = || {
            ConfigError::new(
                NAME,
                format!("`{}`: expected {{\"fk-…\": level}} (0.8.1) or {{\"level\": [\"fk-…\"]}} (HEAD)", mask(&name)),
            )
        };
        match v {
            // HEAD: level → [keys]
            Value::Array(keys) => {
                let level = level_of(&Value::String(name.clone())).ok_or_else(bad)?;
                for k in keys {
                    add(k.as_str().ok_or_else(bad)?, level, &mut out)?;
                }
            }
            // 0.8.1: key → level
            v if level_of(v).is_some() => {
                let level = level_of(v).ok_or_else(bad)?;
                if name == "default" {
                    notes.push(format!(
                        "FORWARD_KEY_CONFIG: \"default\": {level} (the level of requests without a key) has no equivalent: with forward keys set, requests without one get 401"
                    ));
                    continue;
                }
                add(&name, level, &mut out)?;
            }
            // HEAD with a single key instead of a list.
            Value::String(k) if level_of(&Value::String(name.clone())).is_some() => {
                let level = level_of(&Value::String(name.clone())).ok_or_else(bad)?;
                add(k, level, &mut out)?;
            }
            _ => return Err(bad()),
        }
    }
    Ok((out, notes))
}

/// `LEVEL_MODELS`: `{"1": ["gpt-4"]}` (levels as strings or numbers). Level 0 (every model) is
/// dropped: listing it is meaningless there and an error in `keys.levels`.
pub fn parse_level_models(text: &str) -> Result<BTreeMap<u32, Vec<String>>, ConfigError> {
    const NAME: &str = "LEVEL_MODELS";
    let map = json_object(NAME, text)?;
    let mut out = BTreeMap::new();
    for (level, models) in map {
        let n = level_of(&Value::String(level.clone()))
            .ok_or_else(|| ConfigError::new(NAME, format!("`{level}` is not a level number")))?;
        let list = match models {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>(),
            Value::String(s) => Some(vec![s]),
            _ => None,
        }
        .ok_or_else(|| {
            ConfigError::new(format!("{NAME}.{level}"), "expected a list of model names")
        })?;
        if n != 0 {
            out.insert(n, list);
        }
    }
    Ok(out)
}

/// Shows a key without revealing it.
fn mask(key: &str) -> String {
    let prefix: String = key.chars().take(3).collect();
    format!("{prefix}…")
}

/// A `${VAR}` value is kept as the reference; anything else is a key that goes into a variable.
fn is_reference(key: &str) -> bool {
    let t = key.trim();
    t.starts_with("${") && t.ends_with('}')
}

/// The variables holding the keys of `OPENAI_API_KEY_CONFIG` and `FORWARD_KEY_CONFIG`, with their
/// values, for Envoy's environment. Keys already written as `${VAR}` need none.
pub fn secret_vars(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    if let Some(text) = env("OPENAI_API_KEY_CONFIG").filter(|t| !t.trim().is_empty()) {
        for (i, (key, _)) in parse_upstream_keys(&text)?.into_iter().enumerate() {
            if !is_reference(&key) {
                out.push((upstream_key_var(i), key));
            }
        }
    }
    if let Some(text) = env("FORWARD_KEY_CONFIG").filter(|t| !t.trim().is_empty()) {
        for (i, (key, _)) in parse_forward_keys(&text)?.0.into_iter().enumerate() {
            if !is_reference(&key) {
                out.push((forward_key_var(i), key));
            }
        }
    }
    Ok(out)
}

/// Applies `OPENAI_API_KEY_CONFIG`, `FORWARD_KEY_CONFIG`, `LEVEL_MODELS`, `IP_WHITELIST`,
/// `IP_BLACKLIST` and `CACHE_ROOT_PATH_OR_URL` (each replaces the file's setting when set).
pub fn apply(config: &mut Config, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if let Some(text) = set("OPENAI_API_KEY_CONFIG") {
        config.keys.upstream = parse_upstream_keys(&text)?
            .into_iter()
            .enumerate()
            .map(|(i, (key, levels))| UpstreamKeyConfig {
                key: Some(if is_reference(&key) {
                    key
                } else {
                    format!("${{{}}}", upstream_key_var(i))
                }),
                file: None,
                levels,
                routes: Vec::new(),
            })
            .collect();
    }
    if let Some(text) = set("FORWARD_KEY_CONFIG") {
        config.keys.forward = parse_forward_keys(&text)?
            .0
            .into_iter()
            .enumerate()
            .map(|(i, (key, level))| ForwardKeyConfig {
                name: None,
                key: if is_reference(&key) {
                    key
                } else {
                    format!("${{{}}}", forward_key_var(i))
                },
                level,
            })
            .collect();
    }
    if let Some(text) = set("LEVEL_MODELS") {
        config.keys.levels = parse_level_models(&text)?;
    }
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect()
    };
    if let Some(v) = env("IP_WHITELIST") {
        config.ip.allow = list(&v);
    }
    if let Some(v) = env("IP_BLACKLIST") {
        config.ip.deny = list(&v);
    }
    if let Some(v) = set("CACHE_ROOT_PATH_OR_URL") {
        config.cache.path = Path::new(v.trim()).join("cache.redb").display().to_string();
    }
    Ok(())
}
