//! Crossing budgets: the exact number of host calls (VM → Envoy crossings) the filter makes per
//! exchange kind, driven through whole exchanges against the recording fake (`crate::host::fake`).
//! Envoy's own calls into the VM (one per phase) are the same for every filter, the no-op one
//! included, so they are not counted here. A change that adds a crossing fails these tests: lower a
//! budget when you remove one, and update docs/performance.md (Crossing budgets) with it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::host::fake;
use crate::http::RequestFilter;
use crate::root::{FilterRoot, Plugin};
use llm_forward_core::config::{Config, FilterConfig};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;

/// The no-op filter (bench/noop-filter) makes no host call per request.
const NOOP_FILTER: usize = 0;
/// Routes only, usage metrics and the OpenAI `caching` field off: the single `/` route is idle
/// (`crate::idle`), so the request costs what the no-op filter's does plus the route's request
/// counter (`llm_forward.route.<route>.requests_total`, always on): one `increment_metric`.
const NOTHING_CONFIGURED: usize = NOOP_FILTER + 1;
/// The defaults with nothing configured (bench variant f0): per-route metrics and the OpenAI
/// `caching` field are on by default.
/// `:path`, the route counter, the response body and the 3 usage counters: usage metrics alone read
/// no response header (the body tells JSON from SSE; a non-2xx body has no usage).
const DEFAULTS: usize = 6;
/// A forward key swapped for an upstream key.
const KEYS_ONLY: usize = 8;
/// Keys + IP list + a request limit per key.
const KEYS_IP_LIMIT: usize = 14;
/// Keys + IP list + request limit + chat logs (bench variant c).
const KEYS_IP_LIMIT_CHATLOG: usize = 21;
/// Variant c with a stream of [`STREAM_CHUNKS`] chunks: a fixed part plus a price per chunk.
const STREAM_FIXED: usize = 20;
const STREAM_PER_CHUNK: usize = 1;
const STREAM_CHUNKS: usize = 10;
/// Variant c + cache, answered from the worker's hot cache (bench variant d).
const CACHE_HIT: usize = 17;
/// Variant c + cache and a token quota, a miss: the answer is read once for the chat log, the
/// cache copy and the token count.
const CACHE_MISS_TOKENS: usize = 36;
/// Refusals: no key (401), a model the key may not use (403), over the request limit (429).
const REFUSED_401: usize = 11;
const REFUSED_403: usize = 14;
const REFUSED_429: usize = 12;
/// Fleet-wide limits: the admission call to the rate-limit service and its answer.
const FLEET_ADMISSION: usize = 15;

const CHAT_BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

fn base() -> serde_json::Value {
    serde_json::json!({
        "server": {"address": "127.0.0.1", "port": 8080, "admin_port": 8081},
        "routes": [{"route": "/", "base_url": "http://127.0.0.1:9", "type": "openai", "retries": 0}],
    })
}

fn nothing() -> serde_json::Value {
    let mut c = base();
    c["logging"] = serde_json::json!({"metrics": false});
    c["cache"] = serde_json::json!({"openai": false});
    c
}

fn keys(mut c: serde_json::Value) -> serde_json::Value {
    c["keys"] = serde_json::json!({
        "upstream": [{"key": "sk-bench-a", "levels": [0, 1]}, {"key": "sk-bench-b", "levels": [0, 1]}],
        "forward": [{"name": "bench", "key": "fk-bench", "level": 1}],
        "levels": {"1": ["gpt-4o-mini", "gpt-4o*"]},
    });
    c
}

fn ip_limit(mut c: serde_json::Value, limit: &str) -> serde_json::Value {
    c["ip"] = serde_json::json!({"allow": ["127.0.0.0/8", "::1"], "deny": ["10.0.0.0/8"]});
    c["limits"] = serde_json::json!({"requests": [
        {"path": "/v1/chat/completions", "limit": limit, "per": "key"}
    ]});
    c
}

fn chatlog(mut c: serde_json::Value) -> serde_json::Value {
    c["logging"] = serde_json::json!({"chat": true});
    c
}

/// Variant c of the bench.
fn full() -> serde_json::Value {
    chatlog(ip_limit(keys(base()), "100000000/minute"))
}

