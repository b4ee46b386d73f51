//! The access settings in their two serialised forms: the **file form** (`keys:`, `ip:` and a
//! route's `models:` in `llm-forward.yaml`) and the **plugin form** ([`AccessConfig`]) the gateway
//! hands to the filter as JSON, where secrets stay `${VAR}` references.

use super::key_location::KeyLocation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

pub(crate) fn forward_name(k: &ForwardKeyConfig, index: usize) -> String {
    k.name
        .as_ref()
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|| format!("forward-{index}"))
}

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
