//! The response cache's decisions: its configuration, which requests it looks at, what it stores
//! and how a stored answer is replayed in the mode the client asked for.
//!
//! The cache service (`llm-forward cache`) stores opaque bytes under a key with a TTL; this module
//! defines those bytes ([`Entry`], a small binary envelope) and everything the filter decides around
//! them. Keys come from [`crate::cache_key`].
//!
//! Differences from OpenAI-Forward (on purpose):
//! - keys are scoped (shared, per level or per forward key) and include the route and every field
//!   that changes the answer;
//! - `caching: false` (or no field and `default_request_caching: false`) means neither lookup nor
//!   store, so a tenant that did not opt in never has its answers served to others;
//! - entries have a TTL and the memory backend is bounded; hits are answered at once (no sleep);
//! - general routes and other `routes` paths really are cached (raw bytes, method + path + body key).

use crate::answer::{self, Answer, ApiKind};
use crate::cache_key::{self, CacheScope, CachingField};
use crate::config_base::{ConfigError, RouteKind};
use crate::sse::{SseEvent, SseParser};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod hot;
pub mod scope;

pub use scope::{credential_digest, credential_material, scope_for, CacheCaller};

/// The Envoy cluster the filter calls for lookups and stores.
pub const CACHE_CLUSTER: &str = "llm_forward_cache";
/// Request header with a per-request instruction: `skip` (no lookup, no store) or `refresh` (no
/// lookup, store the fresh answer).
pub const CONTROL_HEADER: &str = "x-llm-forward-cache";
/// Response header saying what the cache did: `HIT`, `MISS` or `BYPASS`.
pub const STATUS_HEADER: &str = "x-cache";
/// Response header of a hit saying where it came from: `worker` (the worker's hot cache) or
/// `service` (the cache service).
pub const SOURCE_HEADER: &str = "x-cache-source";
/// Request header of a store (`PUT /entries/<key>`): seconds the entry lives.
pub const TTL_HEADER: &str = "x-ttl-seconds";
/// Longest key the service accepts.
pub const MAX_KEY_LEN: usize = 256;

/// Where entries live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    /// In the cache service's memory, bounded by `max_bytes`, least recently used evicted first.
    Memory,
    /// An embedded database file (`path`); entries survive restarts.
    Disk,
    /// A Redis server (`redis_url`), shared by a fleet of gateways.
    Redis,
}

impl CacheBackend {
    /// Also accepts OpenAI-Forward's `CACHE_BACKEND` values (`MEMORY`, `LMDB`, `LevelDB`).
    pub fn parse(text: &str) -> Option<CacheBackend> {
        match text.trim().to_ascii_lowercase().as_str() {
            "memory" => Some(CacheBackend::Memory),
            "disk" | "lmdb" | "leveldb" | "redb" => Some(CacheBackend::Disk),
            "redis" => Some(CacheBackend::Redis),
            _ => None,
        }
    }
}

/// Who shares cached answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeMode {
    /// Every client of a route.
    Shared,
    /// Clients whose forward keys have the same level (the default).
    Level,
    /// One forward key.
    Key,
}

/// `cache:` in `llm-forward.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub backend: CacheBackend,
    /// Port of the cache service on 127.0.0.1 (started by `llm-forward run`).
    pub port: u16,
    /// Memory backend: total bytes of keys and values kept.
    pub max_bytes: u64,
    /// Disk backend: database file.
    pub path: String,
    /// Redis backend: `redis://[:password@]host:port[/db]`.
    pub redis_url: String,
    /// How long an entry lives.
    pub ttl_seconds: u64,
    /// Cache chat, completions and embeddings (and other `routes` paths) on openai routes.
    pub openai: bool,
    /// Cache identical requests (method, path, query, body) on general routes' `routes` paths.
    pub general: bool,
    /// Route paths (after the route prefix) that are cached; `/x/*` matches everything below `/x`.
    pub routes: Vec<String>,
    /// What an openai request without a `caching` field gets.
    pub default_request_caching: bool,
    pub scope: ScopeMode,
    /// Lookup timeout; a slower cache is a miss.
    pub timeout_ms: u64,
    /// Responses larger than this are not stored.
    pub max_entry_bytes: u64,
    /// Per Envoy worker: bytes of recently fetched or stored entries kept in the filter's memory
    /// (answered without asking the cache service); 0 turns the worker cache off.
    pub hot_bytes: u64,
    /// Longest time a worker keeps an entry before asking the service again (never past the
    /// entry's own TTL), so workers and gateways converge.
    pub hot_ttl_seconds: u64,
}

