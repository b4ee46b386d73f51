//! Access control through the real Envoy: forward keys → pooled upstream keys, 401 for unknown keys,
//! key locations of general routes, model permissions and routing, key cooldowns, IP lists, and no
//! upstream key in any log line, stat or rendered config.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::access::{ForwardKeyConfig, ModelTargetConfig, UpstreamKeyConfig};
use llm_forward_core::config::{Config, RouteConfig, RouteKind};
use llm_forward_integration_tests::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Command;

// Distinctive upstream keys, so a grep for them in logs and stats means something.
const SK_A: &str = "sk-upstream-secret-aaaa1111";
const SK_B: &str = "sk-upstream-secret-bbbb2222";
const SK_C: &str = "sk-upstream-secret-cccc3333";

fn mock() -> MockUpstream {
    MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

fn up(key: &str, levels: &[u32]) -> UpstreamKeyConfig {
    UpstreamKeyConfig {
        key: Some(key.into()),
        file: None,
        levels: levels.to_vec(),
        routes: vec![],
    }
}

fn fwd(name: &str, key: &str, level: u32) -> ForwardKeyConfig {
    ForwardKeyConfig {
        name: Some(name.into()),
        key: key.into(),
        level,
    }
}

/// sk-a, sk-b serve levels 0 and 1; sk-c serves level 2. admin = 0, alice = 1, bob = 2.
fn keyed_config(base_url: &str) -> Config {
    let mut c = config_for(base_url);
    c.keys.upstream = vec![up(SK_A, &[0, 1]), up(SK_B, &[0, 1]), up(SK_C, &[2])];
    c.keys.forward = vec![
        fwd("admin", "fk-admin", 0),
        fwd("alice", "fk-alice", 1),
        fwd("bob", "fk-bob", 2),
    ];
    c.keys
        .levels
        .insert(1, vec!["gpt-4o-mini".into(), "gpt-3.5*".into()]);
    c.keys.levels.insert(2, vec!["gpt-4o".into()]);
    c
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

fn post_chat(gw: &Gateway, key: Option<&str>, body: &Value) -> reqwest::blocking::Response {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-mock-chunks", "1")
        .json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    req.send().unwrap()
}

/// Nothing the gateway printed, logged or counted contains an upstream key: Envoy's output, the
/// access and chat logs, stats, and every admin page but `/config_dump` (the plugin config holds
/// the config's literal keys; the admin is a private socket). The rendered file may hold literal
/// keys too, so it must be readable by the user only.
fn assert_no_leak(gw: &Gateway, keys: &[&str]) {
    let admin = |path: &str| {
        llm_forward_gateway::envoy::admin_get(&gw.admin_addr(), path)
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    let mut sources = vec![
        ("envoy output".to_string(), gw.envoy_output()),
        ("access log".to_string(), gw.access_log()),
        ("stats".to_string(), gw.stats()),
    ];
    for page in [
        "/stats/prometheus",
        "/clusters",
        "/listeners",
        "/server_info",
        "/runtime",
        "/certs",
    ] {
        sources.push((format!("admin {page}"), admin(page)));
    }
    for entry in std::fs::read_dir(&gw.dir.0).unwrap().flatten() {
        let chat = entry.path().join("chat.log");
        if chat.is_file() {
            let text = std::fs::read_to_string(&chat).unwrap();
            sources.push((chat.display().to_string(), text));
        }
    }
    for (what, text) in sources {
        for k in keys {
            assert!(
                !text.contains(k),
                "{what} contains an upstream key:\n{text}"
            );
        }
    }
    use std::os::unix::fs::PermissionsExt;
    let rendered = gw.dir.0.join("envoy.yaml");
    let mode = std::fs::metadata(&rendered).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the rendered config is readable by others");
}

#[test]
fn four_requests_of_one_level_rotate_sk_a_sk_b_across_workers() {
    let upstream = mock();
    let gw = Gateway::start(keyed_config(&upstream.base_url()));
    for _ in 0..4 {
        // A fresh connection each time, so the requests spread over both workers.
        let resp = post_chat(&gw, Some("fk-alice"), &chat("gpt-4o-mini"));
        assert_eq!(resp.status(), 200, "{}", resp.text().unwrap());
    }
    let seen: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        seen,
        vec![
            format!("Bearer {SK_A}"),
            format!("Bearer {SK_B}"),
            format!("Bearer {SK_A}"),
            format!("Bearer {SK_B}"),
        ]
    );
    // Level 2 has its own pool.
    post_chat(&gw, Some("fk-bob"), &chat("gpt-4o"));
    assert_eq!(
        upstream.requests()[4].header("authorization"),
        Some(format!("Bearer {SK_C}").as_str())
    );
    assert_no_leak(&gw, &[SK_A, SK_B, SK_C]);
}

#[test]
fn model_permission_follows_the_level() {
    let upstream = mock();
    let gw = Gateway::start(keyed_config(&upstream.base_url()));

    let resp = post_chat(&gw, Some("fk-alice"), &chat("gpt-4o"));
    assert_eq!(resp.status(), 403);
    let (_, code) = openai_error(&resp.bytes().unwrap());
    assert_eq!(code, "model_not_allowed");
    assert_eq!(
        upstream.request_count(),
        0,
        "a denied model never goes upstream"
    );

    assert_eq!(
        post_chat(&gw, Some("fk-alice"), &chat("gpt-4o-mini")).status(),
        200
    );
    assert_eq!(
        post_chat(&gw, Some("fk-alice"), &chat("gpt-3.5-turbo")).status(),
        200
    );
    assert_eq!(
        post_chat(&gw, Some("fk-bob"), &chat("gpt-4o")).status(),
        200
    );
    assert_eq!(
        post_chat(&gw, Some("fk-bob"), &chat("gpt-4o-mini")).status(),
        403
    );
    assert_eq!(
        post_chat(&gw, Some("fk-admin"), &chat("o3-anything")).status(),
        200
    );
    // Embeddings and completions are checked too; other paths are not.
    let resp = client()
        .post(gw.url("/v1/embeddings"))
        .bearer_auth("fk-alice")
        .json(&json!({"model": "text-embedding-3-large", "input": "x"}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = client()
        .get(gw.url("/v1/models"))
        .bearer_auth("fk-alice")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.request_count(), 5);
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.access.model_denied_total"),
        Some(3)
    );
    // The upstream got the body as sent (no rename configured).
    let sent = upstream.requests()[0].json().unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
}

#[test]
fn unknown_or_missing_key_is_401_and_the_upstream_never_sees_it() {
    let upstream = mock();
    let own = mock();
    let mut c = keyed_config(&upstream.base_url());
    let mut pass = RouteConfig::new("/own", &own.base_url(), RouteKind::Openai);
    pass.pass_through_unknown_keys = true;
    c.routes.push(pass);
    let gw = Gateway::start(c);

    for key in [Some("fk-nobody"), Some(SK_A), None] {
        let resp = post_chat(&gw, key, &chat("gpt-4o-mini"));
        assert_eq!(resp.status(), 401, "key {key:?}");
        let (kind, code) = openai_error(&resp.bytes().unwrap());
        assert_eq!(
            (kind.as_str(), code.as_str()),
            ("invalid_request_error", "invalid_api_key")
        );
    }
    // `Token fk-alice` is not a Bearer token (OpenAI-Forward accepted any 7-character scheme).
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Token  fk-alice")
        .json(&chat("gpt-4o-mini"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(upstream.request_count(), 0);
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.local_reply.401.total"),
        Some(4)
    );

    // pass_through_unknown_keys: the client's own key goes upstream unchanged; forward keys still swap.
    let resp = client()
        .post(gw.url("/own/v1/chat/completions"))
        .bearer_auth("sk-clients-own")
        .json(&chat("gpt-4o"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        own.requests()[0].header("authorization"),
        Some("Bearer sk-clients-own")
    );
    let resp = client()
        .post(gw.url("/own/v1/chat/completions"))
        .bearer_auth("fk-alice")
        .json(&chat("gpt-4o-mini"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(own.requests()[1]
        .header("authorization")
        .unwrap()
        .starts_with("Bearer sk-upstream-secret-"));
}

#[test]
fn without_forward_keys_requests_pass_unchanged_and_forward_keys_alone_are_stripped() {
    let upstream = mock();
    let gw = Gateway::start(config_for(&upstream.base_url()));
    let resp = post_chat(&gw, Some("sk-whatever"), &chat("gpt-4o"));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        upstream.requests()[0].header("authorization"),
        Some("Bearer sk-whatever")
    );
    drop(gw);

    // Forward keys without upstream keys authenticate clients; the upstream gets no key at all.
    let upstream = mock();
    let mut c = config_for(&upstream.base_url());
    c.keys.forward = vec![fwd("alice", "fk-alice", 0)];
    let gw = Gateway::start(c);
    assert_eq!(
        post_chat(&gw, Some("fk-alice"), &chat("llama3")).status(),
        200
    );
    assert_eq!(upstream.requests()[0].header("authorization"), None);
    assert_eq!(
        post_chat(&gw, Some("fk-bob"), &chat("llama3")).status(),
        401
    );
}

#[test]
fn general_routes_swap_keys_in_their_header_or_query_parameter() {
    let openai = mock();
    let gemini = mock();
    let azure = mock();
    let mut c = keyed_config(&openai.base_url());
    let mut g = RouteConfig::new("/gemini", &gemini.base_url(), RouteKind::General);
    g.key_location = Some("x-goog-api-key".into());
    c.routes.push(g);
    let mut q = RouteConfig::new("/gemini-q", &gemini.base_url(), RouteKind::General);
    q.key_location = Some("query:key".into());
    c.routes.push(q);
    let mut a = RouteConfig::new("/azure", &azure.base_url(), RouteKind::General);
    a.key_location = Some("api-key".into());
    c.routes.push(a);
    // A Gemini key that serves only the Gemini routes.
    c.keys.upstream.push(UpstreamKeyConfig {
        routes: vec!["/gemini".into(), "/gemini-q".into()],
        ..up("AIza-gemini-secret-key", &[0, 1, 2])
    });
    let gw = Gateway::start(c);

    let resp = client()
        .post(gw.url("/gemini/v1beta/echo/gemini-pro:generateContent"))
        .header("x-goog-api-key", "fk-alice")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = &gemini.requests()[0];
    // The pool of level 1 on this route: sk-a, sk-b and the Gemini key, rotating.
    let key = seen.header("x-goog-api-key").unwrap().to_string();
    assert!(
        key == SK_A || key == SK_B || key == "AIza-gemini-secret-key",
        "{key}"
    );
    assert_eq!(seen.header("authorization"), None);

    // Query parameter: the forward key is replaced, the other parameters stay.
    for i in 0..3 {
        let resp = client()
            .get(gw.url(&format!("/gemini-q/v1beta/echo?alt=json&key=fk-bob&n={i}")))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let paths: Vec<String> = gemini.requests()[1..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    // Level 2 on /gemini-q: sk-c and the Gemini key, alternating.
    assert_eq!(
        paths,
        vec![
            format!("/v1beta/echo?alt=json&key={SK_C}&n=0"),
            "/v1beta/echo?alt=json&key=AIza-gemini-secret-key&n=1".to_string(),
            format!("/v1beta/echo?alt=json&key={SK_C}&n=2"),
        ]
    );
    let resp = client()
        .get(gw.url("/gemini-q/v1beta/echo?key=fk-wrong"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Azure's api-key header; the Gemini-only key is never used here.
    for _ in 0..3 {
        let resp = client()
            // The deployment names the model: one level 1 may use.
            .post(gw.url("/azure/openai/deployments/gpt-4o-mini/echo"))
            .header("api-key", "fk-alice")
            .body("{}")
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    for r in azure.requests() {
        let k = r.header("api-key").unwrap();
        assert!(k == SK_A || k == SK_B, "{k}");
    }
    let log = gw.access_log();
    assert!(
        !log.contains("key="),
        "query strings stay out of the access log:\n{log}"
    );
    assert_no_leak(&gw, &[SK_A, SK_B, SK_C, "AIza-gemini-secret-key"]);
}

#[test]
fn model_routing_sends_qwen_to_the_second_upstream_with_rename() {
    let openai = mock();
    let local = mock();
    let mut c = keyed_config(&openai.base_url());
    c.keys.levels.insert(
        1,
        vec!["gpt-4o-mini".into(), "qwen*".into(), "gpt-3.5*".into()],
    );
    c.routes[0].models = vec![
        ModelTargetConfig {
            pattern: "qwen*".into(),
            base_url: format!("{}/v1-local", local.base_url()),
            rename: None,
        },
        ModelTargetConfig {
            pattern: "gpt-3.5-turbo".into(),
            base_url: local.base_url(),
            rename: Some("qwen2:7b".into()),
        },
        ModelTargetConfig {
            pattern: "qwen-long".into(),
            base_url: local.base_url(),
            rename: Some("qwen2.5:72b-instruct-q4_K_M-long-name".into()),
        },
    ];
    let gw = Gateway::start(c);

    assert_eq!(
        post_chat(&gw, Some("fk-alice"), &chat("qwen-7b")).status(),
        200
    );
    assert_eq!(local.request_count(), 1);
    assert_eq!(openai.request_count(), 0);
    let seen = &local.requests()[0];
    assert_eq!(seen.path, "/v1-local/v1/chat/completions");
    assert_eq!(seen.json().unwrap()["model"], "qwen-7b");
    assert_eq!(
        seen.header("x-llm-forward-target"),
        None,
        "routing header removed"
    );

    // Unmatched models take the route's own upstream; a client cannot pick a target itself.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("fk-alice")
        .header("x-llm-forward-target", "0")
        .json(&chat("gpt-4o-mini"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(openai.request_count(), 1);
    assert_eq!(openai.requests()[0].header("x-llm-forward-target"), None);

    // Rename to a shorter and to a longer name, each followed by a request on the same connection:
    // a stale content-length would hang the first or spill into the second.
    let mut conn = RawConnection::connect(gw.addr());
    for (model, renamed) in [
        ("gpt-3.5-turbo", "qwen2:7b"),
        ("qwen-long", "qwen2.5:72b-instruct-q4_K_M-long-name"),
    ] {
        let body = serde_json::to_vec(&chat(model)).unwrap();
        let resp = conn.request(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", "Bearer fk-alice"),
                ("content-type", "application/json"),
            ],
            &body,
        );
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let seen = local.requests().last().cloned().unwrap();
        let sent = seen.json().unwrap_or_else(|| {
            panic!(
                "not JSON upstream: {:?}",
                String::from_utf8_lossy(&seen.body)
            )
        });
        assert_eq!(sent["model"], renamed);
        assert_eq!(sent["messages"][0]["content"], "hi");
        let expected_len = serde_json::to_vec(&sent).unwrap().len();
        assert_eq!(seen.body.len(), expected_len);
        if let Some(cl) = seen.header("content-length") {
            assert_eq!(cl, expected_len.to_string());
        }
        let resp = conn.request(
            "GET",
            "/v1/models",
            &[("authorization", "Bearer fk-alice")],
            b"",
        );
        assert_eq!(resp.status, 200);
    }
    assert_eq!(openai.requests().last().unwrap().path, "/v1/models");
    assert_eq!(openai.requests().last().unwrap().method, "GET");
    assert_eq!(local.request_count(), 3);
    // Model permission is checked on the client's model name, before routing.
    assert_eq!(
        post_chat(&gw, Some("fk-bob"), &chat("qwen-7b")).status(),
        403
    );
    assert_eq!(local.request_count(), 3);
    assert_no_leak(&gw, &[SK_A, SK_B, SK_C]);
}

#[test]
fn a_key_answered_429_cools_down_and_is_skipped() {
    let upstream = mock();
    let gw = Gateway::start(keyed_config(&upstream.base_url()));
    upstream.fail_key(&format!("Bearer {SK_A}"), 429, 1);

    let first = post_chat(&gw, Some("fk-alice"), &chat("gpt-4o-mini"));
    assert_eq!(first.status(), 429, "the upstream's answer passes through");
    for _ in 0..4 {
        assert_eq!(
            post_chat(&gw, Some("fk-alice"), &chat("gpt-4o-mini")).status(),
            200
        );
    }
    let seen: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    let b = format!("Bearer {SK_B}");
    assert_eq!(seen[0], format!("Bearer {SK_A}"));
    assert_eq!(
        seen[1..],
        [b.clone(), b.clone(), b.clone(), b],
        "sk-a is cooling"
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.upstream_key_cooldowns_total"),
        Some(1)
    );
    let out = gw.envoy_output();
    assert!(out.contains("upstream key #0 answered 429"), "{out}");
    assert_no_leak(&gw, &[SK_A, SK_B, SK_C]);
}

#[test]
fn when_every_key_cools_the_least_recently_failed_is_used() {
    let upstream = mock();
    let mut c = keyed_config(&upstream.base_url());
    c.keys.cooldown_seconds = 600;
    let gw = Gateway::start(c);
    upstream.fail_key(&format!("Bearer {SK_A}"), 401, 1);
    upstream.fail_key(&format!("Bearer {SK_B}"), 403, 1);
    assert_eq!(
        post_chat(&gw, Some("fk-alice"), &chat("gpt-4o-mini")).status(),
        401
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        post_chat(&gw, Some("fk-alice"), &chat("gpt-4o-mini")).status(),
        403
    );
    for _ in 0..2 {
        assert_eq!(
            post_chat(&gw, Some("fk-alice"), &chat("gpt-4o-mini")).status(),
            200
        );
    }
    let seen: Vec<String> = upstream
        .requests()
        .iter()
        .map(|r| r.header("authorization").unwrap_or("").to_string())
        .collect();
    let a = format!("Bearer {SK_A}");
    assert_eq!(
        seen,
        vec![a.clone(), format!("Bearer {SK_B}"), a.clone(), a]
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.upstream_key_cooldowns_total"),
        Some(2)
    );
}

#[test]
fn x_forwarded_for_does_not_bypass_a_deny_list_at_zero_trusted_hops() {
    let upstream = mock();
    let mut c = config_for(&upstream.base_url());
    c.ip.deny = vec!["127.0.0.0/8".into()];
    let gw = Gateway::start(c);
    for xff in [None, Some("1.2.3.4"), Some("1.2.3.4, 5.6.7.8")] {
        let mut req = client()
            .post(gw.url("/v1/chat/completions"))
            .json(&chat("gpt-4o"));
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status(), 403, "xff {xff:?}");
        let (kind, code) = openai_error(&resp.bytes().unwrap());
        assert_eq!(
            (kind.as_str(), code.as_str()),
            ("permission_error", "ip_not_allowed")
        );
    }
    assert_eq!(upstream.request_count(), 0);
    // /healthz is exempt.
    assert_eq!(
        client().get(gw.url("/healthz")).send().unwrap().status(),
        200
    );
    drop(gw);

    // An allow list is not satisfied by a spoofed XFF either.
    let mut c = config_for(&upstream.base_url());
    c.ip.allow = vec!["10.0.0.0/8".into()];
    let gw = Gateway::start(c);
    let resp = client()
        .get(gw.url("/v1/models"))
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.access.ip_denied_total"),
        Some(1)
    );
}

#[test]
fn ipv6_cidrs_match_a_trusted_xff_and_a_real_ipv6_client() {
    let upstream = mock();
    let mut c = config_for(&upstream.base_url());
    c.server.xff_num_trusted_hops = 1;
    c.ip.allow = vec!["2001:db8::/32".into(), "127.0.0.1".into()];
    c.ip.deny = vec!["2001:db8:bad::/48".into()];
    let gw = Gateway::start(c);
    let get = |xff: &str| {
        client()
            .get(gw.url("/v1/models"))
            .header("x-forwarded-for", xff)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(get("2001:db8::7"), 200);
    assert_eq!(get("2001:db8:ffff::1"), 200);
    assert_eq!(get("2001:db9::1"), 403);
    assert_eq!(get("2001:db8:bad::1"), 403);
    assert_eq!(get("10.0.0.1"), 403);
    assert_eq!(upstream.request_count(), 2);
    drop(gw);

    // A listener on ::1: the socket peer itself is IPv6.
    let mut c = config_for(&upstream.base_url());
    c.server.address = "::1".into();
    c.ip.allow = vec!["::1/128".into()];
    let gw = Gateway::start(c);
    let url = format!("http://[::1]:{}/v1/models", gw.config.server.port);
    assert_eq!(client().get(&url).send().unwrap().status(), 200);
    drop(gw);
    let mut c = config_for(&upstream.base_url());
    c.server.address = "::1".into();
    c.ip.allow = vec!["2001:db8::/32".into()];
    let gw = Gateway::start(c);
    let url = format!("http://[::1]:{}/v1/models", gw.config.server.port);
    assert_eq!(client().get(&url).send().unwrap().status(), 403);
}

#[test]
fn malformed_json_is_400_and_multipart_is_never_buffered() {
    let upstream = mock();
    let mut c = keyed_config(&upstream.base_url());
    c.server.buffer_limit_bytes = 64 * 1024;
    let gw = Gateway::start(c);
    for body in ["{not json", "[1,2]", r#"{"model": 4}"#] {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .bearer_auth("fk-alice")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let (_, code) = openai_error(&resp.bytes().unwrap());
        assert_eq!(code, "invalid_json");
    }
    assert_eq!(upstream.request_count(), 0);

    // A multipart body larger than the buffer limit streams through for an unrestricted key (it
    // would get 413 if the filter held it), and a JSON body of that size is held and refused.
    let big = "x".repeat(200 * 1024);
    let multipart =
        format!("--b\r\ncontent-disposition: form-data; name=\"file\"\r\n\r\n{big}\r\n--b--\r\n");
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("fk-admin")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(multipart.clone())
        .send()
        .unwrap();
    // The mock's own answer to a non-JSON chat body, not the gateway's 413.
    assert_eq!(resp.status(), 400);
    assert_eq!(openai_error(&resp.bytes().unwrap()).1, "invalid_request");
    assert_eq!(upstream.requests()[0].body.len(), multipart.len());
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("fk-alice")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": big}]}))
        .send()
        .unwrap();
    assert_eq!(
        resp.status(),
        413,
        "a JSON body on a checked path is buffered"
    );
    // A restricted key cannot dodge the model check with a non-JSON content type.
    let resp = client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("fk-alice")
        .header("content-type", "multipart/form-data; boundary=b")
        .body(serde_json::to_vec(&chat("gpt-4o")).unwrap())
        .send()
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(upstream.request_count(), 1);
}

#[test]
fn env_secrets_are_passed_by_envoy_and_never_rendered() {
    // The variable exists only in this test process (and so in the Envoy it starts).
    let secret = "sk-from-the-environment-9f8e7d";
    std::env::set_var("LLMF_IT_ACCESS_UPSTREAM_KEY", secret);
    std::env::set_var("LLMF_IT_ACCESS_FORWARD_KEY", "fk-from-env");
    let upstream = mock();
    let mut c = config_for(&upstream.base_url());
    c.keys.upstream = vec![up("${LLMF_IT_ACCESS_UPSTREAM_KEY}", &[0])];
    c.keys.forward = vec![fwd("envy", "${LLMF_IT_ACCESS_FORWARD_KEY}", 0)];

    // `llm-forward render` output holds the reference and the pass-through list, not the key.
    let dir = TempDir::new("access-render");
    let yaml = dir.0.join("llm-forward.yaml");
    std::fs::write(&yaml, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    let out = Command::new(gateway_bin())
        .args(["render", "--config"])
        .arg(&yaml)
        .output()
        .unwrap();
    let rendered = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!rendered.contains(secret), "{rendered}");
    assert!(!rendered.contains("fk-from-env"), "{rendered}");
    assert!(
        rendered.contains("${LLMF_IT_ACCESS_UPSTREAM_KEY}"),
        "{rendered}"
    );
    assert!(rendered.contains("host_env_keys"), "{rendered}");

    let gw = Gateway::start(c);
    assert_eq!(
        post_chat(&gw, Some("fk-from-env"), &chat("gpt-4o")).status(),
        200
    );
    assert_eq!(
        upstream.requests()[0].header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
    assert_eq!(
        post_chat(&gw, Some("${LLMF_IT_ACCESS_FORWARD_KEY}"), &chat("gpt-4o")).status(),
        401
    );
    assert_no_leak(&gw, &[secret]);
}

#[test]
fn file_secrets_reach_envoy_through_run_and_the_banner_counts_keys() {
    let secret = "sk-from-a-secret-file-4c3b2a";
    let upstream = mock();
    let dir = TempDir::new("access-run");
    let key_file = dir.0.join("openai.key");
    std::fs::write(&key_file, format!("{secret}\n")).unwrap();
    let mut c = config_for(&upstream.base_url());
    c.log_dir = dir.0.join("logs").display().to_string();
    c.keys.upstream = vec![UpstreamKeyConfig {
        key: None,
        file: Some(key_file.display().to_string()),
        levels: vec![0],
        routes: vec![],
    }];
    c.keys.forward = vec![fwd("alice", "fk-alice", 0)];
    c.ip.allow = vec!["127.0.0.1".into()];
    let yaml = dir.0.join("llm-forward.yaml");
    std::fs::write(&yaml, serde_json::to_string_pretty(&c).unwrap()).unwrap();
    let stdout = std::fs::File::create(dir.0.join("run.out")).unwrap();
    let mut child = Command::new(gateway_bin())
        .args(["run", "--config"])
        .arg(&yaml)
        .arg("--wasm")
        .arg(wasm_path())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stdout)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{}/v1/chat/completions", c.server.port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        let r = client()
            .post(&url)
            .bearer_auth("fk-alice")
            .json(&chat("gpt-4o"))
            .send();
        match r {
            Ok(resp) => break resp.status(),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "gateway did not start: {e}\n{}",
                    std::fs::read_to_string(dir.0.join("run.out")).unwrap_or_default()
                );
            }
        }
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let out = std::fs::read_to_string(dir.0.join("run.out")).unwrap_or_default();
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        upstream.requests()[0].header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
    assert!(out.contains("1 upstream, 1 forward"), "{out}");
    assert!(!out.contains(secret), "{out}");
    let access_log = std::fs::read_to_string(dir.0.join("logs/access.log")).unwrap_or_default();
    assert!(!access_log.contains(secret));
}

/// Model permission fails closed: every endpoint whose body, form or path names a model is
/// checked for restricted levels (alice: gpt-4o-mini and gpt-3.5*), and a request whose model
/// cannot be determined is refused. None of the refused requests reach the upstream.
#[test]
fn restricted_levels_are_checked_on_every_model_bearing_endpoint() {
    let upstream = mock();
    let mut c = keyed_config(&upstream.base_url());
    c.routes.push(RouteConfig::new(
        "/gemini",
        &upstream.base_url(),
        RouteKind::General,
    ));
    let gw = Gateway::start(c);
    let post = |path: &str, key: &str, content_type: &str, body: Vec<u8>| {
        let resp = client()
            .post(gw.url(path))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.bytes().unwrap().to_vec())
    };
    let json_body = |v: Value| serde_json::to_vec(&v).unwrap();
    let multipart = |model: &str| {
        format!(
            "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp3\"\r\n\
             Content-Type: audio/mpeg\r\n\r\nID3-not-really-audio\r\n--b0undary\r\n\
             Content-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n--b0undary--\r\n"
        )
        .into_bytes()
    };
    const MP: &str = "multipart/form-data; boundary=b0undary";
    const JS: &str = "application/json";
    let refused: Vec<(&str, &str, Vec<u8>)> = vec![
        // The Responses API, images, moderations: the JSON `model`.
        (
            "/v1/responses",
            JS,
            json_body(json!({"model": "gpt-4o", "input": "hi"})),
        ),
        (
            "/v1/images/generations",
            JS,
            json_body(json!({"model": "dall-e-3", "prompt": "a cat"})),
        ),
        (
            "/v1/moderations",
            JS,
            json_body(json!({"model": "omni-moderation-latest", "input": "x"})),
        ),
        // Audio uploads: the multipart `model` field.
        ("/v1/audio/transcriptions", MP, multipart("whisper-1")),
        // Azure and Gemini name the model in the path.
        (
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            JS,
            json_body(json!({"messages": []})),
        ),
        (
            "/gemini/v1beta/models/gemini-1.5-pro:generateContent",
            JS,
            json_body(json!({"contents": []})),
        ),
        // The model cannot be determined: unparsable, missing, two fields, a type naming none.
        ("/v1/responses", JS, b"{not json".to_vec()),
        ("/v1/responses", JS, json_body(json!({"input": "no model"}))),
        (
            "/v1/responses",
            JS,
            br#"{"model":"gpt-4o-mini","model":"gpt-4o","input":"x"}"#.to_vec(),
        ),
        ("/v1/responses", "text/plain", b"gpt-4o".to_vec()),
        ("/v1/audio/transcriptions", MP, {
            let mut two = multipart("gpt-4o-mini");
            two.truncate(two.len() - "--b0undary--\r\n".len());
            two.extend_from_slice(
                b"--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o\r\n--b0undary--\r\n",
            );
            two
        }),
        // Batches carry their model inside an uploaded file.
        (
            "/v1/batches",
            JS,
            json_body(json!({"input_file_id": "file-1", "endpoint": "/v1/chat/completions"})),
        ),
    ];
    for (path, ct, body) in &refused {
        let (status, reply) = post(path, "fk-alice", ct, body.clone());
        assert_eq!(
            status,
            403,
            "{path} {ct}: {}",
            String::from_utf8_lossy(&reply)
        );
        let (_, code) = openai_error(&reply);
        assert_eq!(code, "model_not_allowed", "{path}");
    }
    // Dot segments could make the upstream read another deployment than the one checked.
    let mut raw = RawConnection::connect(gw.addr());
    let resp = raw.request(
        "POST",
        "/openai/deployments/gpt-4o-mini/../gpt-4o/chat/completions",
        &[
            ("authorization", "Bearer fk-alice"),
            ("content-type", "application/json"),
        ],
        br#"{"messages":[]}"#,
    );
    assert_eq!(resp.status, 403);
    // Two content types: the upstream might read the body as the other one.
    let mut raw = RawConnection::connect(gw.addr());
    let resp = raw.request(
        "POST",
        "/v1/responses",
        &[
            ("authorization", "Bearer fk-alice"),
            ("content-type", "application/json"),
            ("content-type", "multipart/form-data; boundary=b0undary"),
        ],
        br#"{"model":"gpt-4o-mini","input":"x"}"#,
    );
    assert_eq!(resp.status, 403);
    // (Envoy joins the two values into one, which is no type the model is read from.)
    assert_eq!(openai_error(&resp.body).1, "model_not_allowed");
    // A restricted POST without a body names no model.
    let resp = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth("fk-alice")
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(upstream.request_count(), 0, "nothing refused went upstream");

    // Allowed models pass, on each form, bodies intact.
    let allowed: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "/v1/responses",
            JS,
            json_body(json!({"model": "gpt-4o-mini", "input": "hi"})),
        ),
        ("/v1/audio/transcriptions", MP, multipart("gpt-4o-mini")),
        (
            "/openai/deployments/gpt-4o-mini/chat/completions",
            JS,
            json_body(json!({"messages": []})),
        ),
        (
            "/gemini/v1beta/models/gpt-3.5-turbo:generateContent",
            JS,
            json_body(json!({"contents": []})),
        ),
    ];
    for (i, (path, ct, body)) in allowed.iter().enumerate() {
        let (status, reply) = post(path, "fk-alice", ct, body.clone());
        assert_ne!(status, 403, "{path}: {}", String::from_utf8_lossy(&reply));
        let seen = upstream.requests();
        assert_eq!(seen.len(), i + 1, "{path} went upstream");
        assert_eq!(&seen[i].body, body, "{path}: body forwarded as sent");
        let auth = seen[i].header("authorization").unwrap_or("");
        assert!(
            [SK_A, SK_B].iter().any(|k| auth == format!("Bearer {k}")),
            "{path}: the pooled key, got {auth}"
        );
    }
    // Level 0 may use every model, whatever the form.
    for (path, ct, body) in &refused[..6] {
        let (status, _) = post(path, "fk-admin", ct, body.clone());
        assert_ne!(status, 403, "{path}");
    }
    assert_eq!(upstream.request_count(), allowed.len() + 6);
}

/// A body the model check must read but the worker's memory budget cannot hold is refused with an
/// OpenAI-shaped 413, never forwarded unchecked; a key that needs no check streams it through.
#[test]
fn a_body_past_the_worker_memory_budget_is_413_for_a_restricted_key() {
    let upstream = mock();
    let mut c = keyed_config(&upstream.base_url());
    c.server.worker_memory_budget_bytes = 1024 * 1024;
    let gw = Gateway::start(c);
    let big = chat("gpt-4o");
    let mut big = big;
    big["messages"][0]["content"] = json!("x".repeat(1536 * 1024));
    let resp = post_chat(&gw, Some("fk-alice"), &big);
    assert_eq!(resp.status(), 413);
    let (_, code) = openai_error(&resp.bytes().unwrap());
    assert_eq!(code, "request_too_large");
    assert_eq!(upstream.request_count(), 0, "never forwarded unchecked");
    // Level 0: nothing needs the body, it is not held.
    let resp = post_chat(&gw, Some("fk-admin"), &big);
    assert_eq!(resp.status(), 200);
    assert_eq!(upstream.request_count(), 1);
    // Bodies that fit are held, checked and released: one after another, each 700 KB body fits
    // again (a reservation that outlived its request would refuse the second).
    let mut fits = chat("gpt-4o-mini");
    fits["messages"][0]["content"] = json!("y".repeat(700 * 1024));
    for _ in 0..4 {
        assert_eq!(post_chat(&gw, Some("fk-alice"), &fits).status(), 200);
    }
    // Small bodies are still checked and served.
    assert_eq!(
        post_chat(&gw, Some("fk-alice"), &chat("gpt-4o")).status(),
        403
    );
    assert_eq!(
        post_chat(&gw, Some("fk-alice"), &chat("gpt-4o-mini")).status(),
        200
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.memory.over_budget_total"),
        Some(1)
    );
}
