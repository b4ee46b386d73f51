//! The cache service (`llm-forward cache`, also started by `llm-forward run`): a small HTTP server
//! in front of one storage backend. The filter reaches it through Envoy's `llm_forward_cache`
//! cluster with `dispatch_http_call`.
//!
//! API (values are opaque bytes; the filter's envelope is `llm_forward_core::cache::Entry`):
//!
//! | request                          | answer                                                   |
//! |----------------------------------|----------------------------------------------------------|
//! | `GET /entries/<key>`             | 200 with the value, 404 when absent or expired           |
//! | `PUT /entries/<key>` + body      | 204; `x-ttl-seconds` sets the TTL (default from config); 413 when too large |
//! | `DELETE /entries/<key>`          | 204, or 404 when absent                                  |
//! | `GET /healthz`                   | 200 `ok`                                                 |
//! | `GET /metrics`                   | Prometheus text: hits, misses, stores, evictions, bytes… |
//!
//! A backend error answers 503 (the filter treats it as a miss). Keys are `[A-Za-z0-9:._-]{1,256}`.
//! Modules: [`memory`] (bounded LRU with TTL), [`disk`] (redb file), [`redis`] (Redis through the shared `redis` crate client).

pub mod disk;
pub mod memory;
pub mod redis;

use crate::http_server::{ListenAddr, Listener, ServeOptions};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use llm_forward_core::cache::{valid_key, CacheBackend, CacheConfig, TTL_HEADER};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Longest TTL a store gets (ten years); longer requests are shortened to it.
pub const MAX_TTL_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub backend: CacheBackend,
    /// Memory backend bound.
    pub max_bytes: u64,
    /// Disk backend file.
    pub path: PathBuf,
    pub redis_url: String,
    /// TTL of a store without `x-ttl-seconds`.
    pub default_ttl: Duration,
    /// Largest value accepted by `PUT`.
    pub max_value_bytes: usize,
    /// How often expired entries are swept (memory and disk).
    pub sweep_interval: Duration,
}

impl ServiceConfig {
    pub fn from_cache_config(c: &CacheConfig) -> ServiceConfig {
        ServiceConfig {
            backend: c.backend,
            max_bytes: c.max_bytes,
            path: PathBuf::from(&c.path),
            redis_url: c.redis_url.clone(),
            default_ttl: Duration::from_secs(c.ttl_seconds),
            // The envelope adds the answer next to the body; leave room for it.
            max_value_bytes: (c.max_entry_bytes as usize).saturating_mul(3).max(1 << 20),
            sweep_interval: Duration::from_secs(60),
        }
    }
}

enum Store {
    Memory(memory::MemoryStore),
    Disk(Arc<disk::DiskStore>),
    Redis(redis::RedisStore),
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stores: AtomicU64,
    rejected: AtomicU64,
    deletes: AtomicU64,
    errors: AtomicU64,
    expired: AtomicU64,
    /// Disk: bytes and entries as of the last sweep.
    disk_bytes: AtomicU64,
    disk_entries: AtomicU64,
}

struct Service {
    store: Store,
    counters: Counters,
    config: ServiceConfig,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
}

impl Service {
    async fn open(config: ServiceConfig) -> Result<Service, String> {
        let store = match config.backend {
            CacheBackend::Memory => Store::Memory(memory::MemoryStore::new(config.max_bytes)),
            CacheBackend::Disk => {
                if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                let path = config.path.clone();
                Store::Disk(Arc::new(
                    blocking(move || disk::DiskStore::open(&path)).await?,
                ))
            }
            CacheBackend::Redis => {
                let r = redis::RedisStore::new(&config.redis_url)?;
                // Not fatal: the filter fails open, and Redis may come up later.
                if let Err(e) = r.ping().await {
                    eprintln!("llm-forward cache: redis not reachable yet: {e}");
                }
                Store::Redis(r)
            }
        };
        Ok(Service {
            store,
            counters: Counters::default(),
            config,
        })
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        match &self.store {
            Store::Memory(m) => Ok(m.get(key)),
            Store::Disk(d) => {
                let (d, key) = (Arc::clone(d), key.to_string());
                blocking(move || d.get(&key)).await
            }
            Store::Redis(r) => r.get(key).await,
        }
    }