/// Default of `cache.hot_bytes`: 8 MiB per worker.
pub const DEFAULT_HOT_BYTES: u64 = 8 * 1024 * 1024;
/// Default of `cache.hot_ttl_seconds`.
pub const DEFAULT_HOT_TTL_SECONDS: u64 = 60;

fn default_hot_bytes() -> u64 {
    DEFAULT_HOT_BYTES
}

fn default_hot_ttl_seconds() -> u64 {
    DEFAULT_HOT_TTL_SECONDS
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackend::Memory,
            port: 8002,
            max_bytes: 256 * 1024 * 1024,
            path: "cache.redb".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            ttl_seconds: 86_400,
            openai: false,
            general: false,
            routes: vec!["/v1/chat/completions".into(), "/v1/embeddings".into()],
            default_request_caching: false,
            scope: ScopeMode::Level,
            timeout_ms: 100,
            max_entry_bytes: 4 * 1024 * 1024,
            hot_bytes: DEFAULT_HOT_BYTES,
            hot_ttl_seconds: DEFAULT_HOT_TTL_SECONDS,
        }
    }
}

impl CacheConfig {
    /// True when some route type is cached (then the cache service runs and the filter looks).
    pub fn enabled(&self) -> bool {
        self.openai || self.general
    }

    /// Appends every problem to `errors`, with `cache.<field>` paths.
    pub fn check(&self, errors: &mut Vec<ConfigError>) {
        if self.port == 0 {
            errors.push(ConfigError::new("cache.port", "must be 1 to 65535"));
        }
        if self.ttl_seconds == 0 || self.ttl_seconds > 365 * 86_400 {
            errors.push(ConfigError::new(
                "cache.ttl_seconds",
                "must be 1 to 31536000 seconds",
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 60_000 {
            errors.push(ConfigError::new(
                "cache.timeout_ms",
                "must be 1 to 60000 milliseconds",
            ));
        }
        if self.max_entry_bytes < 1024 || self.max_entry_bytes > 256 * 1024 * 1024 {
            errors.push(ConfigError::new(
                "cache.max_entry_bytes",
                "must be 1024 to 268435456",
            ));
        }
        if self.hot_bytes > 1024 * 1024 * 1024 {
            errors.push(ConfigError::new(
                "cache.hot_bytes",
                "must be 0 (off) to 1073741824",
            ));
        }
        if self.hot_ttl_seconds == 0 || self.hot_ttl_seconds > 86_400 {
            errors.push(ConfigError::new(
                "cache.hot_ttl_seconds",
                "must be 1 to 86400 seconds",
            ));
        }
        if self.backend == CacheBackend::Memory && self.max_bytes < self.max_entry_bytes {
            errors.push(ConfigError::new(
                "cache.max_bytes",
                "must be at least cache.max_entry_bytes",
            ));
        }
        if self.backend == CacheBackend::Disk && self.path.trim().is_empty() {
            errors.push(ConfigError::new("cache.path", "must name a file"));
        }
        if self.backend == CacheBackend::Redis && !self.redis_url.starts_with("redis://") {
            errors.push(ConfigError::new(
                "cache.redis_url",
                "must start with redis://",
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if !r.starts_with('/') || r.contains(['?', '#', ' ']) {
                errors.push(ConfigError::new(
                    format!("cache.routes[{i}]"),
                    format!("`{r}` must be a path starting with `/`"),
                ));
            }
        }
    }

    /// OpenAI-Forward's environment names: `CACHE_BACKEND` (`MEMORY`, `LMDB`, `LevelDB`, plus
    /// `disk`, `redis`), `CACHE_OPENAI`, `CACHE_GENERAL`, `CACHE_ROUTES` (JSON list),
    /// `DEFAULT_REQUEST_CACHING_VALUE`, and ours: `CACHE_TTL_SECONDS`, `CACHE_REDIS_URL`,
    /// `CACHE_PATH`, `CACHE_PORT`, `CACHE_SCOPE`, `CACHE_TIMEOUT_MS`.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn boolean(name: &str, v: &str) -> Result<bool, ConfigError> {
            match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" | "" => Ok(false),
                _ => Err(ConfigError::new(
                    name,
                    format!("`{v}` is not true or false"),
                )),
            }
        }
        fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError> {
            v.trim()
                .parse()
                .map_err(|_| ConfigError::new(name, format!("`{v}` is not a valid number")))
        }
        if let Some(v) = env("CACHE_BACKEND") {
            self.backend = CacheBackend::parse(&v).ok_or_else(|| {
                ConfigError::new(
                    "CACHE_BACKEND",
                    format!("unknown cache backend `{v}` (memory, disk, redis, LMDB, LevelDB)"),
                )
            })?;
        }
        if let Some(v) = env("CACHE_OPENAI") {
            self.openai = boolean("CACHE_OPENAI", &v)?;
        }
        if let Some(v) = env("CACHE_GENERAL") {
            self.general = boolean("CACHE_GENERAL", &v)?;
        }
        if let Some(v) = env("DEFAULT_REQUEST_CACHING_VALUE") {
            self.default_request_caching = boolean("DEFAULT_REQUEST_CACHING_VALUE", &v)?;
        }
        if let Some(v) = env("CACHE_ROUTES") {
            let listed: Vec<String> = serde_json::from_str(&v).map_err(|e| {
                ConfigError::new("CACHE_ROUTES", format!("not a JSON list of paths: {e}"))
            })?;
            // In OpenAI-Forward, chat and embeddings are cached whenever CACHE_OPENAI is on;
            // CACHE_ROUTES only adds generic paths (`aifd gen_config` writes `[]`, which must
            // not turn chat caching off).
            let mut routes = CacheConfig::default().routes;
            for r in listed {
                if !routes.contains(&r) {
                    routes.push(r);
                }
            }
            self.routes = routes;
        }
        if let Some(v) = env("CACHE_TTL_SECONDS") {
            self.ttl_seconds = number("CACHE_TTL_SECONDS", &v)?;
        }
        if let Some(v) = env("CACHE_TIMEOUT_MS") {
            self.timeout_ms = number("CACHE_TIMEOUT_MS", &v)?;
        }
        if let Some(v) = env("CACHE_PORT") {
            self.port = number("CACHE_PORT", &v)?;
        }
        if let Some(v) = env("CACHE_REDIS_URL") {
            self.redis_url = v.trim().to_string();
        }
        if let Some(v) = env("CACHE_PATH") {
            self.path = v.trim().to_string();
        }
        if let Some(v) = env("CACHE_SCOPE") {
            self.scope = match v.trim().to_ascii_lowercase().as_str() {
                "shared" => ScopeMode::Shared,
                "level" => ScopeMode::Level,
                "key" => ScopeMode::Key,
                _ => {
                    return Err(ConfigError::new(
                        "CACHE_SCOPE",
                        format!("`{v}` is not shared, level or key"),
                    ))
                }
            };
        }
        Ok(())
    }
}

/// What the filter receives of the cache config (`None` in [`crate::config::FilterConfig`] when
/// caching is off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterCache {
    pub openai: bool,
    pub general: bool,
    pub routes: Vec<String>,
    pub default_request_caching: bool,
    pub scope: ScopeMode,
    pub timeout_ms: u64,
    pub max_entry_bytes: u64,
    pub ttl_seconds: u64,
    #[serde(default = "default_hot_bytes")]
    pub hot_bytes: u64,
    #[serde(default = "default_hot_ttl_seconds")]
    pub hot_ttl_seconds: u64,
}

impl FilterCache {
    pub fn from_config(c: &CacheConfig) -> Option<FilterCache> {
        c.enabled().then(|| FilterCache {
            openai: c.openai,
            general: c.general,
            routes: c.routes.clone(),
            default_request_caching: c.default_request_caching,
            scope: c.scope,
            timeout_ms: c.timeout_ms,
            max_entry_bytes: c.max_entry_bytes,
            ttl_seconds: c.ttl_seconds,
            hot_bytes: c.hot_bytes,
            hot_ttl_seconds: c.hot_ttl_seconds,
        })
    }

