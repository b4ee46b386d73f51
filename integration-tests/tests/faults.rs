//! Fault tests against the real Envoy with the built filter: a cache service that is down, slow or
//! answers garbage; an upstream that refuses, resets mid-stream, sends malformed SSE or a 10 MB
//! JSON; clients that disconnect mid-stream; 64 concurrent streams; 10,000 forward keys.
//!
//! Every test checks the same three things besides its own: nothing panicked or trapped the wasm VM
//! (no VM was re-created by `failure_policy: FAIL_RELOAD`, no panic/trap in Envoy's output), errors
//! are OpenAI-shaped with the right status, and no request outlived its timeout. Most run with every
//! feature on (keys, IP list, limits, token quotas, pacing, cache, chat logs), where panics hide.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::config::Config;
use llm_forward_gateway::cache::{CacheServer, ServiceConfig};
use llm_forward_integration_tests::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const FORWARD_KEY: &str = "fk-faults";
const UPSTREAM_KEY: &str = "sk-faults-upstream";

fn mock() -> MockUpstream {
    MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

/// Every feature on: a forward key, an upstream key, an IP list, request limits, token quotas,
/// pacing, the cache (`caching` on by default) and chat logs.
fn full_config(base_url: &str, cache_port: u16, timeout_ms: u64) -> Config {
    let yaml = format!(
        r#"
keys:
  upstream: [{{key: {UPSTREAM_KEY}, levels: [0]}}]
  forward: [{{name: faults, key: {FORWARD_KEY}, level: 0}}]
ip:
  allow: [127.0.0.0/8]
logging:
  chat: true
  max_answer_bytes: 65536
  max_request_bytes: 65536
cache:
  backend: memory
  port: {cache_port}
  openai: true
  routes: [/v1/chat/completions, /v1/completions, /v1/embeddings]
  default_request_caching: true
  timeout_ms: {timeout_ms}
limits:
  requests:
    - {{path: /v1/chat/completions, limit: "100000/minute", per: key}}
  global: "100000/minute"
  tokens:
    - {{path: /v1/chat/completions, limit: "1000000000/day", per: key}}
  pacing:
    - {{path: /v1/chat/completions, limit: "2000/second"}}
"#
    );
    let parsed = llm_forward_gateway::config_file::parse_yaml(&yaml).unwrap();
    let mut c = config_for(base_url);
    c.keys = parsed.keys;
    c.ip = parsed.ip;
    c.logging = parsed.logging;
    c.cache = parsed.cache;
    c.limits = parsed.limits;
    c
}

/// A client whose every request gives up after `secs` (no request may hang past its timeout).
fn client_with_timeout(secs: u64) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(secs))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The VM health baseline taken after startup.
struct Health {
    created: u64,
}

/// `wasm.envoy.wasm.runtime.v8.created`: VMs created. `failure_policy: FAIL_RELOAD` re-creates a VM
/// that failed (a panic traps it), so a count above the one after startup means a VM died.
fn vms_created(gw: &Gateway) -> u64 {
    gw.stat("wasm.envoy.wasm.runtime.v8.created")
        .expect("Envoy exposes wasm.envoy.wasm.runtime.v8.created")
}

fn baseline(gw: &Gateway) -> Health {
    Health {
        created: vms_created(gw),
    }
}

/// Nothing panicked or trapped the VM since `baseline`.
fn assert_vm_healthy(gw: &Gateway, health: &Health) {
    let out = gw.envoy_output();
    for needle in [
        "panicked",
        "wasm trap",
        "RuntimeError",
        "Function: proxy_on",
        "unreachable",
        "VM failed",
        "Wasm VM failed",
    ] {
        assert!(
            !out.contains(needle),
            "Envoy output mentions `{needle}`:\n{out}"
        );
    }
    assert_eq!(
        vms_created(gw),
        health.created,
        "a wasm VM was re-created (it failed):\n{out}"
    );
    // Any failure counter Envoy keeps for wasm stays at 0.
    for line in gw.stats().lines() {
        if line.starts_with("wasm") && (line.contains("fail") || line.contains("crash")) {
            let value = line.rsplit(": ").next().unwrap_or("0").trim();
            assert!(value == "0", "wasm failure stat: {line}");
        }
    }
}

