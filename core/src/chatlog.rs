//! Chat log records: one JSON object per chat, completion or embedding exchange.
//!
//! The filter gathers the facts (request body, [`Answer`], status, timings) and calls [`write`],
//! which gives the JSON line of the [`ChatRecord`] that [`build`] makes without building it; the
//! line is written through Envoy's file access logger. `llm-forward convert` reads the same type
//! back ([`ChatRecord`]), and a test holds `write` to the serialized `build` byte for byte, so
//! writer and reader cannot drift apart.
//!
//! Compared with OpenAI-Forward's logs (a Python-dict request line and a separate answer line
//! paired by an md5-of-the-clock uid): one self-contained JSON line per exchange, a random uid,
//! UTC RFC 3339 times, every choice and every tool call, usage, status and timings; failed
//! exchanges are recorded too (with their status) instead of only being printed to the console.

use crate::answer::{Answer, ApiKind, Choice, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which OpenAI API a route-relative path (`/v1/chat/completions`, query removed) targets.
/// Any version prefix is accepted (`/v1/…`, `/v1beta/openai/…`, `/api/v3/…`).
pub fn api_for_path(route_path: &str) -> Option<ApiKind> {
    let path = route_path.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions") {
        Some(ApiKind::Chat)
    } else if path.ends_with("/completions") {
        Some(ApiKind::Completion)
    } else if path.ends_with("/embeddings") {
        Some(ApiKind::Embedding)
    } else {
        None
    }
}

/// `2026-11-26T13:40:15.123Z` from milliseconds since the Unix epoch (UTC, proleptic Gregorian).
pub fn rfc3339_utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    // Digit by digit: `format!` with padding was a measurable share of a record in V8.
    let fields = [
        ('\0', year.clamp(0, 9999) as u64, 4),
        ('-', u64::from(month), 2),
        ('-', u64::from(day), 2),
        ('T', rem / 3600, 2),
        (':', (rem % 3600) / 60, 2),
        (':', rem % 60, 2),
        ('.', unix_ms % 1000, 3),
    ];
    let mut out = String::with_capacity(24);
    for (separator, value, width) in fields {
        if separator != '\0' {
            out.push(separator);
        }
        for i in (0..width).rev() {
            out.push(char::from(b'0' + ((value / 10u64.pow(i)) % 10) as u8));
        }
    }
    out.push('Z');
    out
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Lower-case hex of random bytes (the record uid).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// A model name as one segment of a stat name: `[A-Za-z0-9_-]` kept, anything else (the dots of
/// `gpt-4.1`, slashes, colons) becomes `_`, at most 64 characters; empty becomes `unknown`.
/// Envoy's `stats_tags` split names on `.`, so a dot inside a label value would break extraction.
pub fn metric_label(value: &str) -> String {
    let label: String = value
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if label.is_empty() {
        "unknown".into()
    } else {
        label
    }
}

/// What the response produced, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggedAnswer {
    /// Response `id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The model that answered (may differ from the requested one, e.g. a dated snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Every choice: content, reasoning_content, tool calls with their arguments joined.
    pub choices: Vec<Choice>,
    /// The stream ended with `data: [DONE]` (false for JSON bodies).
    pub done: bool,
}