    /// Whether `route_path` (after the route prefix) is one of `routes`. On openai routes whose
    /// base URL already ends in `/v1` (route `/v1` → `http://host/v1`, `/openai` →
    /// `https://api.openai.com/v1`) the client sends `/chat/completions` after the prefix while
    /// the list names the API path `/v1/chat/completions`: both spellings of an OpenAI API path
    /// count as the same path.
    fn path_listed(&self, kind: RouteKind, route_path: &str) -> bool {
        let with_v1;
        let mut candidates = vec![route_path];
        if kind == RouteKind::Openai && api_of_path(route_path).is_some() {
            match route_path.strip_prefix("/v1") {
                Some(rest) if rest.starts_with('/') => candidates.push(rest),
                _ => {
                    with_v1 = format!("/v1{route_path}");
                    candidates.push(&with_v1);
                }
            }
        }
        candidates.iter().any(|p| {
            self.routes.iter().any(|r| match r.strip_suffix('*') {
                Some(prefix) => p.starts_with(prefix),
                None => r.trim_end_matches('/') == p.trim_end_matches('/'),
            })
        })
    }

    /// Whether (and how) a request may be cached, from what its headers tell.
    pub fn classify(&self, kind: RouteKind, route_path: &str, method: &str) -> Option<Keying> {
        let on = match kind {
            RouteKind::Openai => self.openai,
            RouteKind::General => self.general,
        };
        if !on || !self.path_listed(kind, route_path) {
            return None;
        }
        match (kind, api_of_path(route_path), method) {
            (RouteKind::Openai, Some(api), "POST") => Some(Keying::Json(api)),
            (RouteKind::Openai, Some(_), _) => None,
            (_, _, "POST" | "GET") => Some(Keying::Raw),
            _ => None,
        }
    }
}

impl FilterCache {
    /// True for requests the cache does not key but whose body may still carry the gateway's
    /// `caching` instruction: an OpenAI JSON API POST on an openai route while openai caching is
    /// on (a path left out of `routes`). The field is removed before the upstream sees it
    /// (OpenAI answers unknown fields with 400).
    pub fn strips_caching_field(&self, kind: RouteKind, route_path: &str, method: &str) -> bool {
        self.openai
            && kind == RouteKind::Openai
            && method == "POST"
            && api_of_path(route_path).is_some()
    }
}

/// How a cacheable request is keyed and replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keying {
    /// An OpenAI JSON API: canonical key over the answer-changing fields, replay converts modes.
    Json(ApiKind),
    /// Anything else: key over method, path, query and body bytes; replayed byte for byte.
    Raw,
}

