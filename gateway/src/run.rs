//! `llm-forward run`: render → start Envoy → wait until ready → banner → supervise.

use crate::banner::banner;
use crate::config_file;
use crate::envoy::{locate_envoy, locate_wasm, EnvoyProcess};
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

async fn run_inner(options: RunOptions) -> Result<i32, String> {
    let env = |k: &str| std::env::var(k).ok();
    let path = config_file::resolve_path(options.config.as_deref());
    let mut config = match config_file::load(path.as_deref(), &env) {
        Ok(c) => c,
        Err(errors) => return Err(format!("invalid configuration:\n  {}", errors.join("\n  "))),
    };
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
    let render_options = RenderOptions {
        wasm_path: wasm.display().to_string(),
        log_dir: log_dir.display().to_string(),
        ca_bundle: default_ca_bundle(),
    };
    let runtime_dir = std::env::temp_dir().join(format!("llm-forward-{}", std::process::id()));
    std::fs::create_dir_all(&runtime_dir)
        .map_err(|e| format!("cannot create {}: {e}", runtime_dir.display()))?;
    // Envoy gets listeners and clusters from files it watches, so a config edit is applied by
    // rewriting them (see reload.rs), without a restart.
    let files = RuntimeFiles {
        dir: runtime_dir.clone(),
    };
    files
        .write_all(&bootstrap(&config, &render_options))
        .map_err(|e| {
            format!(
                "cannot write Envoy's config in {}: {e}",
                runtime_dir.display()
            )
        })?;
    let envoy_yaml = files.bootstrap();

    // The cache service runs in this process, on this runtime, before Envoy sends it lookups.
    // Kept alive for the whole run: dropping it stops the service.
    let _cache = if config.raw.cache.enabled() {
        let cache = &config.raw.cache;
        let mut service = crate::cache::ServiceConfig::from_cache_config(cache);
        if service.path.is_relative() {
            service.path = absolute(&cache.path);
        }
        let listen = SocketAddr::from(([127, 0, 0, 1], cache.port));
        Some(
            crate::cache::CacheServer::start(service, listen)
                .await
                .map_err(|e| format!("cannot start the cache service: {e}"))?,
        )
    } else {
        None
    };
    let admin = SocketAddr::from(([127, 0, 0, 1], config.raw.server.admin_port));
    let secrets = secret_env(&config.raw, &env)?;
    let mut envoy = EnvoyProcess::spawn_with_env(
        &envoy_bin,
        &envoy_yaml,
        admin,
        config.raw.server.concurrency,
        options.verbose,
        &secrets,
    )?;
    if let Err(e) = envoy.wait_ready(Duration::from_secs(60)).await {
        envoy.shutdown().await;
        let _ = std::fs::remove_dir_all(&runtime_dir);
        return Err(format!(
            "{e}. Envoy's last lines:\n{}",
            envoy.last_lines().join("\n")
        ));
    }
    let access_log = log_dir.join("access.log");
    print!(
        "{}",
        banner(
            &config,
            crate::VERSION,
            &access_log.display().to_string(),
            options.demo
        )
    );

    // Size-based rotation of chat and access logs (logging.rotate_bytes); ends with the runtime.
    let log_dir_text = log_dir.display().to_string();
    let rotate = crate::logrotate::files(
        crate::render::chat_log_paths(&config, &log_dir_text),
        &log_dir,
    );
    let _rotation = crate::logrotate::spawn(rotate, config.raw.logging.rotate_bytes, admin);
    // The console reads the running config and reload outcomes from here; the reloader updates it.
    let live = crate::console::Live::new(config.clone());
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
        let server = crate::console::ConsoleServer::start(crate::console::ConsoleOptions {
            listen: SocketAddr::new(ip, c.port),
            token: token.clone(),
            config_path: path.as_ref().map(|p| absolute(&p.display().to_string())),
            log_dir: log_dir.clone(),
            admin,
            demo: options.demo,
            live: live.clone(),
        })
        .await
        .map_err(|e| format!("cannot start the console: {e}"))?;
        let shown = if c.token.is_some() {
            "the console.token of the config".to_string()
        } else {
            token
        };
        println!("console: http://{}/  token: {shown}", server.addr());
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
    });
    let code = supervise(&mut envoy, reloader.as_mut()).await;
    let _ = std::fs::remove_dir_all(&runtime_dir);
    Ok(code)
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
}

/// Fields whose change needs a restart of `llm-forward run` (Envoy's process settings, the cache
/// service, the log folder and the console itself): an edit touching them is refused as a whole.
pub fn restart_only_changes(
    old: &llm_forward_core::config::Config,
    new: &llm_forward_core::config::Config,
) -> Vec<&'static str> {
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
    changed
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
        let mut config = config_file::load(Some(&self.path), &env)?;
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
        let restart_only = restart_only_changes(&self.current.raw, new);
        if !restart_only.is_empty() {
            return Err(vec![format!(
                "{} can only change with a restart of llm-forward",
                restart_only.join(", ")
            )]);
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
