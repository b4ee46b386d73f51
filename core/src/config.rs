//! The `llm-forward.yaml` schema, its defaults and its validation.
//!
//! One schema serves both sides: the gateway reads it (YAML + environment) to render Envoy's
//! bootstrap, and the filter receives the part it needs ([`FilterConfig`]) as JSON plugin config.
//! Validation turns a raw [`Config`] into a checked one and names the field path of every problem,
//! so a typo fails at startup with `routes[1].base_url: …` instead of misbehaving later.

mod access_form;

// Shared with the feature modules' own settings (access, cache, limits); they live in a leaf module
// so those modules need not import this one, which aggregates them.
pub use crate::config_base::{normalize_prefix, ConfigError, RouteKind};
use crate::url::BaseUrl;
use serde::{Deserialize, Serialize};

/// The whole gateway configuration, as written in `llm-forward.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    /// Folder for access and chat logs.
    pub log_dir: String,
    pub routes: Vec<RouteConfig>,
    /// Forward keys, pooled upstream keys and models per level (see `crate::access`).
    pub keys: crate::access::KeysConfig,
    /// Client IP allow/deny lists with CIDR.
    pub ip: crate::access::IpConfig,
    /// Chat logs and usage metrics.
    pub logging: LoggingConfig,
    /// Response cache (see `crate::cache`).
    pub cache: crate::cache::CacheConfig,
    /// Request limits, token quotas and output pacing (see `crate::limits::config`).
    pub limits: crate::limits::config::LimitsConfig,
    /// The web console of `llm-forward run` (off unless enabled here or with `--console`).
    pub console: ConsoleConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            log_dir: "Log".into(),
            routes: vec![RouteConfig::new(
                "/",
                "https://api.openai.com",
                RouteKind::Openai,
            )],
            keys: crate::access::KeysConfig::default(),
            ip: crate::access::IpConfig::default(),
            logging: LoggingConfig::default(),
            cache: crate::cache::CacheConfig::default(),
            limits: crate::limits::config::LimitsConfig::default(),
            console: ConsoleConfig::default(),
        }
    }
}

/// `console:` — the token-protected web console served by `llm-forward run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    pub enabled: bool,
    /// 127.0.0.1 unless set: the console edits the config, so keep it local (or behind a proxy).
    pub address: String,
    pub port: u16,
    /// Bearer token of the API; generated at start (and printed in the banner) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: false,
            address: "127.0.0.1".into(),
            port: 8003,
            token: None,
        }
    }
}

impl ConsoleConfig {
    fn check(&self, server: &ServerConfig, errors: &mut Vec<ConfigError>) {
        if self.address.parse::<std::net::IpAddr>().is_err() {
            errors.push(ConfigError::new(
                "console.address",
                format!("`{}` is not an IP address", self.address),
            ));
        }
        // Collisions matter only when it is served (a disabled default must not break configs).
        let taken = self.port == server.port || Some(self.port) == server.admin_port;
        if self.port == 0 || (self.enabled && taken) {
            errors.push(ConfigError::new(
                "console.port",
                "must be 1 to 65535 and differ from server.port and server.admin_port",
            ));
        }
        if let Some(t) = &self.token {
            let ok = t.len() >= 16 && t.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                errors.push(ConfigError::new(
                    "console.token",
                    "must be at least 16 printable characters without spaces",
                ));
            }
        }
    }
}

