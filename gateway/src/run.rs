//! `llm-forward run`: render → start Envoy → wait until ready → banner → supervise.

use crate::banner::{banner, Internal};
use crate::config_file;
use crate::envoy::{locate_envoy, locate_wasm, EnvoyProcess, Launch};
use crate::http_server::ListenAddr;
use crate::mock::MockUpstream;
use crate::reload::{FileWatch, RuntimeFiles};
use crate::render::{bootstrap, default_ca_bundle, RenderOptions};
use llm_forward_core::config::ValidConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    pub wasm: Option<PathBuf>,
    /// Serve every route from a built-in mock upstream, so the gateway can be tried offline.
    pub demo: bool,
    /// Echo Envoy's own log lines.
    pub verbose: bool,
    /// Serve the web console (also `console.enabled` in the config).
    pub console: bool,
    /// `--port`, `--workers`, `--admin-port`, `--log-dir`.
    pub overrides: config_file::Overrides,
    /// Variables the working folder's `.env` / `openai-forward-config.yaml` put into this process;
    /// Envoy gets only those the config references as keys.
    pub from_working_folder: Vec<String>,
}

/// Make `dir` absolute against the working folder (Envoy is given absolute paths only).
fn absolute(dir: &str) -> PathBuf {
    let p = Path::new(dir);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

/// Runs until Envoy exits or a signal arrives; returns the process exit code.
pub async fn run(options: RunOptions) -> i32 {
    match run_inner(options).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("llm-forward: {message}");
            1
        }
    }
}

/// `run`'s private runtime folder: Envoy's config files (which may hold literal keys) and the Unix
/// sockets of the internal services. Created like mkdtemp(3): an unpredictable name, mode 0700,
/// never an existing folder; removed when dropped.
pub struct RuntimeDir(tempfile::TempDir);

impl RuntimeDir {
    pub fn create() -> Result<RuntimeDir, String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("llm-forward-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|e| {
                format!(
                    "cannot create a runtime folder in {}: {e}",
                    std::env::temp_dir().display()
                )
            })?;
        // A Unix socket path is at most 107 bytes; say so clearly instead of a bind error.
        if dir.path().join("ratelimit.sock").as_os_str().len() > 100 {
            return Err(format!(
                "the runtime folder path {} is too long for Unix sockets: set TMPDIR to a shorter folder",
                dir.path().display()
            ));
        }
        Ok(RuntimeDir(dir))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.path().join("admin.sock")
    }

    pub fn cache_socket(&self) -> PathBuf {
        self.path().join("cache.sock")
    }

    /// The built-in rate-limit service's socket (fleet-wide limits, `limits.backend`).
    pub fn ratelimit_socket(&self) -> PathBuf {
        self.path().join("ratelimit.sock")
    }
}

/// Variables of the working folder Envoy must not inherit: all of them except those the config
/// references as keys (`${VAR}`, which the filter reads from Envoy's environment). Keeps a `.env`
/// from handing Envoy `LD_PRELOAD`, `ENVOY_BIN` or any other variable it does not need.
pub fn envoy_env_removals(
    config: &llm_forward_core::config::Config,
    from_working_folder: &[String],
) -> Vec<String> {
    use llm_forward_core::access::{secret_env_vars, Secret};
    let referenced: Vec<String> = secret_env_vars(config)
        .into_iter()
        .filter_map(|(_, source)| match source {
            Secret::Env(name) => Some(name),
            _ => None,
        })
        .collect();
    from_working_folder
        .iter()
        .filter(|v| !referenced.contains(v))
        .cloned()
        .collect()
}

/// What the rotation task watches, read from the live config each time: the chat logs of the
/// routes running now (also those added by a hot reload) and the access log, and the size limit.
pub fn rotation_watch(
    live: crate::console::Live,
    log_dir: PathBuf,
) -> impl Fn() -> (Vec<PathBuf>, u64) + Send + 'static {
    move || {
        let config = live.config();
        let chat = crate::render::chat_log_paths(&config, &log_dir.display().to_string());
        (
            crate::logrotate::files(chat, &log_dir),
            config.raw.logging.rotate_bytes,
        )
    }
}

