//! The service over real HTTP, for each backend (redis against a real `redis-server`).

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (status, out[at..].to_vec())
}

fn config(backend: CacheBackend) -> ServiceConfig {
    let mut c = ServiceConfig::from_cache_config(&CacheConfig::default());
    c.backend = backend;
    c
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, body) = http(addr, "GET", "/metrics", &[], b"");
    String::from_utf8(body)
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("llm_forward_cache_{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The contract every backend must keep.
fn contract(addr: SocketAddr) {
    assert_eq!(http(addr, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(http(addr, "GET", "/entries/v1:chat:abc", &[], b"").0, 404);
    let value = b"\x00binary\xffvalue".to_vec();
    assert_eq!(
        http(addr, "PUT", "/entries/v1:chat:abc", &[], &value).0,
        204
    );
    assert_eq!(
        http(addr, "GET", "/entries/v1:chat:abc", &[], b""),
        (200, value)
    );
    assert_eq!(
        http(addr, "DELETE", "/entries/v1:chat:abc", &[], b"").0,
        204
    );
    assert_eq!(http(addr, "GET", "/entries/v1:chat:abc", &[], b"").0, 404);
    assert_eq!(
        http(addr, "DELETE", "/entries/v1:chat:abc", &[], b"").0,
        404
    );
    assert_eq!(http(addr, "GET", "/entries/..%2Fx", &[], b"").0, 400);
    assert_eq!(
        http(
            addr,
            "PUT",
            "/entries/k",
            &[("x-ttl-seconds", "zero")],
            b"x"
        )
        .0,
        400
    );
    // TTL: one second.
    assert_eq!(
        http(
            addr,
            "PUT",
            "/entries/short",
            &[("x-ttl-seconds", "1")],
            b"x"
        )
        .0,
        204
    );
    assert_eq!(http(addr, "GET", "/entries/short", &[], b"").0, 200);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(http(addr, "GET", "/entries/short", &[], b"").0, 404);
    assert_eq!(metric(addr, "hits_total"), 2);
    assert_eq!(metric(addr, "misses_total"), 3);
    assert_eq!(metric(addr, "stores_total"), 2);
}

#[test]
fn memory_backend_keeps_the_contract_and_its_bound() {
    let mut c = config(CacheBackend::Memory);
    c.max_bytes = 4096;
    c.max_value_bytes = 8192;
    let server = CacheServer::spawn(c, local()).unwrap();
    let addr = server.tcp_addr().unwrap();
    contract(addr);
    let big = vec![b'x'; 1500];
    for i in 0..5 {
        assert_eq!(
            http(addr, "PUT", &format!("/entries/k{i}"), &[], &big).0,
            204
        );
    }
    assert!(metric(addr, "bytes") <= 4096);
    assert!(metric(addr, "evictions_total") >= 3);
    assert_eq!(http(addr, "GET", "/entries/k4", &[], b"").0, 200);
    assert_eq!(http(addr, "GET", "/entries/k0", &[], b"").0, 404);
    // Bigger than the whole bound, or than the value limit: refused.
    assert_eq!(
        http(addr, "PUT", "/entries/huge", &[], &vec![0; 5000]).0,
        413
    );
    assert_eq!(
        http(addr, "PUT", "/entries/huger", &[], &vec![0; 9000]).0,
        413
    );
}

#[test]
fn disk_backend_keeps_the_contract_and_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("llm-forward-cache-svc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = config(CacheBackend::Disk);
    c.path = dir.join("sub/cache.redb");
    {
        let server = CacheServer::spawn(c.clone(), local()).unwrap();
        contract(server.tcp_addr().unwrap());
        assert_eq!(
            http(
                server.tcp_addr().unwrap(),
                "PUT",
                "/entries/keep",
                &[],
                b"kept"
            )
            .0,
            204
        );
    }
    let server = CacheServer::spawn(c, local()).unwrap();
    assert_eq!(
        http(server.tcp_addr().unwrap(), "GET", "/entries/keep", &[], b""),
        (200, b"kept".to_vec())
    );
    assert_eq!(
        metric(server.tcp_addr().unwrap(), "entries"),
        1,
        "the expired entry was swept at start"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

use crate::redis_server::RedisServer;

#[test]
fn redis_backend_keeps_the_contract() {
    let redis = RedisServer::start();
    let mut c = config(CacheBackend::Redis);
    c.redis_url = format!("redis://127.0.0.1:{}", redis.port);
    let server = CacheServer::spawn(c, local()).unwrap();
    contract(server.tcp_addr().unwrap());
}

#[test]
fn redis_down_is_a_503_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = config(CacheBackend::Redis);
    c.redis_url = format!("redis://127.0.0.1:{port}");
    let server = CacheServer::spawn(c, local()).unwrap();
    assert_eq!(
        http(server.tcp_addr().unwrap(), "GET", "/entries/x", &[], b"").0,
        503
    );
    assert_eq!(metric(server.tcp_addr().unwrap(), "errors_total"), 1);
}

/// `x-ttl-seconds: 18446744073709551615` used to overflow `Instant + Duration` in the memory
/// backend: a panic (with `panic = "abort"`, the whole `llm-forward` process).
#[test]
fn the_largest_ttl_is_stored_not_a_panic() {
    for backend in [CacheBackend::Memory, CacheBackend::Disk] {
        let mut c = config(backend);
        let dir = tempfile::tempdir().unwrap();
        c.path = dir.path().join("cache.redb");
        let server = CacheServer::spawn(c, local()).unwrap();
        let addr = server.tcp_addr().unwrap();
        let huge = [("x-ttl-seconds", "18446744073709551615")];
        assert_eq!(
            http(addr, "PUT", "/entries/k", &huge, b"v").0,
            204,
            "{backend:?}"
        );
        assert_eq!(
            http(addr, "GET", "/entries/k", &[], b""),
            (200, b"v".to_vec())
        );
        assert_eq!(http(addr, "GET", "/healthz", &[], b"").0, 200);
    }
}

/// `llm-forward run` serves the cache on a Unix socket in its private folder.
#[test]
fn serves_on_a_unix_socket() {
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.sock");
    let server =
        CacheServer::spawn(config(CacheBackend::Memory), ListenAddr::Unix(path.clone())).unwrap();
    assert_eq!(server.addr(), &ListenAddr::Unix(path.clone()));
    let mut s = UnixStream::connect(&path).unwrap();
    s.write_all(b"PUT /entries/u HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")
        .unwrap();
    s.write_all(b"GET /entries/u HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 204"), "{out}");
    assert!(out.ends_with("\r\n\r\nhi"), "{out}");
}
