//! Settings pieces shared by the configuration and the feature modules that define their own
//! sections of it (access, cache, limits): the error type with its field path, the route kind and
//! prefix normalisation and matching. A leaf module: it imports nothing from the crate, so `config` (which
//! aggregates the sections) and the features can both use it without an import cycle.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A configuration problem, located by the JSON-path-like name of the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// How a route's traffic is treated; same names and meaning as OpenAI-Forward's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    /// OpenAI-compatible API: JSON bodies of chat/completions/embeddings get LLM features.
    Openai,
    /// Any HTTP API, passed through.
    General,
}

/// Normalise a route prefix like OpenAI-Forward does: leading `/` added, trailing `/` removed,
/// runs of `/` collapsed. `""` and `"/"` are the root.
pub fn normalize_prefix(route: &str) -> String {
    let parts: Vec<&str> = route.split('/').filter(|s| !s.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// True when `path` (query already removed) is `prefix` or lies below it.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}