/// Bind the console: the configured port, or — when that is the default port and it is taken
/// (another gateway on this machine) — a free one, so two gateways run side by side without
/// configuration. A port written in the config is never replaced.
async fn start_console(
    options: crate::console::ConsoleOptions,
    configured: bool,
) -> Result<(crate::console::ConsoleServer, bool), String> {
    let wanted = options.listen;
    match crate::console::ConsoleServer::start(options.clone()).await {
        Ok(server) => Ok((server, false)),
        Err(e) if configured => Err(e),
        Err(_) => {
            let mut free = options;
            free.listen = SocketAddr::new(wanted.ip(), 0);
            let server = crate::console::ConsoleServer::start(free).await?;
            Ok((server, true))
        }
    }
}

async fn run_inner(options: RunOptions) -> Result<i32, String> {
    let env = |k: &str| std::env::var(k).ok();
    let path = config_file::resolve_path(options.config.as_deref());
    let overrides = options.overrides.clone();
    let mut config = match config_file::load_with(path.as_deref(), &env, &overrides) {
        Ok(c) => c,
        Err(errors) => return Err(format!("invalid configuration:\n  {}", errors.join("\n  "))),
    };
    let group_read = config.raw.logging.group_readable;
    // Everything this process and Envoy create (log folders and files, the disk cache, runtime
    // files) is private to the user (or its group on request).
    crate::private_files::set_process_umask(group_read);
    // Kept alive for the whole run: dropping it stops the mock.
    let mut _mock = None;
    if options.demo {
        let mock = MockUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("cannot start the demo upstream: {e}"))?;
        let mut raw = config.raw.clone();
        for r in &mut raw.routes {
            r.base_url = mock.base_url();
        }
        config = raw.validate().map_err(|e| format!("demo config: {e:?}"))?;
        _mock = Some(mock);
    }
    // An explicit choice (flag, or LLM_FORWARD_WASM / ENVOY_BIN of the real environment: a
    // working folder's .env cannot set them) or the installed location, never the working folder.
    let wasm = locate_wasm(
        options
            .wasm
            .or_else(|| env("LLM_FORWARD_WASM").map(PathBuf::from)),
    )?;
    let envoy_bin = locate_envoy(env("ENVOY_BIN"))?;
    let log_dir = absolute(&config.raw.log_dir);
    // Chat logs live in per-route folders, which Envoy does not create.
    crate::render::create_log_dirs(&config, &log_dir.display().to_string())
        .map_err(|e| format!("cannot create log folder {}: {e}", log_dir.display()))?;
    let runtime_dir = RuntimeDir::create()?;
    // Fleet-wide limits on Redis: the built-in rate-limit service runs in this process, on this
    // runtime, on a 0600 Unix socket in the private runtime folder (reachable by Envoy and this
    // process only; gateways on one host never collide); Envoy's `llm_forward_ratelimit` cluster
    // is rendered with that `pipe` address. Kept alive for the whole run.
    let _ratelimit = match &config.raw.limits.backend {
        Some(url) => {
            let listen = crate::ratelimit::listen::Listen::Unix(runtime_dir.ratelimit_socket());
            let mut options = crate::ratelimit::Options::new(listen, url);
            // Redis must answer a little before the filter stops waiting, so a slow Redis gives
            // a clean UNAVAILABLE (and the failure mode) rather than a filter-side timeout.
            options.redis_timeout = ratelimit_redis_timeout(config.raw.limits.timeout_ms);
            let server = crate::ratelimit::RateLimitServer::start(options)
                .await
                .map_err(|e| format!("cannot start the rate-limit service: {e}"))?;
            Some(server)
        }
        None => None,
    };
    let ratelimit_address = _ratelimit.as_ref().map(|s| s.addr().to_string());
    let render_options = RenderOptions {
        wasm_path: wasm.display().to_string(),
        log_dir: log_dir.display().to_string(),
        ca_bundle: default_ca_bundle(),
        admin_socket: Some(runtime_dir.admin_socket()),
        cache_socket: Some(runtime_dir.cache_socket()),
        ratelimit_address: ratelimit_address.clone(),
    };
    let admin = crate::render::admin_address(&config, &render_options);
    if let ListenAddr::Tcp(a) = &admin {
        eprintln!(
            "llm-forward: WARNING: Envoy's admin listens on {a} (server.admin_port / --admin-port): \
             every local user and any web page's form post can reach it (stop the gateway, raise the \
             log level, read /config_dump). Leave it unset to keep it on a private Unix socket."
        );
    }
    // Envoy gets listeners and clusters from files it watches, so a config edit is applied by
    // rewriting them (see reload.rs), without a restart.
    let files = RuntimeFiles {
        dir: runtime_dir.path().to_path_buf(),
    };
    files
        .write_all(&bootstrap(&config, &render_options))
        .map_err(|e| {
            format!(
                "cannot write Envoy's config in {}: {e}",
                runtime_dir.path().display()
            )
        })?;
    let envoy_yaml = files.bootstrap();

    // The cache service runs in this process, on this runtime, before Envoy sends it lookups.
    // Kept alive for the whole run: dropping it stops the service.
    let cache_addr = crate::render::cache_address(&config, &render_options);
    let _cache = if config.raw.cache.enabled() {
        let cache = &config.raw.cache;
        let mut service = crate::cache::ServiceConfig::from_cache_config(cache);
        if service.path.is_relative() {
            service.path = absolute(&cache.path);
        }
        Some(
            crate::cache::CacheServer::start(service, cache_addr.clone())
                .await
                .map_err(|e| format!("cannot start the cache service: {e}"))?,
        )
    } else {
        None
    };
    let secrets = secret_env(&config.raw, &env)?;
    let withheld = envoy_env_removals(&config.raw, &options.from_working_folder);
    let mut envoy = EnvoyProcess::spawn(&Launch {
        envoy: envoy_bin,
        config_path: envoy_yaml,
        admin: admin.clone(),
        concurrency: config.raw.server.concurrency,
        echo: options.verbose,
        env: secrets.clone(),
        env_remove: withheld.clone(),
        umask: crate::private_files::umask(group_read),
    })?;
    if let Err(e) = envoy.wait_ready(Duration::from_secs(60)).await {
        envoy.shutdown().await;
        return Err(format!(
            "{e}. Envoy's last lines:\n{}",
            envoy.last_lines().join("\n")
        ));
    }
    let access_log = log_dir.join("access.log");
    if let Some(address) = &ratelimit_address {
        println!("rate-limit service: {address} (built-in, Redis limits.backend)");
    }
    print!(
        "{}",
        banner(
            &config,
            crate::VERSION,
            &access_log.display().to_string(),
            &Internal {
                admin: admin.clone(),
                cache: cache_addr,
            },
            options.demo
        )
    );

    // The console reads the running config and reload outcomes from here; the reloader updates it.
    let live = crate::console::Live::new(config.clone());
    // Size-based rotation of chat and access logs (logging.rotate_bytes); ends with the runtime.
    let _rotation =
        crate::logrotate::spawn(rotation_watch(live.clone(), log_dir.clone()), admin.clone());
    let _console = if options.console || config.raw.console.enabled {
        let c = &config.raw.console;
        let token = match &c.token {
            Some(t) => t.clone(),
            None => crate::console::generate_token()?,
        };
        let ip: std::net::IpAddr = c
            .address
            .parse()
            .map_err(|_| format!("console.address `{}` is not an IP address", c.address))?;
        let default_port = llm_forward_core::config::ConsoleConfig::default().port;
        let (server, moved) = start_console(
            crate::console::ConsoleOptions {
                listen: SocketAddr::new(ip, c.port),
                token: token.clone(),
                config_path: path.as_ref().map(|p| absolute(&p.display().to_string())),
                log_dir: log_dir.clone(),
                admin: admin.clone(),
                demo: options.demo,
                live: live.clone(),
                overrides: overrides.clone(),
            },
            c.port != default_port,
        )
        .await
        .map_err(|e| format!("cannot start the console: {e}"))?;
        let shown = if c.token.is_some() {
            "the console.token of the config".to_string()
        } else {
            token
        };
        println!("console: http://{}/  token: {shown}", server.addr());
        if moved {
            println!(
                "console: port {} is taken (another gateway?); serving on {} instead (set console.port to choose)",
                c.port,
                server.addr().port()
            );
        }
        if !ip.is_loopback() {
            println!("console: WARNING: listening on {ip}, not only this machine; anyone with the token can edit the config");
        }
        Some(server)
    } else {
        None
    };
    let mut reloader = path.as_deref().map(|p| Reloader {
        watch: FileWatch::new(p),
        path: p.to_path_buf(),
        files,
        render_options,
        log_dir,
        demo_upstream: _mock.as_ref().map(|m: &MockUpstream| m.base_url()),
        secrets: secrets.clone(),
        current: config.clone(),
        live: live.clone(),
        overrides,
        withheld,
    });
    let code = supervise(&mut envoy, reloader.as_mut()).await;
    drop(runtime_dir);
    Ok(code)
}

