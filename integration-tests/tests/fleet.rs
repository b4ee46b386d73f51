//! Fleet-wide limits (`limits.backend: redis://…`): several real Envoys, each with its own built-in
//! rate-limit service (`llm-forward ratelimit`, in this process), one real `redis-server`, all on
//! free loopback ports. docs/fleet-limits.md describes the behaviour checked here.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::config::Config;
use llm_forward_core::limits::config::{LimitRule, LimitsConfig, Per};
use llm_forward_core::limits::fleet::FailureMode;
use llm_forward_core::limits::parse_limit;
use llm_forward_gateway::ratelimit::listen::Listen;
use llm_forward_gateway::ratelimit::{Options, RateLimitServer};
use llm_forward_gateway::redis_server::RedisServer;
use llm_forward_integration_tests::*;
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHAT: &str = "/v1/chat/completions";

fn mock() -> MockUpstream {
    MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

fn rule(limit: &str) -> LimitRule {
    LimitRule {
        path: CHAT.into(),
        limit: parse_limit(limit).unwrap(),
        per: Per::Key,
        level: None,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits until at least `room_ms` are left in the current aligned window of `period_ms`, so the
/// test cannot straddle a window edge (the service counts fixed windows aligned to the clock).
fn wait_for_room(period_ms: u64, room_ms: u64) {
    let into = now_ms() % period_ms;
    if period_ms - into < room_ms {
        std::thread::sleep(Duration::from_millis(period_ms - into + 20));
    }
}

/// One gateway of the fleet: its Envoy and its own built-in rate-limit service.
struct Member {
    gw: Gateway,
    _rls: RateLimitServer,
}

/// `n` gateways sharing `redis` through their own rate-limit services. The service's Redis deadline
/// follows the filter timeout as `llm-forward run` sets it.
fn fleet(n: usize, up: &MockUpstream, redis: &RedisServer, limits: &LimitsConfig) -> Vec<Member> {
    (0..n)
        .map(|_| {
            let mut options = Options::new(Listen::Tcp("127.0.0.1:0".into()), redis.url());
            options.redis_timeout =
                llm_forward_gateway::run::ratelimit_redis_timeout(limits.timeout_ms);
            let rls = RateLimitServer::spawn(options).unwrap();
            let mut c: Config = config_for(&up.base_url());
            c.limits = limits.clone();
            c.limits.backend = Some(redis.url());
            let gw = Gateway::start_with_ratelimit(c, Some(&rls.addr().to_string()));
            Member { gw, _rls: rls }
        })
        .collect()
}

fn chat_body() -> serde_json::Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

fn chat(gw: &Gateway, key: &str, extra: &[(&str, &str)]) -> reqwest::blocking::Response {
    let mut req = client()
        .post(gw.url(CHAT))
        .header("authorization", format!("Bearer {key}"))
        .json(&chat_body());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().unwrap()
}

/// Polls `f` until it is true (a charge is fire-and-forget: it lands shortly after the response).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn vms_created(gw: &Gateway) -> u64 {
    gw.stat("wasm.envoy.wasm.runtime.v8.created")
        .expect("Envoy exposes wasm.envoy.wasm.runtime.v8.created")
}

#[test]
fn three_gateways_admit_exactly_the_limit_of_64_concurrent_clients() {
    let up = mock();
    let redis = RedisServer::start();
    // A generous timeout and failure mode closed: a slow answer on this shared machine shows up as
    // a 503 (and fails the count) instead of silently letting an extra request through.
    let limits = LimitsConfig {
        requests: vec![rule("10/minute")],
        timeout_ms: 5_000,
        failure_mode: FailureMode::Closed,
        ..LimitsConfig::default()
    };
    let members = fleet(3, &up, &redis, &limits);
    // The fixed minute window must not end during the burst.
    wait_for_room(60_000, 20_000);
    let barrier = Barrier::new(64);
    let results: Vec<(usize, u16, Option<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let gw = &members[i % 3].gw;
                let barrier = &barrier;
                s.spawn(move || {
                    let c = client();
                    barrier.wait();
                    let r = c
                        .post(gw.url(CHAT))
                        .header("authorization", "Bearer sk-shared")
                        .json(&chat_body())
                        .send()
                        .unwrap();
                    let remaining = r
                        .headers()
                        .get("x-ratelimit-remaining-requests")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    (i % 3, r.status().as_u16(), remaining)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.1 == 200).count();
    let limited = results.iter().filter(|r| r.1 == 429).count();
    assert_eq!((ok, limited), (10, 54), "{results:?}");
    assert_eq!(
        up.request_count(),
        10,
        "refused requests never reach the upstream"
    );
    // Every gateway took part in refusing: the budget is one, not one per gateway.
    for g in 0..3 {
        assert!(
            results.iter().any(|r| r.0 == g && r.1 == 429),
            "gateway {g}: {results:?}"
        );
    }
    // The admitted ones saw OpenAI's headers from the shared count: remaining 0..=9, each once.
    let mut remaining: Vec<u64> = results
        .iter()
        .filter(|r| r.1 == 200)
        .map(|r| r.2.as_deref().unwrap().parse().unwrap())
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..10).collect::<Vec<u64>>());
    // A refused request has the OpenAI shape and Retry-After.
    let r = chat(&members[0].gw, "sk-shared", &[]);
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "10");
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("10 per 1 minute"));
    for m in &members {
        assert_eq!(
            m.gw.stat("wasmcustom.llm_forward.ratelimit_service_failed_total"),
            Some(0)
        );
    }
}