/// A fresh fake Envoy configured with `config`; the configuration's own host calls are dropped.
fn configure(config: serde_json::Value) -> (FilterRoot, Rc<Plugin>) {
    fake::reset();
    let valid = Config::from_json(config.to_string().as_bytes())
        .unwrap()
        .validate()
        .unwrap();
    let bytes = serde_json::to_vec(&FilterConfig::from_valid(&valid)).unwrap();
    fake::set_buffer_bytes(BufferType::PluginConfiguration, &bytes);
    fake::with(|s| s.now_ms = 1_700_000_000_000);
    let mut root = FilterRoot::new(1);
    assert!(root.on_configure(bytes.len()));
    let plugin = root.plugin().unwrap();
    fake::take_calls();
    fake::take_header_reads();
    (root, plugin)
}

struct Request<'a> {
    key: Option<&'a str>,
    body: &'a str,
    /// Response chunks (one for a plain JSON answer).
    chunks: Vec<String>,
    content_type: &'a str,
    /// The upstream's status.
    status: &'a str,
}

impl Default for Request<'_> {
    fn default() -> Self {
        Request {
            key: Some("fk-bench"),
            body: CHAT_BODY,
            chunks: vec![ANSWER.to_string()],
            content_type: "application/json",
            status: "200",
        }
    }
}

/// What one exchange did: its host calls, its header-map reads and the status of a local reply,
/// if any.
struct Outcome {
    calls: Vec<&'static str>,
    header_reads: Vec<String>,
    reply: Option<u32>,
}

impl Outcome {
    /// The reads of request headers: `HttpRequestHeaders` (the whole map) or
    /// `HttpRequestHeaders <name>` (one header).
    fn request_reads(&self) -> Vec<&str> {
        self.header_reads
            .iter()
            .map(String::as_str)
            .filter(|r| r.starts_with("HttpRequestHeaders"))
            .collect()
    }
}

/// Drives one exchange the way Envoy does: request headers, body (when held or flowing), then the
/// response (the upstream's, or the local reply through the same encoder phases), then the log.
fn exchange(plugin: &Rc<Plugin>, context_id: u32, req: &Request) -> Outcome {
    let auth = req.key.map(|k| format!("Bearer {k}"));
    let len = req.body.len().to_string();
    let mut headers = vec![
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gateway"),
        ("content-type", "application/json"),
        ("content-length", len.as_str()),
    ];
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    fake::set_map(MapType::HttpRequestHeaders, &headers);
    fake::set_property_bytes("source.address", b"127.0.0.1:40000");
    fake::with(|s| s.replies.clear());
    let mut f = RequestFilter::new(Rc::clone(plugin)).with_context_id(context_id);
    let replied = || fake::with(|s| s.replies.last().map(|r| r.0));
    let tokens_before = fake::with(|s| s.next_token);
    let _ = f.on_http_request_headers(headers.len(), false);
    if replied().is_none() {
        fake::set_buffer_bytes(BufferType::HttpRequestBody, req.body.as_bytes());
        let _ = f.on_http_request_body(req.body.len(), true);
    }
    let token = fake::with(|s| s.next_token);
    let lookup = fake::with(|s| s.calls.contains(&"dispatch_http_call"));
    if token > tokens_before && lookup && replied().is_none() {
        // A cache lookup: the cache service has no entry.
        fake::set_map(MapType::HttpCallResponseHeaders, &[(":status", "404")]);
        f.on_http_call_response(token, 1, 0, 0);
    } else if token > tokens_before && replied().is_none() {
        // A fleet admission call: the rate-limit service answers OK (`overall_code: OK`).
        let answer = [0x08, 0x01];
        fake::set_buffer_bytes(BufferType::GrpcReceiveBuffer, &answer);
        f.on_grpc_call_response(token, 0, answer.len());
    }
    let reply = replied();
    let chunks: Vec<String> = match reply {
        Some(status) => {
            let (_, hs) = fake::with(|s| s.replies.last().cloned().unwrap());
            let mut map: Vec<(String, String)> = vec![(":status".into(), status.to_string())];
            map.extend(hs);
            fake::with(|s| s.maps.insert(MapType::HttpResponseHeaders as u32, map));
            vec![r#"{"error":{}}"#.to_string()]
        }
        None => {
            let status_pairs = [(":status", req.status), ("content-type", req.content_type)];
            fake::set_map(MapType::HttpResponseHeaders, &status_pairs);
            req.chunks.clone()
        }
    };
    let _ = f.on_http_response_headers(2, false);
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.iter().enumerate() {
        fake::set_buffer_bytes(BufferType::HttpResponseBody, chunk.as_bytes());
        let action = f.on_http_response_body(chunk.len(), i == last);
        assert!(matches!(action, Action::Continue), "chunk {i} held");
    }
    f.on_log();
    drop(f);
    Outcome {
        calls: fake::take_calls(),
        header_reads: fake::take_header_reads(),
        reply,
    }
}

fn show(name: &str, o: &Outcome) {
    eprintln!(
        "{name}: {} calls {:?} reply {:?}",
        o.calls.len(),
        o.calls,
        o.reply
    );
}

/// One warm-up exchange (lazily defined counters, first shared-data writes), then the measured one.
fn steady(config: serde_json::Value, req: &Request) -> Outcome {
    let (_root, plugin) = configure(config);
    let warm = exchange(&plugin, 2, req);
    assert_eq!(warm.reply, None, "warm-up refused: {:?}", warm.calls);
    exchange(&plugin, 3, req)
}

fn assert_budget(name: &str, o: &Outcome, budget: usize) {
    show(name, o);
    assert_eq!(
        o.calls.len(),
        budget,
        "{name}: {} host calls, budget {budget}: {:?}",
        o.calls.len(),
        o.calls
    );
}

fn stream_request(n: usize) -> Request<'static> {
    let mut chunks: Vec<String> = (0..n.saturating_sub(1))
        .map(|i| {
            format!(
                "data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i}\"}}}}]}}\n\n"
            )
        })
        .collect();
    chunks.push(
        "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\ndata: [DONE]\n\n"
            .to_string(),
    );
    Request {
        body: r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        chunks,
        content_type: "text/event-stream",
        ..Request::default()
    }
}