/// The OpenAI API a route path targets (`/v1/chat/completions`, with or without `/v1`).
pub fn api_of_path(route_path: &str) -> Option<ApiKind> {
    let p = route_path.trim_end_matches('/');
    let p = p.strip_prefix("/v1").unwrap_or(p);
    match p {
        "/chat/completions" => Some(ApiKind::Chat),
        "/completions" => Some(ApiKind::Completion),
        "/embeddings" => Some(ApiKind::Embedding),
        _ => None,
    }
}

/// The `x-llm-forward-cache` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    None,
    Skip,
    Refresh,
}

impl Directive {
    pub fn parse(value: Option<&str>) -> Directive {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "skip" || v == "bypass" || v == "no-cache" => Directive::Skip,
            Some(v) if v == "refresh" => Directive::Refresh,
            _ => Directive::None,
        }
    }
}

/// What the cache does for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Neither look up nor store (`x-cache: BYPASS`).
    Bypass,
    /// Look up; on a miss, store the fresh answer.
    Lookup,
    /// Do not look up, store the fresh answer (`refresh`).
    Store,
}

/// Combines the header, the body's `caching` field and the default. `caching: false` and `skip`
/// always win; an invalid `caching` value counts as absent.
pub fn plan(
    directive: Directive,
    field: CachingField,
    default_request_caching: bool,
    keying: Keying,
) -> Plan {
    if directive == Directive::Skip || field.flag() == Some(false) {
        return Plan::Bypass;
    }
    // General routes cache identical requests whenever they are on; openai requests opt in.
    let wanted = match keying {
        Keying::Raw => true,
        Keying::Json(_) => field.flag().unwrap_or(default_request_caching),
    };
    match (directive, wanted) {
        (Directive::Refresh, _) => Plan::Store,
        (_, true) => Plan::Lookup,
        (_, false) => Plan::Bypass,
    }
}

