//! Test harness: a real Envoy with the built filter, rendered by the gateway's own renderer, in front
//! of the gateway's mock upstream. Every test gets its own ports and folder, so tests run in parallel.
//!
//! Prerequisites (`./test.sh` does them): the wasm built in release mode
//! (`cargo build -p llm-forward-filter --target wasm32-wasip1 --release`) and `envoy` on PATH (or
//! `ENVOY_BIN`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::config::{Config, RouteConfig, RouteKind};
use llm_forward_gateway::render::{bootstrap, default_ca_bundle, to_yaml, RenderOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use llm_forward_gateway::http_server::ListenAddr;
pub use llm_forward_gateway::mock::MockUpstream;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The release build of the filter; tests fail with a clear message when it is missing.
pub fn wasm_path() -> PathBuf {
    let p = workspace_root().join("target/wasm32-wasip1/release/llm_forward_filter.wasm");
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build -p llm-forward-filter --target wasm32-wasip1 --release` (./test.sh does)",
        p.display()
    );
    p
}

/// The first fenced code block of language `lang` (`""`: any) after the line `heading` (e.g.
/// `"## Use it in Istio"`) of the workspace file `file` (e.g. `"docs/deploy.md"`), up to the next
/// heading of the same or a higher level. Documentation examples are tested through this, so that
/// moving or renaming one fails with its file and heading instead of testing nothing.
pub fn doc_block(file: &str, heading: &str, lang: &str) -> String {
    let path = workspace_root().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    extract_doc_block(&text, heading, lang)
        .unwrap_or_else(|| panic!("{file}: no ```{lang} block under the heading `{heading}`"))
}

/// [`doc_block`] on a Markdown text. `None` when the heading or the block is missing.
pub fn extract_doc_block(markdown: &str, heading: &str, lang: &str) -> Option<String> {
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut lines = markdown.lines();
    lines.by_ref().find(|l| l.trim_end() == heading)?;
    // Inside a fence: Some(true) when it is the block we want, Some(false) for one to skip.
    let mut fence: Option<bool> = None;
    let mut block = String::new();
    for line in lines {
        let is_fence = line.trim_start().starts_with("```");
        match fence {
            Some(wanted) if is_fence => {
                if wanted {
                    return Some(block);
                }
                fence = None;
            }
            Some(true) => {
                block.push_str(line);
                block.push('\n');
            }
            Some(false) => {}
            None if is_fence => {
                let info = line.trim_start().trim_start_matches('`').trim();
                fence = Some(lang.is_empty() || info == lang);
            }
            None => {
                let hashes = line.chars().take_while(|c| *c == '#').count();
                if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
                    return None;
                }
            }
        }
    }
    None
}

