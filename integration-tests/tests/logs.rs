//! Chat logs and usage metrics through the real Envoy: one JSON line per exchange in
//! `<log_dir>/<route>/chat.log`, written from filter state by a file access logger.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::chatlog::ChatRecord;
use llm_forward_core::config::{Config, RouteConfig, RouteKind};
use llm_forward_integration_tests::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const FORWARD_KEY: &str = "fk-logs-test-secret-0001";
const UPSTREAM_KEY: &str = "sk-upstream-secret-0002";

fn mock() -> MockUpstream {
    MockUpstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

fn logging_config(up: &MockUpstream) -> Config {
    let mut c = config_for(&up.base_url());
    c.logging.chat = true;
    c
}

fn log_path(gw: &Gateway, route: &str) -> PathBuf {
    gw.dir.0.join(route).join("chat.log")
}

/// Waits until the route's chat log has `n` lines (Envoy flushes access logs about every second),
/// then a little longer to catch extra lines, and returns them parsed.
fn wait_lines(gw: &Gateway, route: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log_path(gw, route)).unwrap_or_default();
        let count = text.lines().count();
        if count >= n || Instant::now() > deadline {
            if count == n {
                std::thread::sleep(Duration::from_millis(1500));
            }
            let text = std::fs::read_to_string(log_path(gw, route)).unwrap_or_default();
            return text
                .lines()
                .map(|l| {
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"))
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: Value) -> (u16, String) {
    let mut req = client()
        .post(gw.url(path))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {FORWARD_KEY}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req
        .header("api-key", UPSTREAM_KEY)
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().unwrap())
}

/// The concatenated `delta.content` of an SSE body, as a client would assemble it.
fn streamed_text(body: &str) -> String {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

#[test]
fn streamed_chat_gives_one_line_with_the_answer_and_usage() {
    let up = mock();
    let gw = Gateway::start(logging_config(&up));
    let (status, body) = post(
        &gw,
        "/v1/chat/completions?key=query-secret",
        &[("x-mock-chunks", "40"), ("x-mock-completion-tokens", "40")],
        json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
               "temperature": 0.3, "messages": [{"role": "user", "content": "count to 40"}]}),
    );
    assert_eq!(status, 200);
    let expected = streamed_text(&body);
    assert!(expected.starts_with("tok0 tok1 "), "{expected}");

    let lines = wait_lines(&gw, "root", 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let r: ChatRecord = serde_json::from_value(lines[0].clone()).unwrap();
    let answer = r.answer.as_ref().unwrap();
    assert_eq!(answer.choices.len(), 1);
    assert_eq!(answer.choices[0].content, expected);
    assert!(answer.done);
    let usage = r.usage.as_ref().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (10, 40));
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    assert_eq!(r.model.as_deref(), Some("gpt-4o"));
    assert!(r.stream);
    assert_eq!(r.status, 200);
    assert_eq!(r.route, "root");
    assert_eq!(r.upstream, "route_root");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(r.params["temperature"], json!(0.3));
    assert_eq!(
        r.messages,
        Some(json!([{"role": "user", "content": "count to 40"}]))
    );
    assert_eq!(r.uid.len(), 32);
    assert!(r.time.ends_with('Z') && r.time.contains('T'), "{}", r.time);
    assert!(r.ttfb_ms.is_some() && r.latency_ms >= r.ttfb_ms.unwrap());
    assert!(!r.truncated && !r.redacted);
    let line = std::fs::read_to_string(log_path(&gw, "root")).unwrap();
    assert!(!line.contains("query-secret"), "{line}");
    assert!(!line.contains(FORWARD_KEY), "{line}");
}

#[test]
fn parallel_tool_calls_are_reassembled() {
    let up = mock();
    let gw = Gateway::start(logging_config(&up));
    let (status, body) = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-tool-calls", "2")],
        json!({"model": "gpt-4o", "stream": true,
               "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
               "messages": [{"role": "user", "content": "weather in two cities"}]}),
    );
    assert_eq!(status, 200);
    // What the client assembles from the stream, by tool call index.
    let mut client_args = [String::new(), String::new()];
    for data in body.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        for call in v["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = call["index"].as_u64().unwrap() as usize;
            client_args[i].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    let lines = wait_lines(&gw, "root", 1);
    assert_eq!(lines.len(), 1);
    let r: ChatRecord = serde_json::from_value(lines[0].clone()).unwrap();
    let calls = &r.answer.as_ref().unwrap().choices[0].tool_calls;
    assert_eq!(calls.len(), 2, "{calls:?}");
    for (i, call) in calls.iter().enumerate() {
        assert_eq!(call.index as usize, i);
        assert!(call.id.is_some() && !call.name.is_empty(), "{call:?}");
        assert_eq!(call.arguments, client_args[i]);
        serde_json::from_str::<Value>(&call.arguments).expect("arguments are whole JSON");
    }
    assert_ne!(calls[0].arguments, calls[1].arguments);
    assert_eq!(r.finish_reason.as_deref(), Some("tool_calls"));
    assert!(r.params.contains_key("tools"));
}

#[test]
fn non_stream_chat_completion_and_embedding_records() {
    let up = mock();
    let gw = Gateway::start(logging_config(&up));
    let (status, body) = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-chunks", "5")],
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(status, 200);
    let chat: Value = serde_json::from_str(&body).unwrap();
    let (status, body) = post(
        &gw,
        "/v1/completions",
        &[],
        json!({"model": "gpt-3.5-turbo-instruct", "prompt": "say hi"}),
    );
    assert_eq!(status, 200);
    let completion: Value = serde_json::from_str(&body).unwrap();
    let (status, _) = post(
        &gw,
        "/v1/embeddings",
        &[("x-mock-prompt-tokens", "7")],
        json!({"model": "text-embedding-3-small", "input": ["hello", "world"]}),
    );
    assert_eq!(status, 200);
    // Not an API the log knows: no line.
    assert_eq!(
        client().get(gw.url("/v1/models")).send().unwrap().status(),
        200
    );

    let lines = wait_lines(&gw, "root", 3);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let records: Vec<ChatRecord> = lines
        .into_iter()
        .map(|l| serde_json::from_value(l).unwrap())
        .collect();
    let by_path = |p: &str| records.iter().find(|r| r.path == p).unwrap();

    let r = by_path("/v1/chat/completions");
    assert!(!r.stream);
    assert_eq!(
        r.answer.as_ref().unwrap().choices[0].content,
        chat["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(
        r.usage.as_ref().unwrap().completion_tokens,
        chat["usage"]["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));

    let r = by_path("/v1/completions");
    assert_eq!(r.prompt, Some(json!("say hi")));
    assert_eq!(
        r.answer.as_ref().unwrap().choices[0].content,
        completion["choices"][0]["text"].as_str().unwrap()
    );
    assert!(r.usage.is_some());

    let r = by_path("/v1/embeddings");
    assert_eq!(r.input, Some(json!(["hello", "world"])));
    assert_eq!(r.model.as_deref(), Some("text-embedding-3-small"));
    assert_eq!(r.usage.as_ref().unwrap().prompt_tokens, 7);
    assert!(r.answer.as_ref().unwrap().choices.is_empty());

    for r in &records {
        let line = serde_json::to_string(r).unwrap();
        assert!(
            !line.contains(FORWARD_KEY) && !line.contains(UPSTREAM_KEY),
            "{line}"
        );
    }
}

#[test]
fn privacy_switch_drops_messages_and_answer_text_per_route() {
    let root = mock();
    let private = mock();
    let mut c = logging_config(&root);
    let mut route = RouteConfig::new("/private", &private.base_url(), RouteKind::Openai);
    route.log_messages = Some(false);
    c.routes.push(route);
    let gw = Gateway::start(c);
    let body = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "my secret diagnosis"}]});
    for path in ["/v1/chat/completions", "/private/v1/chat/completions"] {
        let (status, text) = post(&gw, path, &[], body.clone());
        assert_eq!(status, 200);
        assert!(text.contains("Hello"), "{text}");
    }
    let open = wait_lines(&gw, "root", 1);
    let closed = wait_lines(&gw, "private", 1);
    assert_eq!(
        (open.len(), closed.len()),
        (1, 1),
        "each route writes its own file"
    );
    let open_line = open[0].to_string();
    assert!(open_line.contains("my secret diagnosis") && open_line.contains("Hello"));
    let closed_line = closed[0].to_string();
    assert!(!closed_line.contains("secret"), "{closed_line}");
    assert!(!closed_line.contains("Hello"), "{closed_line}");
    let r: ChatRecord = serde_json::from_value(closed[0].clone()).unwrap();
    assert!(r.redacted && r.messages.is_none());
    assert_eq!(r.route, "private");
    assert_eq!(r.upstream, "route_private");
    assert!(r.usage.is_some(), "usage stays");
    assert_eq!(r.params["model"], "gpt-4o");
}

