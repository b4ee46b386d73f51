//! `llm-forward run`: render → start Envoy → wait until ready → banner → supervise.

use crate::banner::banner;
use crate::config_file;
use crate::envoy::{locate_envoy, locate_wasm, EnvoyProcess};
use crate::mock::MockUpstream;
use crate::render::{bootstrap, default_ca_bundle, to_yaml, RenderOptions};
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
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| format!("cannot create log folder {}: {e}", log_dir.display()))?;
    let render_options = RenderOptions {
        wasm_path: wasm.display().to_string(),
        log_dir: log_dir.display().to_string(),
        ca_bundle: default_ca_bundle(),
    };
    let runtime_dir = std::env::temp_dir().join(format!("llm-forward-{}", std::process::id()));
    std::fs::create_dir_all(&runtime_dir)
        .map_err(|e| format!("cannot create {}: {e}", runtime_dir.display()))?;
    let envoy_yaml = runtime_dir.join("envoy.yaml");
    std::fs::write(&envoy_yaml, to_yaml(&bootstrap(&config, &render_options)))
        .map_err(|e| format!("cannot write {}: {e}", envoy_yaml.display()))?;

    let admin = SocketAddr::from(([127, 0, 0, 1], config.raw.server.admin_port));
    let mut envoy = EnvoyProcess::spawn(
        &envoy_bin,
        &envoy_yaml,
        admin,
        config.raw.server.concurrency,
        options.verbose,
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

    let code = supervise(&mut envoy).await;
    let _ = std::fs::remove_dir_all(&runtime_dir);
    Ok(code)
}

async fn supervise(envoy: &mut EnvoyProcess) -> i32 {
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("llm-forward: cannot watch SIGTERM: {e}");
            envoy.shutdown().await;
            return 1;
        }
    };
    tokio::select! {
        status = envoy.child.wait() => {
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            eprintln!("llm-forward: Envoy exited unexpectedly ({status}). Its last lines:\n{}", envoy.last_lines().join("\n"));
            1
        }
        _ = tokio::signal::ctrl_c() => {
            eprintln!("llm-forward: interrupted, shutting down");
            envoy.shutdown().await;
            0
        }
        _ = sigterm.recv() => {
            eprintln!("llm-forward: terminated, shutting down");
            envoy.shutdown().await;
            0
        }
    }
}