/// The built-in rate-limit service's Redis deadline for a filter timeout of `timeout_ms`: three
/// quarters of it (15 ms for the default 20 ms).
pub fn ratelimit_redis_timeout(timeout_ms: u64) -> Duration {
    Duration::from_millis((timeout_ms.saturating_mul(3) / 4).max(1))
}

/// Environment for Envoy carrying the keys the filter resolves at configure time: `file:` secrets
/// are read here (surrounding whitespace removed) into `LLM_FORWARD_SECRET_<n>`; `${VAR}` secrets
/// must be set in this process (Envoy inherits it) and are checked now, so a missing one is a clear
/// startup error instead of a filter that refuses its configuration. Errors never show a key.
fn secret_env(
    config: &llm_forward_core::config::Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    use llm_forward_core::access::{secret_env_vars, Secret};
    let mut out = Vec::new();
    for (var, source) in secret_env_vars(config) {
        match source {
            Secret::File(path) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read the key file {path}: {e}"))?;
                let key = text.trim();
                if key.is_empty() {
                    return Err(format!("the key file {path} is empty"));
                }
                out.push((var, key.to_string()));
            }
            Secret::Env(name) => {
                let set = matches!(env(&name), Some(v) if !v.trim().is_empty());
                if !set {
                    return Err(format!(
                        "the environment variable {name} (a key in keys:) is not set"
                    ));
                }
            }
            Secret::Literal(_) => {}
        }
    }
    Ok(out)
}

