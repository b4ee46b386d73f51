//! Protocol compatibility: the built-in rate-limit service (`llm-forward ratelimit`) answers Envoy's
//! own `envoy.filters.http.ratelimit` filter, configured by hand exactly as docs/ratelimit-service.md
//! shows (the test reads the doc's YAML blocks, so the doc stays true), with a real Redis.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_gateway::ratelimit::config::RlsConfig;
use llm_forward_gateway::ratelimit::listen::{BoundAddr, Listen};
use llm_forward_gateway::ratelimit::{Options, RateLimitServer};
use llm_forward_gateway::redis_server::RedisServer;
use llm_forward_integration_tests::*;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The code block after `<!-- doc-test: NAME -->` in docs/ratelimit-service.md.
fn doc_block(name: &str) -> String {
    let doc = std::fs::read_to_string(workspace_root().join("docs/ratelimit-service.md")).unwrap();
    let marker = format!("<!-- doc-test: {name} -->");
    let after = doc
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/ratelimit-service.md lost its `{marker}` example"))
        .1;
    let body = after.trim_start().split_once('\n').unwrap().1;
    body.split_once("\n```").unwrap().0.to_string() + "\n"
}

/// The doc's native-filter Envoy config with free listener/admin ports, the mock upstream's port, the
/// rate-limit service at `rls_address` (replacing the doc's `rls_literal`) and a wide deadline.
fn doc_envoy_config(
    upstream_port: u16,
    rls_literal: &str,
    rls_address: &str,
) -> (String, u16, u16) {
    let (port, admin_port) = (free_port(), free_port());
    let mut yaml = doc_block("envoy-native");
    yaml = replace_once(&yaml, "timeout: 0.02s", "timeout: 5s");
    yaml = replace_once(&yaml, "port_value: 10000", &format!("port_value: {port}"));
    yaml = replace_once(
        &yaml,
        "port_value: 9901",
        &format!("port_value: {admin_port}"),
    );
    yaml = replace_once(
        &yaml,
        "port_value: 9000",
        &format!("port_value: {upstream_port}"),
    );
    yaml = replace_once(&yaml, rls_literal, rls_address);
    (yaml, port, admin_port)
}

/// Replaces one literal of the doc with a test value, failing if the doc no longer has it.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the doc's Envoy config should contain `{from}` once"
    );
    text.replace(from, to)
}

struct Envoy {
    child: Child,
    dir: TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Envoy {
    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("envoy.out")).unwrap_or_default()
    }
}

