//! OpenAI-Forward migration: `llm-forward run` started in a folder holding OpenAI-Forward's shipped
//! `.env` serves it (forward keys, a rate limit, caching), and `llm-forward migrate` turns it into an
//! `llm-forward.yaml` that `render` accepts.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_gateway::http_server::ListenAddr;
use llm_forward_integration_tests::*;
use serde_json::json;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// OpenAI-Forward HEAD's shipped `.env` (reference §9) with the upstream pointed at the mock, a small
/// limit on /v1/models, and keys and levels added.
fn shipped_env(upstream: &str) -> String {
    format!(
        r#"LOG_GENERAL=true
LOG_OPENAI=true

CACHE_GENERAL=true
CACHE_OPENAI=true
CACHE_ROUTES=["/v1/chat/completions","/v1/embeddings"]
# `CACHE_BACKEND`: Options (MEMORY, LMDB, LevelDB)
CACHE_BACKEND=MEMORY

FORWARD_CONFIG=[{{"base_url":"{upstream}","route":"/","type":"openai"}}]

OPENAI_API_KEY_CONFIG={{"sk-real-upstream-a": [0, 1]}}
FORWARD_KEY_CONFIG={{"0": ["fk-admin-secret"], "1": ["fk-user-secret"]}}
LEVEL_MODELS={{"1": ["gpt-4o-mini"]}}

# `REQ_RATE_LIMIT`: i.e., Request rate limit
REQ_RATE_LIMIT='{{
"/v1/chat/completions":[{{"level":0,"limit":"100/2minutes"}}],
"/v1/completions":[{{"level":0,"limit":"60/minute;600/hour"}}],
"/v1/models":[{{"level":0,"limit":"2/minute"}}]
}}'

GLOBAL_RATE_LIMIT=200/minute
RATE_LIMIT_STRATEGY=moving-window

TOKEN_RATE_LIMIT='{{
"/v1/chat/completions":[{{"level":0,"limit":"100/second"}}],
"/v1/completions":[{{"level":0,"limit":"60/second"}}],
"/benchmark/v1/chat/completions":[{{"level":0,"limit":"20/second"}}]
}}'

TIMEOUT=6
ITER_CHUNK_TYPE=one-by-one
BENCHMARK_MODE=true
DEFAULT_STREAM_RESPONSE=true
TZ=Asia/Shanghai

# Overridden by the real environment (python-dotenv's override=False).
LLM_FORWARD_PORT=1
"#
    )
}

