//! Rate limits, token quotas and output pacing against the real Envoy (`--concurrency 2`).
//!
//! Each of OpenAI-Forward's rate-limit bugs (reference §3.6) has a test proving it is absent:
//! one hit per forward target (`every_route_counts_a_request_once`), sticky `inf`
//! (`an_unlimited_path_never_disables_other_limits`), comma bypass
//! (`a_comma_in_authorization_changes_nothing`), levels never matching `Bearer fk-…`
//! (`a_level_limit_applies_to_bearer_forward_keys`).

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::config::{Config, RouteConfig, RouteKind};
use llm_forward_core::limits::config::{LimitRule, LimitsConfig, PacingRule, Per};
use llm_forward_core::limits::{parse_limit, Strategy};
use llm_forward_integration_tests::*;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const CHAT: &str = "/v1/chat/completions";

fn mock() -> MockUpstream {
    MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

fn rule(path: &str, limit: &str, per: Per, level: Option<u32>) -> LimitRule {
    LimitRule {
        path: path.into(),
        limit: parse_limit(limit).unwrap(),
        per,
        level,
    }
}

fn with_limits(up: &MockUpstream, limits: LimitsConfig) -> Config {
    // Many tests count against `N/hour` fixed windows aligned to the clock hour: never start one in
    // the last 90 s of an hour, where the window could end mid-test (and reset headers drop below 1m).
    wait_for_room(3_600_000, 90_000);
    let mut c = config_for(&up.base_url());
    c.limits = limits;
    c
}

fn chat_body() -> serde_json::Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

fn chat(gw: &Gateway, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
    let mut req = client().post(gw.url(CHAT)).json(&chat_body());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap()
}

fn statuses(gw: &Gateway, n: usize, headers: &[(&str, &str)]) -> Vec<u16> {
    (0..n)
        .map(|_| chat(gw, headers).status().as_u16())
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits until at least `room_ms` are left in the current aligned window of `period_ms`, so a
/// short test sequence does not straddle a window edge.
fn wait_for_room(period_ms: u64, room_ms: u64) {
    let into = now_ms() % period_ms;
    if period_ms - into < room_ms {
        std::thread::sleep(Duration::from_millis(period_ms - into + 20));
    }
}

/// Sleeps into the next aligned window of `period_ms`.
fn next_window(period_ms: u64) {
    let into = now_ms() % period_ms;
    std::thread::sleep(Duration::from_millis(period_ms - into + 20));
}

#[test]
fn exactly_n_of_64_parallel_clients_pass() {
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            strategy: Strategy::SlidingWindow,
            requests: vec![rule(CHAT, "10/hour", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    let barrier = Barrier::new(64);
    let results: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|_| {
                s.spawn(|| {
                    let c = client();
                    barrier.wait();
                    c.post(gw.url(CHAT))
                        .header("authorization", "Bearer sk-shared")
                        .json(&chat_body())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|s| **s == 200).count();
    let limited = results.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, limited), (10, 54), "{results:?}");
    assert_eq!(
        up.request_count(),
        10,
        "limited requests never reach the upstream"
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.limited.root.requests"),
        Some(54)
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.limit_cas_exhausted_total"),
        Some(0)
    );
}

#[test]
fn buckets_are_separate_per_key_and_per_ip() {
    let up = mock();
    let mut c = with_limits(
        &up,
        LimitsConfig {
            requests: vec![
                rule(CHAT, "2/hour", Per::Key, None),
                rule("/v1/embeddings", "2/hour", Per::Ip, None),
            ],
            ..LimitsConfig::default()
        },
    );
    c.server.xff_num_trusted_hops = 1;
    let gw = Gateway::start(c);
    assert_eq!(
        statuses(&gw, 3, &[("authorization", "Bearer sk-a")]),
        [200, 200, 429]
    );
    assert_eq!(statuses(&gw, 1, &[("authorization", "Bearer sk-b")]), [200]);
    // Anonymous callers share one bucket of their own.
    assert_eq!(statuses(&gw, 3, &[]), [200, 200, 429]);

    let embed = |ip: &str, key: &str| {
        client()
            .post(gw.url("/v1/embeddings"))
            .header("x-forwarded-for", ip)
            .header("authorization", key)
            .json(&json!({"model": "text-embedding-3-small", "input": "x"}))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // Per IP: the key does not matter, the address does.
    assert_eq!(embed("10.1.0.1", "Bearer sk-1"), 200);
    assert_eq!(embed("10.1.0.1", "Bearer sk-2"), 200);
    assert_eq!(embed("10.1.0.1", "Bearer sk-3"), 429);
    assert_eq!(embed("10.1.0.2", "Bearer sk-1"), 200);
    assert_eq!(embed("2001:db8::1", "Bearer sk-1"), 200);
}

#[test]
fn every_rate_of_a_limit_is_enforced() {
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            strategy: Strategy::FixedWindow,
            requests: vec![rule(CHAT, "3/second;5/minute", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    wait_for_room(60_000, 10_000);
    wait_for_room(1_000, 600);
    let first = statuses(&gw, 4, &[]);
    assert_eq!(first, [200, 200, 200, 429]);
    let body: serde_json::Value = chat(&gw, &[]).json().unwrap();
    assert_eq!(
        body["error"]["message"],
        "Rate limit exceeded: 3 per 1 second"
    );
    next_window(1_000);
    let second = statuses(&gw, 3, &[]);
    assert_eq!(second, [200, 200, 429], "the minute's 5 are used up");
    let resp = chat(&gw, &[]);
    assert_eq!(resp.headers()["x-ratelimit-limit-requests"], "5");
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(
        body["error"]["message"],
        "Rate limit exceeded: 5 per 1 minute"
    );
}

#[test]
fn an_unlimited_path_never_disables_other_limits() {
    // OpenAI-Forward 0.8.1: one request to an `inf` path switched every limit off.
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            requests: vec![
                rule("/v1/models", "inf", Per::Key, None),
                rule(CHAT, "2/hour", Per::Key, None),
            ],
            ..LimitsConfig::default()
        },
    ));
    for _ in 0..3 {
        assert_eq!(
            client().get(gw.url("/v1/models")).send().unwrap().status(),
            200
        );
    }
    assert_eq!(statuses(&gw, 3, &[]), [200, 200, 429]);
    assert_eq!(
        client().get(gw.url("/v1/models")).send().unwrap().status(),
        200
    );
    assert_eq!(statuses(&gw, 2, &[]), [429, 429]);
}

#[test]
fn every_route_counts_a_request_once() {
    // OpenAI-Forward counted each request once per configured forward target.
    let up = mock();
    let mut c = with_limits(
        &up,
        LimitsConfig {
            requests: vec![rule(CHAT, "3/hour", Per::Key, None)],
            global: parse_limit("3/hour").unwrap(),
            ..LimitsConfig::default()
        },
    );
    for prefix in ["/a", "/b", "/c"] {
        c.routes
            .push(RouteConfig::new(prefix, &up.base_url(), RouteKind::Openai));
    }
    let gw = Gateway::start(c);
    assert_eq!(statuses(&gw, 4, &[]), [200, 200, 200, 429]);
    // The global limit (paths without an entry) also admits exactly its amount, per path.
    let get = |p: &str| client().get(gw.url(p)).send().unwrap().status().as_u16();
    let models: Vec<u16> = (0..4).map(|_| get("/a/v1/models")).collect();
    assert_eq!(models, [200, 200, 200, 429]);
    assert_eq!(get("/b/v1/models"), 200, "another path is another bucket");
}

#[test]
fn a_comma_in_authorization_changes_nothing() {
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            requests: vec![rule(CHAT, "2/hour", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    assert_eq!(
        statuses(&gw, 4, &[("authorization", "Bearer x,y")]),
        [200, 200, 429, 429]
    );
    assert_eq!(
        statuses(&gw, 3, &[("authorization", "Bearer x")]),
        [200, 200, 429],
        "`Bearer x` is another caller, not a part of `Bearer x,y`"
    );
}

#[test]
fn a_level_limit_applies_to_bearer_forward_keys() {
    let up = mock();
    let mut c = with_limits(
        &up,
        LimitsConfig {
            requests: vec![
                rule(CHAT, "1/hour", Per::Key, Some(1)),
                rule(CHAT, "3/hour", Per::Key, Some(0)),
            ],
            ..LimitsConfig::default()
        },
    );
    c.keys = serde_json::from_value(json!({
        "upstream": [{"key": "sk-real-upstream", "levels": [0, 1]}],
        "levels": {"1": ["gpt-*"]},
        "forward": [
            {"name": "one", "key": "fk-level-one", "level": 1},
            {"name": "zero", "key": "fk-level-zero", "level": 0},
        ],
    }))
    .unwrap();
    let gw = Gateway::start(c);
    assert_eq!(
        statuses(&gw, 2, &[("authorization", "Bearer fk-level-one")]),
        [200, 429]
    );
    assert_eq!(
        statuses(&gw, 4, &[("authorization", "Bearer fk-level-zero")]),
        [200, 200, 200, 429]
    );
    // The upstream saw the real key, never a forward key.
    assert!(up
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer sk-real-upstream")));
}

#[test]
fn a_new_window_lets_requests_through_again() {
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            strategy: Strategy::FixedWindow,
            requests: vec![rule(CHAT, "2/2seconds", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    wait_for_room(2_000, 1_200);
    assert_eq!(statuses(&gw, 3, &[]), [200, 200, 429]);
    next_window(2_000);
    assert_eq!(statuses(&gw, 3, &[]), [200, 200, 429]);
}

#[test]
fn the_429_is_openai_shaped_with_rate_limit_headers() {
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            strategy: Strategy::FixedWindow,
            requests: vec![rule(CHAT, "2/hour", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    let first = chat(&gw, &[]);
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "1");
    let reset = first.headers()["x-ratelimit-reset-requests"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(reset.ends_with('s') && reset.contains('m'), "{reset}");
    let second = chat(&gw, &[]);
    assert_eq!(second.headers()["x-ratelimit-remaining-requests"], "0");

    let resp = chat(&gw, &[]);
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-ratelimit-limit-requests"], "2");
    assert_eq!(h["x-ratelimit-remaining-requests"], "0");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    let into_hour = now_ms() % 3_600_000;
    let left = (3_600_000 - into_hour).div_ceil(1000);
    assert!(
        retry <= left + 1 && retry + 5 >= left,
        "retry-after {retry}, window ends in {left}s"
    );
    let reset = h["x-ratelimit-reset-requests"].to_str().unwrap();
    assert!(reset.ends_with('s'), "{reset}");
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(
        body,
        json!({"error": {
            "message": "Rate limit exceeded: 2 per 1 hour",
            "type": "requests",
            "param": null,
            "code": "rate_limit_exceeded",
        }})
    );
    assert_eq!(up.request_count(), 2);
}

#[test]
fn a_token_quota_blocks_after_a_large_answer_and_reopens_next_window() {
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            strategy: Strategy::FixedWindow,
            tokens: vec![rule(CHAT, "1000/4seconds", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    wait_for_room(4_000, 2_500);
    let big = [("x-mock-completion-tokens", "5000")];
    let first = chat(&gw, &big);
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["x-ratelimit-limit-tokens"], "1000");
    assert_eq!(first.headers()["x-ratelimit-remaining-tokens"], "1000");
    drop(first.bytes().unwrap());
    let blocked = chat(&gw, &[]);
    assert_eq!(blocked.status(), 429);
    assert!(blocked.headers().contains_key("retry-after"));
    assert_eq!(blocked.headers()["x-ratelimit-remaining-tokens"], "0");
    let (kind, code) = openai_error(&blocked.bytes().unwrap());
    assert_eq!(
        (kind.as_str(), code.as_str()),
        ("tokens", "rate_limit_exceeded")
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.limited.root.tokens"),
        Some(1)
    );
    next_window(4_000);
    let again = chat(&gw, &[]);
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["x-ratelimit-remaining-tokens"], "1000");
}

/// Issue 15 item 5: a client that leaves before the usage chunk, or a body the filter did not read
/// (so `include_usage` was not injected), is still charged, from an estimate.
#[test]
fn streams_without_usage_are_charged_an_estimate() {
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            tokens: vec![rule(CHAT, "20/hour", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    let key = |k: &str| format!("Bearer {k}");
    // Aborted before the usage chunk.
    let seen = stream_then_disconnect(
        gw.addr(),
        CHAT,
        "sk-abort",
        "content-type: application/json\r\n",
    );
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    // Not read by the filter (not declared JSON): no include_usage, the stream has no usage.
    let resp = client()
        .post(gw.url(CHAT))
        .header("authorization", key("sk-unread"))
        .header("content-type", "text/plain")
        .header("x-mock-chunks", "3")
        .body(
            json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().unwrap();
    assert!(!text.contains("\"usage\":{"), "{text}");
    // Both were charged (≥ the 20-token budget): their next requests are refused.
    let deadline = Instant::now() + Duration::from_secs(10);
    for k in ["sk-abort", "sk-unread"] {
        loop {
            let status = chat(&gw, &[("authorization", &key(k))]).status();
            if status == 429 {
                break;
            }
            assert!(Instant::now() < deadline, "{k} was never charged");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        gw.stat("wasmcustom.llm_forward.limit_charge_estimated_total")
            .unwrap_or(0)
            >= 2
    );
    // A caller with real usage is charged that, not an estimate: another key is untouched.
    assert_eq!(
        chat(&gw, &[("authorization", "Bearer sk-fresh")]).status(),
        200
    );
}

#[test]
fn a_streamed_answer_is_charged_and_the_client_sees_no_injected_usage() {
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            strategy: Strategy::FixedWindow,
            tokens: vec![rule(CHAT, "1000/hour", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    let stream_body =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let resp = client()
        .post(gw.url(CHAT))
        .header("x-mock-completion-tokens", "2000")
        .header("x-mock-chunks", "5")
        .json(&stream_body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().unwrap();
    assert!(
        !text.contains("usage"),
        "the client did not ask for usage:\n{text}"
    );
    assert!(
        text.contains("tok4") && text.trim_end().ends_with("data: [DONE]"),
        "{text}"
    );
    // The upstream was asked for usage, with a correct content-length.
    let seen = &up.requests()[0];
    let sent = seen.json().unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    assert_eq!(
        seen.header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(seen.body.len())
    );
    // 2010 tokens were charged: the next request is refused.
    assert_eq!(chat(&gw, &[]).status(), 429);

    // A client that asked for usage gets it, unchanged.
    let gw2 = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            tokens: vec![rule(CHAT, "1000000/hour", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    let asked = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
    let text = client()
        .post(gw2.url(CHAT))
        .json(&asked)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("\"usage\":{"), "{text}");
}

#[test]
fn a_rewritten_body_keeps_the_connection_sound() {
    // Injection makes the body longer; a stale content-length would spill onto the next request.
    let up = mock();
    let gw = Gateway::start(with_limits(
        &up,
        LimitsConfig {
            tokens: vec![rule(CHAT, "1000000/hour", Per::Key, None)],
            ..LimitsConfig::default()
        },
    ));
    let mut conn = RawConnection::connect(gw.addr());
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
    for _ in 0..3 {
        let r = conn.request("POST", CHAT, &[("content-type", "application/json")], body);
        assert_eq!(r.status, 200);
        let text = String::from_utf8_lossy(&r.body).to_string();
        assert!(text.contains("[DONE]") && !text.contains("usage"), "{text}");
    }
    assert_eq!(up.request_count(), 3);
    for seen in up.requests() {
        assert_eq!(
            seen.json().unwrap()["stream_options"]["include_usage"],
            true
        );
    }
}

#[test]
fn pacing_spaces_streamed_events_and_leaves_other_routes_alone() {
    let up = mock();
    let mut c = with_limits(
        &up,
        LimitsConfig {
            pacing: vec![PacingRule {
                path: CHAT.into(),
                limit: parse_limit("10/second").unwrap(),
                level: Some(0),
            }],
            ..LimitsConfig::default()
        },
    );
    c.routes
        .push(RouteConfig::new("/fast", &up.base_url(), RouteKind::Openai));
    let gw = Gateway::start(c);
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
    let run = |path: &str, delay: &str| {
        let mut conn = RawConnection::connect(gw.addr());
        let start = Instant::now();
        let r = conn.request(
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("x-mock-chunks", "18"),
                ("x-mock-delay-ms", delay),
            ],
            body,
        );
        (r, start.elapsed())
    };
    // 18 content chunks + role + finish = 20 events, then [DONE].
    let (fast, fast_took) = run("/fast/v1/chat/completions", "0");
    let (paced, paced_took) = run(CHAT, "0");
    assert_eq!(fast.status, 200);
    assert_eq!(paced.status, 200);
    assert_eq!(paced.body, fast.body, "pacing changes timing, never bytes");
    assert!(
        fast_took < Duration::from_millis(500),
        "unpaced took {fast_took:?}"
    );
    assert!(
        paced_took >= Duration::from_millis(1_900),
        "paced took {paced_took:?}"
    );
    assert!(
        paced_took < Duration::from_secs(4),
        "paced took {paced_took:?}"
    );
    // TTFT of the unpaced route is not affected by pacing elsewhere.
    assert!(
        fast.chunk_times[0] < Duration::from_millis(200),
        "{:?}",
        fast.chunk_times
    );

    // An upstream slower than the rate streams chunk by chunk, spaced at least 100 ms apart.
    let (slow, took) = run(CHAT, "60");
    assert_eq!(slow.body, fast.body);
    let times = &slow.chunk_times;
    eprintln!("paced fast upstream: {:?}", paced.chunk_times);
    eprintln!("paced slow upstream: {times:?}");
    assert!(times.len() >= 10, "events arrive one by one: {times:?}");
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    let early = gaps.iter().filter(|g| **g < 80).count();
    assert!(took >= Duration::from_millis(1_900), "took {took:?}");
    assert!(early <= 2, "events closer than the rate: {gaps:?}");
}

/// Requests/s with limits on vs off (same run, Envoy `--concurrency 1`, non-streaming chat to
/// the mock, wrk). Prints figures; never fails on time. Run with
/// `cargo test -p llm-forward-integration-tests --test limits -- --ignored --nocapture bench`.
#[test]
#[ignore]
fn bench_limits_on_vs_off() {
    let up = mock();
    let dir = TempDir::new("wrk");
    let script = dir.0.join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{}'\nwrk.headers[\"content-type\"] = \"application/json\"\nwrk.headers[\"authorization\"] = \"Bearer sk-bench\"\n",
            chat_body()
        ),
    )
    .unwrap();
    let variants: Vec<(&str, LimitsConfig)> = vec![
        ("off", LimitsConfig::default()),
        (
            "request limit",
            LimitsConfig {
                strategy: Strategy::SlidingWindow,
                requests: vec![rule(
                    CHAT,
                    "1000000000/minute;1000000000/hour",
                    Per::Key,
                    None,
                )],
                ..LimitsConfig::default()
            },
        ),
        (
            "request limit + token quota",
            LimitsConfig {
                strategy: Strategy::SlidingWindow,
                requests: vec![rule(
                    CHAT,
                    "1000000000/minute;1000000000/hour",
                    Per::Key,
                    None,
                )],
                tokens: vec![rule(CHAT, "1000000000000/day", Per::Key, None)],
                ..LimitsConfig::default()
            },
        ),
    ];
    let mut results: Vec<(String, f64)> = Vec::new();
    for round in 0..3 {
        for (name, limits) in &variants {
            let mut c = with_limits(&up, limits.clone());
            c.server.concurrency = 1;
            let gw = Gateway::start(c);
            let out = std::process::Command::new("wrk")
                .args(["-t2", "-c16", "-d6s", "-s"])
                .arg(&script)
                .arg(gw.url(CHAT))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let rps: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0);
            assert!(!text.contains("Non-2xx"), "{text}");
            eprintln!("round {round} {name}: {rps:.0} req/s");
            results.push((name.to_string(), rps));
        }
    }
    let avg = |name: &str| {
        let v: Vec<f64> = results
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, r)| *r)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let off = avg("off");
    for (name, _) in &variants {
        eprintln!(
            "{name}: {:.0} req/s, ratio to off {:.3}",
            avg(name),
            avg(name) / off
        );
    }
}

/// A paced stream whose upstream is much faster than the rate must not queue without bound in the
/// worker's memory: past `server.worker_memory_budget_bytes` it is released unpaced (counted in
/// `llm_forward.memory.over_budget_total`), with every byte intact. At 1 event a second, 20,000
/// events would otherwise take hours and hold megabytes in the VM.
#[test]
fn a_paced_stream_past_the_memory_budget_is_released_unpaced() {
    let up = mock();
    let mut c = with_limits(
        &up,
        LimitsConfig {
            pacing: vec![PacingRule {
                path: CHAT.into(),
                limit: parse_limit("1/second").unwrap(),
                level: Some(0),
            }],
            ..LimitsConfig::default()
        },
    );
    c.server.worker_memory_budget_bytes = 1024 * 1024;
    let gw = Gateway::start(c);
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .post(gw.url(CHAT))
        .header("x-mock-chunks", "20000")
        .json(&json!({"model": "gpt-4o", "stream": true, "messages": []}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().expect("the stream completes");
    assert!(
        body.trim_end().ends_with("data: [DONE]"),
        "{}",
        &body[body.len().saturating_sub(200)..]
    );
    assert_eq!(body.matches("tok19999 ").count(), 1);
    assert!(
        gw.stat("wasmcustom.llm_forward.memory.over_budget_total")
            .unwrap_or(0)
            >= 1
    );
}