fn start_envoy(yaml: &str, admin: SocketAddr) -> Envoy {
    let dir = TempDir::new("rls-envoy");
    let path = dir.0.join("envoy.yaml");
    std::fs::write(&path, yaml).unwrap();
    let log = std::fs::File::create(dir.0.join("envoy.out")).unwrap();
    let child = Command::new(envoy_bin())
        .arg("-c")
        .arg(&path)
        .args([
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--concurrency",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut envoy = Envoy { child, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = envoy.child.try_wait() {
            panic!("Envoy exited ({status}):\n{}", envoy.output());
        }
        if let Ok((200, _)) = llm_forward_gateway::envoy::admin_get(
            &llm_forward_gateway::http_server::ListenAddr::Tcp(admin),
            "/ready",
        ) {
            return envoy;
        }
        assert!(
            Instant::now() < deadline,
            "Envoy not ready:\n{}",
            envoy.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn envoy_native_ratelimit_filter_is_answered_as_the_doc_shows() {
    let redis = RedisServer::start();
    let upstream = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let mut options = Options::new(Listen::Tcp("127.0.0.1:0".into()), redis.url());
    options.config = Some(RlsConfig::parse(&doc_block("ratelimit-config")).unwrap());
    // The doc's 15/20 ms deadlines fit a quiet machine; on a loaded CI machine the first call (a new
    // HTTP/2 connection, the Lua script's first load) can miss them and Envoy then fails open, which
    // is right for production and a random failure for a test. The test widens both deadlines.
    options.redis_timeout = Duration::from_secs(5);
    let rls = RateLimitServer::spawn(options).unwrap();
    let BoundAddr::Tcp(rls_addr) = rls.addr().clone() else {
        panic!("tcp expected")
    };

    let (yaml, port, admin_port) = doc_envoy_config(
        upstream.addr().port(),
        "port_value: 8081",
        &format!("port_value: {}", rls_addr.port()),
    );
    let envoy = start_envoy(&yaml, SocketAddr::from(([127, 0, 0, 1], admin_port)));

    let http = client();
    let get = |path: &str, user: Option<&str>| {
        let mut r = http.get(format!("http://127.0.0.1:{port}{path}"));
        if let Some(u) = user {
            r = r.header("x-user", u);
        }
        r.send().unwrap()
    };

    // The doc's config file: 3 a minute per x-user on /v1/.
    for remaining in ["2", "1", "0"] {
        let r = get("/v1/models", Some("alice"));
        assert_eq!(r.status(), 200, "{}", envoy.output());
        assert_eq!(
            r.headers()["x-ratelimit-remaining"].to_str().unwrap(),
            remaining
        );
        assert_eq!(
            r.headers()["x-ratelimit-limit"].to_str().unwrap(),
            "3, 3;w=60"
        );
    }
    let refused = get("/v1/models", Some("alice"));
    assert_eq!(refused.status(), 429);
    let reset: u64 = refused.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&reset), "{reset}");
    // Another user has their own budget; no x-user means no descriptor, so no limit.
    assert_eq!(get("/v1/models", Some("bob")).status(), 200);
    for _ in 0..5 {
        assert_eq!(get("/v1/models", None).status(), 200);
    }

    // The override route: 2 a minute carried in the request itself.
    assert_eq!(get("/limited-by-envoy/models", None).status(), 200);
    let second = get("/limited-by-envoy/models", None);
    assert_eq!(second.status(), 200);
    assert_eq!(
        second.headers()["x-ratelimit-limit"].to_str().unwrap(),
        "2, 2;w=60"
    );
    assert_eq!(get("/limited-by-envoy/models", None).status(), 429);

    // The upstream saw only the admitted requests: 3 + 1 + 5 + 2.
    assert_eq!(upstream.request_count(), 11);
}

#[test]
fn envoy_reaches_the_service_over_a_unix_socket_with_a_pipe_address() {
    let redis = RedisServer::start();
    let upstream = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dir = TempDir::new("rls-pipe");
    let socket = dir.0.join("ratelimit.sock");
    let mut options = Options::new(Listen::Unix(socket.clone()), redis.url());
    options.config = Some(RlsConfig::parse(&doc_block("ratelimit-config")).unwrap());
    // The doc's 15/20 ms deadlines fit a quiet machine; on a loaded CI machine the first call (a new
    // HTTP/2 connection, the Lua script's first load) can miss them and Envoy then fails open, which
    // is right for production and a random failure for a test. The test widens both deadlines.
    options.redis_timeout = Duration::from_secs(5);
    let _rls = RateLimitServer::spawn(options).unwrap();

    // The doc's config with the change its last paragraph describes.
    let (yaml, port, admin_port) = doc_envoy_config(
        upstream.addr().port(),
        "address: {socket_address: {address: 127.0.0.1, port_value: 8081}}",
        &format!("address: {{pipe: {{path: {}}}}}", socket.display()),
    );
    let envoy = start_envoy(&yaml, SocketAddr::from(([127, 0, 0, 1], admin_port)));
    let http = client();
    let get = || {
        http.get(format!("http://127.0.0.1:{port}/v1/models"))
            .header("x-user", "carol")
            .send()
            .unwrap()
            .status()
    };
    for _ in 0..3 {
        assert_eq!(get(), 200, "{}", envoy.output());
    }
    assert_eq!(get(), 429, "the service answered over the socket");
}

#[test]
fn the_command_listens_on_a_private_socket_and_never_prints_the_password() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("rls-cli");
    let socket = dir.0.join("rls.sock");
    // Nothing listens on the Redis port: the service starts anyway and says so, without the password.
    let mut command = Command::new(gateway_bin());
    command.args([
        "ratelimit",
        "--listen",
        &format!("unix:{}", socket.display()),
        "--redis",
        &format!("redis://:hunter2@127.0.0.1:{}/0", free_port()),
    ]);
    let mut rls = RunningGateway::spawn(command, "listening on unix:");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let output = rls.output();
    assert!(output.contains("redis://***@127.0.0.1:"), "{output}");
    assert!(!output.contains("hunter2"), "{output}");
    // SIGTERM: a clean exit that removes the socket.
    let _ = Command::new("kill")
        .args(["-TERM", &rls.child.id().to_string()])
        .status();
    let status = rls.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!socket.exists());

    // A URL it cannot use: refused at start, still without the password.
    let out = Command::new(gateway_bin())
        .args([
            "ratelimit",
            "--listen",
            "127.0.0.1:0",
            "--redis",
            "redis://:hunter2@host/notadb",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("redis://***@host/notadb"), "{text}");
}
