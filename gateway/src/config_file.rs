//! Loading `llm-forward.yaml` and applying environment overrides.
//!
//! Order, later wins: built-in defaults → the YAML file → environment variables. The environment
//! lets containers and `.env` users change a deployment without editing the file.

use llm_forward_core::config::{
    normalize_prefix, Config, ConfigError, RouteConfig, RouteKind, ValidConfig,
};
use std::path::{Path, PathBuf};

/// The file `run` and `render` read when `--config` is not given and it exists in the working folder.
pub const DEFAULT_CONFIG_FILE: &str = "llm-forward.yaml";

/// Parse YAML text into a [`Config`], naming the field path on errors.
pub fn parse_yaml(text: &str) -> Result<Config, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Config::default());
    }
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::new(path, e.inner().to_string())
    })
}

/// Where the config comes from: an explicit path, else `./llm-forward.yaml` when present, else defaults.
pub fn resolve_path(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let p = PathBuf::from(DEFAULT_CONFIG_FILE);
            p.exists().then_some(p)
        }
    }
}

/// Settings given on `run`'s command line; they win over the file and the environment, also for
/// every hot reload of the file and every config the console checks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--port`: the listener port.
    pub port: Option<u16>,
    /// `--workers`: Envoy's worker threads (`--concurrency`).
    pub workers: Option<u32>,
    /// `--admin-port`: Envoy's admin on this 127.0.0.1 port instead of the private socket.
    pub admin_port: Option<u16>,
    /// `--log-dir`: the log folder.
    pub log_dir: Option<String>,
}

impl Overrides {
    pub fn apply(&self, config: &mut Config) {
        if let Some(p) = self.port {
            config.server.port = p;
        }
        if let Some(w) = self.workers {
            config.server.concurrency = w;
        }
        if let Some(a) = self.admin_port {
            config.server.admin_port = Some(a);
        }
        if let Some(d) = &self.log_dir {
            config.log_dir = d.clone();
        }
    }
}

/// Fields whose change needs a restart of `llm-forward run` (Envoy's process settings, the cache
/// service, the log folder and the console itself): an edit touching them is refused as a whole.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if new.server.admin_port != old.server.admin_port {
        changed.push("server.admin_port");
    }
    if new.server.concurrency != old.server.concurrency {
        changed.push("server.concurrency");
    }
    if new.cache != old.cache {
        changed.push("cache");
    }
    if new.log_dir != old.log_dir {
        changed.push("log_dir");
    }
    if new.console != old.console {
        changed.push("console");
    }
    // The file modes are the umask of `run` and Envoy, set once at start.
    if new.logging.group_readable != old.logging.group_readable {
        changed.push("logging.group_readable");
    }
    // The built-in rate-limit service is started with the Redis URL.
    if new.limits.backend != old.limits.backend {
        changed.push("limits.backend");
    }
    changed
}

/// Read the file (if any), apply `env`, validate. Errors are printable lines.
pub fn load(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ValidConfig, Vec<String>> {
    load_with(path, env, &Overrides::default())
}

/// For the one-shot commands (`render`, `convert`, `cache`): the config at `--config` (or the
/// default path) with the process environment; an invalid one is printed and becomes exit code 1.
pub fn load_for_cli(config: Option<&Path>) -> Result<ValidConfig, i32> {
    let env = |k: &str| std::env::var(k).ok();
    let path = resolve_path(config);
    load(path.as_deref(), &env).map_err(|errors| {
        eprintln!(
            "llm-forward: invalid configuration:\n  {}",
            errors.join("\n  ")
        );
        1
    })
}

/// [`load`], then the command line's `overrides`, then validate.
pub fn load_with(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<ValidConfig, Vec<String>> {
    let mut config = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| vec![format!("cannot read {}: {e}", p.display())])?;
            parse_yaml(&text).map_err(|e| vec![format!("{}: {e}", p.display())])?
        }
        None => Config::default(),
    };
    apply_env(&mut config, env).map_err(|e| vec![e.to_string()])?;
    overrides.apply(&mut config);
    config
        .validate()
        .map_err(|errs| errs.into_iter().map(|e| e.to_string()).collect())
}