/// One line of `chat.log`. The filter writes it with [`write`], which follows these fields in
/// this order: a field added or moved here must be added or moved there too (a test compares them).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChatRecord {
    /// When the request arrived, UTC RFC 3339 with milliseconds.
    pub time: String,
    /// 128 random bits, hex.
    pub uid: String,
    pub route: String,
    /// Envoy cluster of the route (`route_<name>`).
    pub upstream: String,
    pub api: Option<ApiKind>,
    /// Method and path (route-relative, without the query string, which may hold keys).
    pub method: String,
    pub path: String,
    pub ip: Option<String>,
    /// Forward key name and level; the key itself is never logged.
    pub key_name: Option<String>,
    pub level: Option<u32>,
    /// The model the client asked for.
    pub model: Option<String>,
    pub stream: bool,
    /// Request body without `messages`, `prompt` and `input`.
    pub params: Map<String, Value>,
    /// Chat `messages` (absent with the privacy switch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Value>,
    /// Completions `prompt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Value>,
    /// Embeddings `input`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    pub answer: Option<LoggedAnswer>,
    pub usage: Option<Usage>,
    /// Choice 0's finish reason (`stop`, `length`, `tool_calls`, …).
    pub finish_reason: Option<String>,
    pub status: u32,
    /// `hit`, `miss`, `bypass`, or null when the cache did not look.
    pub cache: Option<String>,
    pub latency_ms: u64,
    pub ttfb_ms: Option<u64>,
    /// The answer text reached `logging.max_answer_bytes` (or the body was cut): texts are prefixes.
    pub truncated: bool,
    /// The request body was too large to log (`logging.max_request_bytes`) or not JSON.
    pub request_truncated: bool,
    /// Messages and answer text were left out (privacy switch).
    pub redacted: bool,
}

/// Everything [`build`] needs, gathered by the filter.
#[derive(Debug, Clone, Default)]
pub struct RecordInput<'a> {
    pub started_ms: u64,
    pub now_ms: u64,
    pub first_byte_ms: Option<u64>,
    pub uid: String,
    pub route: &'a str,
    pub api: Option<ApiKind>,
    pub method: &'a str,
    /// Route-relative path; the query is removed here.
    pub path: &'a str,
    pub ip: Option<String>,
    pub key_name: Option<&'a str>,
    pub level: Option<u32>,
    /// Model and stream flag as other features established them (they win over the body's).
    pub model: Option<&'a str>,
    pub stream: Option<bool>,
    /// Moved into the record (messages and params are not copied): the exchange is over.
    pub body: Option<Value>,
    pub request_truncated: bool,
    pub answer: Option<&'a Answer>,
    /// The response was cut by a collection cap (in addition to `answer.truncated`).
    pub response_truncated: bool,
    pub status: u32,
    pub cache: Option<&'a str>,
    /// Whether messages and answer text may be logged.
    pub messages: bool,
}

/// Builds the record. Pure: the caller provides the clock and the uid.
pub fn build(input: RecordInput<'_>) -> ChatRecord {
    let mut params = Map::new();
    let (mut messages, mut prompt, mut inputs) = (None, None, None);
    if let Some(Value::Object(body)) = input.body {
        for (k, v) in body {
            match k.as_str() {
                "messages" => messages = Some(v),
                "prompt" => prompt = Some(v),
                "input" => inputs = Some(v),
                _ => {
                    params.insert(k, v);
                }
            }
        }
    }
    let model = input.model.map(str::to_string).or_else(|| {
        params
            .get("model")
            .and_then(Value::as_str)
            .map(String::from)
    });
    let stream = input.stream.unwrap_or_else(|| {
        params
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    });
    let mut answer = input.answer.map(|a| LoggedAnswer {
        id: a.id.clone(),
        model: a.model.clone(),
        choices: a.choices.clone(),
        done: a.done,
    });
    let redacted = !input.messages;
    if redacted {
        messages = None;
        prompt = None;
        inputs = None;
        if let Some(a) = answer.as_mut() {
            for c in &mut a.choices {
                c.content.clear();
                c.reasoning_content.clear();
                for t in &mut c.tool_calls {
                    t.arguments.clear();
                }
            }
        }
    }
    let finish_reason = input
        .answer
        .and_then(|a| a.choices.first())
        .and_then(|c| c.finish_reason.clone());
    let path = input.path.split(['?', '#']).next().unwrap_or("");
    ChatRecord {
        time: rfc3339_utc(input.started_ms),
        uid: input.uid,
        route: input.route.to_string(),
        upstream: format!("route_{}", input.route),
        api: input.api,
        method: input.method.to_string(),
        path: path.to_string(),
        ip: input.ip,
        key_name: input.key_name.map(str::to_string),
        level: input.level,
        model,
        stream,
        params,
        messages,
        prompt,
        input: inputs,
        usage: input.answer.and_then(|a| a.usage.clone()),
        finish_reason,
        answer,
        status: input.status,
        cache: input.cache.map(str::to_string),
        latency_ms: input.now_ms.saturating_sub(input.started_ms),
        ttfb_ms: input
            .first_byte_ms
            .map(|t| t.saturating_sub(input.started_ms)),
        truncated: input.response_truncated || input.answer.is_some_and(|a| a.truncated),
        request_truncated: input.request_truncated,
        redacted,
    }
}