pub fn envoy_bin() -> PathBuf {
    llm_forward_gateway::envoy::locate_envoy(std::env::var("ENVOY_BIN").ok())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The gateway binary built by cargo for this workspace.
pub fn gateway_bin() -> PathBuf {
    let profile_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let p = profile_dir.join("llm-forward");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build -p llm-forward` first",
        p.display()
    );
    p
}

/// A free loopback port (bound then released; Envoy binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh, empty folder under the system temp folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("llm-forward-it-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config with one root openai route to `base_url`, on fresh ports.
pub fn config_for(base_url: &str) -> Config {
    let mut c = Config::default();
    c.server.address = "127.0.0.1".into();
    c.server.port = free_port();
    // Envoy's admin goes on a Unix socket in the test's folder (see `Gateway::admin_addr`).
    c.server.admin_port = None;
    c.server.concurrency = 2;
    c.routes = vec![RouteConfig::new("/", base_url, RouteKind::Openai)];
    c
}

/// A running Envoy with the llm-forward filter.
pub struct Gateway {
    child: Child,
    pub config: Config,
    pub dir: TempDir,
}

impl Gateway {
    pub fn start(config: Config) -> Gateway {
        Gateway::start_with_ratelimit(config, None)
    }

    /// With fleet-wide limits (`limits.backend`): the built-in rate-limit service's address
    /// (`host:port` or `unix:/path`), as `llm-forward run` passes it.
    pub fn start_with_ratelimit(config: Config, ratelimit_address: Option<&str>) -> Gateway {
        Gateway::start_edited(config, ratelimit_address, |_| {})
    }

    /// Like [`Gateway::start_with_ratelimit`], with the rendered bootstrap changed by `edit` first
    /// (fault tests: a cluster removed, …).
    pub fn start_edited(
        config: Config,
        ratelimit_address: Option<&str>,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Gateway {
        let valid = config
            .clone()
            .validate()
            .unwrap_or_else(|e| panic!("test config invalid: {e:?}"));
        let dir = TempDir::new("envoy");
        // Chat logs go to per-route folders, which Envoy does not create.
        llm_forward_gateway::render::create_log_dirs(&valid, &dir.0.display().to_string()).unwrap();
        let options = RenderOptions {
            wasm_path: wasm_path().display().to_string(),
            log_dir: dir.0.display().to_string(),
            ca_bundle: default_ca_bundle(),
            admin_socket: Some(dir.0.join("admin.sock")),
            cache_socket: None,
            ratelimit_address: ratelimit_address.map(str::to_string),
        };
        let yaml_path = dir.0.join("envoy.yaml");
        let mut rendered = bootstrap(&valid, &options);
        edit(&mut rendered);
        // As `run` writes it: owner-only, as it may hold literal keys.
        llm_forward_gateway::private_files::write_atomic(&yaml_path, to_yaml(&rendered).as_bytes())
            .unwrap();
        let log = std::fs::File::create(dir.0.join("envoy.out")).unwrap();
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&yaml_path)
            .args([
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--component-log-level",
                "wasm:info",
                // As `llm-forward run` does: log lines within a second.
                "--file-flush-interval-msec",
                "1000",
            ])
            .args([
                "--concurrency",
                &config.server.concurrency.max(1).to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut gw = Gateway { child, config, dir };
        gw.wait_ready();
        gw
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Envoy exited during startup ({status}):\n{}",
                    self.envoy_output()
                );
            }
            if let Ok((200, _)) =
                llm_forward_gateway::envoy::admin_get(&self.admin_addr(), "/ready")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy not ready after 30s:\n{}",
                self.envoy_output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn envoy_output(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("envoy.out")).unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.config.server.port))
    }

    /// Envoy's admin: the Unix socket in the test's folder, or 127.0.0.1 when the test's config
    /// sets `server.admin_port`.
    pub fn admin_addr(&self) -> ListenAddr {
        match self.config.server.admin_port {
            Some(port) => ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
            None => ListenAddr::Unix(self.dir.0.join("admin.sock")),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.config.server.port)
    }

    /// Envoy's stats in text form.
    pub fn stats(&self) -> String {
        llm_forward_gateway::envoy::admin_get(&self.admin_addr(), "/stats")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// One counter or gauge by its full name; None when Envoy does not have it.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats().lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(": "))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking client that never retries, never follows redirects and never pools across tests.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A raw HTTP/1.1 connection, for tests about connection reuse and byte-exact framing.
pub struct RawConnection {
    reader: BufReader<TcpStream>,
}

/// A response read off a [`RawConnection`], with the arrival time of each body chunk.
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunk_times: Vec<Duration>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl RawConnection {
    pub fn connect(addr: SocketAddr) -> RawConnection {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        RawConnection {
            reader: BufReader::new(stream),
        }
    }

    /// Send one request (with Content-Length) and read the whole response (chunked or sized).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let start = Instant::now();
        self.read_response(start)
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end_matches(['\r', '\n']).to_string()
    }

    fn read_response(&mut self, start: Instant) -> RawResponse {
        let status_line = self.read_line();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.read_line();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let mut response = RawResponse {
            status,
            headers,
            body: Vec::new(),
            chunk_times: Vec::new(),
        };
        let chunked = response
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"));
        if chunked {
            loop {
                let size_line = self.read_line();
                let size =
                    usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                        .unwrap();
                if size == 0 {
                    let _ = self.read_line();
                    break;
                }
                let mut chunk = vec![0; size];
                self.reader.read_exact(&mut chunk).unwrap();
                response.chunk_times.push(start.elapsed());
                response.body.extend_from_slice(&chunk);
                let _ = self.read_line();
            }
        } else if let Some(len) = response
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body).unwrap();
            response.chunk_times.push(start.elapsed());
            response.body = body;
        }
        response
    }
}

/// Parse an OpenAI-style error body and return `(type, code)`, failing the test if it is not one.
pub fn openai_error(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let err = v
        .get("error")
        .unwrap_or_else(|| panic!("no `error` object: {v}"));
    assert!(err["message"].is_string(), "error.message missing: {v}");
    (
        err["type"].as_str().unwrap_or_default().to_string(),
        err["code"].as_str().unwrap_or_default().to_string(),
    )
}

/// `llm-forward run` started the way a user starts it: the real binary, its stdout and stderr
/// captured, stopped with SIGTERM on drop.
pub struct RunningGateway {
    pub child: Child,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The gateway binary with the release filter, ready for `.arg("run")…` and `RunningGateway::spawn`.
pub fn gateway_command() -> Command {
    let mut cmd = Command::new(gateway_bin());
    cmd.env("LLM_FORWARD_WASM", wasm_path())
        .env_remove("LLM_FORWARD_CONFIG");
    cmd
}

impl RunningGateway {
    /// Spawn `command` and wait until its output contains `ready_text` (panics with the output if
    /// the process exits or 60 s pass first).
    pub fn spawn(mut command: Command, ready_text: &str) -> RunningGateway {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let out = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    out.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let mut gw = RunningGateway { child, output };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !gw.output().contains(ready_text) {
            if let Ok(Some(status)) = gw.child.try_wait() {
                panic!(
                    "llm-forward exited ({status}) before `{ready_text}`:\n{}",
                    gw.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "`{ready_text}` did not appear within 60 s:\n{}",
                gw.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    /// The Envoy this `llm-forward run` started (its child process).
    pub fn envoy_pid(&self) -> u32 {
        let pid = self.child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut children = Vec::new();
            if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
                for t in tasks.flatten() {
                    let text =
                        std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                    children.extend(
                        text.split_whitespace()
                            .filter_map(|c| c.parse::<u32>().ok()),
                    );
                }
            }
            if let Some(c) = children.first() {
                return *c;
            }
            assert!(Instant::now() < deadline, "llm-forward {pid} has no child");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Envoy's command line.
    pub fn envoy_args(&self) -> Vec<String> {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.envoy_pid())).unwrap();
        cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect()
    }

    /// `run`'s private runtime folder (where Envoy's `-c` file is).
    pub fn runtime_dir(&self) -> PathBuf {
        let args = self.envoy_args();
        let at = args.iter().position(|a| a == "-c").unwrap();
        Path::new(&args[at + 1]).parent().unwrap().to_path_buf()
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Wait until the output contains `text`.
    pub fn wait_for(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(text) {
            assert!(
                Instant::now() < deadline,
                "`{text}` did not appear:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Sends a streaming chat request over a raw connection (`extra_headers` as `name: value` lines),
/// reads until the first content chunk (`tok0`, the mock's first piece), then drops the connection,
/// before the stream (and its usage chunk) ends. Returns what was read.
pub fn stream_then_disconnect(
    addr: SocketAddr,
    path: &str,
    key: &str,
    extra_headers: &str,
) -> String {
    let body = serde_json::json!({"model": "gpt-4o", "stream": true,
        "messages": [{"role": "user", "content": "tell me a long story"}]})
    .to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n{extra_headers}\
         x-mock-chunks: 40\r\nx-mock-delay-ms: 100\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("tok0") {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}