/// Chat/completion/embedding records and per-model usage counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Write one JSON record per chat/completion/embedding exchange of `openai` routes to
    /// `<log_dir>/<route>/chat.log` (OpenAI-Forward's `LOG_OPENAI`).
    pub chat: bool,
    /// Privacy switch: `false` keeps request messages/prompt/input and the answer text out of the
    /// records (usage, model, params and status stay). Routes may override it (`log_messages`).
    pub messages: bool,
    /// Count requests and prompt/completion tokens per route × model × level in Envoy stats.
    pub metrics: bool,
    /// Per-response cap on collected answer text; past it the record is marked `truncated`.
    pub max_answer_bytes: u32,
    /// Request bodies larger than this are not logged (`request_truncated`) unless another feature
    /// already parsed them.
    pub max_request_bytes: u32,
    /// `llm-forward run` rotates a chat log once it reaches this size (0 = never).
    pub rotate_bytes: u64,
    /// Log files, the disk cache file and config backups readable by the user's group (0640)
    /// instead of only by the user (0600). They hold conversations and may hold keys.
    pub group_readable: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            chat: false,
            messages: true,
            metrics: true,
            max_answer_bytes: 1024 * 1024,
            max_request_bytes: 1024 * 1024,
            rotate_bytes: 50 * 1000 * 1000,
            group_readable: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listener address; `0.0.0.0` like `aifd run`.
    pub address: String,
    pub port: u16,
    /// Envoy admin on this 127.0.0.1 port. Unset (the default): `llm-forward run` puts the admin
    /// on a Unix socket in its private runtime folder, out of reach of other local users and
    /// browsers; `llm-forward render` writes 127.0.0.1:8001.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_port: Option<u16>,
    /// Envoy worker threads; 0 lets Envoy use one per core.
    pub concurrency: u32,
    /// Bytes Envoy buffers per connection (listener and clusters). Request bodies above it get 413.
    pub buffer_limit_bytes: u32,
    /// How many `X-Forwarded-For` hops in front of the gateway are trusted for the client address.
    pub xff_num_trusted_hops: u32,
    /// Which web pages may call the gateway from a browser.
    pub cors: CorsConfig,
    /// Per Envoy worker (one wasm VM each): bytes of request bodies the filter holds, their parsed
    /// form (estimated) and paced-stream queues. Beyond it a body that must be read (model check,
    /// model routing) gets 413 and optional reading (cache, logs, usage injection) is skipped;
    /// a paced stream that would pass it is released unpaced.
    pub worker_memory_budget_bytes: u64,
}

/// Default of `server.worker_memory_budget_bytes`: 64 MiB per worker.
pub const DEFAULT_WORKER_MEMORY_BUDGET: u64 = 64 * 1024 * 1024;

fn default_memory_budget() -> u64 {
    DEFAULT_WORKER_MEMORY_BUDGET
}

fn is_default_memory_budget(v: &u64) -> bool {
    *v == DEFAULT_WORKER_MEMORY_BUDGET
}

/// `server.cors`: browser access from other origins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed (`https://app.example.com`), or `"*"` for any; empty turns CORS off.
    pub allow_origins: Vec<String>,
    /// Let pages send cookies / HTTP auth (`Access-Control-Allow-Credentials`). Only with listed
    /// origins, never with `"*"`: a credentialed answer to any origin lets every website act as
    /// the visitor.
    pub allow_credentials: bool,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allow_origins: vec!["*".into()],
            allow_credentials: false,
        }
    }
}

impl CorsConfig {
    fn check(&self, errors: &mut Vec<ConfigError>) {
        let any = self.allow_origins.iter().any(|o| o == "*");
        if any && self.allow_credentials {
            errors.push(ConfigError::new(
                "server.cors.allow_credentials",
                "cannot be true with allow_origins \"*\": list the origins that may send credentials",
            ));
        }
        for (i, o) in self.allow_origins.iter().enumerate() {
            let well_formed = o == "*"
                || ((o.starts_with("https://") || o.starts_with("http://"))
                    && !o.ends_with('/')
                    && o.split_once("://").is_some_and(|(_, host)| {
                        !host.is_empty()
                            && host
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
                    }));
            if !well_formed {
                errors.push(ConfigError::new(
                    format!("server.cors.allow_origins[{i}]"),
                    format!("`{o}` is not an origin like https://app.example.com (or \"*\")"),
                ));
            }
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            address: "0.0.0.0".into(),
            port: 8000,
            admin_port: None,
            concurrency: 0,
            buffer_limit_bytes: 32 * 1024 * 1024,
            xff_num_trusted_hops: 0,
            cors: CorsConfig::default(),
            worker_memory_budget_bytes: DEFAULT_WORKER_MEMORY_BUDGET,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, matched on segment boundaries (`/gen` matches `/gen/x`, never `/genx`).
    pub route: String,
    pub base_url: String,
    #[serde(rename = "type", default = "default_kind")]
    pub kind: RouteKind,
    /// Seconds for the whole exchange, streams included (0 disables).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Seconds to establish the upstream connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: f64,
    /// Seconds a stream may stay silent before it is cut (0 disables).
    #[serde(default = "default_stream_idle_timeout")]
    pub stream_idle_timeout: f64,
    /// Retries after the first attempt on connect failure, reset, 502, 503 and 504.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Overrides `logging.messages` for this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_messages: Option<bool>,
    /// Where clients put the key on this route: `authorization` (Bearer, default), `x-api-key`,
    /// `x-goog-api-key`, `api-key` or `query:<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_location: Option<String>,
    /// Forward unknown or missing keys unchanged instead of answering 401.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pass_through_unknown_keys: bool,
    /// Extra paths (after the prefix) whose JSON body `model` is checked and routed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_paths: Vec<String>,
    /// Model routing: models matching a rule go to its `base_url` (optionally renamed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<crate::access::ModelTargetConfig>,
}

fn default_kind() -> RouteKind {
    RouteKind::Openai
}
fn default_timeout() -> f64 {
    600.0
}
fn default_connect_timeout() -> f64 {
    10.0
}
fn default_stream_idle_timeout() -> f64 {
    300.0
}
fn default_retries() -> u32 {
    2
}

impl RouteConfig {
    pub fn new(route: &str, base_url: &str, kind: RouteKind) -> Self {
        RouteConfig {
            route: route.into(),
            base_url: base_url.into(),
            kind,
            timeout: default_timeout(),
            connect_timeout: default_connect_timeout(),
            stream_idle_timeout: default_stream_idle_timeout(),
            retries: default_retries(),
            log_messages: None,
            key_location: None,
            pass_through_unknown_keys: false,
            model_paths: Vec::new(),
            models: Vec::new(),
        }
    }
}

/// A route after validation: normalised prefix, parsed URL and a stable name for stats and clusters.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub prefix: String,
    /// `root` for `/`, else the prefix with `/` turned into `_` (`/v1/gen` → `v1_gen`).
    pub name: String,
    pub upstream: BaseUrl,
    pub kind: RouteKind,
    pub timeout: f64,
    pub connect_timeout: f64,
    pub stream_idle_timeout: f64,
    pub retries: u32,
}

/// A configuration that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig {
    pub raw: Config,
    pub routes: Vec<Route>,
}