fn chat_body(model: &str, text: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[test]
fn run_in_a_folder_with_openai_forwards_shipped_env() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dir = TempDir::new("migrate-run");
    std::fs::write(dir.0.join(".env"), shipped_env(&up.base_url())).unwrap();
    let (port, admin) = (free_port(), free_port());
    let gw = start_in(&dir, port, admin);
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    let output = gw.output();

    // One warning line per unused key, naming it; the keys' values never appear.
    for key in [
        "LOG_GENERAL",
        "ITER_CHUNK_TYPE",
        "BENCHMARK_MODE",
        "DEFAULT_STREAM_RESPONSE",
        "TZ",
    ] {
        let n = output
            .lines()
            .filter(|l| l.contains(&format!("{key} is ignored")))
            .count();
        assert_eq!(n, 1, "{key}:\n{output}");
    }
    for secret in ["sk-real-upstream-a", "fk-admin-secret", "fk-user-secret"] {
        assert!(!output.contains(secret), "a key was printed:\n{output}");
    }
    // Neither is any key in the Envoy config written to disk.
    let runtime = gw.runtime_dir();
    let mut files = 0;
    for entry in std::fs::read_dir(&runtime).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        files += 1;
        for secret in ["sk-real-upstream-a", "fk-admin-secret", "fk-user-secret"] {
            assert!(!text.contains(secret), "a key was rendered to disk");
        }
        if text.contains("host_env_keys") {
            assert!(text.contains("LLM_FORWARD_UPSTREAM_KEY_0"));
        }
    }
    assert!(files > 0, "no Envoy config in {}", runtime.display());

    // Forward keys: fk → sk swap seen upstream; an unknown key is refused locally.
    let ok = client()
        .post(url("/v1/chat/completions"))
        .bearer_auth("fk-admin-secret")
        .json(&chat_body("gpt-4o", "hello"))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header("authorization"),
        Some("Bearer sk-real-upstream-a")
    );
    let refused = client()
        .post(url("/v1/chat/completions"))
        .bearer_auth("fk-unknown")
        .json(&chat_body("gpt-4o", "hello"))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);
    // LEVEL_MODELS: level 1 may use gpt-4o-mini only.
    let denied = client()
        .post(url("/v1/chat/completions"))
        .bearer_auth("fk-user-secret")
        .json(&chat_body("gpt-4o", "hello"))
        .send()
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert_eq!(
        up.request_count(),
        1,
        "refused requests never reach upstream"
    );
    // LOG_OPENAI: the exchange is in the route's chat log within a couple of seconds (`run` sets
    // Envoy's file flush interval to 1 s; Envoy's own default is 10 s).
    let chat_log = dir.0.join("Log/root/chat.log");
    let deadline = Instant::now() + Duration::from_secs(4);
    while std::fs::read_to_string(&chat_log).map_or(true, |t| !t.contains("\"hello\"")) {
        assert!(
            Instant::now() < deadline,
            "no chat log line in {} after 4 s",
            chat_log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // REQ_RATE_LIMIT: /v1/models allows 2 a minute for level 0.
    let statuses: Vec<u16> = (0..3)
        .map(|_| {
            client()
                .get(url("/v1/models"))
                .bearer_auth("fk-admin-secret")
                .send()
                .unwrap()
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses, [200, 200, 429]);

    // Caching: `caching: true` is served from the cache the second time.
    let mut body = chat_body("gpt-4o", "cache me");
    body["caching"] = json!(true);
    let before = up.request_count();
    let first = client()
        .post(url("/v1/chat/completions"))
        .bearer_auth("fk-admin-secret")
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(first.status(), 200);
    let first_text = first.text().unwrap();
    assert_eq!(up.request_count(), before + 1);
    // The store is asynchronous (the worker's root sends it on its next tick). The worker that
    // answered keeps the entry at once, but another worker asks the cache service, which may not
    // have it yet: wait until the filter counted the store as done, then every worker finds it.
    let stored = || {
        let admin_addr = ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], admin)));
        llm_forward_gateway::envoy::admin_get(&admin_addr, "/stats?filter=cache.store_total")
            .map(|(_, body)| body)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored() < 1 {
        assert!(Instant::now() < deadline, "the answer was never stored");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stored_requests = up.request_count();
    // Fresh connections: the two requests may land on either worker.
    for n in 0..2 {
        let again = client()
            .post(url("/v1/chat/completions"))
            .bearer_auth("fk-admin-secret")
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(again.status(), 200);
        let x_cache = again
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = again.text().unwrap();
        assert_eq!(x_cache, "HIT", "request {n}: {text}");
        assert!(text.contains("chat.completion"), "{text} vs {first_text}");
    }
    assert_eq!(
        up.request_count(),
        stored_requests,
        "a cache hit reached upstream"
    );
}