    /// `Ok(false)` when the memory backend cannot hold the value at all.
    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<bool, String> {
        match &self.store {
            Store::Memory(m) => Ok(m.put(key, value, ttl)),
            Store::Disk(d) => {
                let (d, key) = (Arc::clone(d), key.to_string());
                blocking(move || d.put(&key, &value, ttl).map(|_| true)).await
            }
            Store::Redis(r) => r.put(key, &value, ttl).await.map(|_| true),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, String> {
        match &self.store {
            Store::Memory(m) => Ok(m.delete(key)),
            Store::Disk(d) => {
                let (d, key) = (Arc::clone(d), key.to_string());
                blocking(move || d.delete(&key)).await
            }
            Store::Redis(r) => r.delete(key).await,
        }
    }

    async fn sweep(&self) {
        match &self.store {
            Store::Memory(m) => {
                let n = m.sweep();
                self.counters.expired.fetch_add(n as u64, Ordering::Relaxed);
            }
            Store::Disk(d) => {
                let d = Arc::clone(d);
                match blocking(move || d.sweep()).await {
                    Ok((removed, left, bytes)) => {
                        let c = &self.counters;
                        c.expired.fetch_add(removed as u64, Ordering::Relaxed);
                        c.disk_entries.store(left, Ordering::Relaxed);
                        c.disk_bytes.store(bytes, Ordering::Relaxed);
                    }
                    Err(e) => eprintln!("llm-forward cache: sweep failed: {e}"),
                }
            }
            // Redis expires keys itself.
            Store::Redis(_) => {}
        }
    }

    fn metrics(&self) -> String {
        let c = &self.counters;
        let backend = match self.store {
            Store::Memory(_) => "memory",
            Store::Disk(_) => "disk",
            Store::Redis(_) => "redis",
        };
        let (bytes, entries, evictions) = match &self.store {
            Store::Memory(m) => (m.bytes(), m.entries(), m.evictions()),
            Store::Disk(_) => (
                c.disk_bytes.load(Ordering::Relaxed),
                c.disk_entries.load(Ordering::Relaxed),
                0,
            ),
            Store::Redis(_) => (0, 0, 0),
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let series: [(&str, &str, &str, u64); 10] = [
            (
                "hits_total",
                "counter",
                "Lookups that found an entry.",
                load(&c.hits),
            ),
            (
                "misses_total",
                "counter",
                "Lookups that found nothing.",
                load(&c.misses),
            ),
            (
                "stores_total",
                "counter",
                "Entries stored.",
                load(&c.stores),
            ),
            (
                "rejected_total",
                "counter",
                "Stores refused as too large.",
                load(&c.rejected),
            ),
            (
                "deletes_total",
                "counter",
                "Entries deleted by request.",
                load(&c.deletes),
            ),
            (
                "errors_total",
                "counter",
                "Backend errors (answered 503).",
                load(&c.errors),
            ),
            (
                "expired_total",
                "counter",
                "Expired entries swept.",
                load(&c.expired),
            ),
            (
                "evictions_total",
                "counter",
                "Entries evicted to stay within max_bytes.",
                evictions,
            ),
            (
                "bytes",
                "gauge",
                "Bytes held (disk: as of the last sweep; redis: not tracked).",
                bytes,
            ),
            (
                "entries",
                "gauge",
                "Entries held (disk: as of the last sweep; redis: not tracked).",
                entries,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in series {
            out.push_str(&format!(
                "# HELP llm_forward_cache_{name} {help}\n# TYPE llm_forward_cache_{name} {kind}\nllm_forward_cache_{name}{{backend=\"{backend}\"}} {value}\n"
            ));
        }
        out
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if path == "/healthz" && method == Method::GET {
            return reply(StatusCode::OK, "text/plain", "ok\n");
        }
        if path == "/metrics" && method == Method::GET {
            return reply(StatusCode::OK, "text/plain; version=0.0.4", self.metrics());
        }
        let Some(key) = path.strip_prefix("/entries/") else {
            return reply(StatusCode::NOT_FOUND, "text/plain", "no such endpoint\n");
        };
        if !valid_key(key) {
            return reply(StatusCode::BAD_REQUEST, "text/plain", "invalid key\n");
        }
        let c = &self.counters;
        let failed = |e: String| {
            bump(&c.errors);
            eprintln!("llm-forward cache: {e}");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "backend error\n",
            )
        };
        match method {
            Method::GET => match self.get(key).await {
                Ok(Some(value)) => {
                    bump(&c.hits);
                    Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "application/octet-stream")
                        .body(Full::new(value))
                        .unwrap_or_default()
                }
                Ok(None) => {
                    bump(&c.misses);
                    reply(StatusCode::NOT_FOUND, "text/plain", "")
                }
                Err(e) => failed(e),
            },
            Method::PUT => {
                let ttl = match req.headers().get(TTL_HEADER).map(|v| v.to_str()) {
                    None => self.config.default_ttl,
                    Some(Ok(v)) => match v.trim().parse::<u64>() {
                        // Bounded: a huge TTL must not overflow the backends' clock arithmetic.
                        Ok(s) if s > 0 => Duration::from_secs(s.min(MAX_TTL_SECONDS)),
                        _ => {
                            return reply(
                                StatusCode::BAD_REQUEST,
                                "text/plain",
                                "bad x-ttl-seconds\n",
                            )
                        }
                    },
                    Some(Err(_)) => {
                        return reply(StatusCode::BAD_REQUEST, "text/plain", "bad x-ttl-seconds\n")
                    }
                };
                let body = match Limited::new(req.into_body(), self.config.max_value_bytes)
                    .collect()
                    .await
                {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        bump(&c.rejected);
                        return reply(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "text/plain",
                            "value too large\n",
                        );
                    }
                };
                match self.put(key, body, ttl).await {
                    Ok(true) => {
                        bump(&c.stores);
                        reply(StatusCode::NO_CONTENT, "text/plain", "")
                    }
                    Ok(false) => {
                        bump(&c.rejected);
                        reply(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "text/plain",
                            "value too large\n",
                        )
                    }
                    Err(e) => failed(e),
                }
            }
            Method::DELETE => match self.delete(key).await {
                Ok(true) => {
                    bump(&c.deletes);
                    reply(StatusCode::NO_CONTENT, "text/plain", "")
                }
                Ok(false) => reply(StatusCode::NOT_FOUND, "text/plain", ""),
                Err(e) => failed(e),
            },
            _ => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "GET, PUT or DELETE\n",
            ),
        }
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_default()
}

/// A running cache service. Dropping it stops the listener and every connection.
pub struct CacheServer {
    addr: ListenAddr,
    /// Dropped with the server: stops it and joins its thread, so the backend is closed after.
    _handle: crate::http_server::ServerHandle,
}

impl CacheServer {
    /// Start inside the current tokio runtime (`llm-forward run` and `llm-forward cache`).
    pub async fn start(
        config: ServiceConfig,
        listen: impl Into<ListenAddr>,
    ) -> Result<CacheServer, String> {
        let listen = listen.into();
        let listener = Listener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let service = Arc::new(Service::open(config).await?);
        let handle =
            crate::http_server::ServerHandle::on_current_runtime(|rx| serve(listener, service, rx));
        Ok(CacheServer {
            addr,
            _handle: handle,
        })
    }

    /// Start on a thread with its own runtime, for blocking callers (tests). Returns once listening.
    /// Dropping the server joins the thread, so the backend (e.g. the redb file) is closed after.
    pub fn spawn(
        config: ServiceConfig,
        listen: impl Into<ListenAddr>,
    ) -> Result<CacheServer, String> {
        let listen = listen.into();
        let (addr, handle) = crate::http_server::ServerHandle::on_own_thread(
            "llm-forward-cache",
            move || async move {
                let listener = Listener::bind(&listen)
                    .await
                    .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
                let addr = listener.local_addr().map_err(|e| e.to_string())?;
                let service = Arc::new(Service::open(config).await?);
                Ok(((listener, service), addr))
            },
            |(listener, service), rx| serve(listener, service, rx),
        )?;
        Ok(CacheServer {
            addr,
            _handle: handle,
        })
    }

    /// Where it listens (the real port when 0 was asked for).
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    /// The TCP address, `None` on a Unix socket.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self.addr {
            ListenAddr::Tcp(a) => Some(a),
            ListenAddr::Unix(_) => None,
        }
    }
}