fn route_name(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        "root".into()
    } else {
        trimmed
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

fn check_seconds(path: String, value: f64, allow_zero: bool, errors: &mut Vec<ConfigError>) {
    let ok = value.is_finite() && value >= 0.0 && (allow_zero || value > 0.0) && value <= 86_400.0;
    if !ok {
        let range = if allow_zero {
            "0 to 86400"
        } else {
            "more than 0, at most 86400"
        };
        errors.push(ConfigError::new(
            path,
            format!("must be {range} seconds, got {value}"),
        ));
    }
}

impl Config {
    /// Parse the JSON form (the filter's plugin configuration), naming the field on type errors.
    pub fn from_json(text: &[u8]) -> Result<Config, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            ConfigError::new(path, e.inner().to_string())
        })
    }

    /// Check every field; all problems are reported, not just the first.
    pub fn validate(self) -> Result<ValidConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if self.server.port == 0 {
            errors.push(ConfigError::new("server.port", "must be 1 to 65535"));
        }
        if matches!(self.server.admin_port, Some(p) if p == 0 || p == self.server.port) {
            errors.push(ConfigError::new(
                "server.admin_port",
                "must be 1 to 65535 and differ from server.port",
            ));
        }
        self.server.cors.check(&mut errors);
        if self.server.address.parse::<std::net::IpAddr>().is_err() {
            errors.push(ConfigError::new(
                "server.address",
                format!("`{}` is not an IP address", self.server.address),
            ));
        }
        if self.server.buffer_limit_bytes < 64 * 1024 {
            errors.push(ConfigError::new(
                "server.buffer_limit_bytes",
                "must be at least 65536",
            ));
        }
        if !(1024 * 1024..=2 * 1024 * 1024 * 1024).contains(&self.server.worker_memory_budget_bytes)
        {
            errors.push(ConfigError::new(
                "server.worker_memory_budget_bytes",
                "must be 1048576 (1 MiB) to 2147483648 (2 GiB)",
            ));
        }
        if self.routes.is_empty() {
            errors.push(ConfigError::new("routes", "at least one route is required"));
        }
        let logging = &self.logging;
        if !(1024..=64 * 1024 * 1024).contains(&logging.max_answer_bytes) {
            errors.push(ConfigError::new(
                "logging.max_answer_bytes",
                "must be 1024 to 67108864",
            ));
        }
        if logging.max_request_bytes < 1024 {
            errors.push(ConfigError::new(
                "logging.max_request_bytes",
                "must be at least 1024",
            ));
        }
        if logging.rotate_bytes != 0 && logging.rotate_bytes < 1024 * 1024 {
            errors.push(ConfigError::new(
                "logging.rotate_bytes",
                "must be 0 (never) or at least 1048576",
            ));
        }
        self.cache.check(&mut errors);
        self.limits.check(&mut errors);
        self.console.check(&self.server, &mut errors);
        let mut routes: Vec<Route> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = |field: &str| format!("routes[{i}].{field}");
            if r.route.contains(['?', '#', '*', ' ']) {
                errors.push(ConfigError::new(
                    at("route"),
                    format!("`{}` must be a plain path prefix", r.route),
                ));
                continue;
            }
            let prefix = normalize_prefix(&r.route);
            if let Some(j) = routes.iter().position(|other| other.prefix == prefix) {
                let what = if prefix == "/" {
                    "only one root route (`/`) may exist".to_string()
                } else {
                    format!("`{prefix}` is already used by routes[{j}]")
                };
                errors.push(ConfigError::new(at("route"), what));
            }
            check_seconds(at("timeout"), r.timeout, true, &mut errors);
            check_seconds(at("connect_timeout"), r.connect_timeout, false, &mut errors);
            check_seconds(
                at("stream_idle_timeout"),
                r.stream_idle_timeout,
                true,
                &mut errors,
            );
            if r.retries > 10 {
                errors.push(ConfigError::new(at("retries"), "at most 10"));
            }
            match BaseUrl::parse(&r.base_url) {
                Ok(upstream) => routes.push(Route {
                    name: route_name(&prefix),
                    prefix,
                    upstream,
                    kind: r.kind,
                    timeout: r.timeout,
                    connect_timeout: r.connect_timeout,
                    stream_idle_timeout: r.stream_idle_timeout,
                    retries: r.retries,
                }),
                Err(e) => errors.push(ConfigError::new(at("base_url"), e)),
            }
        }
        // Names become stat and cluster names; two prefixes may sanitise to the same name. A
        // renamed route takes the first `<name>_<k>` (k from its position) no other route has,
        // renamed or not: `/a_b_2`, `/a_b`, `/a.b` must not end with two `a_b_2`.
        for i in 0..routes.len() {
            if routes[..i].iter().any(|r| r.name == routes[i].name) {
                let base = routes[i].name.clone();
                let mut k = i;
                let mut candidate = format!("{base}_{k}");
                while routes
                    .iter()
                    .enumerate()
                    .any(|(j, r)| j != i && r.name == candidate)
                {
                    k += 1;
                    candidate = format!("{base}_{k}");
                }
                routes[i].name = candidate;
            }
        }
        access_form::validate(&self, &mut errors);
        if errors.is_empty() {
            Ok(ValidConfig { raw: self, routes })
        } else {
            Err(errors)
        }
    }
}