/// Applies edits of the config file to the running Envoy.
struct Reloader {
    path: PathBuf,
    watch: FileWatch,
    files: RuntimeFiles,
    render_options: RenderOptions,
    log_dir: PathBuf,
    /// With `--demo`, every route keeps pointing at the built-in mock.
    demo_upstream: Option<String>,
    /// Environment Envoy was started with for `file:` keys; it cannot change without a restart.
    secrets: Vec<(String, String)>,
    current: ValidConfig,
    /// What the console shows: the running config and the last reload's outcome.
    live: crate::console::Live,
    /// `run`'s command-line settings, applied to every reloaded file.
    overrides: config_file::Overrides,
    /// Working-folder variables Envoy was started without ([`envoy_env_removals`]).
    withheld: Vec<String>,
}

impl Reloader {
    /// Check the file; on a change, validate and apply it, or explain why not. Never fatal: the
    /// running config stays when the new one is rejected.
    fn poll(&mut self) {
        if !self.watch.changed() {
            return;
        }
        match self.prepare() {
            Ok(config) => match self.files.update(&bootstrap(&config, &self.render_options)) {
                Ok(()) => {
                    eprintln!("llm-forward: applied the edited {}", self.path.display());
                    self.live.applied(
                        config.clone(),
                        format!("applied the edited {}", self.path.display()),
                    );
                    self.current = config;
                }
                Err(e) => {
                    eprintln!("llm-forward: could not apply the edited config: {e}");
                    self.live
                        .refused(vec![format!("could not apply the edited config: {e}")]);
                }
            },
            Err(problems) => {
                eprintln!(
                    "llm-forward: the edited {} was NOT applied; the running config stays:\n  {}",
                    self.path.display(),
                    problems.join("\n  ")
                );
                self.live.refused(problems);
            }
        }
    }

