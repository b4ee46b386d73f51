//! `llm-forward run` as seen from the rest of the machine: its internal services (cache, Envoy
//! admin) are Unix sockets in a private folder, its files are owner-only, Envoy dies with it, a
//! working folder cannot choose the programs it runs nor hand Envoy its variables, and two
//! gateways run side by side with only `--port` differing.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_integration_tests::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purpose (its parent, the test, may not have reaped it yet).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// TCP ports `pid` listens on (from its socket fds and /proc/net/tcp{,6}).
fn listening_tcp_ports(pid: u32) -> HashSet<u16> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(link) = std::fs::read_link(fd.path()) {
            let link = link.display().to_string();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A = LISTEN), inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

fn write_config(dir: &TempDir, upstream: &str, port: u16, extra: &str) -> PathBuf {
    let path = dir.0.join("llm-forward.yaml");
    std::fs::write(
        &path,
        format!(
            "server:\n  address: 127.0.0.1\n  port: {port}\n  concurrency: 1\nlog_dir: {}\nlogging:\n  chat: true\ncache:\n  openai: true\nroutes:\n  - route: /\n    base_url: {upstream}\n{extra}",
            dir.0.join("Log").display()
        ),
    )
    .unwrap();
    path
}

fn chat(port: u16, n: u32) -> reqwest::blocking::Response {
    client()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o", "caching": true,
            "messages": [{"role": "user", "content": format!("question {n}")}]}))
        .send()
        .unwrap()
}