/// What the wasm filter receives as plugin configuration (JSON). Derived from the validated config
/// by the gateway, so the filter never sees listener or process settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub routes: Vec<FilterRoute>,
    #[serde(default)]
    pub logging: FilterLogging,
    #[serde(default, skip_serializing_if = "crate::access::AccessConfig::is_open")]
    pub access: crate::access::AccessConfig,
    /// Present when caching is on for some route type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::cache::FilterCache>,
    /// Request limits, token quotas and pacing, paths normalised.
    #[serde(
        default,
        skip_serializing_if = "crate::limits::config::LimitsConfig::is_empty"
    )]
    pub limits: crate::limits::config::LimitsConfig,
    /// `server.worker_memory_budget_bytes`.
    #[serde(
        default = "default_memory_budget",
        skip_serializing_if = "is_default_memory_budget"
    )]
    pub memory_budget_bytes: u64,
    /// Fleet-wide limits: the rate-limit service the filter asks instead of shared data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit: Option<crate::limits::fleet::FleetSettings>,
}

/// The filter's part of [`LoggingConfig`], with per-route privacy resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterLogging {
    pub chat: bool,
    pub metrics: bool,
    pub max_answer_bytes: u32,
    pub max_request_bytes: u32,
    /// Names of routes whose records leave out messages and answer text.
    pub private_routes: Vec<String>,
}

impl Default for FilterLogging {
    fn default() -> Self {
        let l = LoggingConfig::default();
        FilterLogging {
            chat: l.chat,
            metrics: l.metrics,
            max_answer_bytes: l.max_answer_bytes,
            max_request_bytes: l.max_request_bytes,
            private_routes: Vec::new(),
        }
    }
}