/// The key of a JSON request (after `caching` was removed), `None` when the body has no `model`.
pub fn json_key(api: ApiKind, scope: &CacheScope, prefix: &str, body: &Value) -> Option<String> {
    match api {
        ApiKind::Chat | ApiKind::Completion => cache_key::chat_cache_key(scope, prefix, body),
        ApiKind::Embedding => cache_key::embedding_cache_key(scope, prefix, body),
    }
}

/// `stream` and `stream_options.include_usage` of a request body.
pub fn stream_mode(body: &Value) -> (bool, bool) {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    (stream, usage)
}

/// What the stored body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// A JSON answer of an OpenAI API.
    Json,
    /// An SSE stream of an OpenAI API, complete with `data: [DONE]`.
    Sse,
    /// Bytes of any other response.
    Raw,
}

/// Everything about a stored response except its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryMeta {
    pub status: u16,
    pub content_type: Option<String>,
    pub kind: BodyKind,
    pub api: Option<ApiKind>,
    /// The extracted answer (chat and completions), from which the other mode is rebuilt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// Unix seconds when stored (the `created` of rebuilt responses).
    pub created: u64,
}

/// A stored response: `LFC1`, the meta JSON's length (u32 big-endian), the meta JSON, the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub meta: EntryMeta,
    pub body: Vec<u8>,
}

const MAGIC: &[u8; 4] = b"LFC1";

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&self.meta).unwrap_or_default();
        let mut out = Vec::with_capacity(8 + meta.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        out
    }

    /// `None` for anything that is not an entry of this version (treated as a miss).
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let (len, rest) = rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (meta, body) = rest.split_at(len);
        Some(Entry {
            meta: serde_json::from_slice(meta).ok()?,
            body: body.to_vec(),
        })
    }

    /// The entry for a finished response, or `None` when it must not be stored: not 2xx, an
    /// incomplete stream (no `[DONE]`), an error body, or an OpenAI answer that does not parse.
    pub fn from_response(
        keying: Keying,
        status: u32,
        content_type: Option<&str>,
        body: Vec<u8>,
        created: u64,
    ) -> Option<Entry> {
        if !(200..300).contains(&status) {
            return None;
        }
        let sse = content_type.is_some_and(|c| {
            c.trim()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
        });
        let (kind, api, answer) = match keying {
            Keying::Raw => (BodyKind::Raw, None, None),
            Keying::Json(api) if sse => {
                if api == ApiKind::Embedding {
                    return None;
                }
                let answer = answer_of_stream(&body)?;
                (BodyKind::Sse, Some(api), Some(answer))
            }
            Keying::Json(api) => {
                let answer = answer::from_json_body(api, &body)?;
                let answer = (api != ApiKind::Embedding).then_some(answer);
                (BodyKind::Json, Some(api), answer)
            }
        };
        Some(Entry {
            meta: EntryMeta {
                status: status as u16,
                content_type: content_type.map(str::to_string),
                kind,
                api,
                answer,
                created,
            },
            body,
        })
    }
}

/// The answer of a complete SSE body; `None` when it did not end with `[DONE]`, was cut, or
/// carried no choice.
fn answer_of_stream(body: &[u8]) -> Option<Answer> {
    let mut parser = SseParser::new(body.len().saturating_add(16));
    let mut events: Vec<SseEvent> = Vec::new();
    parser.feed(body, &mut events);
    parser.finish();
    let mut extractor = answer::StreamExtractor::new(usize::MAX);
    for ev in &events {
        extractor.on_event(ev);
    }
    if parser.truncated() || extractor.malformed() > 0 {
        return None;
    }
    let answer = extractor.into_answer();
    (answer.done && !answer.truncated && !answer.choices.is_empty()).then_some(answer)
}