#[test]
fn nothing_configured_costs_the_noop_filter_plus_the_route_counter() {
    let o = steady(nothing(), &Request::default());
    assert_budget("nothing configured", &o, NOTHING_CONFIGURED);
    assert_eq!(o.calls, ["increment_metric"]);
    assert_eq!(fake::metric("llm_forward.route.root.requests_total"), 2);
}

#[test]
fn idle_routes_read_the_path_only() {
    let mut config = nothing();
    config["routes"] = serde_json::json!([
        {"route": "/", "base_url": "http://127.0.0.1:9", "type": "general"},
        {"route": "/gen", "base_url": "http://127.0.0.1:9", "type": "general"},
    ]);
    let o = steady(config, &Request::default());
    assert_eq!(o.calls, ["get_header_map_value", "increment_metric"]);
    assert_eq!(o.request_reads(), ["HttpRequestHeaders :path"]);
}

/// Sum of the usage counters `llm_forward.usage.<route>.<model>.<level>.<what>_total`.
fn usage_total(what: &str) -> i64 {
    let suffix = format!(".{what}_total");
    fake::with(|s| {
        s.metrics
            .iter()
            .filter(|(n, _)| n.starts_with("llm_forward.usage.") && n.ends_with(&suffix))
            .map(|(_, v)| *v)
            .sum()
    })
}