/// The store after a miss is asynchronous (the filter sends it after the answer): ask again until
/// the answer comes from the cache.
fn wait_for_hit(port: u16, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = chat(port, n);
        assert_eq!(r.status(), 200);
        if r.headers().get("x-cache").is_some_and(|v| v == "HIT") {
            return;
        }
        assert!(Instant::now() < deadline, "no cache hit on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn internal_services_are_private_sockets_and_files_are_owner_only() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dir = TempDir::new("isolation");
    let port = free_port();
    let config = write_config(&dir, &up.base_url(), port, "");
    let mut cmd = gateway_command();
    cmd.args(["run", "--config"])
        .arg(&config)
        .current_dir(&dir.0);
    let gw = RunningGateway::spawn(cmd, "ready to serve");
    let envoy = gw.envoy_pid();

    // The only TCP port of the whole gateway is its listener: no admin, no cache port.
    assert_eq!(listening_tcp_ports(envoy), HashSet::from([port]));
    assert_eq!(listening_tcp_ports(gw.child.id()), HashSet::new());
    // Admin paths on the listener are routes to the upstream, never Envoy's admin.
    let dump = client()
        .get(format!("http://127.0.0.1:{port}/config_dump"))
        .send()
        .unwrap();
    assert!(!dump.text().unwrap().contains("static_resources"));

    // The runtime folder: 0700, unpredictable; its files 0600; the sockets 0600.
    let runtime = gw.runtime_dir();
    assert!(gw
        .output()
        .contains(&format!("unix:{}", runtime.join("admin.sock").display())));
    assert_ne!(
        runtime.file_name().unwrap().to_string_lossy(),
        format!("llm-forward-{}", gw.child.id())
    );
    assert_eq!(mode(&runtime), 0o700);
    for f in [
        "envoy.yaml",
        "lds.yaml",
        "cds.yaml",
        "admin.sock",
        "cache.sock",
    ] {
        assert_eq!(mode(&runtime.join(f)), 0o600, "{f}");
    }
    // Envoy's admin answers on its socket (the console and log rotation use it).
    let admin = ListenAddr::Unix(runtime.join("admin.sock"));
    let (status, _) = llm_forward_gateway::envoy::admin_get(&admin, "/ready").unwrap();
    assert_eq!(status, 200);

    // Traffic through the private cache socket works; the logs Envoy creates are owner-only.
    assert_eq!(chat(port, 1).status(), 200);
    wait_for_hit(port, 1);
    let access = dir.0.join("Log/access.log");
    let chat_log = dir.0.join("Log/root/chat.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(chat_log.exists() && access.exists()) {
        assert!(Instant::now() < deadline, "logs not written");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(mode(&access), 0o600);
    assert_eq!(mode(&chat_log), 0o600);
    assert_eq!(mode(&dir.0.join("Log")), 0o700);
    drop(gw);
    assert!(!runtime.exists(), "the runtime folder is removed at exit");
}

/// `kill -9 llm-forward` used to leave Envoy running, unsupervised, holding the port.
#[test]
fn envoy_dies_with_a_killed_gateway() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dir = TempDir::new("pdeathsig");
    let port = free_port();
    let config = write_config(&dir, &up.base_url(), port, "");
    let mut cmd = gateway_command();
    cmd.args(["run", "--config"])
        .arg(&config)
        .current_dir(&dir.0);
    let mut gw = RunningGateway::spawn(cmd, "ready to serve");
    let envoy = gw.envoy_pid();
    let runtime = gw.runtime_dir();
    assert!(alive(envoy));
    gw.child.kill().unwrap(); // SIGKILL: no cleanup code of llm-forward runs
    gw.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(envoy) {
        if Instant::now() > deadline {
            let _ = std::process::Command::new("kill")
                .args(["-9", &envoy.to_string()])
                .status();
            panic!("Envoy {envoy} outlived its killed llm-forward");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Nobody was left to remove it.
    let _ = std::fs::remove_dir_all(runtime);
}

/// A `.env` in the working folder reaches Envoy only with the variables the config uses as keys,
/// and cannot choose the Envoy binary.
#[test]
fn a_working_folder_env_reaches_envoy_only_as_keys() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dir = TempDir::new("dotenv-envoy");
    let port = free_port();
    let config = write_config(
        &dir,
        &up.base_url(),
        port,
        "keys:\n  upstream:\n    - key: ${MY_UPSTREAM_KEY}\n  forward:\n    - key: fk-isolation-test-key\n",
    );
    std::fs::write(
        dir.0.join(".env"),
        "MY_UPSTREAM_KEY=sk-from-dotenv-0123456789\nLLMF_TEST_MARKER=from-dotenv\nLD_PRELOAD=/nonexistent/evil.so\nENVOY_BIN=/nonexistent/envoy\n",
    )
    .unwrap();
    let mut cmd = gateway_command();
    cmd.args(["run", "--config"])
        .arg(&config)
        .env_remove("LD_PRELOAD")
        .env_remove("ENVOY_BIN")
        .current_dir(&dir.0);
    let gw = RunningGateway::spawn(cmd, "ready to serve");
    assert!(
        gw.output().contains("ENVOY_BIN is ignored"),
        "{}",
        gw.output()
    );
    let envoy = gw.envoy_pid();
    let environ = std::fs::read(format!("/proc/{envoy}/environ")).unwrap();
    let vars: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).to_string())
        .collect();
    assert!(vars
        .iter()
        .any(|v| v == "MY_UPSTREAM_KEY=sk-from-dotenv-0123456789"));
    for absent in ["LLMF_TEST_MARKER", "LD_PRELOAD", "ENVOY_BIN"] {
        assert!(
            !vars.iter().any(|v| v.starts_with(&format!("{absent}="))),
            "{absent} reached Envoy"
        );
    }
    // The key still works: the upstream got the key from .env.
    let r = client()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth("fk-isolation-test-key")
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        up.requests().last().unwrap().header("authorization"),
        Some("Bearer sk-from-dotenv-0123456789")
    );
}

