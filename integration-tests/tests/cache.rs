//! Response cache through the real Envoy, the built filter and the gateway's cache service (started
//! in-process), for each backend: memory, disk (redb) and redis (a real `redis-server`).

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::answer::{Answer, StreamExtractor};
use llm_forward_core::cache::CacheBackend;
use llm_forward_core::config::{Config, RouteConfig, RouteKind};
use llm_forward_core::sse::SseParser;
use llm_forward_gateway::cache::{CacheServer, ServiceConfig};
use llm_forward_gateway::mock::ANSWER;
use llm_forward_gateway::redis_server::RedisServer;
use llm_forward_integration_tests::*;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

fn mock() -> MockUpstream {
    MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

fn service_config(backend: CacheBackend, dir: &TempDir) -> ServiceConfig {
    let mut c = ServiceConfig::from_cache_config(&Default::default());
    c.backend = backend;
    c.path = dir.0.join("cache.redb");
    c
}

fn start_cache(svc: &ServiceConfig, port: u16) -> CacheServer {
    CacheServer::spawn(svc.clone(), SocketAddr::from(([127, 0, 0, 1], port))).unwrap()
}

/// A config with a root openai route and a `/gen` general route, caching on, pointing at `port`.
fn cache_config(up: &MockUpstream, gen: &MockUpstream, port: u16) -> Config {
    let mut c = config_for(&up.base_url());
    c.routes.push(RouteConfig::new(
        "/gen",
        &gen.base_url(),
        RouteKind::General,
    ));
    c.cache.port = port;
    c.cache.openai = true;
    c.cache.general = true;
    c.cache.routes = vec![
        "/v1/chat/completions".into(),
        "/v1/completions".into(),
        "/v1/embeddings".into(),
        "/echo/*".into(),
    ];
    // Functional tests must not depend on a loaded CI machine answering within the production 100 ms;
    // the fail-open test sets its own short timeout.
    c.cache.timeout_ms = 2000;
    c
}

/// A counter of the cache service's `/metrics`.
fn service_metric(port: u16, name: &str) -> u64 {
    let text = client()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(&format!("llm_forward_cache_{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Stores happen after the response, from the root's tick: wait for them.
fn wait_stores(port: u16, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while service_metric(port, "stores_total") < n {
        assert!(Instant::now() < deadline, "cache stores never reached {n}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Reply {
    status: u16,
    x_cache: String,
    /// `x-cache-source` of a hit: `worker` or `service`.
    source: String,
    content_type: String,
    /// `x-ratelimit-limit-requests` and `x-ratelimit-remaining-requests` (empty when absent).
    rate_limit: (String, String),
    body: String,
}

fn send(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut req = client()
        .post(gw.url(path))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_string()).send().unwrap();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    Reply {
        status: resp.status().as_u16(),
        x_cache: header("x-cache"),
        source: header("x-cache-source"),
        content_type: header("content-type"),
        rate_limit: (
            header("x-ratelimit-limit-requests"),
            header("x-ratelimit-remaining-requests"),
        ),
        body: resp.text().unwrap(),
    }
}

fn chat(gw: &Gateway, body: &Value) -> Reply {
    send(gw, "/v1/chat/completions", &[], body)
}

/// What an OpenAI client reads from an SSE body (and a check that it is well formed).
fn parse_sse(body: &str) -> Answer {
    let mut parser = SseParser::new(1 << 20);
    let mut events = Vec::new();
    parser.feed(body.as_bytes(), &mut events);
    assert!(!parser.finish(), "stream ended mid-event: {body}");
    let mut ex = StreamExtractor::new(1 << 20);
    for e in &events {
        ex.on_event(e);
    }
    assert_eq!(ex.malformed(), 0, "{body}");
    let a = ex.into_answer();
    assert!(a.done, "no [DONE]: {body}");
    a
}

fn question(n: usize) -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": format!("question {n}")}]})
}

fn with(mut v: Value, extra: Value) -> Value {
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

/// The behaviour every backend must show.
fn suite(backend: CacheBackend, redis_url: Option<String>) {
    let dir = TempDir::new("cache");
    let mut svc = service_config(backend, &dir);
    if let Some(url) = redis_url {
        svc.redis_url = url;
    }
    let cache = start_cache(&svc, 0);
    let port = cache.tcp_addr().unwrap().port();
    let (up, gen) = (mock(), mock());
    let gw = Gateway::start(cache_config(&up, &gen, port));
    let mut stores = 0;

    // 1. Non-stream: the second identical request never reaches the upstream, body identical.
    let q = with(question(1), json!({"caching": true}));
    let first = chat(&gw, &q);
    assert_eq!(
        (first.status, first.x_cache.as_str()),
        (200, "MISS"),
        "{}",
        first.body
    );
    stores += 1;
    wait_stores(port, stores);
    // Key order and whitespace do not matter.
    let reordered = r#"{ "caching" : true, "messages": [{"content": "question 1", "role": "user"}], "model": "gpt-4o-mini" }"#;
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reordered)
        .send()
        .unwrap();
    assert_eq!(resp.headers()["x-cache"], "HIT");
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().unwrap(), first.body, "a hit is byte-identical");
    assert_eq!(up.request_count(), 1, "the hit did not reach the upstream");
    // `caching` was removed before forwarding, and the rewritten body parsed upstream.
    let seen = up.requests()[0].json().unwrap();
    assert!(seen.get("caching").is_none(), "{seen}");
    assert_eq!(seen["messages"][0]["content"], "question 1");

    // 2. A stream request is served from the stored non-stream answer.
    let s = chat(&gw, &with(q.clone(), json!({"stream": true})));
    assert_eq!(s.x_cache, "HIT");
    assert!(
        s.content_type.starts_with("text/event-stream"),
        "{}",
        s.content_type
    );
    let a = parse_sse(&s.body);
    assert_eq!(a.choices[0].content, ANSWER);
    assert_eq!(a.choices[0].finish_reason.as_deref(), Some("stop"));
    assert_eq!(up.request_count(), 1);

    // 3. And the reverse: a stored stream answers a non-stream request (and a stream one).
    let q2 = with(question(2), json!({"caching": true}));
    let s = chat(
        &gw,
        &with(
            q2.clone(),
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(s.x_cache, "MISS");
    let streamed = parse_sse(&s.body);
    stores += 1;
    wait_stores(port, stores);
    let j = chat(&gw, &q2);
    assert_eq!(j.x_cache, "HIT");
    let v: Value = serde_json::from_str(&j.body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], ANSWER);
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let s2 = chat(
        &gw,
        &with(
            q2.clone(),
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(s2.x_cache, "HIT");
    assert_eq!(
        s2.body, s.body,
        "same mode and usage: the stored stream itself"
    );
    assert_eq!(parse_sse(&s2.body).choices, streamed.choices);
    assert_eq!(up.request_count(), 2);

    // 4. No `caching` field: the default (false) bypasses; `caching: false` too, and is removed.
    let b = chat(&gw, &question(1));
    assert_eq!(b.x_cache, "BYPASS");
    let b = chat(&gw, &with(question(1), json!({"caching": false})));
    assert_eq!(b.x_cache, "BYPASS");
    assert_eq!(up.request_count(), 4);
    assert!(up.requests()[3].json().unwrap().get("caching").is_none());

    // 5. `x-llm-forward-cache: refresh` goes upstream and stores; `skip` bypasses.
    let r = send(
        &gw,
        "/v1/chat/completions",
        &[("x-llm-forward-cache", "refresh")],
        &q,
    );
    assert_eq!(r.x_cache, "MISS");
    stores += 1;
    wait_stores(port, stores);
    let r = send(
        &gw,
        "/v1/chat/completions",
        &[("x-llm-forward-cache", "skip")],
        &q,
    );
    assert_eq!(r.x_cache, "BYPASS");
    assert_eq!(up.request_count(), 6);

    // 6. Embeddings: the stored body verbatim.
    let e = json!({"model": "text-embedding-3-small", "input": "hello", "caching": true});
    let e1 = send(&gw, "/v1/embeddings", &[], &e);
    assert_eq!(e1.x_cache, "MISS");
    stores += 1;
    wait_stores(port, stores);
    let e2 = send(&gw, "/v1/embeddings", &[], &e);
    assert_eq!(
        (e2.x_cache.as_str(), e2.body.as_str()),
        ("HIT", e1.body.as_str())
    );
    assert_eq!(up.request_count(), 7);

    // 7. Errors are never stored.
    let err = send(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-status", "500")],
        &with(question(3), json!({"caching": true})),
    );
    assert_eq!((err.status, err.x_cache.as_str()), (500, "MISS"));
    let ok = chat(&gw, &with(question(3), json!({"caching": true})));
    assert_eq!((ok.status, ok.x_cache.as_str()), (200, "MISS"));
    stores += 1;
    wait_stores(port, stores);

    // 8. General route: identical POSTs (method, path, query, body) are cached as raw bytes.
    let g1 = send(&gw, "/gen/echo/x?a=1", &[], &json!({"anything": [1, 2]}));
    assert_eq!((g1.status, g1.x_cache.as_str()), (200, "MISS"));
    stores += 1;
    wait_stores(port, stores);
    let g2 = send(&gw, "/gen/echo/x?a=1", &[], &json!({"anything": [1, 2]}));
    assert_eq!(
        (g2.x_cache.as_str(), g2.body.as_str()),
        ("HIT", g1.body.as_str())
    );
    assert_eq!(gen.request_count(), 1);
    let g3 = send(&gw, "/gen/echo/x?a=2", &[], &json!({"anything": [1, 2]}));
    assert_eq!(g3.x_cache, "MISS", "another query is another request");
    stores += 1;
    wait_stores(port, stores);
    let g4 = send(
        &gw,
        "/gen/echo/x?a=1",
        &[("x-llm-forward-cache", "skip")],
        &json!({"anything": [1, 2]}),
    );
    assert_eq!(g4.x_cache, "BYPASS");
    assert_eq!(gen.request_count(), 3);

    // Filter counters.
    assert!(gw.stat("wasmcustom.llm_forward.cache.hit_total").unwrap() >= 6);
    assert!(
        gw.stat("wasmcustom.llm_forward.cache.bypass_total")
            .unwrap()
            >= 3
    );
    assert_eq!(gw.stat("wasmcustom.llm_forward.cache.error_total"), Some(0));
    assert!(gw.stat("wasmcustom.llm_forward.cache.store_total").unwrap() >= stores);
    drop(gw);

    // 9. TTL: with `ttl_seconds: 1` an entry is gone after a second.
    let mut c = cache_config(&up, &gen, port);
    c.cache.ttl_seconds = 1;
    let gw = Gateway::start(c);
    let before = up.request_count();
    let q = with(question(9), json!({"caching": true}));
    assert_eq!(chat(&gw, &q).x_cache, "MISS");
    stores += 1;
    wait_stores(port, stores);
    assert_eq!(chat(&gw, &q).x_cache, "HIT");
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(chat(&gw, &q).x_cache, "MISS", "expired");
    assert_eq!(up.request_count(), before + 2);
    drop(cache);
}

#[test]
fn memory_backend_serves_hits_converts_modes_and_expires() {
    suite(CacheBackend::Memory, None);
}

#[test]
fn disk_backend_serves_hits_converts_modes_and_expires() {
    suite(CacheBackend::Disk, None);
}

#[test]
fn redis_backend_serves_hits_converts_modes_and_expires() {
    let redis = RedisServer::start();
    suite(
        CacheBackend::Redis,
        Some(format!("redis://127.0.0.1:{}", redis.port)),
    );
}

#[test]
fn disk_entries_survive_a_restart_of_the_service() {
    let dir = TempDir::new("cache-disk");
    let svc = service_config(CacheBackend::Disk, &dir);
    let cache = start_cache(&svc, 0);
    let port = cache.tcp_addr().unwrap().port();
    let (up, gen) = (mock(), mock());
    let mut c = cache_config(&up, &gen, port);
    c.cache.hot_bytes = 0; // the service's persistence is tested, not the worker's copy
    let gw = Gateway::start(c);
    let q = with(question(1), json!({"caching": true}));
    let first = chat(&gw, &q);
    assert_eq!(first.x_cache, "MISS");
    wait_stores(port, 1);
    drop(cache);
    // Down: fail open.
    assert_eq!(chat(&gw, &q).x_cache, "MISS");
    assert_eq!(up.request_count(), 2);
    let _cache = start_cache(&svc, port);
    let hit = chat(&gw, &q);
    assert_eq!(
        (hit.x_cache.as_str(), hit.body.as_str()),
        ("HIT", first.body.as_str())
    );
    assert_eq!(up.request_count(), 2);
}

#[test]
fn cache_down_or_silent_fails_open_within_the_timeout() {
    let dir = TempDir::new("cache-down");
    let svc = service_config(CacheBackend::Memory, &dir);
    let cache = start_cache(&svc, 0);
    let port = cache.tcp_addr().unwrap().port();
    let (up, gen) = (mock(), mock());
    let mut c = cache_config(&up, &gen, port);
    c.cache.timeout_ms = 100;
    c.cache.hot_bytes = 0; // the service failing is tested, not the worker's copy
    let gw = Gateway::start(c);
    let q = with(question(1), json!({"caching": true}));
    assert_eq!(chat(&gw, &q).x_cache, "MISS");
    wait_stores(port, 1);
    assert_eq!(chat(&gw, &q).x_cache, "HIT");
    drop(cache);

    // Killed: connection refused → upstream.
    for _ in 0..3 {
        let t = Instant::now();
        let r = chat(&gw, &q);
        assert_eq!((r.status, r.x_cache.as_str()), (200, "MISS"));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    // Hung: accepts and never answers → the 100 ms lookup timeout, then upstream.
    let silent = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let _holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    let t = Instant::now();
    let r = chat(&gw, &q);
    assert_eq!((r.status, r.x_cache.as_str()), (200, "MISS"));
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(up.request_count(), 5);
    assert!(gw.stat("wasmcustom.llm_forward.cache.error_total").unwrap() >= 4);
}

#[test]
fn forward_key_levels_do_not_share_entries_under_the_default_scope() {
    use llm_forward_core::access::{ForwardKeyConfig, UpstreamKeyConfig};
    let dir = TempDir::new("cache-levels");
    let cache = start_cache(&service_config(CacheBackend::Memory, &dir), 0);
    let port = cache.tcp_addr().unwrap().port();
    let (up, gen) = (mock(), mock());
    let mut c = cache_config(&up, &gen, port);
    let upstream_key = |key: &str| UpstreamKeyConfig {
        key: Some(key.into()),
        file: None,
        levels: vec![0, 1, 2],
        routes: Vec::new(),
    };
    c.keys.upstream = vec![
        upstream_key("sk-upstream-cache-test"),
        upstream_key("sk-upstream-cache-second"),
    ];
    let fk = |name: &str, level: u32| ForwardKeyConfig {
        name: Some(name.into()),
        key: format!("fk-cache-test-{name}"),
        level,
    };
    c.keys.forward = vec![fk("alice", 1), fk("bob", 1), fk("carol", 2)];
    c.keys.levels = [
        (1, vec!["gpt-4o-mini".to_string()]),
        (2, vec!["gpt-4o-mini".to_string()]),
    ]
    .into_iter()
    .collect();
    let gw = Gateway::start(c);
    let as_key = |name: &str, body: &Value| {
        send(
            &gw,
            "/v1/chat/completions",
            &[("authorization", &format!("Bearer fk-cache-test-{name}"))],
            body,
        )
    };
    let q = with(question(1), json!({"caching": true}));
    let a = as_key("alice", &q);
    assert_eq!((a.status, a.x_cache.as_str()), (200, "MISS"), "{}", a.body);
    wait_stores(port, 1);
    assert_eq!(as_key("bob", &q).x_cache, "HIT", "same level shares");
    assert_eq!(
        as_key("carol", &q).x_cache,
        "MISS",
        "another level does not"
    );
    assert_eq!(up.request_count(), 2);
    // Level 1 again, another question: a miss.
    let q2 = with(question(2), json!({"caching": true}));
    assert_eq!(as_key("alice", &q2).x_cache, "MISS");
    let level_one: Vec<String> = [0, 2]
        .iter()
        .map(|&i| {
            up.requests()[i]
                .header("authorization")
                .unwrap_or("")
                .to_string()
        })
        .collect();
    // The upstream saw the real keys, never a forward key (the misses went through the lookup
    // and its answer), and bob's hit in between took no key from level 1's rotation.
    assert_eq!(
        level_one,
        [
            "Bearer sk-upstream-cache-test",
            "Bearer sk-upstream-cache-second"
        ]
    );
    assert!(up
        .requests()
        .iter()
        .all(|r| !r.header("authorization").unwrap_or("").contains("fk-")));
}

#[test]
fn rewritten_bodies_keep_keep_alive_connections_in_sync() {
    let dir = TempDir::new("cache-smuggle");
    let cache = start_cache(&service_config(CacheBackend::Memory, &dir), 0);
    let (up, gen) = (mock(), mock());
    let mut c = cache_config(&up, &gen, cache.tcp_addr().unwrap().port());
    c.server.concurrency = 1;
    let gw = Gateway::start(c);
    let mut conn = RawConnection::connect(gw.addr());
    // Shorter after `caching` is removed, then a request that would be corrupted by any leftover.
    let long =
        json!({"caching": false, "model": "m", "messages": [{"role": "user", "content": "x"}]});
    for i in 0..3 {
        let r = conn.request(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json")],
            long.to_string().as_bytes(),
        );
        assert_eq!(
            r.status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let r = conn.request("GET", "/v1/models", &[], b"");
        assert_eq!(r.status, 200, "request {i} after the rewrite");
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 6);
    for s in seen.iter().filter(|s| s.method == "POST") {
        assert_eq!(
            s.body.len().to_string(),
            s.header("content-length").unwrap_or("?")
        );
        assert!(s.json().unwrap().get("caching").is_none());
    }
}

#[test]
fn oversized_answers_are_not_stored() {
    let dir = TempDir::new("cache-big");
    let cache = start_cache(&service_config(CacheBackend::Memory, &dir), 0);
    let port = cache.tcp_addr().unwrap().port();
    let (up, gen) = (mock(), mock());
    let mut c = cache_config(&up, &gen, port);
    c.cache.max_entry_bytes = 4096;
    let gw = Gateway::start(c);
    let q = with(question(1), json!({"caching": true}));
    let big = send(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-body-bytes", "8000")],
        &q,
    );
    assert_eq!((big.status, big.body.len() > 8000), (200, true));
    let small = chat(&gw, &with(question(2), json!({"caching": true})));
    assert_eq!(small.x_cache, "MISS");
    wait_stores(port, 1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        service_metric(port, "stores_total"),
        1,
        "only the small answer"
    );
    assert_eq!(
        send(
            &gw,
            "/v1/chat/completions",
            &[("x-mock-body-bytes", "8000")],
            &q
        )
        .x_cache,
        "MISS"
    );
}

#[test]
fn worker_cache_answers_repeats_and_follows_refresh_skip_and_expiry() {
    let dir = TempDir::new("cache-hot");
    let cache = start_cache(&service_config(CacheBackend::Memory, &dir), 0);
    let port = cache.tcp_addr().unwrap().port();
    let (up, gen) = (mock(), mock());
    let mut c = cache_config(&up, &gen, port);
    c.server.concurrency = 1; // one worker: one hot cache
    let gw = Gateway::start(c.clone());
    let q = with(question(1), json!({"caching": true}));
    let first = chat(&gw, &q);
    assert_eq!(
        (first.x_cache.as_str(), first.source.as_str()),
        ("MISS", "")
    );
    wait_stores(port, 1);
    // Stored by this worker: answered from its memory, the service is not asked.
    let lookups = service_metric(port, "hits_total") + service_metric(port, "misses_total");
    let hot = chat(&gw, &q);
    assert_eq!(
        (hot.x_cache.as_str(), hot.source.as_str()),
        ("HIT", "worker")
    );
    assert_eq!(hot.body, first.body);
    // The other mode is rebuilt from the same entry.
    let streamed = chat(&gw, &with(q.clone(), json!({"stream": true})));
    assert_eq!(
        (streamed.x_cache.as_str(), streamed.source.as_str()),
        ("HIT", "worker")
    );
    assert_eq!(parse_sse(&streamed.body).choices[0].content, ANSWER);
    assert_eq!(
        service_metric(port, "hits_total") + service_metric(port, "misses_total"),
        lookups,
        "no lookup reached the service"
    );
    assert_eq!(up.request_count(), 1);
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.cache.hot_hit_total"),
        Some(2)
    );
    assert_eq!(gw.stat("wasmcustom.llm_forward.cache.hit_total"), Some(2));

    // skip and caching:false bypass the worker's copy too.
    let skip = send(
        &gw,
        "/v1/chat/completions",
        &[("x-llm-forward-cache", "skip")],
        &q,
    );
    assert_eq!(skip.x_cache, "BYPASS");
    let off = chat(&gw, &with(question(1), json!({"caching": false})));
    assert_eq!(off.x_cache, "BYPASS");
    assert_eq!(up.request_count(), 3);

    // refresh replaces the worker's entry: the next hit is the fresh answer.
    let fresh = send(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-llm-forward-cache", "refresh"),
            ("x-mock-completion-tokens", "77"),
        ],
        &q,
    );
    assert_eq!(fresh.x_cache, "MISS");
    let tokens = |r: &Reply| {
        serde_json::from_str::<Value>(&r.body).unwrap()["usage"]["completion_tokens"].clone()
    };
    assert_eq!(tokens(&fresh), json!(77));
    let after = chat(&gw, &q);
    assert_eq!(
        (after.x_cache.as_str(), after.source.as_str()),
        ("HIT", "worker")
    );
    assert_eq!(tokens(&after), json!(77), "the refreshed answer");
    assert_eq!(up.request_count(), 4);
    wait_stores(port, 2);
    drop(gw);

    // A new worker (restart) has an empty hot cache: the service answers, then the worker keeps it.
    let gw = Gateway::start(c.clone());
    let svc = chat(&gw, &q);
    assert_eq!(
        (svc.x_cache.as_str(), svc.source.as_str()),
        ("HIT", "service")
    );
    assert_eq!(tokens(&svc), json!(77));
    let kept = chat(&gw, &q);
    assert_eq!(
        (kept.x_cache.as_str(), kept.source.as_str()),
        ("HIT", "worker")
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.cache.hot_hit_total"),
        Some(1)
    );
    assert_eq!(gw.stat("wasmcustom.llm_forward.cache.hit_total"), Some(2));
    drop(gw);

    // hot_bytes: 0 turns it off: every hit comes from the service.
    let mut off = c.clone();
    off.cache.hot_bytes = 0;
    let gw = Gateway::start(off);
    for _ in 0..2 {
        let r = chat(&gw, &q);
        assert_eq!((r.x_cache.as_str(), r.source.as_str()), ("HIT", "service"));
    }
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.cache.hot_hit_total"),
        Some(0)
    );
    drop(gw);

    // hot_ttl_seconds bounds the worker's copy even with a long entry TTL: after it, the service
    // is asked again (and answers).
    let mut short = c;
    short.cache.hot_ttl_seconds = 1;
    let gw = Gateway::start(short);
    assert_eq!(chat(&gw, &q).source, "service");
    assert_eq!(chat(&gw, &q).source, "worker");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(chat(&gw, &q).source, "service", "the worker's copy expired");
    assert_eq!(up.request_count(), 4);
}

/// A hit is the filter's own reply: it still carries the `x-ratelimit-*` headers, and its chat
/// record has the stored answer (taken from the entry, not by re-reading the reply).
#[test]
fn hits_carry_rate_limit_headers_and_are_logged_with_their_answer() {
    use llm_forward_core::limits::config::{LimitRule, Per};
    let dir = TempDir::new("cache-limits-logs");
    let cache = start_cache(&service_config(CacheBackend::Memory, &dir), 0);
    let port = cache.tcp_addr().unwrap().port();
    let (up, gen) = (mock(), mock());
    let mut c = cache_config(&up, &gen, port);
    c.server.concurrency = 1;
    c.logging.chat = true;
    c.limits.requests = vec![LimitRule {
        path: "/v1/chat/completions".into(),
        limit: llm_forward_core::limits::parse_limit("100/hour").unwrap(),
        per: Per::Global,
        level: None,
    }];
    c.limits.strategy = llm_forward_core::limits::Strategy::SlidingWindow;
    let gw = Gateway::start(c);
    let q = with(question(7), json!({"caching": true}));
    let remaining = |body: &Value| {
        let reply = chat(&gw, body);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.rate_limit.0, "100");
        (reply.x_cache, reply.rate_limit.1)
    };
    assert_eq!(remaining(&q), ("MISS".into(), "99".into()));
    wait_stores(port, 1);
    assert_eq!(remaining(&q), ("HIT".into(), "98".into()));
    let streamed = remaining(&with(q.clone(), json!({"stream": true})));
    assert_eq!(streamed, ("HIT".into(), "97".into()));
    assert_eq!(up.request_count(), 1);

    // Three records; the hits carry the stored answer, the stream without usage (not asked for).
    let log = gw.dir.0.join("root").join("chat.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let records: Vec<Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 3 || Instant::now() > deadline {
            break text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(records.len(), 3, "{records:?}");
    let caches: Vec<&str> = records
        .iter()
        .map(|r| r["cache"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(caches, ["miss", "hit", "hit"]);
    for r in &records {
        assert_eq!(r["answer"]["choices"][0]["content"], ANSWER, "{r}");
    }
    assert_eq!(records[1]["usage"], records[0]["usage"]);
    assert!(records[0]["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(records[2]["usage"].is_null(), "{}", records[2]);
}

/// Routes whose base URL already ends in `/v1` (`/v1` → `http://host/v1`, `/openai` →
/// `https://api.openai.com/v1`): the path after the prefix is `/chat/completions`, the default
/// `cache.routes` names `/v1/chat/completions`. Both must cache, and `caching` never reaches the
/// upstream, also on an openai API path the cache does not key.
#[test]
fn prefixed_routes_to_v1_base_urls_cache_and_strip_the_caching_field() {
    let dir = TempDir::new("cache-prefixed");
    let cache = start_cache(&service_config(CacheBackend::Memory, &dir), 0);
    let port = cache.tcp_addr().unwrap().port();
    let up = mock();
    let mut c = config_for(&up.base_url());
    c.routes = vec![
        RouteConfig::new("/v1", &format!("{}/v1", up.base_url()), RouteKind::Openai),
        RouteConfig::new(
            "/openai",
            &format!("{}/v1", up.base_url()),
            RouteKind::Openai,
        ),
    ];
    c.cache.port = port;
    c.cache.openai = true;
    c.cache.timeout_ms = 2000;
    // The default list: chat and embeddings (completions are not keyed).
    let gw = Gateway::start(c);
    let mut stores = 0;
    for (n, prefix) in ["/v1", "/openai"].iter().enumerate() {
        let q = with(question(10 + n), json!({"caching": true}));
        let path = format!("{prefix}/chat/completions");
        let first = send(&gw, &path, &[], &q);
        assert_eq!(
            (first.status, first.x_cache.as_str()),
            (200, "MISS"),
            "{prefix}: {}",
            first.body
        );
        stores += 1;
        wait_stores(port, stores);
        let before = up.request_count();
        let second = send(&gw, &path, &[], &q);
        assert_eq!(
            (second.status, second.x_cache.as_str()),
            (200, "HIT"),
            "{prefix}"
        );
        assert_eq!(second.body, first.body);
        assert_eq!(
            up.request_count(),
            before,
            "{prefix}: the hit went upstream"
        );
    }
    // Completions are not in the list: not cached, yet `caching` is removed.
    let r = send(
        &gw,
        "/openai/completions",
        &[],
        &json!({"model": "gpt-4o-mini", "prompt": "hi", "caching": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    for req in &seen {
        assert!(req.path.starts_with("/v1/"), "{}", req.path);
        let body = req.json().unwrap();
        assert!(body.get("caching").is_none(), "{} got {body}", req.path);
    }
}

/// Without forward keys the upstream, not the gateway, checks who a client is: an answer stored
/// for one client's key must not reach a client with another (or a made-up) key. Same for callers
/// let through by `pass_through_unknown_keys`. Callers without any credential share only among
/// themselves.
#[test]
fn callers_without_a_forward_key_are_scoped_by_their_own_credential() {
    use llm_forward_core::access::{ForwardKeyConfig, UpstreamKeyConfig};
    let dir = TempDir::new("cache-cred");
    let cache = start_cache(&service_config(CacheBackend::Memory, &dir), 0);
    let port = cache.tcp_addr().unwrap().port();
    let (up, gen) = (mock(), mock());
    let gw = Gateway::start(cache_config(&up, &gen, port));
    let bearer = |k: &str| format!("Bearer {k}");
    let q = with(question(1), json!({"caching": true}));
    let a = send(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer("sk-client-a"))],
        &q,
    );
    assert_eq!((a.status, a.x_cache.as_str()), (200, "MISS"), "{}", a.body);
    wait_stores(port, 1);
    let again = send(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer("sk-client-a"))],
        &q,
    );
    assert_eq!(again.x_cache, "HIT", "the same credential reads its entry");
    let junk = send(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer("junk-key"))],
        &q,
    );
    assert_eq!(junk.x_cache, "MISS", "another key never reads it");
    assert_eq!(
        up.request_count(),
        2,
        "the junk key's request reached the upstream"
    );
    assert_eq!(
        up.requests()[1].header("authorization"),
        Some("Bearer junk-key"),
        "the upstream checks the key itself"
    );
    // No credential at all: not the keyed entries either.
    let anon = send(&gw, "/v1/chat/completions", &[], &q);
    assert_eq!(anon.x_cache, "MISS");
    assert_eq!(up.request_count(), 3);
    // The anonymous answer is stored too (in its own scope).
    wait_stores(port, 3);
    // A general route's upstream may keep sessions in cookies: a cookie is a credential too.
    let echo = |cookie: &str| send(&gw, "/gen/echo/c", &[("cookie", cookie)], &json!({"x": 1}));
    assert_eq!(echo("session=a").x_cache, "MISS");
    wait_stores(port, 4);
    assert_eq!(echo("session=b").x_cache, "MISS", "another session");
    assert_eq!(echo("session=a").x_cache, "HIT");
    assert_eq!(gen.request_count(), 2);
    wait_stores(port, 5);
    drop(gw);

    // pass_through_unknown_keys: unknown keys are scoped by themselves, never as level 0.
    let mut c = cache_config(&up, &gen, port);
    c.keys.upstream = vec![UpstreamKeyConfig {
        key: Some("sk-upstream-pass-through".into()),
        file: None,
        levels: vec![0],
        routes: Vec::new(),
    }];
    c.keys.forward = vec![ForwardKeyConfig {
        name: Some("admin".into()),
        key: "fk-cache-admin".into(),
        level: 0,
    }];
    c.routes[0].pass_through_unknown_keys = true;
    let gw = Gateway::start(c);
    let before = up.request_count();
    let q2 = with(question(2), json!({"caching": true}));
    let stranger = send(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer("sk-own-1"))],
        &q2,
    );
    assert_eq!(stranger.x_cache, "MISS");
    wait_stores(port, 6);
    let other = send(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer("sk-own-2"))],
        &q2,
    );
    assert_eq!(
        other.x_cache, "MISS",
        "another unknown key does not read it"
    );
    let admin = send(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer("fk-cache-admin"))],
        &q2,
    );
    assert_eq!(admin.x_cache, "MISS", "nor does level 0");
    assert_eq!(up.request_count(), before + 3);
    let same = send(
        &gw,
        "/v1/chat/completions",
        &[("authorization", &bearer("sk-own-1"))],
        &q2,
    );
    assert_eq!(same.x_cache, "HIT");
}