/// The record as one JSON line, written straight from the inputs into one buffer: byte for byte
/// what `serde_json::to_vec(&build(input))` gives, without the owned [`ChatRecord`] in between
/// (no copies of the answer text, the params map or the strings).
pub fn write(input: &RecordInput<'_>) -> Vec<u8> {
    let body = match &input.body {
        Some(Value::Object(body)) => Some(body),
        _ => None,
    };
    let part = |name: &str| body.and_then(|b| b.get(name));
    let text_len = input.answer.map_or(0, |a| {
        a.choices
            .iter()
            .map(|c| {
                c.content.len()
                    + c.reasoning_content.len()
                    + c.tool_calls
                        .iter()
                        .map(|t| t.name.len() + t.arguments.len() + 64)
                        .sum::<usize>()
                    + 96
            })
            .sum()
    });
    let mut out = Vec::with_capacity(640 + text_len);
    let w = &mut out;
    w.extend_from_slice(b"{\"time\":\"");
    w.extend_from_slice(rfc3339_utc(input.started_ms).as_bytes());
    w.extend_from_slice(b"\",\"uid\":");
    json_str(w, &input.uid);
    w.extend_from_slice(b",\"route\":");
    json_str(w, input.route);
    w.extend_from_slice(b",\"upstream\":");
    json_value(w, &format_args!("route_{}", input.route));
    w.extend_from_slice(b",\"api\":");
    match input.api {
        Some(ApiKind::Chat) => w.extend_from_slice(b"\"chat\""),
        Some(ApiKind::Completion) => w.extend_from_slice(b"\"completion\""),
        Some(ApiKind::Embedding) => w.extend_from_slice(b"\"embedding\""),
        None => w.extend_from_slice(b"null"),
    }
    w.extend_from_slice(b",\"method\":");
    json_str(w, input.method);
    w.extend_from_slice(b",\"path\":");
    json_str(w, input.path.split(['?', '#']).next().unwrap_or(""));
    w.extend_from_slice(b",\"ip\":");
    json_opt_str(w, input.ip.as_deref());
    w.extend_from_slice(b",\"key_name\":");
    json_opt_str(w, input.key_name);
    w.extend_from_slice(b",\"level\":");
    json_opt_u64(w, input.level.map(u64::from));
    w.extend_from_slice(b",\"model\":");
    let model = input
        .model
        .or_else(|| part("model").and_then(Value::as_str));
    json_opt_str(w, model);
    w.extend_from_slice(b",\"stream\":");
    let stream = input
        .stream
        .unwrap_or_else(|| part("stream").and_then(Value::as_bool).unwrap_or(false));
    json_bool(w, stream);
    w.extend_from_slice(b",\"params\":{");
    let mut first = true;
    for (k, v) in body.into_iter().flatten() {
        if matches!(k.as_str(), "messages" | "prompt" | "input") {
            continue;
        }
        if !first {
            w.push(b',');
        }
        first = false;
        json_str(w, k);
        w.push(b':');
        json_value(w, v);
    }
    w.push(b'}');
    let redacted = !input.messages;
    if !redacted {
        for name in ["messages", "prompt", "input"] {
            if let Some(v) = part(name) {
                w.extend_from_slice(b",\"");
                w.extend_from_slice(name.as_bytes());
                w.extend_from_slice(b"\":");
                json_value(w, v);
            }
        }
    }
    w.extend_from_slice(b",\"answer\":");
    match input.answer {
        Some(a) => json_answer(w, a, redacted),
        None => w.extend_from_slice(b"null"),
    }
    w.extend_from_slice(b",\"usage\":");
    match input.answer.and_then(|a| a.usage.as_ref()) {
        Some(u) => {
            w.extend_from_slice(b"{\"prompt_tokens\":");
            json_u64(w, u.prompt_tokens);
            w.extend_from_slice(b",\"completion_tokens\":");
            json_u64(w, u.completion_tokens);
            w.extend_from_slice(b",\"total_tokens\":");
            json_u64(w, u.total_tokens);
            if let Some(cached) = u.cached_tokens {
                w.extend_from_slice(b",\"cached_tokens\":");
                json_u64(w, cached);
            }
            w.push(b'}');
        }
        None => w.extend_from_slice(b"null"),
    }
    w.extend_from_slice(b",\"finish_reason\":");
    json_opt_str(
        w,
        input
            .answer
            .and_then(|a| a.choices.first())
            .and_then(|c| c.finish_reason.as_deref()),
    );
    w.extend_from_slice(b",\"status\":");
    json_u64(w, u64::from(input.status));
    w.extend_from_slice(b",\"cache\":");
    json_opt_str(w, input.cache);
    w.extend_from_slice(b",\"latency_ms\":");
    json_u64(w, input.now_ms.saturating_sub(input.started_ms));
    w.extend_from_slice(b",\"ttfb_ms\":");
    json_opt_u64(
        w,
        input
            .first_byte_ms
            .map(|t| t.saturating_sub(input.started_ms)),
    );
    w.extend_from_slice(b",\"truncated\":");
    json_bool(
        w,
        input.response_truncated || input.answer.is_some_and(|a| a.truncated),
    );
    w.extend_from_slice(b",\"request_truncated\":");
    json_bool(w, input.request_truncated);
    w.extend_from_slice(b",\"redacted\":");
    json_bool(w, redacted);
    w.push(b'}');
    out
}