/// Usage metrics alone read no response header, yet count what reading them counted: the tokens
/// of a JSON answer and of an event stream (told apart by the body, whatever the content type
/// says), and the request without tokens for an upstream error.
#[test]
fn metrics_alone_count_usage_without_reading_response_headers() {
    let cases = [
        ("json", Request::default(), 3, 1),
        (
            "json after whitespace, mislabelled",
            Request {
                chunks: vec![format!("\n  {ANSWER}")],
                content_type: "text/plain",
                ..Request::default()
            },
            3,
            1,
        ),
        ("stream", stream_request(4), 3, 2),
        (
            "stream split before its first byte",
            Request {
                chunks: std::iter::once("\n".to_string())
                    .chain(stream_request(2).chunks)
                    .collect(),
                ..stream_request(2)
            },
            3,
            2,
        ),
        (
            "upstream error",
            Request {
                chunks: vec![r#"{"error":{"message":"slow down","type":"rate_limit"}}"#.into()],
                status: "429",
                ..Request::default()
            },
            0,
            0,
        ),
        (
            "upstream error page",
            Request {
                chunks: vec!["<html>bad gateway</html>".into()],
                content_type: "text/html",
                status: "502",
                ..Request::default()
            },
            0,
            0,
        ),
    ];
    for (name, req, prompt, completion) in cases {
        let (_root, plugin) = configure(base());
        let o = exchange(&plugin, 2, &req);
        assert!(
            !o.header_reads
                .iter()
                .any(|r| r.starts_with("HttpResponseHeaders")),
            "{name}: {:?}",
            o.header_reads
        );
        assert_eq!(usage_total("requests"), 1, "{name}");
        assert_eq!(usage_total("prompt_tokens"), prompt, "{name}");
        assert_eq!(usage_total("completion_tokens"), completion, "{name}");
    }
}

/// A feature that needs the status or the content type still reads the response map: the chat
/// record (status, content type), limits (token charge), key cooldowns.
#[test]
fn features_beyond_metrics_read_the_response_headers() {
    for (name, config) in [("chat log", chatlog(base())), ("keys", keys(base()))] {
        let (_root, plugin) = configure(config);
        let o = exchange(&plugin, 2, &Request::default());
        assert!(
            o.header_reads
                .iter()
                .any(|r| r.starts_with("HttpResponseHeaders")),
            "{name}: {:?}",
            o.header_reads
        );
    }
}

#[test]
fn defaults_budget() {
    let o = steady(base(), &Request::default());
    assert_budget("defaults (f0)", &o, DEFAULTS);
    // Usage metrics alone need the route and the API, both from `:path`: one header (~0.7 µs in
    // Envoy), not the whole request map (~1.8 µs).
    assert_eq!(
        o.request_reads(),
        ["HttpRequestHeaders :path"],
        "{:?}",
        o.calls
    );
}

#[test]
fn features_beyond_metrics_read_the_whole_request_map_once() {
    for (name, config) in [("keys", keys(base())), ("chat log", chatlog(base()))] {
        let o = steady(config, &Request::default());
        assert_eq!(
            o.request_reads(),
            ["HttpRequestHeaders"],
            "{name}: {:?}",
            o.calls
        );
    }
}

#[test]
fn keys_only_budget() {
    assert_budget(
        "keys",
        &steady(keys(nothing()), &Request::default()),
        KEYS_ONLY,
    );
}

#[test]
fn keys_ip_limit_budget() {
    let config = ip_limit(keys(nothing()), "100000000/minute");
    assert_budget(
        "keys+ip+limit",
        &steady(config, &Request::default()),
        KEYS_IP_LIMIT,
    );
}

#[test]
fn keys_ip_limit_chatlog_budget() {
    let o = steady(full(), &Request::default());
    assert_budget("keys+ip+limit+chat log (c)", &o, KEYS_IP_LIMIT_CHATLOG);
}

#[test]
fn stream_budget_is_fixed_plus_per_chunk() {
    let one = steady(full(), &stream_request(1));
    assert_budget("stream of 1 chunk", &one, STREAM_FIXED + STREAM_PER_CHUNK);
    let many = steady(full(), &stream_request(STREAM_CHUNKS));
    assert_budget(
        "stream of N chunks",
        &many,
        STREAM_FIXED + STREAM_CHUNKS * STREAM_PER_CHUNK,
    );
}

#[test]
fn cache_hit_budget() {
    let mut config = full();
    config["cache"] = serde_json::json!({
        "backend": "memory", "port": 8090, "openai": true, "default_request_caching": true
    });
    let o = steady(config, &Request::default());
    assert!(
        o.calls.contains(&"send_local_response"),
        "not answered from the worker's cache: {:?}",
        o.calls
    );
    assert_budget("cache hit (d)", &o, CACHE_HIT);
}

#[test]
fn refusals_budget() {
    let (_root, plugin) = configure(full());
    assert_eq!(exchange(&plugin, 1, &Request::default()).reply, None);
    // The second of each: the first defines the usage counters of its labels.
    let no_key = Request {
        key: None,
        ..Request::default()
    };
    assert_eq!(exchange(&plugin, 2, &no_key).reply, Some(401));
    let o = exchange(&plugin, 2, &no_key);
    assert_eq!(o.reply, Some(401));
    assert_budget("401", &o, REFUSED_401);
    let body = r#"{"model":"o3","messages":[{"role":"user","content":"hi"}]}"#;
    let forbidden = Request {
        body,
        ..Request::default()
    };
    assert_eq!(exchange(&plugin, 3, &forbidden).reply, Some(403));
    let o = exchange(&plugin, 3, &forbidden);
    assert_eq!(o.reply, Some(403));
    assert_budget("403", &o, REFUSED_403);

    let (_root, plugin) = configure(chatlog(ip_limit(keys(base()), "1/minute")));
    assert_eq!(exchange(&plugin, 2, &Request::default()).reply, None);
    assert_eq!(exchange(&plugin, 3, &Request::default()).reply, Some(429));
    let o = exchange(&plugin, 4, &Request::default());
    assert_eq!(o.reply, Some(429), "{:?}", o.calls);
    assert_budget("429", &o, REFUSED_429);
}

#[test]
fn fleet_admission_budget() {
    let mut config = ip_limit(keys(nothing()), "100000000/minute");
    config["limits"]["service"] = serde_json::json!("grpc://127.0.0.1:9001");
    let o = steady(config, &Request::default());
    assert!(o.calls.contains(&"grpc_call"), "{:?}", o.calls);
    assert!(o.calls.contains(&"continue_stream"), "{:?}", o.calls);
    assert_budget("fleet admission", &o, FLEET_ADMISSION);
}

#[test]
fn a_response_chunk_is_read_once_for_every_feature() {
    let mut config = full();
    config["cache"] = serde_json::json!({
        "backend": "memory", "port": 8090, "openai": true, "default_request_caching": true
    });
    config["limits"]["tokens"] = serde_json::json!([
        {"path": "/v1/chat/completions", "limit": "100000000/minute", "per": "key"}
    ]);
    let (_root, plugin) = configure(config);
    let first = Request::default();
    assert_eq!(exchange(&plugin, 2, &first).reply, None);
    // Another body: a miss again, in steady state.
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"again"}]}"#;
    let o = exchange(
        &plugin,
        3,
        &Request {
            body,
            ..Request::default()
        },
    );
    assert_eq!(o.reply, None);
    let reads = o.calls.iter().filter(|c| **c == "get_buffer_bytes").count();
    assert_eq!(reads, 2, "request body + one response chunk: {:?}", o.calls);
    assert_budget("cache miss + token quota", &o, CACHE_MISS_TOKENS);
}