    fn prepare(&self) -> Result<ValidConfig, Vec<String>> {
        let env = |k: &str| std::env::var(k).ok();
        let mut config = config_file::load_with(Some(&self.path), &env, &self.overrides)?;
        if let Some(url) = &self.demo_upstream {
            let mut raw = config.raw.clone();
            for r in &mut raw.routes {
                r.base_url = url.clone();
            }
            config = raw
                .validate()
                .map_err(|e| e.into_iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
        }
        let new = &config.raw;
        let restart_only = config_file::restart_only_changes(&self.current.raw, new);
        if !restart_only.is_empty() {
            return Err(vec![format!(
                "{} can only change with a restart of llm-forward",
                restart_only.join(", ")
            )]);
        }
        let newly_used = envoy_env_removals(new, &self.withheld);
        if newly_used.len() != self.withheld.len() {
            return Err(vec![
                "a `${VAR}` key now uses a variable of the working folder's .env that Envoy was started without: restart llm-forward".into(),
            ]);
        }
        if secret_env(new, &env).map_err(|e| vec![e])? != self.secrets {
            return Err(vec![
                "`file:` keys changed: restart llm-forward to load them".into(),
            ]);
        }
        crate::render::create_log_dirs(&config, &self.log_dir.display().to_string())
            .map_err(|e| vec![format!("cannot create log folders: {e}")])?;
        Ok(config)
    }
}

async fn supervise(envoy: &mut EnvoyProcess, mut reloader: Option<&mut Reloader>) -> i32 {
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("llm-forward: cannot watch SIGTERM: {e}");
            envoy.shutdown().await;
            return 1;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            status = envoy.child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                eprintln!("llm-forward: Envoy exited unexpectedly ({status}). Its last lines:\n{}", envoy.last_lines().join("\n"));
                return 1;
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("llm-forward: interrupted, shutting down");
                envoy.shutdown().await;
                return 0;
            }
            _ = sigterm.recv() => {
                eprintln!("llm-forward: terminated, shutting down");
                envoy.shutdown().await;
                return 0;
            }
            _ = tick.tick() => {
                if let Some(r) = reloader.as_deref_mut() {
                    r.poll();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_gets_only_the_working_folder_variables_the_config_uses_as_keys() {
        let config = config_file::parse_yaml(
            "keys:\n  upstream:\n    - key: ${UPSTREAM_API_KEY}\n  forward:\n    - key: ${LLM_FORWARD_FORWARD_KEY_0}\n",
        )
        .unwrap();
        let from_folder: Vec<String> = [
            "LD_PRELOAD",
            "UPSTREAM_API_KEY",
            "LLM_FORWARD_FORWARD_KEY_0",
            "OPENAI_API_KEY_CONFIG",
            "CACHE_BACKEND",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            envoy_env_removals(&config, &from_folder),
            vec!["LD_PRELOAD", "OPENAI_API_KEY_CONFIG", "CACHE_BACKEND"]
        );
    }

    #[test]
    fn rotation_follows_routes_added_by_a_reload() {
        let first = config_file::parse_yaml(
            "logging:\n  chat: true\nroutes:\n  - {route: /a, base_url: 'http://127.0.0.1:9'}\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        let live = crate::console::Live::new(first);
        let watch = rotation_watch(live.clone(), PathBuf::from("/logs"));
        let (files, limit) = watch();
        assert!(files.contains(&PathBuf::from("/logs/a/chat.log")));
        assert!(!files.contains(&PathBuf::from("/logs/b/chat.log")));
        assert_eq!(limit, 50_000_000);
        let second = config_file::parse_yaml(
            "logging:\n  chat: true\n  rotate_bytes: 2000000\nroutes:\n  - {route: /a, base_url: 'http://127.0.0.1:9'}\n  - {route: /b, base_url: 'http://127.0.0.1:9'}\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        live.applied(second, "reloaded".into());
        let (files, limit) = watch();
        assert!(
            files.contains(&PathBuf::from("/logs/b/chat.log")),
            "{files:?}"
        );
        assert!(files.contains(&PathBuf::from("/logs/access.log")));
        assert_eq!(limit, 2_000_000);
    }

    #[test]
    fn runtime_folders_are_private_and_unpredictable() {
        use std::os::unix::fs::PermissionsExt;
        let a = RuntimeDir::create().unwrap();
        let b = RuntimeDir::create().unwrap();
        assert_ne!(a.path(), b.path());
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let name = a.path().file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("llm-forward-"), "{name}");
        assert_ne!(name, format!("llm-forward-{}", std::process::id()));
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
    }
}
