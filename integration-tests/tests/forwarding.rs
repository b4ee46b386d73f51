//! Foundation: forwarding through the real Envoy with the llm-forward filter loaded.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::config::{RouteConfig, RouteKind};
use llm_forward_integration_tests::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn mock() -> MockUpstream {
    MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

#[test]
fn root_route_forwards_path_and_query() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    let resp = client()
        .get(gw.url("/v1/models?x=1&y=%20z"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["object"], "list");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/models?x=1&y=%20z");
    assert_eq!(seen[0].method, "GET");
}

#[test]
fn prefix_route_strips_prefix_and_adds_base_path() {
    let root = mock();
    let gen = mock();
    let mut c = config_for(&root.base_url());
    c.routes.push(RouteConfig::new(
        "/gen",
        &format!("{}/base", gen.base_url()),
        RouteKind::General,
    ));
    let gw = Gateway::start(c);

    let resp = client()
        .post(gw.url("/gen/echo/x?key=abc&b=2"))
        .body("hi")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(gen.requests()[0].path, "/base/echo/x?key=abc&b=2");

    // Slashes are merged before routing, like OpenAI-Forward's path normalisation.
    let resp = client().get(gw.url("//gen//echo")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(gen.requests()[1].path, "/base/echo");
    assert_eq!(root.request_count(), 0);
}

#[test]
fn prefixes_are_segment_safe() {
    let root = mock();
    let gen = mock();
    let mut c = config_for(&root.base_url());
    c.routes.push(RouteConfig::new(
        "/gen",
        &gen.base_url(),
        RouteKind::General,
    ));
    let gw = Gateway::start(c);

    assert_eq!(
        client().get(gw.url("/genx/echo")).send().unwrap().status(),
        200
    );
    assert_eq!(gen.request_count(), 0, "/genx must not match /gen");
    assert_eq!(root.requests()[0].path, "/genx/echo");

    assert_eq!(
        client().get(gw.url("/gen/echo")).send().unwrap().status(),
        200
    );
    assert_eq!(gen.requests()[0].path, "/echo");
}

#[test]
fn every_method_is_forwarded() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    let c = client();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = c
            .request(m, gw.url("/echo/method"))
            .body(if method == "GET" || method == "HEAD" {
                ""
            } else {
                "x"
            })
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200, "{method}");
    }
    let methods: Vec<String> = up.requests().into_iter().map(|r| r.method).collect();
    assert_eq!(
        methods,
        ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    );
}

#[test]
fn multipart_upload_is_byte_exact() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    // Binary payload with NULs, CRLFs and every byte value, as in an audio upload.
    let audio: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let boundary = "----llmforwardboundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n").as_bytes());
    body.extend_from_slice(&audio);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let resp = client()
        .post(gw.url("/v1/audio/transcriptions/echo"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = up.requests();
    assert_eq!(seen[0].body.len(), body.len());
    assert!(
        seen[0].body == body,
        "upstream body differs from what the client sent"
    );
    assert_eq!(
        seen[0].header("content-type").unwrap(),
        format!("multipart/form-data; boundary={boundary}")
    );
}

#[test]
fn sse_chunks_arrive_incrementally() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    let mut conn = RawConnection::connect(gw.addr());
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let resp = conn.request(
        "POST",
        "/v1/chat/completions",
        &[
            ("content-type", "application/json"),
            ("x-mock-chunks", "5"),
            ("x-mock-delay-ms", "100"),
        ],
        body,
    );
    assert_eq!(resp.status, 200);
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let text = String::from_utf8(resp.body.clone()).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert!(
        resp.chunk_times.len() >= 5,
        "expected separate chunks, got {}",
        resp.chunk_times.len()
    );
    let first = resp.chunk_times[0];
    let last = *resp.chunk_times.last().unwrap();
    assert!(
        last >= first + Duration::from_millis(350),
        "first chunk at {first:?}, last at {last:?}: the stream was buffered"
    );
}

#[test]
fn upstream_status_and_headers_pass_through() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-status", "429")
        .json(&serde_json::json!({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-mock"], "1");
    assert_eq!(resp.headers()["openai-processing-ms"], "1");
    let (_, _) = openai_error(&resp.bytes().unwrap());

    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model":"gpt-4o","messages":[]}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-mock"], "1");
    assert!(resp.headers().contains_key("x-request-id"));
}

#[test]
fn twenty_streams_on_one_keep_alive_connection() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    let mut conn = RawConnection::connect(gw.addr());
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    for i in 0..20 {
        let resp = conn.request(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json"), ("x-mock-chunks", "3")],
            body,
        );
        assert_eq!(resp.status, 200, "request {i}");
        assert!(
            String::from_utf8_lossy(&resp.body).contains("data: [DONE]"),
            "request {i}"
        );
    }
    assert_eq!(gw.stat("http.llm_forward.downstream_cx_total"), Some(1));
    assert_eq!(up.request_count(), 20);
}

