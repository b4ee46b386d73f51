//! The web console of `llm-forward run --console`: overview, live metrics, live chat log and a
//! config editor, served on its own port (127.0.0.1 by default) by a small hyper server on the
//! runtime of `run`.
//!
//! Safety, unlike the reference's web UI: every `/api/` call needs `Authorization: Bearer <token>`
//! (compared in constant time); the only input accepted is a JSON body `{"yaml": "…"}` whose text is
//! parsed and validated as an `llm-forward.yaml` — nothing is executed, and only a valid config is
//! written (with a timestamped backup); the running gateway picks the file up through its hot
//! reload. Bodies are bounded, every response carries a strict CSP and anti-framing headers, and the
//! page is static (embedded in the binary) and builds its DOM with text nodes only.
//!
//! | endpoint | what |
//! |---|---|
//! | `GET /` (+ `/app.js`, `/app.css`, `/vendor/…`) | the page (no token needed; it asks for one) |
//! | `GET /api/overview` | routes, key counts per level (never keys), limits, cache, Envoy health |
//! | `GET /api/metrics` | rates since the previous sample + history: requests/s, 4xx/5xx/s, tokens/min per route × model × level, cache hits |
//! | `GET /api/logs?after=N&limit=M&private=1` | chat-log records numbered above N |
//! | `GET /api/config` | the config file's text |
//! | `POST /api/config/validate` | `{"yaml"}` → `{"valid", "errors":[{"path","message"}]}` |
//! | `POST /api/config` | validate, back up, write; waits for the reload and reports it |

pub mod logs;
pub mod stats;
#[cfg(test)]
mod tests;

use crate::config_file;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use llm_forward_core::config::{ConfigError, ValidConfig};
use serde::Serialize;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Largest request body (a config file).
pub const MAX_BODY: usize = 1024 * 1024;
/// Concurrent connections; more are closed at once.
const MAX_CONNECTIONS: usize = 32;
/// How long `POST /api/config` waits for the running gateway to report on the new file.
const APPLY_WAIT: Duration = Duration::from_secs(6);

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const UPLOT_JS: &str = include_str!("assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("assets/uPlot.min.css");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the last reload of the config file did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub applied: bool,
    pub messages: Vec<String>,
    /// UTC RFC 3339.
    pub at: String,
}

#[derive(Debug)]
pub struct LiveState {
    /// The running configuration (as the file says; with `--demo`, routes point at the mock).
    pub config: ValidConfig,
    /// Bumped on every reload attempt, applied or refused.
    pub generation: u64,
    pub last: Option<Outcome>,
}