/// A response rebuilt from an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub status: u32,
    pub content_type: String,
    pub body: Vec<u8>,
    /// The stored answer as the client receives it (no usage when a stream without
    /// `include_usage` was asked for); `None` for embeddings and raw bodies.
    pub answer: Option<Answer>,
}

/// The reply to a hit, in the mode the client asked for. Same mode as stored: the stored bytes
/// (a stream only when its usage chunk matches what the client asked for); the other mode:
/// rebuilt from the answer (text, reasoning, tool calls, usage). `None` if that cannot be done.
pub fn replay(
    entry: &Entry,
    want_stream: bool,
    include_usage: bool,
    request_model: Option<&str>,
) -> Option<Replay> {
    let meta = &entry.meta;
    // Only 2xx answers are stored; anything else came from a broken or foreign cache service and
    // must not become the status of a local reply (0 or 1xx there breaks the client's connection).
    if !(200..300).contains(&meta.status) {
        return None;
    }
    let answered = || {
        meta.answer.clone().map(|mut a| {
            if want_stream && !include_usage {
                a.usage = None;
            }
            a
        })
    };
    let stored = |ct: &str| Replay {
        status: u32::from(meta.status),
        // The stored type becomes a response header: anything but a plain media type (from a
        // broken or foreign cache service) is replaced by the default.
        content_type: meta
            .content_type
            .clone()
            .filter(|c| is_plain_media_type(c))
            .unwrap_or_else(|| ct.to_string()),
        body: entry.body.clone(),
        answer: answered(),
    };
    let api = match (meta.kind, meta.api) {
        (BodyKind::Raw, _) => return Some(stored("application/octet-stream")),
        (_, Some(ApiKind::Embedding)) => return Some(stored("application/json")),
        (_, Some(api)) => api,
        (_, None) => return None,
    };
    let answer = meta.answer.as_ref()?;
    if want_stream {
        if meta.kind == BodyKind::Sse && answer.usage.is_some() == include_usage {
            return Some(stored("text/event-stream"));
        }
    } else if meta.kind == BodyKind::Json {
        return Some(stored("application/json"));
    }
    let model = answer
        .model
        .as_deref()
        .or(request_model)
        .unwrap_or("unknown");
    let default_id = match api {
        ApiKind::Chat => "chatcmpl-cache",
        _ => "cmpl-cache",
    };
    let id = answer.id.as_deref().unwrap_or(default_id);
    let created = meta.created;
    let (content_type, body) = match (api, want_stream) {
        (ApiKind::Chat, true) => (
            "text/event-stream",
            answer::to_chat_sse(answer, model, id, created, include_usage),
        ),
        (ApiKind::Completion, true) => (
            "text/event-stream",
            answer::to_completion_sse(answer, model, id, created, include_usage),
        ),
        (ApiKind::Chat, false) => (
            "application/json",
            answer::to_chat_completion_json(answer, model, id, created)
                .to_string()
                .into_bytes(),
        ),
        (ApiKind::Completion, false) => (
            "application/json",
            answer::to_completion_json(answer, model, id, created)
                .to_string()
                .into_bytes(),
        ),
        (ApiKind::Embedding, _) => return None,
    };
    Some(Replay {
        status: u32::from(meta.status),
        content_type: content_type.to_string(),
        body,
        answer: answered(),
    })
}

/// A `type/subtype[; param=value…]` of at most 200 printable ASCII characters: safe to send as a
/// `content-type` header (no line breaks, no control characters, no second header smuggled in).
pub fn is_plain_media_type(value: &str) -> bool {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim();
    value.len() <= 200
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && essence
            .split_once('/')
            .is_some_and(|(t, sub)| token(t) && token(sub))
}

/// True for keys the service accepts: `[A-Za-z0-9:._-]`, 1 to [`MAX_KEY_LEN`] bytes.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests;