/// The README's "Cost per request" table states these budgets to users: it must say what the tests
/// hold (a change to a budget above fails here until the README follows).
#[test]
fn readme_states_the_tested_budgets() {
    let readme = include_str!("../../README.md");
    let row = |label: &str| -> String {
        readme
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("README has no budget row `{label}`"))
            .to_string()
    };
    let rows = [
        (
            "no feature on the route (`logging.metrics: false`)",
            format!("{NOTHING_CONFIGURED} (its request counter)"),
        ),
        ("defaults: usage metrics", DEFAULTS.to_string()),
        (
            "forward key swapped for an upstream key",
            KEYS_ONLY.to_string(),
        ),
        ("keys + IP list + request limit", KEYS_IP_LIMIT.to_string()),
        (
            "keys + IP list + request limit + chat log",
            format!("{KEYS_IP_LIMIT_CHATLOG} (a stream of N chunks: {STREAM_FIXED} + N)"),
        ),
        ("cache hit answered by the worker", CACHE_HIT.to_string()),
        (
            "refused: 401 / 403 / 429",
            format!("{REFUSED_401} / {REFUSED_403} / {REFUSED_429}"),
        ),
    ];
    for (label, budget) in rows {
        assert_eq!(
            row(label),
            format!("| {label} | {budget} |"),
            "README's budget for `{label}`"
        );
    }
}