/// The running configuration and reload outcomes, shared by `run`'s reloader and the console.
#[derive(Debug, Clone)]
pub struct Live(Arc<Mutex<LiveState>>);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Live {
    pub fn new(config: ValidConfig) -> Live {
        Live(Arc::new(Mutex::new(LiveState {
            config,
            generation: 0,
            last: None,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut LiveState) -> T) -> T {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The reloader applied `config`.
    pub fn applied(&self, config: ValidConfig, message: String) {
        self.with(|s| {
            s.config = config;
            s.generation += 1;
            s.last = Some(Outcome {
                applied: true,
                messages: vec![message],
                at: llm_forward_core::chatlog::rfc3339_utc(now_ms()),
            });
        });
    }

    /// The reloader refused an edit; the running config stays.
    pub fn refused(&self, messages: Vec<String>) {
        self.with(|s| {
            s.generation += 1;
            s.last = Some(Outcome {
                applied: false,
                messages,
                at: llm_forward_core::chatlog::rfc3339_utc(now_ms()),
            });
        });
    }

    pub fn config(&self) -> ValidConfig {
        self.with(|s| s.config.clone())
    }

    pub fn generation(&self) -> u64 {
        self.with(|s| s.generation)
    }

    pub fn last(&self) -> Option<Outcome> {
        self.with(|s| s.last.clone())
    }
}

/// 192 random bits from the system's generator, hex.
pub fn generate_token() -> Result<String, String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for the console token: {e}"))?;
    Ok(llm_forward_core::chatlog::hex(&bytes))
}

#[derive(Clone)]
pub struct ConsoleOptions {
    pub listen: SocketAddr,
    pub token: String,
    /// The file the editor shows and writes (`None`: built-in defaults, nothing to edit).
    pub config_path: Option<PathBuf>,
    pub log_dir: PathBuf,
    pub admin: crate::http_server::ListenAddr,
    pub demo: bool,
    pub live: Live,
    /// `run`'s command-line settings, applied to every config checked here as `run` applies them.
    pub overrides: config_file::Overrides,
}

/// A running console. Dropping it stops the listener and its connections.
pub struct ConsoleServer {
    addr: SocketAddr,
    _shutdown: watch::Sender<bool>,
}

impl ConsoleServer {
    /// Start inside the current tokio runtime (`llm-forward run`).
    pub async fn start(options: ConsoleOptions) -> Result<ConsoleServer, String> {
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (shutdown, rx) = watch::channel(false);
        let console = Arc::new(Console {
            options,
            tail: Arc::new(Mutex::new(logs::Tail::default())),
            sampler: tokio::sync::Mutex::new(stats::Sampler::default()),
        });
        tokio::spawn(serve(listener, console, rx));
        Ok(ConsoleServer {
            addr,
            _shutdown: shutdown,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve(listener: TcpListener, console: Arc<Console>, shutdown: watch::Receiver<bool>) {
    let handler = move |req| {
        let console = Arc::clone(&console);
        async move { console.handle(req).await }
    };
    let options = crate::http_server::ServeOptions {
        header_read_timeout: Some(Duration::from_secs(10)),
        max_connections: Some(MAX_CONNECTIONS),
        max_buf_size: Some(64 * 1024),
    };
    crate::http_server::serve(
        crate::http_server::Listener::Tcp(listener),
        options,
        handler,
        shutdown,
    )
    .await;
}

type Reply = Response<Full<Bytes>>;

fn secure(mut r: Reply, content_type: &str) -> Reply {
    let h = r.headers_mut();
    let mut set = |k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set("content-type", content_type);
    set("content-security-policy", CSP);
    set("x-frame-options", "DENY");
    set("x-content-type-options", "nosniff");
    set("referrer-policy", "no-referrer");
    set("cross-origin-opener-policy", "same-origin");
    set("cross-origin-resource-policy", "same-origin");
    set("cache-control", "no-store");
    r
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    secure(r, content_type)
}

/// The `limits` section as the overview shows it: the Redis URL of fleet-wide limits may carry a
/// password, shown as `***`.
fn limits_overview(limits: &llm_forward_core::limits::config::LimitsConfig) -> Value {
    let mut value = serde_json::to_value(limits).unwrap_or(Value::Null);
    if let (Some(url), Some(obj)) = (&limits.backend, value.as_object_mut()) {
        obj.insert(
            "backend".into(),
            Value::String(crate::redis_client::redact(url)),
        );
    }
    value
}

fn json_reply(status: StatusCode, value: &impl Serialize) -> Reply {
    let body = serde_json::to_vec(value).unwrap_or_default();
    reply(status, "application/json", body)
}

fn error_reply(status: StatusCode, code: &str, message: &str) -> Reply {
    json_reply(
        status,
        &json!({"error": {"message": message, "type": "console", "code": code}}),
    )
}

/// `Authorization: Bearer <token>`, the token compared in constant time.
pub fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let value = value.trim();
    let presented = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => value.get(7..).unwrap_or(""),
        _ => return false,
    };
    llm_forward_core::secret::constant_time_eq(presented.trim().as_bytes(), token.as_bytes())
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A field error as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl From<ConfigError> for FieldError {
    fn from(e: ConfigError) -> Self {
        FieldError {
            path: e.path,
            message: e.message,
        }
    }
}

/// Everything `run`'s reloader would check before applying `text`, except the `file:` keys it reads:
/// YAML shape, environment overrides, `run`'s command-line `overrides`, every field's validation,
/// fields that need a restart, and keys that are not in the `running` config.
pub fn validate_text(
    text: &str,
    running: &llm_forward_core::config::Config,
    overrides: &config_file::Overrides,
) -> Vec<FieldError> {
    let env = |k: &str| std::env::var(k).ok();
    let mut config = match config_file::parse_yaml(text) {
        Ok(c) => c,
        Err(e) => return vec![e.into()],
    };
    if let Err(e) = config_file::apply_env(&mut config, &env) {
        return vec![e.into()];
    }
    overrides.apply(&mut config);
    let restart = config_file::restart_only_changes(running, &config);
    let new_keys = keys_not_running(running, &config);
    match config.validate() {
        Err(errors) => errors.into_iter().map(FieldError::from).collect(),
        Ok(_) => restart
            .into_iter()
            .map(|field| FieldError {
                path: field.to_string(),
                message:
                    "can only change with a restart of llm-forward (edit the file, then restart)"
                        .into(),
            })
            .chain(new_keys)
            .collect(),
    }
}

/// Keys of `new` that `running` does not have. The console may move, re-level or remove keys, but
/// not add one: a `file:` or `${VAR}` key would let the token holder make the gateway read any
/// file or variable it can and send it to a host of their choice. Adding keys stays a file edit.
fn keys_not_running(
    running: &llm_forward_core::config::Config,
    new: &llm_forward_core::config::Config,
) -> Vec<FieldError> {
    let message = "the console cannot add keys (nor `file:` / `${VAR}` references): add them to the config file and restart, or reload it";
    let mut errors = Vec::new();
    let known_upstream = |key: &Option<String>, file: &Option<String>| {
        running
            .keys
            .upstream
            .iter()
            .any(|k| &k.key == key && &k.file == file)
    };
    for (i, k) in new.keys.upstream.iter().enumerate() {
        if !known_upstream(&k.key, &k.file) {
            errors.push(FieldError {
                path: format!("keys.upstream[{i}]"),
                message: message.into(),
            });
        }
    }
    for (i, k) in new.keys.forward.iter().enumerate() {
        if !running.keys.forward.iter().any(|r| r.key == k.key) {
            errors.push(FieldError {
                path: format!("keys.forward[{i}]"),
                message: message.into(),
            });
        }
    }
    errors
}

/// Copy `path` to `<path>.<UTC timestamp>.bak` (when it exists; mode 0600, or 0640 with
/// `group_read`, as it may hold keys), then replace it with `text` atomically (a temporary file
/// renamed over it, keeping the file's permissions). Returns the backup.
pub fn write_with_backup(
    path: &Path,
    text: &str,
    unix_ms: u64,
    group_read: bool,
) -> std::io::Result<Option<PathBuf>> {
    use crate::private_files::{create_new, file_mode};
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "llm-forward.yaml".into());
    let stamp = crate::logrotate::suffix(unix_ms);
    let backup = if path.exists() {
        let old = std::fs::read(path)?;
        let mut n = 0;
        loop {
            let b = if n == 0 {
                path.with_file_name(format!("{name}.{stamp}.bak"))
            } else {
                path.with_file_name(format!("{name}.{stamp}-{n}.bak"))
            };
            match create_new(&b, file_mode(group_read)) {
                Ok(mut f) => {
                    f.write_all(&old)?;
                    break Some(b);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
                Err(e) => return Err(e),
            }
        }
    } else {
        None
    };
    let tmp = path.with_file_name(format!(".{name}.console-{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    create_new(&tmp, file_mode(false))?.write_all(text.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(backup)
}

/// `GET path` on a local HTTP/1.1 server (Envoy's admin, TCP or Unix socket), body bounded, 3 s
/// overall.
async fn http_get(
    addr: &crate::http_server::ListenAddr,
    path: &str,
) -> Result<(u16, Bytes), String> {
    use crate::http_server::ListenAddr;
    async fn over<S>(stream: S, path: &str) -> Result<(u16, Bytes), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get(path)
            .header("host", "envoy-admin")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), 32 * 1024 * 1024)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
    let fetch = async {
        match addr {
            ListenAddr::Tcp(a) => {
                let s = TcpStream::connect(a).await.map_err(|e| e.to_string())?;
                over(s, path).await
            }
            ListenAddr::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| e.to_string())?;
                over(s, path).await
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(3), fetch)
        .await
        .map_err(|_| format!("{addr} did not answer within 3 s"))?
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Console {
    options: ConsoleOptions,
    tail: Arc<Mutex<logs::Tail>>,
    sampler: tokio::sync::Mutex<stats::Sampler>,
}

impl Console {
    async fn handle(&self, req: Request<Incoming>) -> Reply {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if !path.starts_with("/api/") {
            return static_asset(&method, &path);
        }
        if !authorized(req.headers(), &self.options.token) {
            let message = if req.headers().contains_key("authorization") {
                "wrong console token"
            } else {
                "the console API needs Authorization: Bearer <token> (printed when llm-forward run starts)"
            };
            return error_reply(StatusCode::UNAUTHORIZED, "unauthorized", message);
        }
        let query = req.uri().query().unwrap_or("").to_string();
        match (method, path.as_str()) {
            (Method::GET, "/api/overview") => self.overview().await,
            (Method::GET, "/api/metrics") => self.metrics().await,
            (Method::GET, "/api/logs") => self.logs(&query).await,
            (Method::GET, "/api/config") => self.config_text(),
            (Method::POST, "/api/config/validate") => match read_yaml(req).await {
                Ok(text) => {
                    let errors = validate_text(
                        &text,
                        &self.options.live.config().raw,
                        &self.options.overrides,
                    );
                    json_reply(
                        StatusCode::OK,
                        &json!({"valid": errors.is_empty(), "errors": errors}),
                    )
                }
                Err(r) => r,
            },
            (Method::POST, "/api/config") => match read_yaml(req).await {
                Ok(text) => self.apply(text).await,
                Err(r) => r,
            },
            (
                _,
                "/api/overview"
                | "/api/metrics"
                | "/api/logs"
                | "/api/config"
                | "/api/config/validate",
            ) => error_reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed",
            ),
            _ => error_reply(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such console endpoint",
            ),
        }
    }

    async fn envoy_stats(&self) -> Result<std::collections::HashMap<String, u64>, String> {
        let path = format!(
            "/stats?format=json&filter={}",
            percent_encode(stats::STATS_FILTER)
        );
        let (status, body) = http_get(&self.options.admin, &path).await?;
        if status != 200 {
            return Err(format!("Envoy admin answered {status}"));
        }
        stats::parse_stats_json(&body)
    }

    /// Envoy's listener updates from the LDS file so far, and listeners still warming.
    async fn lds_state(&self) -> Result<(u64, u64), String> {
        let filter = r"^listener_manager\.(lds\.update_success|total_listeners_warming)$";
        let path = format!("/stats?format=json&filter={}", percent_encode(filter));
        let (status, body) = http_get(&self.options.admin, &path).await?;
        if status != 200 {
            return Err(format!("Envoy admin answered {status}"));
        }
        let s = stats::parse_stats_json(&body)?;
        let updates = s
            .get("listener_manager.lds.update_success")
            .copied()
            .ok_or("no LDS stats")?;
        let warming = s
            .get("listener_manager.total_listeners_warming")
            .copied()
            .unwrap_or(0);
        Ok((updates, warming))
    }

    async fn overview(&self) -> Reply {
        let config = self.options.live.config();
        let raw = &config.raw;
        let ready = match http_get(&self.options.admin, "/ready").await {
            Ok((status, body)) => json!({
                "ready": status == 200,
                "state": String::from_utf8_lossy(&body).trim().to_string(),
            }),
            Err(e) => json!({"ready": false, "state": "unreachable", "error": e}),
        };
        let routes: Vec<Value> = config
            .routes
            .iter()
            .map(|r| {
                json!({
                    "route": r.prefix, "name": r.name,
                    "upstream": r.upstream.to_string(),
                    "type": r.kind, "timeout": r.timeout, "retries": r.retries,
                })
            })
            .collect();
        // Names and counts only: a key value never leaves the server.
        let mut forward: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
        for (i, k) in raw.keys.forward.iter().enumerate() {
            let name = k.name.clone().unwrap_or_else(|| format!("forward-{i}"));
            forward.entry(k.level).or_default().push(name);
        }
        let mut upstream: std::collections::BTreeMap<u32, usize> = Default::default();
        for k in &raw.keys.upstream {
            for level in &k.levels {
                *upstream.entry(*level).or_default() += 1;
            }
        }
        let levels: Vec<Value> = forward
            .keys()
            .chain(upstream.keys())
            .chain(raw.keys.levels.keys())
            .copied()
            .collect::<std::collections::BTreeSet<u32>>()
            .into_iter()
            .map(|level| {
                let names = forward.get(&level).cloned().unwrap_or_default();
                json!({
                    "level": level,
                    "forward_keys": names.len(),
                    "forward_key_names": names,
                    "upstream_keys": upstream.get(&level).copied().unwrap_or(0),
                    "models": raw.keys.levels.get(&level).cloned(),
                })
            })
            .collect();
        let cache = if raw.cache.enabled() {
            let counters = self.envoy_stats().await.map(|s| stats::totals(&s)).ok();
            let (hits, misses) = counters
                .map(|t| (t.cache_hit, t.cache_miss))
                .unwrap_or((0, 0));
            json!({
                "enabled": true,
                "backend": raw.cache.backend,
                "openai": raw.cache.openai, "general": raw.cache.general,
                "ttl_seconds": raw.cache.ttl_seconds,
                "hits": hits, "misses": misses,
                "hit_ratio": if hits + misses > 0 { Some(hits as f64 / (hits + misses) as f64) } else { None },
            })
        } else {
            json!({"enabled": false})
        };
        let limits = limits_overview(&raw.limits);
        json_reply(
            StatusCode::OK,
            &json!({
                "version": crate::VERSION,
                "demo": self.options.demo,
                "config_path": self.options.config_path.as_ref().map(|p| p.display().to_string()),
                "listener": format!("{}:{}", raw.server.address, raw.server.port),
                "envoy": ready,
                "routes": routes,
                "keys": {
                    "forward_total": raw.keys.forward.len(),
                    "upstream_total": raw.keys.upstream.len(),
                    "levels": levels,
                },
                "ip": {"allow": raw.ip.allow.len(), "deny": raw.ip.deny.len()},
                "limits": limits,
                "cache": cache,
                "logging": {"chat": raw.logging.chat, "messages": raw.logging.messages, "metrics": raw.logging.metrics},
                "reload": {"generation": self.options.live.generation(), "last": self.options.live.last()},
            }),
        )
    }

    async fn metrics(&self) -> Reply {
        let mut sampler = self.sampler.lock().await;
        let mut error = None;
        if sampler.due(now_ms()) {
            match self.envoy_stats().await {
                Ok(s) => sampler.add(now_ms(), stats::totals(&s)),
                Err(e) => error = Some(e),
            }
        }
        let usage: Vec<Value> = sampler
            .latest()
            .map(|t| {
                t.usage
                    .iter()
                    .map(|(k, u)| {
                        json!({"route": k.route, "model": k.model, "level": k.level, "label": k.label(),
                            "requests": u.requests, "prompt_tokens": u.prompt_tokens,
                            "completion_tokens": u.completion_tokens})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let totals = sampler.latest().map(|t| {
            json!({"requests": t.requests, "rq_4xx": t.rq_4xx, "rq_5xx": t.rq_5xx,
                "cache_hits": t.cache_hit, "cache_misses": t.cache_miss, "cache_bypass": t.cache_bypass})
        });
        json_reply(
            StatusCode::OK,
            &json!({"history": sampler.history, "totals": totals, "usage": usage, "error": error}),
        )
    }

    async fn logs(&self, query: &str) -> Reply {
        let after = query_param(query, "after")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0u64);
        let limit = query_param(query, "limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(50usize)
            .clamp(1, logs::RING);
        let private = matches!(query_param(query, "private"), Some("1" | "true"));
        let config = self.options.live.config();
        let paths =
            crate::render::chat_log_paths(&config, &self.options.log_dir.display().to_string());
        let enabled = config.raw.logging.chat;
        let tail = Arc::clone(&self.tail);
        let read = tokio::task::spawn_blocking(move || {
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            tail.poll(&paths);
            tail.since(after, limit, private)
        })
        .await;
        match read {
            Ok((cursor, records)) => json_reply(
                StatusCode::OK,
                &json!({"enabled": enabled, "cursor": cursor, "records": records, "private": private}),
            ),
            Err(e) => error_reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            ),
        }
    }

    fn config_text(&self) -> Reply {
        match &self.options.config_path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => json_reply(
                    StatusCode::OK,
                    &json!({"path": p.display().to_string(), "text": text, "writable": true}),
                ),
                Err(e) => error_reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unreadable",
                    &format!("cannot read {}: {e}", p.display()),
                ),
            },
            None => json_reply(
                StatusCode::OK,
                &json!({"path": null, "text": "", "writable": false,
                    "message": "llm-forward runs with built-in defaults; start it with --config FILE to edit a config here"}),
            ),
        }
    }

    async fn apply(&self, text: String) -> Reply {
        let running = self.options.live.config().raw;
        let errors = validate_text(&text, &running, &self.options.overrides);
        if !errors.is_empty() {
            return json_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"valid": false, "applied": false, "errors": errors}),
            );
        }
        let Some(path) = self.options.config_path.clone() else {
            return error_reply(
                StatusCode::CONFLICT,
                "no_config_file",
                "llm-forward runs without a config file; start it with --config FILE",
            );
        };
        let before = self.options.live.generation();
        let lds_before = self.lds_state().await.map(|(n, _)| n).ok();
        let written = {
            let path = path.clone();
            let group_read = running.logging.group_readable;
            tokio::task::spawn_blocking(move || {
                write_with_backup(&path, &text, now_ms(), group_read)
            })
            .await
        };
        let backup = match written {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                return error_reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "write_failed",
                    &format!("cannot write {}: {e}", path.display()),
                )
            }
            Err(e) => {
                return error_reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    &e.to_string(),
                )
            }
        };
        // The reloader checks the file every second and reports here.
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        let outcome = loop {
            if self.options.live.generation() > before {
                break self.options.live.last();
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let backup = backup.map(|b| b.display().to_string());
        match outcome {
            Some(o) => {
                // The reloader rewrote Envoy's listener file; wait until Envoy loaded it and no
                // listener is still warming, so "applied" means new connections get the new config.
                let mut in_envoy = false;
                if let (true, Some(n0)) = (o.applied, lds_before) {
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                    while tokio::time::Instant::now() < deadline {
                        if let Ok((n, warming)) = self.lds_state().await {
                            if n > n0 && warming == 0 {
                                in_envoy = true;
                                break;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                json_reply(
                    StatusCode::OK,
                    &json!({"valid": true, "written": true, "backup": backup,
                        "applied": o.applied, "active_in_envoy": in_envoy,
                        "messages": o.messages, "at": o.at}),
                )
            }
            None => json_reply(
                StatusCode::OK,
                &json!({"valid": true, "written": true, "backup": backup, "applied": null,
                    "messages": ["the file was written, but the running gateway did not report a reload within 6 s"]}),
            ),
        }
    }
}

/// The JSON body `{"yaml": "…"}` of the config endpoints, bounded.
async fn read_yaml(req: Request<Incoming>) -> Result<String, Reply> {
    let json_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json_type {
        return Err(error_reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send application/json: {\"yaml\": \"…\"}",
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Err(error_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "the body is larger than 1 MiB",
            ))
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        yaml: String,
    }
    serde_json::from_slice::<Body>(&body)
        .map(|b| b.yaml)
        .map_err(|e| error_reply(StatusCode::BAD_REQUEST, "invalid_json", &e.to_string()))
}

fn static_asset(method: &Method, path: &str) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        return error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        );
    }
    let (ctype, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "/app.css" => ("text/css; charset=utf-8", APP_CSS),
        "/vendor/uPlot.iife.min.js" => ("text/javascript; charset=utf-8", UPLOT_JS),
        "/vendor/uPlot.min.css" => ("text/css; charset=utf-8", UPLOT_CSS),
        _ => return error_reply(StatusCode::NOT_FOUND, "not_found", "not found"),
    };
    reply(StatusCode::OK, ctype, body)
}