/// What `aifd gen_config` writes: `""` placeholder keys, LevelDB cache settings, and more.
#[test]
fn run_in_a_folder_with_an_aifd_gen_config_env() {
    let up = MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let dir = TempDir::new("migrate-gen-config");
    // The file as `aifd gen_config` writes it (shared with the unit test), upstreams on the mock.
    let env = include_str!("../../gateway/src/migrate/aifd-gen-config.env")
        .replace("https://api.openai.com", &up.base_url())
        .replace("https://generativelanguage.googleapis.com", &up.base_url());
    std::fs::write(dir.0.join(".env"), env).unwrap();
    let (port, admin) = (free_port(), free_port());
    let gw = start_in(&dir, port, admin);
    let output = gw.output();
    assert!(
        output.contains("clients' own keys pass through"),
        "{output}"
    );
    // As with OpenAI-Forward and this file: the client's own key reaches the upstream unchanged.
    let ok = client()
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth("sk-client-own")
        .json(&chat_body("gpt-4o-mini", "hello"))
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        up.requests()[0].header("authorization"),
        Some("Bearer sk-client-own")
    );
    let general = client()
        .get(format!("http://127.0.0.1:{port}/gemini/v1beta/models"))
        .send()
        .unwrap();
    assert_eq!(general.status(), 200);
    assert_eq!(up.requests()[1].path, "/v1beta/models");
}

#[test]
fn migrate_prints_a_config_that_render_accepts() {
    let dir = TempDir::new("migrate-cli");
    // The 0.8.1 shape of FORWARD_KEY_CONFIG (fk → level), with the `default` entry.
    let env = shipped_env("http://127.0.0.1:9000").replace(
        r#"FORWARD_KEY_CONFIG={"0": ["fk-admin-secret"], "1": ["fk-user-secret"]}"#,
        r#"FORWARD_KEY_CONFIG={"fk-admin-secret": 0, "fk-user-secret": "1", "default": 1}"#,
    );
    assert!(env.contains("\"default\": 1"));
    std::fs::write(dir.0.join(".env"), env).unwrap();
    let keys_file = dir.0.join("keys.env");
    let out = Command::new(gateway_bin())
        .args(["migrate", "--dir"])
        .arg(&dir.0)
        .arg("--keys-env")
        .arg(&keys_file)
        .env_remove("LLM_FORWARD_PORT")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    for secret in ["sk-real-upstream-a", "fk-admin-secret", "fk-user-secret"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}\n{stderr}"
        );
    }
    assert!(stdout.contains("${LLM_FORWARD_UPSTREAM_KEY_0}"), "{stdout}");
    assert!(stdout.contains("#   LLM_FORWARD_FORWARD_KEY_1"), "{stdout}");
    assert!(stderr.contains("ITER_CHUNK_TYPE is ignored"), "{stderr}");
    let keys = std::fs::read_to_string(&keys_file).unwrap();
    assert!(keys.contains("LLM_FORWARD_FORWARD_KEY_1=fk-user-secret"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the keys file is readable by others");
    }

    // `render -c` accepts it, from a folder without the .env.
    let other = TempDir::new("migrate-render");
    let yaml = other.0.join("llm-forward.yaml");
    std::fs::write(&yaml, &stdout).unwrap();
    let rendered = Command::new(gateway_bin())
        .args(["render", "-c"])
        .arg(&yaml)
        .current_dir(&other.0)
        .output()
        .unwrap();
    let rendered_text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(rendered_text.contains("127.0.0.1"));
    assert!(rendered_text.contains("LLM_FORWARD_FORWARD_KEY_1"));
    assert!(!rendered_text.contains("fk-user-secret"));
}

/// `llm-forward run` with no arguments in `dir`; ports from the real environment (which must win
/// over the `.env` in `dir`).
fn start_in(dir: &TempDir, port: u16, admin: u16) -> RunningGateway {
    let mut cmd = gateway_command();
    cmd.arg("run")
        .env("LLM_FORWARD_PORT", port.to_string())
        .env("LLM_FORWARD_ADMIN_PORT", admin.to_string())
        .env("LLM_FORWARD_ADDRESS", "127.0.0.1")
        .env("LLM_FORWARD_CONCURRENCY", "2")
        .env("CACHE_PORT", free_port().to_string())
        // A loaded CI machine may not answer a lookup within the production 100 ms (a slow
        // lookup is a miss); the tests check what is cached, not how fast.
        .env("CACHE_TIMEOUT_MS", "5000")
        .current_dir(&dir.0);
    RunningGateway::spawn(cmd, "ready to serve")
}