#[test]
fn a_token_quota_spent_at_one_gateway_refuses_at_another() {
    let up = mock();
    let redis = RedisServer::start();
    let limits = LimitsConfig {
        tokens: vec![rule("100/hour")],
        timeout_ms: 5_000,
        ..LimitsConfig::default()
    };
    wait_for_room(3_600_000, 60_000);
    let members = fleet(2, &up, &redis, &limits);
    let (a, b) = (&members[0].gw, &members[1].gw);
    // Before: the budget is open at B, nothing charged yet.
    let r = chat(b, "sk-t", &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-limit-tokens"], "100");
    assert_eq!(r.headers()["x-ratelimit-remaining-tokens"], "100");
    // Spend it at A: 10 prompt + 200 completion tokens, charged after the response.
    let r = chat(a, "sk-t", &[("x-mock-completion-tokens", "200")]);
    assert_eq!(r.status(), 200);
    eventually("the charge made at A refuses at B", || {
        chat(b, "sk-t", &[]).status() == 429
    });
    let r = chat(b, "sk-t", &[]);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["type"], "tokens");
    // Another caller's budget is untouched.
    assert_eq!(chat(b, "sk-other", &[]).status(), 200);
    // The charges completed: none was cancelled with the end of its HTTP stream.
    assert_eq!(
        a.stat("cluster.llm_forward_ratelimit.upstream_rq_cancelled"),
        Some(0),
        "{}",
        a.stats()
    );
    assert!(a.gw_stat("cluster.llm_forward_ratelimit.upstream_rq_completed") >= 3);
}

#[test]
fn a_stream_cancelled_before_its_usage_chunk_is_still_charged() {
    let up = mock();
    let redis = RedisServer::start();
    let limits = LimitsConfig {
        tokens: vec![rule("20/hour")],
        timeout_ms: 5_000,
        ..LimitsConfig::default()
    };
    wait_for_room(3_600_000, 60_000);
    let members = fleet(2, &up, &redis, &limits);
    let (a, b) = (&members[0].gw, &members[1].gw);
    let seen = stream_then_disconnect(
        a.addr(),
        CHAT,
        "sk-abort",
        "content-type: application/json\r\n",
    );
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    // The estimate (request and streamed bytes / 4) exceeds the 20-token budget.
    eventually("the aborted stream was charged", || {
        chat(b, "sk-abort", &[]).status() == 429
    });
    eventually("counted as an estimate", || {
        a.gw_stat("wasmcustom.llm_forward.limit_charge_estimated_total") >= 1
    });
}

trait Stat {
    fn gw_stat(&self, name: &str) -> u64;
}

impl Stat for Gateway {
    fn gw_stat(&self, name: &str) -> u64 {
        self.stat(name).unwrap_or(0)
    }
}