async fn serve(listener: Listener, service: Arc<Service>, shutdown: watch::Receiver<bool>) {
    let sweeper = {
        let service = Arc::clone(&service);
        let mut shutdown = shutdown.clone();
        async move {
            let mut every = tokio::time::interval(service.config.sweep_interval);
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => service.sweep().await,
                    _ = shutdown.changed() => return,
                }
            }
        }
    };
    // Disk gauges are known right away, not only after the first interval.
    service.sweep().await;
    tokio::spawn(sweeper);
    let handler = move |req| {
        let service = Arc::clone(&service);
        async move { service.handle(req).await }
    };
    // Envoy keeps idle pooled connections: no header-read timeout.
    crate::http_server::serve(listener, ServeOptions::default(), handler, shutdown).await;
}

/// Flags of `llm-forward cache`; each overrides the config file's `cache:` value.
#[derive(Debug, Clone, Default)]
pub struct CliOptions {
    pub config: Option<PathBuf>,
    pub listen: Option<ListenAddr>,
    pub backend: Option<String>,
    pub max_bytes: Option<u64>,
    pub path: Option<String>,
    pub redis_url: Option<String>,
    pub ttl_seconds: Option<u64>,
}

/// `llm-forward cache`: load the config (file + environment), apply the flags, serve until interrupted.
pub async fn cli(options: CliOptions) -> i32 {
    let mut cache = match crate::config_file::load_for_cli(options.config.as_deref()) {
        Ok(valid) => {
            // The disk backend's file holds answers: owner-only (or group) like `run`'s files.
            crate::private_files::set_process_umask(valid.raw.logging.group_readable);
            valid.raw.cache
        }
        Err(code) => return code,
    };
    if let Some(b) = &options.backend {
        match CacheBackend::parse(b) {
            Some(b) => cache.backend = b,
            None => {
                eprintln!("llm-forward cache: unknown backend `{b}` (memory, disk, redis)");
                return 1;
            }
        }
    }
    if let Some(v) = options.max_bytes {
        cache.max_bytes = v;
    }
    if let Some(v) = options.path {
        cache.path = v;
    }
    if let Some(v) = options.redis_url {
        cache.redis_url = v;
    }
    if let Some(v) = options.ttl_seconds {
        cache.ttl_seconds = v;
    }
    let mut errors = Vec::new();
    cache.check(&mut errors);
    if !errors.is_empty() {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        eprintln!(
            "llm-forward cache: invalid settings:\n  {}",
            lines.join("\n  ")
        );
        return 1;
    }
    let listen = options
        .listen
        .unwrap_or_else(|| ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], cache.port))));
    run_service(ServiceConfig::from_cache_config(&cache), listen).await
}

/// Run the service until interrupted.
pub async fn run_service(config: ServiceConfig, listen: ListenAddr) -> i32 {
    let backend = config.backend;
    match CacheServer::start(config, listen).await {
        Ok(server) => {
            println!(
                "llm-forward cache service ({backend:?} backend) listening on {}",
                server.addr()
            );
            let _ = tokio::signal::ctrl_c().await;
            0
        }
        Err(e) => {
            eprintln!("llm-forward cache: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests;