#[test]
fn retries_a_503_and_succeeds() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    up.fail_first("retry-me", 2);
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-request-id", "retry-me")
        .json(&serde_json::json!({"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.request_count(), 3, "two failed attempts and one success");
}

#[test]
fn upstream_refused_is_a_fast_openai_style_503() {
    let closed = free_port();
    let mut c = config_for(&format!("http://127.0.0.1:{closed}"));
    c.routes[0].retries = 1;
    let gw = Gateway::start(c);
    let started = Instant::now();
    let resp = client().get(gw.url("/v1/models")).send().unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(resp.headers()["content-type"], "application/json");
    let (kind, code) = openai_error(&resp.bytes().unwrap());
    assert_eq!(
        (kind.as_str(), code.as_str()),
        ("upstream_error", "upstream_unavailable")
    );
}

#[test]
fn upstream_slower_than_total_timeout_is_a_504() {
    let up = mock();
    let mut c = config_for(&up.base_url());
    c.routes[0].timeout = 1.0;
    c.routes[0].retries = 0;
    let gw = Gateway::start(c);
    let started = Instant::now();
    let resp = client()
        .get(gw.url("/slow"))
        .header("x-mock-sleep-ms", "3000")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(2500));
    let (_, code) = openai_error(&resp.bytes().unwrap());
    assert_eq!(code, "upstream_timeout");
}

#[test]
fn healthz_is_answered_locally() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    let resp = client().get(gw.url("/healthz")).send().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().unwrap(), "\"OK\"");
    assert_eq!(up.request_count(), 0);
}

fn preflight(gw: &Gateway, origin: &str) -> reqwest::blocking::Response {
    client()
        .request(reqwest::Method::OPTIONS, gw.url("/v1/chat/completions"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .unwrap()
}

/// Any page may call the API (its own key in `Authorization`), but never with the visitor's
/// credentials: the reference echoed every origin with `allow-credentials: true`.
#[test]
fn cors_preflight_allows_any_origin_without_credentials_by_default() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    let resp = preflight(&gw, "https://app.example");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(
        resp.headers()
            .get("access-control-allow-credentials")
            .is_none(),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.headers()["access-control-max-age"], "600");
    assert_eq!(
        up.request_count(),
        0,
        "preflight must not reach the upstream"
    );
}

#[test]
fn cors_credentials_only_for_the_listed_origins() {
    let up = mock();
    let mut c = config_for(&up.base_url());
    c.server.cors.allow_origins = vec!["https://app.example".into()];
    c.server.cors.allow_credentials = true;
    let gw = Gateway::start(c);
    let listed = preflight(&gw, "https://app.example");
    assert_eq!(
        listed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(listed.headers()["access-control-allow-credentials"], "true");
    let other = preflight(&gw, "https://evil.example");
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        other.headers()
    );
    assert!(other
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
}

#[test]
fn filter_counts_requests_per_route_in_envoy_stats() {
    let root = mock();
    let gen = mock();
    let mut c = config_for(&root.base_url());
    c.routes.push(RouteConfig::new(
        "/gen",
        &gen.base_url(),
        RouteKind::General,
    ));
    let gw = Gateway::start(c);
    for _ in 0..3 {
        client().get(gw.url("/v1/models")).send().unwrap();
    }
    client().get(gw.url("/gen/echo")).send().unwrap();
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.route.root.requests_total"),
        Some(3),
        "{}",
        gw.stats()
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.route.gen.requests_total"),
        Some(1)
    );
    let prom = llm_forward_gateway::envoy::admin_get(&gw.admin_addr(), "/stats/prometheus")
        .unwrap()
        .1;
    assert!(
        prom.contains("route=\"root\""),
        "stats_tags should turn the route into a label"
    );
}

#[test]
fn access_log_is_json_lines_without_query_strings() {
    let up = mock();
    let gw = Gateway::start(config_for(&up.base_url()));
    client()
        .get(gw.url("/v1/models?key=SECRET-GEMINI-KEY"))
        .send()
        .unwrap();
    // Envoy flushes access logs periodically; wait for the line.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut log = String::new();
    while Instant::now() < deadline {
        log = gw.access_log();
        if !log.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let line: serde_json::Value =
        serde_json::from_str(log.lines().next().expect("an access log line")).unwrap();
    assert_eq!(line["path"], "/v1/models");
    assert_eq!(line["status"], 200);
    assert!(!log.contains("SECRET-GEMINI-KEY"));
}