fn chat_body(stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    /// The body, or the error that cut it.
    body: Result<Vec<u8>, String>,
    elapsed: Duration,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(self.body.as_deref().unwrap_or_default()).into_owned()
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

fn post(
    c: &reqwest::blocking::Client,
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Reply {
    let start = Instant::now();
    let mut req = c
        .post(gw.url(path))
        .header("authorization", format!("Bearer {FORWARD_KEY}"))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("request failed after {:?}: {e:?}", start.elapsed()));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().map(|b| b.to_vec()).map_err(|e| e.to_string());
    Reply {
        status,
        headers,
        body,
        elapsed: start.elapsed(),
    }
}

/// The answer text of a chat response (JSON or SSE), as a client reads it.
fn answer_text(reply: &Reply) -> String {
    let text = reply.text();
    if reply
        .header("content-type")
        .starts_with("text/event-stream")
    {
        let mut parser = llm_forward_core::sse::SseParser::new(1 << 24);
        let mut events = Vec::new();
        parser.feed(text.as_bytes(), &mut events);
        let mut ex = llm_forward_core::answer::StreamExtractor::new(1 << 24);
        for e in &events {
            ex.on_event(e);
        }
        let a = ex.into_answer();
        assert!(a.done, "no [DONE]: {text}");
        a.choices
            .first()
            .map(|c| c.content.clone())
            .unwrap_or_default()
    } else {
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A normal chat (stream or not) through every feature answers 200 with the mock's text.
fn assert_serves(gw: &Gateway, stream: bool) {
    let r = post(
        &client_with_timeout(10),
        gw,
        "/v1/chat/completions",
        &[],
        &chat_body(stream),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(answer_text(&r), llm_forward_gateway::mock::ANSWER);
}

// ---------------------------------------------------------------------------------------------
// The cache service misbehaving: the cache fails open (a miss) and never holds a request past
// its lookup timeout.
// ---------------------------------------------------------------------------------------------

/// A TCP listener that plays a broken cache service: `answer(n, request)` gives the bytes for the
/// n-th connection (`None`: accept and never answer, holding the socket open).
struct FakeCache {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
}

impl FakeCache {
    fn spawn(answer: fn(usize) -> Option<Vec<u8>>) -> FakeCache {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop2, conns2) = (stop.clone(), connections.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let n = conns2.fetch_add(1, Ordering::SeqCst);
                        s.set_nonblocking(false).ok();
                        s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                        // Read the request head (the lookup has no body).
                        let mut buf = [0u8; 4096];
                        let _ = s.read(&mut buf);
                        match answer(n) {
                            Some(bytes) => {
                                let _ = s.write_all(&bytes);
                                let _ = s.flush();
                                // Close after answering (the garbage may not be parseable
                                // framing at all).
                            }
                            None => held.push(s),
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeCache {
            port,
            stop,
            connections,
        }
    }
}

impl Drop for FakeCache {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn http_200(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// An entry in the cache's own format (`LFC1`, meta length, meta JSON, body) with `meta`.
fn entry(meta: &Value, body: &[u8]) -> Vec<u8> {
    let meta = meta.to_string();
    let mut out = b"LFC1".to_vec();
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(meta.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Requests through a gateway whose cache lookups go to `cache_port`: each answers 200 from the
/// upstream (stream and not), within `bound`.
fn requests_fail_open(gw: &Gateway, up: &MockUpstream, rounds: usize, bound: Duration) {
    let c = client_with_timeout(10);
    for i in 0..rounds {
        for stream in [false, true] {
            // A distinct body per request, so no two share a key (`user` is not in the key; the
            // message is — the worker's hot cache would answer a repeat).
            let mut body = chat_body(stream);
            body["user"] = json!(format!("round-{i}"));
            body["messages"][0]["content"] = json!(format!("round-{i}-{stream}"));
            let before = up.request_count();
            let r = post(&c, gw, "/v1/chat/completions", &[], &body);
            assert_eq!(r.status, 200, "round {i}: {}", r.text());
            assert_eq!(answer_text(&r), llm_forward_gateway::mock::ANSWER);
            assert_eq!(up.request_count(), before + 1, "not forwarded upstream");
            assert!(
                r.elapsed < bound,
                "round {i} took {:?} (bound {bound:?})",
                r.elapsed
            );
        }
    }
}

#[test]
fn cache_service_down_fails_open() {
    let up = mock();
    let port = free_port(); // nothing listens there
    let gw = Gateway::start(full_config(&up.base_url(), port, 200));
    let health = baseline(&gw);
    requests_fail_open(&gw, &up, 5, Duration::from_secs(3));
    assert!(
        gw.stat("wasmcustom.llm_forward.cache.error_total")
            .unwrap_or(0)
            > 0,
        "lookups to a dead cache count as errors"
    );
    assert_vm_healthy(&gw, &health);
}

#[test]
fn cache_service_slow_is_a_miss_after_the_lookup_timeout() {
    let up = mock();
    let cache = FakeCache::spawn(|_| None); // accepts, never answers
    let gw = Gateway::start(full_config(&up.base_url(), cache.port, 200));
    let health = baseline(&gw);
    // 200 ms lookup timeout: every request is answered well within a second.
    requests_fail_open(&gw, &up, 4, Duration::from_millis(2000));
    assert!(cache.connections.load(Ordering::SeqCst) > 0);
    assert_vm_healthy(&gw, &health);
}

/// The garbage the fake cache answers with, chosen by the test (see `garbage`).
static GARBAGE_KIND: AtomicUsize = AtomicUsize::new(0);
const GARBAGE_KINDS: usize = 10;

fn garbage(kind: usize) -> Vec<u8> {
    let hostile_status = |status: u16| {
        let meta = json!({"status": status, "content_type": "application/json", "kind": "json",
            "api": "chat", "answer": {"choices": [{"index": 0, "content": "cached"}]}, "created": 1});
        http_200(&entry(&meta, b"{\"choices\":[]}"))
    };
    match kind {
        0 => b"this is not HTTP at all\r\n\r\n".to_vec(),
        1 => http_200(b"not an entry"),
        2 => http_200(b"LFC1\xff\xff\xff\xffshort"),
        3 => http_200(b"LFC1\x00\x00\x00\x05{bad}body"),
        4 => hostile_status(0),
        5 => hostile_status(101),
        6 => hostile_status(999),
        7 => b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\nLFC1 cut short".to_vec(),
        8 => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        _ => vec![0u8; 3000],
    }
}

#[test]
fn cache_service_answering_garbage_fails_open() {
    let up = mock();
    let cache = FakeCache::spawn(|_| Some(garbage(GARBAGE_KIND.load(Ordering::SeqCst))));
    let gw = Gateway::start(full_config(&up.base_url(), cache.port, 300));
    let health = baseline(&gw);
    let c = client_with_timeout(10);
    let mut failures = Vec::new();
    for kind in 0..GARBAGE_KINDS {
        GARBAGE_KIND.store(kind, Ordering::SeqCst);
        for (i, stream) in [false, true, false, true].into_iter().enumerate() {
            let mut body = chat_body(stream);
            body["user"] = json!(format!("garbage-{kind}-{i}"));
            // Distinct keys: a stored answer kept by the worker would answer the next request
            // without asking the (garbage) service.
            body["messages"][0]["content"] = json!(format!("garbage-{kind}-{i}"));
            let start = Instant::now();
            let r = c
                .post(gw.url("/v1/chat/completions"))
                .header("authorization", format!("Bearer {FORWARD_KEY}"))
                .body(body.to_string())
                .send()
                .and_then(|r| {
                    let status = r.status().as_u16();
                    r.bytes().map(|b| (status, b))
                });
            match r {
                Ok((200, body)) if start.elapsed() < Duration::from_secs(3) => {
                    let _ = body;
                }
                Ok((status, body)) => failures.push(format!(
                    "garbage {kind}, stream {stream}: {status} after {:?}: {}",
                    start.elapsed(),
                    String::from_utf8_lossy(&body)
                )),
                Err(e) => failures.push(format!(
                    "garbage {kind}, stream {stream}: {e:?} after {:?}",
                    start.elapsed()
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cache.connections.load(Ordering::SeqCst) >= GARBAGE_KINDS);
    assert_vm_healthy(&gw, &health);
}

// ---------------------------------------------------------------------------------------------
// The upstream misbehaving.
// ---------------------------------------------------------------------------------------------

#[test]
fn upstream_refusing_is_an_openai_503_with_every_feature_on() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let cache_port = free_port();
    let mut svc = ServiceConfig::from_cache_config(&Default::default());
    svc.backend = llm_forward_core::cache::CacheBackend::Memory;
    let _cache = CacheServer::spawn(svc, SocketAddr::from(([127, 0, 0, 1], cache_port))).unwrap();
    let gw = Gateway::start(full_config(&dead, cache_port, 200));
    let health = baseline(&gw);
    let c = client_with_timeout(15);
    for stream in [false, true] {
        let r = post(&c, &gw, "/v1/chat/completions", &[], &chat_body(stream));
        assert_eq!(r.status, 503, "{}", r.text());
        let (_, code) = openai_error(r.body.as_deref().unwrap());
        assert!(!code.is_empty(), "error code missing: {}", r.text());
        assert!(r.elapsed < Duration::from_secs(10), "took {:?}", r.elapsed);
    }
    assert_vm_healthy(&gw, &health);
}

/// A gateway with every feature and a real (memory) cache service.
fn full_gateway(up: &MockUpstream) -> (Gateway, CacheServer) {
    let cache_port = free_port();
    let mut svc = ServiceConfig::from_cache_config(&Default::default());
    svc.backend = llm_forward_core::cache::CacheBackend::Memory;
    let cache = CacheServer::spawn(svc, SocketAddr::from(([127, 0, 0, 1], cache_port))).unwrap();
    let gw = Gateway::start(full_config(&up.base_url(), cache_port, 500));
    (gw, cache)
}

#[test]
fn upstream_reset_mid_stream_ends_the_client_stream_and_nothing_else() {
    let up = mock();
    let (gw, _cache) = full_gateway(&up);
    let health = baseline(&gw);
    let c = client_with_timeout(10);
    for i in 0..6 {
        let mut body = chat_body(true);
        body["user"] = json!(format!("reset-{i}"));
        let r = post(
            &c,
            &gw,
            "/v1/chat/completions",
            &[("x-mock-chunks", "20"), ("x-mock-reset-after", "5")],
            &body,
        );
        assert!(r.elapsed < Duration::from_secs(8), "took {:?}", r.elapsed);
        // The headers went out before the reset: 200, then a cut body (an error reading it, or
        // a body without `[DONE]`).
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(
            r.body.is_err() || !text.contains("[DONE]"),
            "a reset stream looked complete: {text}"
        );
        // A cut stream is never stored: the same request again goes upstream again.
    }
    // Not cached: six resets reached the upstream six times.
    assert!(up.request_count() >= 6);
    assert_serves(&gw, true);
    assert_serves(&gw, false);
    assert_vm_healthy(&gw, &health);
}

#[test]
fn upstream_malformed_sse_passes_through_unchanged() {
    let up = mock();
    let (gw, _cache) = full_gateway(&up);
    let health = baseline(&gw);
    let c = client_with_timeout(10);
    // What the upstream sends, fetched directly (no gateway).
    let direct = c
        .post(format!("{}/v1/chat/completions", up.base_url()))
        .header("x-mock-malformed", "1")
        .body(chat_body(true).to_string())
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    assert!(
        direct.windows(2).any(|w| w == b"\xff\xfe"),
        "mock sends bad UTF-8"
    );
    for _ in 0..3 {
        let r = post(
            &c,
            &gw,
            "/v1/chat/completions",
            &[("x-mock-malformed", "1")],
            &chat_body(true),
        );
        assert_eq!(r.status, 200);
        let body = r.body.as_deref().unwrap();
        // Byte for byte what the upstream sent: the gateway's injected usage chunk (token quota)
        // is removed again, the broken events stay as they were.
        assert!(
            body == direct.as_slice(),
            "stream changed:\n{}",
            String::from_utf8_lossy(body)
        );
        assert!(r.elapsed < Duration::from_secs(8));
    }
    assert_serves(&gw, true);
    assert_vm_healthy(&gw, &health);
}

#[test]
fn upstream_ten_megabyte_json_answer_flows_through() {
    let up = mock();
    let (gw, _cache) = full_gateway(&up);
    let health = baseline(&gw);
    let c = client_with_timeout(30);
    for _ in 0..2 {
        let r = post(
            &c,
            &gw,
            "/v1/chat/completions",
            &[("x-mock-body-bytes", "10000000")],
            &chat_body(false),
        );
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_slice(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .len(),
            10_000_000
        );
        assert!(r.elapsed < Duration::from_secs(25), "took {:?}", r.elapsed);
        // Above max_entry_bytes: never stored, never a hit.
        assert_ne!(r.header("x-cache"), "HIT");
    }
    assert_serves(&gw, false);
    assert_vm_healthy(&gw, &health);
}

// ---------------------------------------------------------------------------------------------
// Clients misbehaving, and load.
// ---------------------------------------------------------------------------------------------

/// Sends a streaming request on a raw connection, reads until the first SSE bytes arrive, then
/// drops the connection.
fn disconnect_after_first_chunk(gw: &Gateway, user: &str) {
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut body = chat_body(true);
    body["user"] = json!(user);
    let body = body.to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {FORWARD_KEY}\r\ncontent-type: application/json\r\nx-mock-chunks: 200\r\nx-mock-delay-ms: 20\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while !seen.windows(5).any(|w| w == b"data:") {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before the first chunk: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    drop(s);
}

#[test]
fn client_disconnecting_mid_stream_leaves_the_gateway_serving() {
    let up = mock();
    let (gw, _cache) = full_gateway(&up);
    let health = baseline(&gw);
    for i in 0..10 {
        disconnect_after_first_chunk(&gw, &format!("gone-{i}"));
    }
    // Paced streams of gone clients must be released; the gateway keeps serving.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        assert_serves(&gw, true);
        assert_serves(&gw, false);
    }
    assert_vm_healthy(&gw, &health);
}

#[test]
fn sixty_four_concurrent_streams_all_complete() {
    let up = mock();
    let (gw, _cache) = full_gateway(&up);
    let health = baseline(&gw);
    let gw = Arc::new(gw);
    let start = Instant::now();
    let threads: Vec<_> = (0..64)
        .map(|i| {
            let gw = gw.clone();
            std::thread::spawn(move || {
                let c = client_with_timeout(30);
                let mut body = chat_body(true);
                body["user"] = json!(format!("concurrent-{i}"));
                let r = post(
                    &c,
                    &gw,
                    "/v1/chat/completions",
                    &[("x-mock-chunks", "30"), ("x-mock-delay-ms", "10")],
                    &body,
                );
                assert_eq!(r.status, 200, "{}", r.text());
                let text = answer_text(&r);
                assert_eq!(
                    text,
                    (0..30).map(|i| format!("tok{i} ")).collect::<String>()
                );
                r.elapsed
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for t in threads {
        slowest = slowest.max(t.join().expect("a stream failed"));
    }
    println!(
        "64 concurrent streams of 30 chunks: all done in {:?} (slowest {:?})",
        start.elapsed(),
        slowest
    );
    assert!(slowest < Duration::from_secs(20));
    assert_vm_healthy(&gw, &health);
}

// ---------------------------------------------------------------------------------------------
// Scale of the configuration.
// ---------------------------------------------------------------------------------------------

/// Startup time and median per-request latency with `n` forward keys (the last one presented).
fn keys_figures(n: usize) -> (Duration, Duration) {
    let up = mock();
    let mut c = config_for(&up.base_url());
    c.keys.upstream = vec![llm_forward_core::access::UpstreamKeyConfig {
        key: Some(UPSTREAM_KEY.into()),
        file: None,
        levels: vec![0],
        routes: Vec::new(),
    }];
    c.keys.forward = (0..n)
        .map(|i| llm_forward_core::access::ForwardKeyConfig {
            name: Some(format!("key-{i}")),
            key: format!("fk-{i:06}-{}", "x".repeat(40)),
            level: 0,
        })
        .collect();
    let last = format!("Bearer fk-{:06}-{}", n - 1, "x".repeat(40));
    let start = Instant::now();
    let gw = Gateway::start(c);
    let startup = start.elapsed();
    let health = baseline(&gw);
    let client = client_with_timeout(10);
    let mut times = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        let r = client
            .get(gw.url("/v1/models"))
            .header("authorization", &last)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes();
        if i >= 50 {
            times.push(t.elapsed());
        }
    }
    // A wrong key is still refused (the lookup compared all of them).
    let r = client
        .get(gw.url("/v1/models"))
        .header("authorization", "Bearer fk-nope")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    openai_error(&r.bytes().unwrap());
    assert_vm_healthy(&gw, &health);
    times.sort();
    (startup, times[times.len() / 2])
}

#[test]
fn ten_thousand_forward_keys_keep_startup_and_latency_flat() {
    let (startup_10, p50_10) = keys_figures(10);
    let (startup_10k, p50_10k) = keys_figures(10_000);
    println!(
        "forward keys: 10 → startup {startup_10:?}, p50 {p50_10:?}; 10,000 → startup {startup_10k:?}, p50 {p50_10k:?}"
    );
    // Figures, with generous bounds only (a loaded CI machine varies a lot).
    assert!(
        startup_10k < Duration::from_secs(20),
        "startup {startup_10k:?}"
    );
    assert!(
        p50_10k < p50_10 * 5 + Duration::from_millis(5),
        "p50 {p50_10k:?} with 10,000 keys vs {p50_10:?} with 10"
    );
}

// ---------------------------------------------------------------------------------------------
// Bytes the SDK does not expect.
// ---------------------------------------------------------------------------------------------

/// A raw request whose header value is not UTF-8 (obs-text, which HTTP/1.1 allows): the filter
/// reads every request header, and the SDK's `get_map` would panic on it.
#[test]
fn non_utf8_header_values_do_not_trap_the_vm() {
    let up = mock();
    let (gw, _cache) = full_gateway(&up);
    let health = baseline(&gw);
    for _ in 0..4 {
        let mut s = TcpStream::connect(gw.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = chat_body(false).to_string();
        let mut req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {FORWARD_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-latin1: caf",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(b"\xe9 cr\xe8me\r\nconnection: close\r\n\r\n");
        req.extend_from_slice(body.as_bytes());
        s.write_all(&req).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.1 400"),
            "{text}"
        );
    }
    assert_serves(&gw, false);
    assert_vm_healthy(&gw, &health);
}

/// A body of `n` bytes whose JSON form is as expensive as possible to parse: an object whose
/// `messages` is `[0,0,0,…]` (one value per two bytes).
fn zeros_body(n: usize) -> Vec<u8> {
    let head = br#"{"model":"gpt-4o-mini","messages":[0"#;
    let mut body = Vec::with_capacity(n);
    body.extend_from_slice(head);
    while body.len() + 2 + 2 <= n {
        body.extend_from_slice(b",0");
    }
    body.extend_from_slice(b"]}");
    body
}

/// Held bodies are parsed into `serde_json::Value`s; a few concurrent maximum-size `[0,0,…]`
/// bodies used to exhaust the wasm heap and trap the VM. With the per-worker memory budget, the
/// ones that do not fit are refused (413, OpenAI-shaped) or forwarded unread, the VM never
/// fails, and later requests are served as usual.
#[test]
fn concurrent_maximum_size_bodies_stay_within_the_worker_memory_budget() {
    let up = mock();
    let (gw, _cache) = full_gateway(&up);
    let health = baseline(&gw);
    let limit = gw.config.server.buffer_limit_bytes as usize;
    let body = Arc::new(zeros_body(limit - 1024));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let body = Arc::clone(&body);
            let url = gw.url("/v1/chat/completions");
            std::thread::spawn(move || {
                let resp = client_with_timeout(120)
                    .post(url)
                    .header("authorization", format!("Bearer {FORWARD_KEY}"))
                    .header("content-type", "application/json")
                    .body(body.to_vec())
                    .send();
                match resp {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        (status, r.bytes().map(|b| b.to_vec()).unwrap_or_default())
                    }
                    Err(e) => (0, e.to_string().into_bytes()),
                }
            })
        })
        .collect();
    for t in threads {
        let (status, reply) = t.join().unwrap();
        // Forwarded (the mock answers its own 400 to `messages: [0,…]`) or refused for memory.
        assert!(
            status == 400 || status == 413 || status == 200,
            "{status}: {}",
            String::from_utf8_lossy(&reply[..reply.len().min(300)])
        );
        if status == 413 {
            let (_, code) = openai_error(&reply);
            assert!(!code.is_empty(), "OpenAI-shaped 413");
        }
    }
    assert!(
        gw.stat("wasmcustom.llm_forward.memory.over_budget_total")
            .unwrap_or(0)
            > 0,
        "the budget was reached (the bodies' parsed form alone is far above it)"
    );
    for _ in 0..3 {
        assert_serves(&gw, false);
        assert_serves(&gw, true);
    }
    assert_vm_healthy(&gw, &health);
}