impl FilterLogging {
    pub fn from_valid(config: &ValidConfig) -> Self {
        let l = &config.raw.logging;
        FilterLogging {
            chat: l.chat,
            metrics: l.metrics,
            max_answer_bytes: l.max_answer_bytes,
            max_request_bytes: l.max_request_bytes,
            private_routes: config
                .routes
                .iter()
                .zip(&config.raw.routes)
                .filter(|(_, raw)| !raw.log_messages.unwrap_or(l.messages))
                .map(|(r, _)| r.name.clone())
                .collect(),
        }
    }

    /// Whether records of `route` may carry messages and answer text.
    pub fn messages_for(&self, route: &str) -> bool {
        !self.private_routes.iter().any(|r| r == route)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRoute {
    pub prefix: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RouteKind,
}

impl FilterConfig {
    pub fn from_valid(config: &ValidConfig) -> Self {
        FilterConfig {
            routes: config
                .routes
                .iter()
                .map(|r| FilterRoute {
                    prefix: r.prefix.clone(),
                    name: r.name.clone(),
                    kind: r.kind,
                })
                .collect(),
            logging: FilterLogging::from_valid(config),
            access: crate::access::AccessConfig::from_config(&config.raw),
            cache: crate::cache::FilterCache::from_config(&config.raw.cache),
            limits: {
                // The Redis URL (maybe with a password) and the service address stay in the
                // gateway: Envoy's cluster carries the address.
                let mut limits = config.raw.limits.clone().normalized();
                limits.backend = None;
                limits.service = None;
                limits
            },
            memory_budget_bytes: config.raw.server.worker_memory_budget_bytes,
            ratelimit: config
                .raw
                .limits
                .is_fleet()
                .then(|| crate::limits::fleet::FleetSettings {
                    cluster: crate::limits::fleet::CLUSTER.to_string(),
                    domain: config.raw.limits.domain.clone(),
                    timeout_ms: config.raw.limits.timeout_ms,
                    failure_mode: config.raw.limits.failure_mode,
                    builtin: config.raw.limits.backend.is_some(),
                }),
        }
    }

    /// Parse and check the plugin configuration; the error names the field.
    pub fn from_json(text: &[u8]) -> Result<FilterConfig, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(text);
        let config: FilterConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::new(
                if path == "." { String::new() } else { path },
                e.inner().to_string(),
            )
        })?;
        for (i, r) in config.routes.iter().enumerate() {
            if normalize_prefix(&r.prefix) != r.prefix {
                return Err(ConfigError::new(
                    format!("routes[{i}].prefix"),
                    "must be normalised (`/a/b`)",
                ));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(config: Config) -> Vec<String> {
        config
            .validate()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn default_forwards_root_to_openai() {
        let valid = Config::default().validate().unwrap();
        assert_eq!(valid.routes.len(), 1);
        assert_eq!(valid.routes[0].prefix, "/");
        assert_eq!(valid.routes[0].name, "root");
        assert_eq!(valid.routes[0].upstream.host, "api.openai.com");
        assert_eq!(valid.raw.server.port, 8000);
    }

    #[test]
    fn console_fields_are_checked_with_their_paths() {
        let mut c = Config::default();
        c.console.port = c.server.port;
        assert!(
            errors_of(c.clone()).is_empty(),
            "a disabled console may share"
        );
        c.console.enabled = true;
        c.console.address = "localhost".into();
        c.console.token = Some("short".into());
        let errors = errors_of(c);
        assert!(
            errors.iter().any(|e| e.starts_with("console.port:")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("console.address:")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("console.token:")),
            "{errors:?}"
        );
    }

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(normalize_prefix("gemini/"), "/gemini");
        assert_eq!(normalize_prefix("//a//b/"), "/a/b");
        assert_eq!(normalize_prefix("/"), "/");
        assert_eq!(normalize_prefix(""), "/");
    }

    #[test]
    fn two_roots_are_rejected_with_the_field_path() {
        let mut c = Config::default();
        c.routes.push(RouteConfig::new(
            "/",
            "http://127.0.0.1:9000",
            RouteKind::General,
        ));
        assert_eq!(
            errors_of(c),
            vec!["routes[1].route: only one root route (`/`) may exist"]
        );
    }

    #[test]
    fn duplicate_prefix_after_normalisation_is_rejected() {
        let mut c = Config::default();
        c.routes.push(RouteConfig::new(
            "/gen",
            "http://127.0.0.1:9000",
            RouteKind::General,
        ));
        c.routes.push(RouteConfig::new(
            "gen/",
            "http://127.0.0.1:9001",
            RouteKind::General,
        ));
        assert_eq!(
            errors_of(c),
            vec!["routes[2].route: `/gen` is already used by routes[1]"]
        );
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut c = Config::default();
        c.server.address = "localhost:1".into();
        c.routes[0].base_url = "api.openai.com".into();
        c.routes[0].connect_timeout = 0.0;
        let errs = errors_of(c);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("server.address:")));
        assert!(errs.iter().any(|e| e.starts_with("routes[0].base_url:")));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("routes[0].connect_timeout:")));
    }

    #[test]
    fn unknown_fields_are_errors_naming_the_path() {
        let err =
            Config::from_json(br#"{"routes":[{"route":"/","base_url":"http://x","typo":1}]}"#)
                .unwrap_err();
        assert_eq!(err.path, "routes[0].typo");
        assert!(err.message.contains("typo"), "{err}");
    }

    #[test]
    fn wrong_types_name_the_path() {
        let err = Config::from_json(br#"{"server":{"port":"eighty"}}"#).unwrap_err();
        assert_eq!(err.path, "server.port");
    }

    #[test]
    fn route_names_are_unique_and_safe() {
        let mut c = Config::default();
        c.routes.push(RouteConfig::new(
            "/a.b",
            "http://127.0.0.1:1",
            RouteKind::General,
        ));
        c.routes.push(RouteConfig::new(
            "/a_b",
            "http://127.0.0.1:2",
            RouteKind::General,
        ));
        let v = c.validate().unwrap();
        let names: Vec<&str> = v.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["root", "a_b", "a_b_2"]);
    }

    #[test]
    fn a_renamed_route_never_takes_another_routes_name() {
        let mut c = Config::default();
        for prefix in ["/a_b_2", "/a_b", "/a.b"] {
            c.routes.push(RouteConfig::new(
                prefix,
                "http://127.0.0.1:1",
                RouteKind::General,
            ));
        }
        let v = c.validate().unwrap();
        let names: Vec<&str> = v.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["root", "a_b_2", "a_b", "a_b_3"]);
    }

    #[test]
    fn filter_config_round_trips_through_json() {
        let mut c = Config::default();
        c.routes.push(RouteConfig::new(
            "/gemini",
            "https://generativelanguage.googleapis.com",
            RouteKind::General,
        ));
        let fc = FilterConfig::from_valid(&c.validate().unwrap());
        let json = serde_json::to_vec(&fc).unwrap();
        assert_eq!(FilterConfig::from_json(&json).unwrap(), fc);
    }

    #[test]
    fn logging_limits_are_checked_and_privacy_is_resolved_per_route() {
        let mut c = Config::default();
        c.logging.max_answer_bytes = 10;
        c.logging.rotate_bytes = 5;
        let errs = errors_of(c);
        assert!(errs
            .iter()
            .any(|e| e.starts_with("logging.max_answer_bytes:")));
        assert!(errs.iter().any(|e| e.starts_with("logging.rotate_bytes:")));

        let mut c = Config::default();
        c.logging.chat = true;
        let mut private = RouteConfig::new("/p", "http://127.0.0.1:1", RouteKind::Openai);
        private.log_messages = Some(false);
        c.routes.push(private);
        let fc = FilterConfig::from_valid(&c.clone().validate().unwrap());
        assert!(fc.logging.chat);
        assert!(fc.logging.messages_for("root") && !fc.logging.messages_for("p"));
        c.logging.messages = false;
        c.routes[1].log_messages = Some(true);
        let fc = FilterConfig::from_valid(&c.validate().unwrap());
        assert!(!fc.logging.messages_for("root") && fc.logging.messages_for("p"));
        // Older plugin JSON without `logging` still loads.
        let old = FilterConfig::from_json(br#"{"routes":[]}"#).unwrap();
        assert_eq!(old.logging, FilterLogging::default());
    }

    #[test]
    fn filter_config_rejects_unnormalised_prefix() {
        let err =
            FilterConfig::from_json(br#"{"routes":[{"prefix":"/a/","name":"a","type":"openai"}]}"#)
                .unwrap_err();
        assert_eq!(err.path, "routes[0].prefix");
    }
}