#[test]
fn logging_off_writes_nothing_and_metrics_still_count() {
    let up = mock();
    let mut c = config_for(&up.base_url());
    c.logging.chat = false;
    let gw = Gateway::start(c);
    for _ in 0..2 {
        let (status, _) = post(
            &gw,
            "/v1/chat/completions",
            &[
                ("x-mock-prompt-tokens", "11"),
                ("x-mock-completion-tokens", "4"),
            ],
            json!({"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(status, 200);
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!log_path(&gw, "root").exists());
    // The request body is not read: the model label is the one the upstream answered with.
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.usage.root.gpt-4_1-mini.0.requests_total"),
        Some(2)
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.usage.root.gpt-4_1-mini.0.prompt_tokens_total"),
        Some(22)
    );
}

#[test]
fn prometheus_scrape_has_route_model_and_level_labels() {
    let up = mock();
    let gw = Gateway::start(logging_config(&up));
    for model in ["gpt-4.1-mini", "gpt-4.1-mini", "o3"] {
        let (status, _) = post(
            &gw,
            "/v1/chat/completions",
            &[
                ("x-mock-prompt-tokens", "11"),
                ("x-mock-completion-tokens", "4"),
            ],
            json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
        );
        assert_eq!(status, 200);
    }
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.usage.root.gpt-4_1-mini.0.requests_total"),
        Some(2)
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.usage.root.gpt-4_1-mini.0.prompt_tokens_total"),
        Some(22)
    );
    assert_eq!(
        gw.stat("wasmcustom.llm_forward.usage.root.o3.0.completion_tokens_total"),
        Some(4)
    );
    let (_, prom) =
        llm_forward_gateway::envoy::admin_get(&gw.admin_addr(), "/stats/prometheus").unwrap();
    let line = |metric: &str, model: &str| {
        prom.lines()
            .find(|l| {
                l.starts_with(metric)
                    && l.contains("route=\"root\"")
                    && l.contains(&format!("model=\"{model}\""))
                    && l.contains("level=\"0\"")
            })
            .unwrap_or_else(|| panic!("no {metric} for {model} in:\n{prom}"))
            .to_string()
    };
    assert!(line("llm_forward_usage_requests_total{", "gpt-4_1-mini").ends_with(" 2"));
    assert!(line("llm_forward_usage_prompt_tokens_total{", "gpt-4_1-mini").ends_with(" 22"));
    assert!(line("llm_forward_usage_completion_tokens_total{", "o3").ends_with(" 4"));
    // Envoy exports wasm custom stats without the `envoy_wasmcustom_` prefix. The older per-route
    // counter keeps its label under the widened route regex.
    assert!(
        prom.lines()
            .any(|l| l == "llm_forward_route_requests_total{route=\"root\"} 3"),
        "{prom}"
    );
}

#[test]
fn answer_cap_marks_the_record_truncated_and_the_stream_is_untouched() {
    let up = mock();
    let mut c = logging_config(&up);
    c.logging.max_answer_bytes = 1024;
    let gw = Gateway::start(c);
    let (status, body) = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-chunks", "600")],
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "long"}]}),
    );
    assert_eq!(status, 200);
    let full = streamed_text(&body);
    assert!(
        full.len() > 4000 && full.ends_with("tok599 "),
        "client gets everything"
    );
    let lines = wait_lines(&gw, "root", 1);
    let r: ChatRecord = serde_json::from_value(lines[0].clone()).unwrap();
    assert!(r.truncated);
    let logged = &r.answer.as_ref().unwrap().choices[0].content;
    assert!(logged.len() <= 1024 && !logged.is_empty());
    assert!(full.starts_with(logged.as_str()));
}