#[test]
fn redis_down_applies_the_failure_mode_within_the_timeout_and_limits_come_back() {
    let up = mock();
    let mut redis = RedisServer::start();
    let closed = LimitsConfig {
        requests: vec![rule("3/hour")],
        // Wide enough that a healthy call never misses it on a loaded machine (a miss would be a
        // 503 or an uncounted pass where the test expects a verdict); a dead Redis is refused at
        // once, so the failure path is still bounded well under the 3 s asserted below.
        timeout_ms: 1_000,
        failure_mode: FailureMode::Closed,
        ..LimitsConfig::default()
    };
    let open = LimitsConfig {
        failure_mode: FailureMode::Open,
        ..closed.clone()
    };
    wait_for_room(3_600_000, 60_000);
    let members_closed = fleet(1, &up, &redis, &closed);
    let members_open = fleet(1, &up, &redis, &open);
    let (gc, go) = (&members_closed[0].gw, &members_open[0].gw);
    let vms = (vms_created(gc), vms_created(go));
    assert_eq!(chat(gc, "sk-f", &[]).status(), 200);

    redis.kill();
    for _ in 0..5 {
        let started = Instant::now();
        let r = chat(gc, "sk-f", &[]);
        let took = started.elapsed();
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().unwrap();
        assert_eq!(body["error"]["code"], "rate_limit_service_unavailable");
        // Bounded by the timeout (1 s), not hanging; generous slack for a loaded machine.
        assert!(took < Duration::from_secs(3), "{took:?}");
        // Failure mode open: let through, never a hang.
        assert_eq!(chat(go, "sk-f2", &[]).status(), 200);
    }
    assert!(gc.gw_stat("wasmcustom.llm_forward.ratelimit_service_failed_total") >= 5);
    assert_eq!(
        (vms_created(gc), vms_created(go)),
        vms,
        "no VM failed (FAIL_RELOAD would have created new ones)"
    );

    // Back: a fresh Redis (the windows are lost) enforces the limit again.
    redis.restart().unwrap();
    eventually("limits are enforced again after Redis restarts", || {
        chat(gc, "sk-back", &[]).status() == 429
    });
    let statuses: Vec<u16> = (0..3)
        .map(|_| chat(go, "sk-back2", &[]).status().as_u16())
        .collect();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429));
    assert_eq!(chat(go, "sk-back2", &[]).status(), 429);
    assert_eq!((vms_created(gc), vms_created(go)), vms);
}

#[test]
fn a_missing_ratelimit_cluster_applies_the_failure_mode_without_trapping_the_vm() {
    // The SDK's dispatch_grpc_call panics on Envoy's BadArgument (no such cluster); the filter
    // probes the cluster through the raw ABI first.
    let up = mock();
    let mut c = config_for(&up.base_url());
    c.limits = LimitsConfig {
        requests: vec![rule("3/hour")],
        failure_mode: FailureMode::Closed,
        backend: Some("redis://127.0.0.1:1".into()),
        ..LimitsConfig::default()
    };
    let gw = Gateway::start_edited(c, Some("127.0.0.1:1"), |b| {
        b["static_resources"]["clusters"]
            .as_array_mut()
            .unwrap()
            .retain(|c| c["name"] != "llm_forward_ratelimit");
    });
    let vms = vms_created(&gw);
    for _ in 0..4 {
        let r = chat(&gw, "sk-m", &[]);
        assert_eq!(r.status(), 503);
    }
    assert_eq!(vms_created(&gw), vms, "no VM was trapped and re-created");
    assert!(gw
        .envoy_output()
        .contains("rate-limit cluster `llm_forward_ratelimit` is missing"));
}

#[test]
fn garbage_answers_from_the_service_never_trap_the_vm() {
    // The rate-limit cluster points at a port where a plain TCP server answers garbage.
    let up = mock();
    let garbage = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_addr = garbage.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in garbage.incoming().flatten() {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n\r\nnot grpc at all\xff\xfe");
        }
    });
    let mut c = config_for(&up.base_url());
    c.limits = LimitsConfig {
        requests: vec![rule("3/hour")],
        timeout_ms: 300,
        failure_mode: FailureMode::Closed,
        backend: Some("redis://127.0.0.1:1".into()),
        ..LimitsConfig::default()
    };
    let gw = Gateway::start_with_ratelimit(c, Some(&garbage_addr.to_string()));
    let vms = vms_created(&gw);
    for _ in 0..4 {
        assert_eq!(chat(&gw, "sk-g", &[]).status(), 503);
    }
    assert_eq!(vms_created(&gw), vms);
}

/// `llm-forward run` in `dir` with only its listener port set (the `.env` is the user's,
/// unchanged). Envoy's admin and the built-in rate-limit service are on Unix sockets in each run's
/// private runtime folder, so two gateways on one host never collide.
fn run_in(dir: &TempDir, port: u16) -> RunningGateway {
    let mut cmd = gateway_command();
    cmd.arg("run")
        .env("LLM_FORWARD_PORT", port.to_string())
        .env("LLM_FORWARD_ADDRESS", "127.0.0.1")
        .env("LLM_FORWARD_CONCURRENCY", "2")
        .current_dir(&dir.0);
    RunningGateway::spawn(cmd, "ready to serve")
}