/// [`LoggedAnswer`] as serde writes it; texts left empty when `redacted`.
fn json_answer<'a>(w: &mut Vec<u8>, a: &'a Answer, redacted: bool) {
    w.push(b'{');
    if let Some(id) = &a.id {
        w.extend_from_slice(b"\"id\":");
        json_str(w, id);
        w.push(b',');
    }
    if let Some(model) = &a.model {
        w.extend_from_slice(b"\"model\":");
        json_str(w, model);
        w.push(b',');
    }
    w.extend_from_slice(b"\"choices\":[");
    for (i, c) in a.choices.iter().enumerate() {
        if i > 0 {
            w.push(b',');
        }
        let text = |t: &'a str| if redacted { "" } else { t };
        w.extend_from_slice(b"{\"index\":");
        json_u64(w, u64::from(c.index));
        w.extend_from_slice(b",\"content\":");
        json_str(w, text(&c.content));
        w.extend_from_slice(b",\"reasoning_content\":");
        json_str(w, text(&c.reasoning_content));
        w.extend_from_slice(b",\"tool_calls\":[");
        for (j, t) in c.tool_calls.iter().enumerate() {
            if j > 0 {
                w.push(b',');
            }
            w.extend_from_slice(b"{\"index\":");
            json_u64(w, u64::from(t.index));
            w.extend_from_slice(b",\"id\":");
            json_opt_str(w, t.id.as_deref());
            w.extend_from_slice(b",\"type\":");
            json_opt_str(w, t.kind.as_deref());
            w.extend_from_slice(b",\"name\":");
            json_str(w, &t.name);
            w.extend_from_slice(b",\"arguments\":");
            json_str(w, text(&t.arguments));
            w.push(b'}');
        }
        w.extend_from_slice(b"],\"finish_reason\":");
        json_opt_str(w, c.finish_reason.as_deref());
        w.push(b'}');
    }
    w.extend_from_slice(b"],\"done\":");
    json_bool(w, a.done);
    w.push(b'}');
}