#[test]
fn convert_turns_real_logs_into_both_formats() {
    let up = mock();
    let gw = Gateway::start(logging_config(&up));
    let ok = json!({"model": "gpt-4o", "temperature": 0.7, "stream": true,
                    "messages": [{"role": "system", "content": "brief"}, {"role": "user", "content": "hi"}]});
    post(&gw, "/v1/chat/completions", &[], ok.clone());
    post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-tool-calls", "2")],
        ok.clone(),
    );
    post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-status", "500")],
        ok.clone(),
    );
    post(
        &gw,
        "/v1/embeddings",
        &[],
        json!({"model": "e", "input": "x"}),
    );
    assert_eq!(wait_lines(&gw, "root", 4).len(), 4);

    use llm_forward_gateway::convert::{run, Format};
    let dir = &gw.dir.0;
    assert_eq!(run(dir, None, None, Format::Reference), 0);
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("chat_root.json")).unwrap())
            .unwrap();
    let entries = reference.as_array().unwrap();
    assert_eq!(
        entries.len(),
        2,
        "the 500 and the embedding are skipped: {reference:#}"
    );
    let text = entries
        .iter()
        .find(|e| e["is_tool_calls"] == false)
        .unwrap();
    assert_eq!(
        text["messages"],
        json!([{"system": "brief"}, {"user": "hi"}])
    );
    assert_eq!(text["temperature"], 0.7);
    assert_eq!(text["model"], "gpt-4o");
    assert_eq!(text["ip"], "127.0.0.1");
    assert!(text["assistant"].as_str().unwrap().contains("Hello"));
    let tools = entries.iter().find(|e| e["is_tool_calls"] == true).unwrap();
    assert_eq!(tools["assistant"].as_array().unwrap().len(), 2);

    assert_eq!(run(dir, None, None, Format::Finetune), 0);
    let jsonl = std::fs::read_to_string(dir.join("chat_root.jsonl")).unwrap();
    let examples: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(examples.len(), 2);
    for e in &examples {
        let m = e["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0], json!({"role": "system", "content": "brief"}));
        assert_eq!(m[2]["role"], "assistant");
        let has_text = m[2]["content"]
            .as_str()
            .is_some_and(|c| c.contains("Hello"));
        let has_calls = m[2]["tool_calls"].as_array().is_some_and(|c| c.len() == 2);
        assert!(has_text ^ has_calls, "{e}");
        if has_calls {
            for call in m[2]["tool_calls"].as_array().unwrap() {
                assert_eq!(call["type"], "function");
                assert!(call["id"].is_string());
                serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap())
                    .unwrap();
            }
        }
    }
}
