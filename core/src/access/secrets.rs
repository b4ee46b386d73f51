//! Secrets in the settings: literal, `${VAR}` or `file:` values, the references the plugin form
//! carries instead of real keys, and the environment variables Envoy must pass into the VM.

use super::settings::{KeysConfig, UpstreamKeyConfig};

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
