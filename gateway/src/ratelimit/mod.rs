//! The built-in rate-limit service (`llm-forward ratelimit`, also started in-process by `run` when
//! the config names a Redis limits backend): Envoy's `RateLimitService` over gRPC, counting in Redis,
//! stateless, so any number of instances sharing one Redis enforce one budget.
//!
//! The wire contract with the filter is docs/fleet-limits.md / fleet-contract.md; user docs are
//! docs/ratelimit-service.md. Modules: [`plan`] (request → checks: validation, windows, keys),
//! [`script`] (the atomic Lua script and its reply), [`service`] (the gRPC method), [`listen`]
//! (TCP or Unix socket), [`config`] (optional envoyproxy/ratelimit YAML for descriptors without a
//! `limit` override).

pub mod config;
pub mod listen;
pub mod plan;
pub mod script;
pub mod service;

#[cfg(test)]
mod tests;

use crate::redis_client::{Redis, Timeouts};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::RateLimitServiceServer;
use listen::{Bound, BoundAddr, Listen};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Default Redis deadline per call: a few ms under the filter's 20 ms RLS timeout, so the filter
/// gets a clean UNAVAILABLE (and applies its failure mode) rather than timing out itself.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(15);
/// Largest request accepted (Envoy's are a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How to run the service.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: Listen,
    /// `redis://[[user]:password@]host[:port][/db]`.
    pub redis_url: String,
    /// Deadline of one call's Redis work.
    pub redis_timeout: Duration,
    /// Limits for descriptors without a `limit` override (envoyproxy/ratelimit format).
    pub config: Option<config::RlsConfig>,
}

impl Options {
    pub fn new(listen: Listen, redis_url: impl Into<String>) -> Options {
        Options {
            listen,
            redis_url: redis_url.into(),
            redis_timeout: DEFAULT_REDIS_TIMEOUT,
            config: None,
        }
    }
}

/// A running service. Dropping it stops the listener (and removes its Unix socket).
pub struct RateLimitServer {
    addr: BoundAddr,
    handle: crate::http_server::ServerHandle,
}

/// Binds and builds everything that can fail, so `start` reports errors before serving.
async fn open(options: Options) -> Result<(Bound, BoundAddr, service::Service), String> {
    let redis = Redis::new(
        &options.redis_url,
        Timeouts {
            command: options.redis_timeout,
            connect: Duration::from_secs(1),
        },
    )?;
    let (bound, addr) = listen::bind(&options.listen).await?;
    // Connect and load the script now, so the first call does not pay for it within its deadline.
    // Not fatal: Redis may come up later, and calls answer UNAVAILABLE until then.
    if let Err(e) = redis
        .bounded(
            Duration::from_secs(1),
            script::LimitScript::default().load(&mut redis.connection()),
        )
        .await
    {
        eprintln!("llm-forward ratelimit: {e} (will retry on each call)");
    }
    Ok((
        bound,
        addr,
        service::Service::new(redis, options.redis_timeout, options.config),
    ))
}

async fn serve(bound: Bound, service: service::Service, mut shutdown: watch::Receiver<bool>) {
    let svc = RateLimitServiceServer::from_arc(Arc::new(service))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    let signal = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    let server = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // Envoy keeps one HTTP/2 connection with many streams; bound them anyway.
        .max_concurrent_streams(Some(1024));
    let result = match bound {
        Bound::Tcp(l) => {
            let incoming = tonic::transport::server::TcpIncoming::from(l).with_nodelay(Some(true));
            server
                .serve_with_incoming_shutdown(svc, incoming, signal)
                .await
        }
        Bound::Unix(l) => {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
            server
                .serve_with_incoming_shutdown(svc, incoming, signal)
                .await
        }
    };
    if let Err(e) = result {
        eprintln!("llm-forward ratelimit: server stopped: {e}");
    }
}

impl RateLimitServer {
    /// Start on the current tokio runtime (`llm-forward run` and `llm-forward ratelimit`).
    /// Returns once listening; Redis is connected on the first call (it may come up later).
    pub async fn start(options: Options) -> Result<RateLimitServer, String> {
        let (bound, addr, service) = open(options).await?;
        let handle =
            crate::http_server::ServerHandle::on_current_runtime(|rx| serve(bound, service, rx));
        Ok(RateLimitServer { addr, handle })
    }

    /// Start on a thread with its own runtime, for blocking callers (tests, benches).
    pub fn spawn(options: Options) -> Result<RateLimitServer, String> {
        let (addr, handle) = crate::http_server::ServerHandle::on_own_thread(
            "llm-forward-ratelimit",
            move || async move {
                let (bound, addr, service) = open(options).await?;
                Ok(((bound, service), addr))
            },
            |(bound, service), rx| serve(bound, service, rx),
        )?;
        Ok(RateLimitServer { addr, handle })
    }

    pub fn addr(&self) -> &BoundAddr {
        &self.addr
    }
}

impl Drop for RateLimitServer {
    fn drop(&mut self) {
        // Stopped first, so the socket file is removed only once nobody serves on it.
        self.handle.stop();
        if let BoundAddr::Unix(path) = &self.addr {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Flags of `llm-forward ratelimit`.
#[derive(Debug, Clone)]
pub struct CliOptions {
    pub listen: String,
    pub redis: String,
    pub redis_timeout_ms: u64,
    pub config: Option<std::path::PathBuf>,
}

/// `llm-forward ratelimit`: serve until interrupted (SIGINT or SIGTERM).
pub async fn cli(options: CliOptions) -> i32 {
    let listen = match Listen::parse(&options.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("llm-forward ratelimit: --listen {e}");
            return 2;
        }
    };
    if options.redis_timeout_ms == 0 {
        eprintln!("llm-forward ratelimit: --redis-timeout-ms must be at least 1");
        return 2;
    }
    let config = match &options.config {
        None => None,
        Some(path) => match config::RlsConfig::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("llm-forward ratelimit: --config {e}");
                return 2;
            }
        },
    };
    let shown = crate::redis_client::redact(&options.redis);
    let opts = Options {
        listen,
        redis_url: options.redis,
        redis_timeout: Duration::from_millis(options.redis_timeout_ms),
        config,
    };
    match RateLimitServer::start(opts).await {
        Ok(server) => {
            println!(
                "llm-forward ratelimit listening on {} (redis {shown}, timeout {} ms)",
                server.addr(),
                options.redis_timeout_ms
            );
            wait_for_stop().await;
            0
        }
        Err(e) => {
            eprintln!("llm-forward ratelimit: {e}");
            1
        }
    }
}

/// Ctrl-C or SIGTERM (containers stop with SIGTERM).
async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