/// Environment variables that override the file. Documented in docs/configuration.md.
pub fn apply_env(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError> {
        value
            .trim()
            .parse()
            .map_err(|_| ConfigError::new(name, format!("`{value}` is not a valid number")))
    }
    if let Some(v) = env("LLM_FORWARD_ADDRESS") {
        config.server.address = v.trim().to_string();
    }
    if let Some(v) = env("LLM_FORWARD_PORT") {
        config.server.port = number("LLM_FORWARD_PORT", &v)?;
    }
    if let Some(v) = env("LLM_FORWARD_ADMIN_PORT") {
        config.server.admin_port = Some(number("LLM_FORWARD_ADMIN_PORT", &v)?);
    }
    if let Some(v) = env("LLM_FORWARD_CONCURRENCY") {
        config.server.concurrency = number("LLM_FORWARD_CONCURRENCY", &v)?;
    }
    if let Some(v) = env("LLM_FORWARD_LOG_DIR") {
        config.log_dir = v;
    }
    // OpenAI-Forward's own names, with their documented meaning.
    // LOG_OPENAI: conversation logs on or off.
    if let Some(v) = env("LOG_OPENAI") {
        config.logging.chat = matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        );
    }
    if let Some(v) = env("FORWARD_CONFIG") {
        config.routes = parse_forward_config(&v)?;
    }
    // OPENAI_API_KEY_CONFIG, FORWARD_KEY_CONFIG, LEVEL_MODELS, IP_WHITELIST, IP_BLACKLIST,
    // CACHE_ROOT_PATH_OR_URL (keys become ${LLM_FORWARD_*_KEY_<n>} references).
    crate::openai_forward_env::apply(config, env)?;
    config.cache.apply_env(env)?;
    if let Some(v) = env("TIMEOUT") {
        let seconds: f64 = number("TIMEOUT", &v)?;
        for r in &mut config.routes {
            r.connect_timeout = seconds;
        }
    }
    apply_limit_env(config, env)?;
    Ok(())
}

/// OpenAI-Forward's rate-limit variables: `REQ_RATE_LIMIT`, `GLOBAL_RATE_LIMIT`,
/// `RATE_LIMIT_STRATEGY`, `TOKEN_RATE_LIMIT` (output pacing) and `REQ_RATE_LIMIT_BACKEND`, with
/// their documented meaning.
fn apply_limit_env(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    use llm_forward_core::limits::config::{parse_openai_forward_limits, PacingRule};
    let limits = &mut config.limits;
    if let Some(v) = env("REQ_RATE_LIMIT").filter(|v| !v.trim().is_empty()) {
        limits.requests = parse_openai_forward_limits("REQ_RATE_LIMIT", &v)?;
    }
    if let Some(v) = env("GLOBAL_RATE_LIMIT").filter(|v| !v.trim().is_empty()) {
        limits.global = llm_forward_core::limits::parse_limit(&v)
            .map_err(|e| ConfigError::new("GLOBAL_RATE_LIMIT", e))?;
    }
    if let Some(v) = env("RATE_LIMIT_STRATEGY").filter(|v| !v.trim().is_empty()) {
        limits.strategy = v
            .parse()
            .map_err(|e: String| ConfigError::new("RATE_LIMIT_STRATEGY", e))?;
    }
    if let Some(v) = env("REQ_RATE_LIMIT_BACKEND").filter(|v| !v.trim().is_empty()) {
        let v = v.trim();
        // OpenAI-Forward shares its limits across instances through this storage URL (the python
        // `limits` library). Redis: fleet-wide limits through the built-in rate-limit service.
        // `memory://`: counted per instance, which is what limits without a backend do here.
        // `rediss://` is passed on too, so validation explains that TLS is not built in.
        if v.starts_with("redis://") || v.starts_with("rediss://") {
            limits.backend = Some(v.to_string());
        } else if !v.starts_with("memory://") {
            return Err(ConfigError::new(
                "REQ_RATE_LIMIT_BACKEND",
                "only redis://… (limits shared by every gateway using that Redis) or memory:// \
                 (limits per gateway) are supported",
            ));
        }
    }
    // Ours, not OpenAI-Forward's: the rate-limit service's deadline (`limits.timeout_ms`), so a `.env`
    // alone can size it for a loaded machine.
    if let Some(v) = env("RATE_LIMIT_TIMEOUT_MS").filter(|v| !v.trim().is_empty()) {
        limits.timeout_ms = v.trim().parse().map_err(|_| {
            ConfigError::new(
                "RATE_LIMIT_TIMEOUT_MS",
                format!("`{v}` is not a valid number"),
            )
        })?;
    }
    if let Some(v) = env("TOKEN_RATE_LIMIT").filter(|v| !v.trim().is_empty()) {
        limits.pacing = parse_openai_forward_limits("TOKEN_RATE_LIMIT", &v)?
            .into_iter()
            .map(|r| PacingRule {
                path: r.path,
                limit: r.limit,
                level: r.level,
            })
            .collect();
    }
    Ok(())
}