/// A filter build in the working folder is never loaded: without --wasm / LLM_FORWARD_WASM and
/// with no installed filter, `run` says so instead of starting Envoy with the folder's file.
#[test]
fn the_filter_is_never_taken_from_the_working_folder() {
    let dir = TempDir::new("wasm-cwd");
    let bin_dir = dir.0.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = bin_dir.join("llm-forward");
    std::fs::copy(gateway_bin(), &bin).unwrap();
    let planted = dir.0.join("work/target/wasm32-wasip1/release");
    std::fs::create_dir_all(&planted).unwrap();
    std::fs::write(planted.join("llm_forward_filter.wasm"), b"not the filter").unwrap();
    let out = std::process::Command::new(&bin)
        .args(["run", "--port", &free_port().to_string()])
        .env_remove("LLM_FORWARD_WASM")
        .env_remove("LLM_FORWARD_CONFIG")
        .current_dir(dir.0.join("work"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("llm_forward_filter.wasm not found"),
        "{stderr}"
    );
}

fn console_overview(url: &str, token: &str) -> Value {
    client()
        .get(format!("{url}api/overview"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Two `llm-forward run` in two folders, the same config but `--port`, cache and console on:
/// on main the second one failed (`cannot listen on 127.0.0.1:8002`).
#[test]
fn two_gateways_run_side_by_side_with_only_the_port_differing() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut running = Vec::new();
    for n in 0..2 {
        let dir = TempDir::new(&format!("side-{n}"));
        // The same file in both folders: no port of its own.
        std::fs::write(
            dir.0.join("llm-forward.yaml"),
            format!(
                "server:\n  address: 127.0.0.1\ncache:\n  openai: true\nconsole:\n  token: side-by-side-token-0123456789\nroutes:\n  - route: /\n    base_url: {}\n",
                up.base_url()
            ),
        )
        .unwrap();
        let port = free_port();
        let mut cmd = gateway_command();
        cmd.args([
            "run",
            "--console",
            "--workers",
            "2",
            "--port",
            &port.to_string(),
        ])
        .current_dir(&dir.0);
        let gw = RunningGateway::spawn(cmd, "console: http://");
        running.push((dir, port, gw));
    }
    let mut consoles = HashSet::new();
    for (_, port, gw) in &running {
        let out = gw.output();
        let url: String = out[out.find("console: http://").unwrap() + 9..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        consoles.insert(url.clone());
        let overview = console_overview(&url, "side-by-side-token-0123456789");
        assert_eq!(overview["envoy"]["ready"], true, "{overview}");
        assert_eq!(chat(*port, 7).status(), 200);
        wait_for_hit(*port, 7);
        // --workers is Envoy's --concurrency.
        let envoy = gw.envoy_pid();
        let cmdline = std::fs::read(format!("/proc/{envoy}/cmdline")).unwrap();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).to_string())
            .collect();
        let at = args.iter().position(|a| a == "--concurrency").unwrap();
        assert_eq!(args[at + 1], "2");
    }
    assert_eq!(consoles.len(), 2, "each gateway has its own console");
}

/// The disk cache and the logs hold conversations: owner-only by default, group-readable on
/// request (`logging.group_readable`), never world-readable.
#[test]
fn the_disk_cache_and_logs_follow_the_group_read_knob() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    for (group, file_mode, dir_mode) in [(false, 0o600, 0o700), (true, 0o640, 0o750)] {
        let dir = TempDir::new("modes");
        let port = free_port();
        let path = dir.0.join("llm-forward.yaml");
        std::fs::write(
            &path,
            format!(
                "server:\n  address: 127.0.0.1\n  port: {port}\n  concurrency: 1\nlog_dir: {log}\nlogging:\n  chat: true\n  group_readable: {group}\ncache:\n  openai: true\n  backend: disk\n  path: {db}\nroutes:\n  - route: /\n    base_url: {up}\n",
                log = dir.0.join("Log").display(),
                db = dir.0.join("cache/cache.redb").display(),
                up = up.base_url(),
            ),
        )
        .unwrap();
        let mut cmd = gateway_command();
        cmd.args(["run", "--config"]).arg(&path).current_dir(&dir.0);
        let gw = RunningGateway::spawn(cmd, "ready to serve");
        assert_eq!(chat(port, 3).status(), 200);
        wait_for_hit(port, 3);
        let access = dir.0.join("Log/access.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !access.exists() {
            assert!(Instant::now() < deadline, "no access log");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            mode(&dir.0.join("cache/cache.redb")),
            file_mode,
            "group {group}"
        );
        assert_eq!(mode(&access), file_mode, "group {group}");
        assert_eq!(mode(&dir.0.join("Log")), dir_mode, "group {group}");
        drop(gw);
    }
}