#[test]
fn two_run_gateways_from_one_openai_forward_env_share_the_budget() {
    let up = mock();
    let redis = RedisServer::start();
    let env = format!(
        r#"FORWARD_CONFIG=[{{"base_url":"{}","route":"/","type":"openai"}}]
OPENAI_API_KEY_CONFIG={{"sk-real-upstream": [0]}}
FORWARD_KEY_CONFIG={{"0": ["fk-team"]}}
REQ_RATE_LIMIT={{"/v1/chat/completions":[{{"level":0,"limit":"10/minute"}}]}}
REQ_RATE_LIMIT_BACKEND=redis://127.0.0.1:{}
RATE_LIMIT_TIMEOUT_MS=5000
"#,
        up.base_url(),
        redis.port
    );
    let (dir_a, dir_b) = (TempDir::new("fleet-env-a"), TempDir::new("fleet-env-b"));
    std::fs::write(dir_a.0.join(".env"), &env).unwrap();
    std::fs::write(dir_b.0.join(".env"), &env).unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    let a = run_in(&dir_a, port_a);
    let b = run_in(&dir_b, port_b);
    for gw in [&a, &b] {
        let out = gw.output();
        assert!(out.contains("rate-limit service: unix:"), "{out}");
        assert!(
            out.contains("fleet-wide: built-in rate-limit service on Redis redis://127.0.0.1:"),
            "{out}"
        );
        assert!(!out.contains("REQ_RATE_LIMIT_BACKEND is ignored"), "{out}");
    }
    wait_for_room(60_000, 20_000);
    // RATE_LIMIT_TIMEOUT_MS: with the default 20 ms, a first call that opens its connection on a
    // loaded machine could miss the deadline and fail open (11 admitted): a test-only flake.
    // Alternating between the two gateways: one budget of 10, not 10 each.
    let statuses: Vec<u16> = (0..30)
        .map(|i| {
            let port = if i % 2 == 0 { port_a } else { port_b };
            client()
                .post(format!("http://127.0.0.1:{port}{CHAT}"))
                .bearer_auth("fk-team")
                .json(&chat_body())
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 10, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        20,
        "{statuses:?}"
    );
    assert_eq!(up.request_count(), 10);
}

/// The cache and fleet limits together: a hit is held for the admission call like any request, is
/// counted as a request, and is not charged tokens (no upstream tokens were spent).
#[test]
fn cache_hits_are_admitted_by_the_service_and_not_charged() {
    use llm_forward_gateway::cache::{CacheServer, ServiceConfig};
    let up = mock();
    let redis = RedisServer::start();
    let cache = CacheServer::spawn(
        ServiceConfig::from_cache_config(&Default::default()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .unwrap();
    let mut options = Options::new(Listen::Tcp("127.0.0.1:0".into()), redis.url());
    options.redis_timeout = Duration::from_secs(2);
    let rls = RateLimitServer::spawn(options).unwrap();
    let mut c = config_for(&up.base_url());
    c.cache.port = cache.tcp_addr().unwrap().port();
    c.cache.openai = true;
    c.cache.timeout_ms = 2000;
    c.limits = LimitsConfig {
        requests: vec![rule("10/hour")],
        tokens: vec![rule("100/hour")],
        timeout_ms: 5_000,
        failure_mode: FailureMode::Closed,
        backend: Some(redis.url()),
        ..LimitsConfig::default()
    };
    wait_for_room(3_600_000, 60_000);
    let gw = Gateway::start_with_ratelimit(c, Some(&rls.addr().to_string()));
    let body = json!({"model": "gpt-4o", "caching": true,
        "messages": [{"role": "user", "content": "cached question"}]});
    let send = |body: &serde_json::Value, tokens: &str| {
        client()
            .post(gw.url(CHAT))
            .header("authorization", "Bearer sk-c")
            .header("x-mock-completion-tokens", tokens)
            .json(body)
            .send()
            .unwrap()
    };
    // A miss: 10 + 60 tokens charged.
    let first = send(&body, "60");
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-cache"], "MISS");
    drop(first.text());
    let port = cache.tcp_addr().unwrap().port();
    eventually("the answer is stored", || {
        let text = client()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .any(|l| l.starts_with("llm_forward_cache_stores_total{") && !l.ends_with(" 0"))
    });
    // Hits, polled until the miss's charge (fire-and-forget) shows: 70 of 100 tokens used. Had a
    // hit been charged its 70, the budget would be spent and the next hit refused.
    let mut requests = 1;
    let hit = |requests: &mut u32| {
        *requests += 1;
        let r = send(&body, "60");
        assert_eq!(r.status(), 200, "a hit was refused: hits were charged");
        assert_eq!(r.headers()["x-cache"], "HIT");
        r.headers()["x-ratelimit-remaining-tokens"]
            .to_str()
            .unwrap()
            .to_string()
    };
    eventually("the miss's charge landed", || hit(&mut requests) == "30");
    for _ in 0..3 {
        assert_eq!(hit(&mut requests), "30", "a hit was charged");
    }
    assert_eq!(up.request_count(), 1, "hits never reach the upstream");
    // Hits count as requests (10/hour): the 11th request of this caller is refused.
    while requests < 10 {
        hit(&mut requests);
    }
    let r = send(&body, "60");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "10");
}