/// OpenAI-Forward's `FORWARD_CONFIG`: a JSON list of `{base_url, route, type}`.
pub fn parse_forward_config(text: &str) -> Result<Vec<RouteConfig>, ConfigError> {
    #[derive(serde::Deserialize)]
    struct Entry {
        base_url: String,
        route: String,
        #[serde(rename = "type", default = "openai")]
        kind: RouteKind,
    }
    fn openai() -> RouteKind {
        RouteKind::Openai
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let entries: Vec<Entry> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        ConfigError::new(format!("FORWARD_CONFIG{}", e.path()), e.inner().to_string())
    })?;
    Ok(entries
        .into_iter()
        .map(|e| RouteConfig::new(&normalize_prefix(&e.route), &e.base_url, e.kind))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_forward_rate_limit_variables() {
        let vars = [
            (
                "REQ_RATE_LIMIT",
                r#"{"/v1/chat/completions":[{"level":0,"limit":"100/2minutes"}],"/v1/completions":[{"level":0,"limit":"60/minute;600/hour"}]}"#,
            ),
            ("GLOBAL_RATE_LIMIT", "200/minute"),
            ("RATE_LIMIT_STRATEGY", "moving-window"),
            (
                "TOKEN_RATE_LIMIT",
                r#"{"/v1/chat/completions":[{"level":0,"limit":"100/second"}]}"#,
            ),
        ];
        let env = |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let mut c = Config::default();
        apply_env(&mut c, &env).unwrap();
        assert_eq!(c.limits.requests.len(), 2);
        assert_eq!(c.limits.requests[1].path, "/v1/completions");
        assert_eq!(c.limits.global.to_string(), "200/minute");
        assert_eq!(c.limits.strategy.as_str(), "sliding-window");
        assert_eq!(c.limits.pacing[0].level, Some(0));
        c.validate().unwrap();
        let bad = |name: &str| (name == "GLOBAL_RATE_LIMIT").then(|| "5/minit".to_string());
        let err = apply_env(&mut Config::default(), &bad).unwrap_err();
        assert_eq!(err.path, "GLOBAL_RATE_LIMIT");
    }

    #[test]
    fn req_rate_limit_backend_switches_limits_fleet_wide() {
        let mut c = Config::default();
        let env = env_of(&[("REQ_RATE_LIMIT_BACKEND", "redis://:pw@127.0.0.1:6379/1")]);
        apply_env(&mut c, &env).unwrap();
        assert_eq!(
            c.limits.backend.as_deref(),
            Some("redis://:pw@127.0.0.1:6379/1")
        );
        c.validate().unwrap();
        let mut c = Config::default();
        apply_env(&mut c, &env_of(&[("RATE_LIMIT_TIMEOUT_MS", "250")])).unwrap();
        assert_eq!(c.limits.timeout_ms, 250);
        let err = apply_env(&mut c, &env_of(&[("RATE_LIMIT_TIMEOUT_MS", "soon")])).unwrap_err();
        assert_eq!(err.path, "RATE_LIMIT_TIMEOUT_MS");
        // memory:// is what per-gateway limits already are.
        apply_env(&mut c, &env_of(&[("REQ_RATE_LIMIT_BACKEND", "memory://")])).unwrap();
        assert_eq!(c.limits.backend, None);
        let err = apply_env(
            &mut Config::default(),
            &env_of(&[("REQ_RATE_LIMIT_BACKEND", "memcached://x:11211")]),
        )
        .unwrap_err();
        assert_eq!(err.path, "REQ_RATE_LIMIT_BACKEND");
    }
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn yaml_with_routes_parses() {
        let c = parse_yaml(
            "server:\n  port: 9000\nroutes:\n  - route: /\n    base_url: https://api.openai.com\n  - route: /gemini\n    base_url: https://generativelanguage.googleapis.com\n    type: general\n    retries: 0\n",
        )
        .unwrap();
        assert_eq!(c.server.port, 9000);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].kind, RouteKind::General);
        assert_eq!(c.routes[1].retries, 0);
        assert_eq!(c.routes[0].timeout, 600.0);
    }

    #[test]
    fn log_openai_and_logging_yaml() {
        let mut c = parse_yaml(
            "logging:\n  messages: false\n  max_answer_bytes: 4096\nroutes:\n  - route: /\n    base_url: http://x\n    log_messages: true\n",
        )
        .unwrap();
        assert!(!c.logging.chat && !c.logging.messages);
        assert_eq!(c.logging.max_answer_bytes, 4096);
        assert_eq!(c.routes[0].log_messages, Some(true));
        apply_env(&mut c, &env_of(&[("LOG_OPENAI", "True")])).unwrap();
        assert!(c.logging.chat);
        apply_env(&mut c, &env_of(&[("LOG_OPENAI", "false")])).unwrap();
        assert!(!c.logging.chat);
    }

    #[test]
    fn yaml_errors_name_the_field() {
        let err = parse_yaml("routes:\n  - route: /\n    base_url: http://x\n    type: grpc\n")
            .unwrap_err();
        assert_eq!(err.path, "routes[0].type");
        let err = parse_yaml("server:\n  prot: 1\n").unwrap_err();
        assert_eq!(err.path, "server.prot");
    }

    #[test]
    fn env_overrides_the_file() {
        let mut c = Config::default();
        let env = env_of(&[
            ("LLM_FORWARD_PORT", "8080"),
            (
                "FORWARD_CONFIG",
                r#"[{"base_url":"http://127.0.0.1:9001","route":"localai/","type":"general"}]"#,
            ),
            ("TIMEOUT", "6"),
        ]);
        apply_env(&mut c, &env).unwrap();
        assert_eq!(c.server.port, 8080);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.routes[0].route, "/localai");
        assert_eq!(c.routes[0].kind, RouteKind::General);
        assert_eq!(c.routes[0].connect_timeout, 6.0);
    }

    #[test]
    fn bad_env_values_are_named() {
        let mut c = Config::default();
        let err = apply_env(&mut c, &env_of(&[("LLM_FORWARD_PORT", "x")])).unwrap_err();
        assert_eq!(err.path, "LLM_FORWARD_PORT");
        let err =
            apply_env(&mut c, &env_of(&[("FORWARD_CONFIG", r#"[{"route":"/"}]"#)])).unwrap_err();
        assert!(err.path.starts_with("FORWARD_CONFIG"), "{err}");
    }
}