/// `v` as serde_json writes it (strings escaped by serde_json itself, so the line stays what
/// serializing a [`ChatRecord`] gives).
fn json_value<T: Serialize + ?Sized>(w: &mut Vec<u8>, v: &T) {
    // Writing into a `Vec` cannot fail, nor can strings, numbers or `Value`s (string keys).
    let _ = serde_json::to_writer(&mut *w, v);
}

fn json_bool(w: &mut Vec<u8>, b: bool) {
    w.extend_from_slice(if b { b"true" } else { b"false" });
}

fn json_u64(w: &mut Vec<u8>, n: u64) {
    w.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn json_opt_u64(w: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => json_u64(w, n),
        None => w.extend_from_slice(b"null"),
    }
}

fn json_opt_str(w: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(w, s),
        None => w.extend_from_slice(b"null"),
    }
}

fn json_str(w: &mut Vec<u8>, s: &str) {
    json_value(w, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::Usage;
    use crate::answer::{from_json_body, StreamExtractor, ToolCall};
    use crate::sse::SseParser;
    use serde_json::json;

    #[test]
    fn api_paths() {
        assert_eq!(api_for_path("/v1/chat/completions"), Some(ApiKind::Chat));
        assert_eq!(api_for_path("/chat/completions?x=1"), Some(ApiKind::Chat));
        assert_eq!(api_for_path("/v1/completions"), Some(ApiKind::Completion));
        assert_eq!(
            api_for_path("/v1beta/openai/embeddings/"),
            Some(ApiKind::Embedding)
        );
        assert_eq!(api_for_path("/v1/models"), None);
        assert_eq!(api_for_path("/v1/chat/completionsx"), None);
        assert_eq!(api_for_path("/v1/audio/transcriptions"), None);
    }

    #[test]
    fn rfc3339_is_utc_with_millis() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_798_292_415_123), "2026-12-26T13:40:15.123Z");
        assert_eq!(rfc3339_utc(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn hex_and_labels() {
        assert_eq!(hex(&[0, 0xab, 0x0f, 0xff]), "00ab0fff");
        assert_eq!(metric_label("gpt-4.1-mini"), "gpt-4_1-mini");
        assert_eq!(metric_label("meta/llama:3.1"), "meta_llama_3_1");
        assert_eq!(metric_label(""), "unknown");
        assert_eq!(metric_label(&"x".repeat(100)).len(), 64);
    }

    fn chat_answer() -> Answer {
        let stream = concat!(
            "data: {\"id\":\"c1\",\"model\":\"gpt-4o-2024\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
            "data: [DONE]\n\n"
        );
        let mut parser = SseParser::new(1 << 16);
        let mut events = Vec::new();
        parser.feed(stream.as_bytes(), &mut events);
        let mut ex = StreamExtractor::new(1 << 16);
        for e in &events {
            ex.on_event(e);
        }
        ex.into_answer()
    }

    fn input<'a>(body: &'a Value, answer: &'a Answer) -> RecordInput<'a> {
        RecordInput {
            started_ms: 1_798_292_415_000,
            now_ms: 1_798_292_415_250,
            first_byte_ms: Some(1_798_292_415_040),
            uid: "u1".into(),
            route: "root",
            api: Some(ApiKind::Chat),
            method: "POST",
            path: "/v1/chat/completions?key=secret",
            ip: Some("10.0.0.1".into()),
            key_name: Some("team-a"),
            level: Some(1),
            body: Some(body.clone()),
            answer: Some(answer),
            status: 200,
            cache: Some("miss"),
            messages: true,
            ..RecordInput::default()
        }
    }

    #[test]
    fn chat_record_has_everything() {
        let body = json!({"model":"gpt-4o","stream":true,"temperature":0.2,
            "messages":[{"role":"user","content":"hi"}]});
        let answer = chat_answer();
        let r = build(input(&body, &answer));
        assert_eq!(r.time, "2026-12-26T13:40:15.000Z");
        assert_eq!(r.upstream, "route_root");
        assert_eq!(r.path, "/v1/chat/completions", "query never logged");
        assert_eq!(r.model.as_deref(), Some("gpt-4o"));
        assert!(r.stream);
        assert_eq!(r.params["temperature"], json!(0.2));
        assert!(!r.params.contains_key("messages"));
        assert_eq!(r.messages, Some(json!([{"role":"user","content":"hi"}])));
        let a = r.answer.as_ref().unwrap();
        assert_eq!(a.choices[0].content, "Hello");
        assert_eq!(a.model.as_deref(), Some("gpt-4o-2024"));
        assert!(a.done);
        assert_eq!(r.usage.as_ref().unwrap().total_tokens, 5);
        assert_eq!(r.finish_reason.as_deref(), Some("stop"));
        assert_eq!((r.latency_ms, r.ttfb_ms), (250, Some(40)));
        assert_eq!(r.cache.as_deref(), Some("miss"));
        assert_eq!((r.key_name.as_deref(), r.level), (Some("team-a"), Some(1)));
        assert!(!r.truncated && !r.redacted);
        // Round trip: `convert` reads what the filter writes.
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n'));
        let back: ChatRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn privacy_drops_messages_and_answer_text_but_keeps_usage() {
        let body = json!({"model":"m","messages":[{"role":"user","content":"secret question"}]});
        let mut answer = chat_answer();
        answer.choices[0].tool_calls.push(ToolCall {
            index: 0,
            id: Some("call_1".into()),
            kind: Some("function".into()),
            name: "get_weather".into(),
            arguments: "{\"city\":\"secret\"}".into(),
        });
        let mut i = input(&body, &answer);
        i.messages = false;
        let r = build(i);
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains("secret"), "{line}");
        assert!(!line.contains("Hello"), "{line}");
        assert!(r.redacted);
        assert_eq!(r.usage.unwrap().prompt_tokens, 3);
        assert_eq!(
            r.answer.unwrap().choices[0].tool_calls[0].name,
            "get_weather"
        );
    }

    #[test]
    fn completion_and_embedding_records() {
        let body = json!({"model":"inst","prompt":"say hi"});
        let answer = from_json_body(
            ApiKind::Completion,
            br#"{"id":"x","choices":[{"index":0,"text":"hi!","finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}"#,
        )
        .unwrap();
        let mut i = input(&body, &answer);
        i.api = Some(ApiKind::Completion);
        i.path = "/v1/completions";
        let r = build(i);
        assert_eq!(r.prompt, Some(json!("say hi")));
        assert!(!r.stream, "stream defaults to false, unlike the reference");
        assert_eq!(r.answer.unwrap().choices[0].content, "hi!");

        let body = json!({"model":"emb","input":["a","b"]});
        let answer = from_json_body(
            ApiKind::Embedding,
            br#"{"object":"list","data":[{"embedding":[0.1]}],"model":"emb","usage":{"prompt_tokens":2,"total_tokens":2}}"#,
        )
        .unwrap();
        let mut i = input(&body, &answer);
        i.api = Some(ApiKind::Embedding);
        let r = build(i);
        assert_eq!(r.input, Some(json!(["a", "b"])));
        assert_eq!(r.usage.unwrap().total_tokens, 2);
        assert!(r.answer.unwrap().choices.is_empty());
    }

    #[test]
    fn failed_and_truncated_exchanges() {
        let body = json!({"model":"m","messages":[]});
        let none = Answer::default();
        let mut i = input(&body, &none);
        i.answer = None;
        i.status = 502;
        i.first_byte_ms = None;
        i.response_truncated = true;
        i.request_truncated = true;
        let r = build(i);
        assert_eq!(r.status, 502);
        assert!(r.answer.is_none() && r.usage.is_none() && r.ttfb_ms.is_none());
        assert!(r.truncated && r.request_truncated);
    }

    /// `write` gives exactly the bytes of the serialized `build`, for every kind of input.
    #[test]
    fn write_matches_the_serialized_record() {
        let same = |i: &RecordInput<'_>| {
            let old = serde_json::to_vec(&build(i.clone())).unwrap();
            let new = write(i);
            assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&old));
            assert_eq!(new, old);
        };
        let odd = "q\"b\\s/\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f} \u{7f}é你🌍\u{2028}";
        let body = json!({"model":"gpt-4o","stream":true,"temperature":0.2,"top_p":1e-7,
            "n":3,"stop":["a",odd],"z":{"b":null,"a":[1.5,-2,true]},
            "messages":[{"role":"user","content":odd}]});
        let mut answer = chat_answer();
        answer.choices[0].content.push_str(odd);
        answer.choices[0].reasoning_content = format!("think {odd}");
        answer.choices[0].tool_calls.push(ToolCall {
            index: 0,
            id: Some("call_1".into()),
            kind: Some("function".into()),
            name: odd.into(),
            arguments: "{\"city\":\"Paris\"}".into(),
        });
        answer.choices[0].tool_calls.push(ToolCall {
            index: 3,
            ..ToolCall::default()
        });
        answer.choices.push(Choice {
            index: 1,
            ..Choice::default()
        });
        answer.usage.as_mut().unwrap().cached_tokens = Some(7);
        let mut i = input(&body, &answer);
        same(&i);
        i.messages = false;
        same(&i);
        i.messages = true;
        i.route = odd;
        i.method = odd;
        i.path = "/v1/chat/completions#frag?x";
        i.ip = Some(odd.into());
        i.key_name = Some(odd);
        i.uid = odd.into();
        i.cache = None;
        i.first_byte_ms = Some(1);
        i.now_ms = 0;
        i.level = Some(u32::MAX);
        i.status = 0;
        same(&i);
        i.model = Some("routed");
        i.stream = Some(false);
        i.request_truncated = true;
        i.response_truncated = true;
        same(&i);
        let mut bare = answer.clone();
        bare.id = None;
        bare.model = None;
        bare.usage = Some(Usage {
            prompt_tokens: u64::MAX,
            ..Usage::default()
        });
        bare.truncated = true;
        bare.done = false;
        i.answer = Some(&bare);
        same(&i);
        let mut empty = bare.clone();
        empty.choices.clear();
        empty.usage = None;
        i.answer = Some(&empty);
        same(&i);
        i.answer = None;
        i.api = None;
        i.ip = None;
        i.key_name = None;
        i.level = None;
        i.first_byte_ms = None;
        same(&i);
        for body in [
            json!({"model":"inst","prompt":["say", odd],"stream":"yes","max_tokens":5}),
            json!({"model":7,"input":"a","messages":null}),
            json!({}),
            json!([1, 2]),
            json!("text"),
        ] {
            for messages in [true, false] {
                let mut i = input(&body, &answer);
                i.messages = messages;
                same(&i);
                i.model = None;
                i.stream = None;
                same(&i);
            }
        }
        let mut i = input(&body, &answer);
        i.body = None;
        same(&i);
        i.model = None;
        i.stream = None;
        same(&i);
        same(&RecordInput::default());
    }

    #[test]
    fn model_and_stream_from_other_features_win() {
        let body = json!({"model":"alias","stream":false});
        let answer = Answer::default();
        let mut i = input(&body, &answer);
        i.model = Some("routed-model");
        i.stream = Some(true);
        i.body = None;
        let r = build(i);
        assert_eq!(r.model.as_deref(), Some("routed-model"));
        assert!(r.stream);
        assert!(r.params.is_empty() && r.messages.is_none());
    }
}
