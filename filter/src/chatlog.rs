//! Chat logs and usage metrics: glue between Envoy's phases and `core::{sse, answer, chatlog}`.
//!
//! Response side (owned here, reused by other features): SSE chunks are parsed incrementally as
//! they pass — the filter returns `Continue`, so nothing is held back or changed — and non-stream
//! JSON bodies are copied (bounded) and read at the end (in place when they came in one chunk).
//! Without a record (metrics only) just the model and usage are read. [`Exchange::answer`] is
//! filled once the response ends (or in `on_log` when the stream was cut), so token charging and
//! cache store read the same parse.
//!
//! Request side: the body is needed only for the log record (messages, params). When another
//! feature already parsed it into [`Exchange::body`] it is reused; otherwise its chunks are copied
//! as they flow to the upstream (never held) and parsed at the end of the request.
//!
//! The record is written in `on_log` into filter state `wasm.llm_forward_log.<route>`; the rendered
//! config has one file access logger per `openai` route that prints that key and only writes a line
//! when it exists.

use crate::exchange::Exchange;
use crate::host;
use crate::plugin::Plugin;
use llm_forward_core::answer::{
    from_json_body, usage_from_json_body, Answer, ApiKind, StreamExtractor,
};
use llm_forward_core::chatlog::{self, api_for_path, metric_label, RecordInput};
use llm_forward_core::config::{FilterRoute, RouteKind};
use llm_forward_core::routing::route_path;
use llm_forward_core::sse::{SseEvent, SseParser};
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;

/// Filter-state key prefix (after Envoy's `wasm.`) of the record; the route name follows.
pub const LOG_PROPERTY: &str = "llm_forward_log";

/// Extra room for JSON syntax around the text when a non-stream body is copied.
const JSON_OVERHEAD: usize = 64 * 1024;

/// How the response body is being read.
enum Tap {
    /// Not read (not a 2xx answer of a known API, or nothing needs it).
    Off,
    Sse(Box<SseTap>),
    Json {
        body: Vec<u8>,
        cap: usize,
        overflow: bool,
    },
    /// Usage metrics alone, response headers not read: the first bytes of the body tell a JSON
    /// answer (`{`) from an event stream (see [`ChatLog::reads_without_response_headers`]).
    Sniff,
    Done,
}

struct SseTap {
    parser: SseParser,
    extractor: StreamExtractor,
    events: Vec<SseEvent>,
}

/// Per-request state of the feature.
pub struct ChatLog {
    api: ApiKind,
    /// Write a record (logging.chat); otherwise only metrics.
    write: bool,
    messages: bool,
    /// Request body chunks copied while they flow (None when not collecting).
    request: Option<Vec<u8>>,
    request_cap: usize,
    request_truncated: bool,
    tap: Tap,
    max_answer: usize,
    response_truncated: bool,
}

impl ChatLog {
    /// Whether this request is one the feature handles: an `openai` route, a chat, completion or
    /// embedding path, with logging or metrics on.
    pub fn start(plugin: &Plugin, route: &FilterRoute, ex: &Exchange) -> Option<ChatLog> {
        let logging = &plugin.config.logging;
        if route.kind != RouteKind::Openai || !(logging.chat || logging.metrics) {
            return None;
        }
        let api = ex
            .api
            .or_else(|| api_for_path(route_path(&route.prefix, &ex.path)))?;
        Some(ChatLog {
            api,
            write: logging.chat,
            messages: logging.messages_for(&route.name),
            request: logging.chat.then(Vec::new),
            request_cap: logging.max_request_bytes as usize,
            request_truncated: false,
            tap: Tap::Off,
            max_answer: logging.max_answer_bytes as usize,
            response_truncated: false,
        })
    }

    /// A request body chunk passing through (the request is not held by anyone).
    pub fn on_request_chunk(&mut self, ex: &mut Exchange, size: usize, end_of_stream: bool) {
        if ex.body.is_some() {
            self.request = None;
        }
        let Some(buf) = self.request.as_mut() else {
            return;
        };
        if size > 0 {
            if buf.len().saturating_add(size) > self.request_cap {
                self.request = None;
                self.request_truncated = true;
                return;
            }
            if let Ok(Some(chunk)) = host::get_buffer(BufferType::HttpRequestBody, 0, size) {
                buf.extend_from_slice(&chunk);
            }
        }
        if end_of_stream {
            if let Some(body) = self.request.take() {
                self.parse_request(ex, &body);
            }
        }
    }

    /// The whole request body, read by the phase that held the request.
    pub fn on_request_body(&mut self, ex: &mut Exchange, body: &[u8]) {
        self.request = None;
        if self.write && ex.body.is_none() {
            self.parse_request(ex, body);
        }
    }

    fn parse_request(&mut self, ex: &mut Exchange, body: &[u8]) {
        if ex.body.is_some() {
            return;
        }
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value @ serde_json::Value::Object(_)) => {
                if ex.model.is_none() {
                    ex.model = value
                        .get("model")
                        .and_then(|m| m.as_str())
                        .map(String::from);
                }
                if !ex.stream {
                    ex.stream = value
                        .get("stream")
                        .and_then(|s| s.as_bool())
                        .unwrap_or(false);
                }
                ex.body = Some(value);
            }
            _ => self.request_truncated = !body.is_empty(),
        }
    }

    /// Usage metrics alone can do without the response headers: whether the answer is JSON or an
    /// event stream shows in its first byte, and a non-2xx body (an error object, an HTML page)
    /// carries no `usage`, so it counts the request and no tokens, as an unread one does. Reading
    /// the response map costs Envoy ~18 k instructions, ~8 % of a plain-Envoy request
    /// (docs/performance.md).
    pub fn reads_without_response_headers(&self) -> bool {
        !self.write
    }

    /// Response headers not read ([`Self::reads_without_response_headers`]): the body decides.
    pub fn on_response_headers_unread(&mut self, ex: &Exchange) {
        if ex.answer.is_none() {
            self.tap = Tap::Sniff;
        }
    }

    /// The reader for a body that starts with `first` (its first non-whitespace byte).
    fn sniffed_tap(&self, first: u8) -> Tap {
        if first == b'{' {
            self.json_tap()
        } else {
            self.sse_tap()
        }
    }

    fn sse_tap(&self) -> Tap {
        // The parser buffers at most one line plus one pending event.
        Tap::Sse(Box::new(SseTap {
            parser: SseParser::new(self.max_answer.max(JSON_OVERHEAD)),
            // Metrics alone need the model and usage: other events are counted, not parsed.
            extractor: if self.write {
                StreamExtractor::new(self.max_answer)
            } else {
                StreamExtractor::usage_only()
            },
            events: Vec::new(),
        }))
    }

    fn json_tap(&self) -> Tap {
        Tap::Json {
            body: Vec::new(),
            cap: self.max_answer.saturating_add(JSON_OVERHEAD),
            overflow: false,
        }
    }

    /// Response headers: decide how the body is read. Only 2xx answers are parsed.
    pub fn on_response_headers(&mut self, ex: &mut Exchange) {
        // Only the record shows the time to first byte.
        if self.write && ex.first_byte_ms.is_none() {
            ex.first_byte_ms = Some(host::now_ms());
        }
        // Not a 2xx, or a cache hit whose answer is already known: nothing to read.
        if !(200..300).contains(&ex.status) || ex.answer.is_some() {
            return;
        }
        let content_type = ex.response_content_type.get_or_insert_with(|| {
            crate::host::header_value(MapType::HttpResponseHeaders, "content-type")
                .unwrap_or_default()
        });
        self.tap = if content_type.contains("text/event-stream") {
            self.sse_tap()
        } else {
            self.json_tap()
        };
    }

    /// A response body chunk passing through; at the end, [`Exchange::answer`] is set.
    pub fn on_response_chunk(
        &mut self,
        ex: &mut Exchange,
        chunk: &mut host::ResponseChunk,
        end_of_stream: bool,
    ) {
        if matches!(self.tap, Tap::Off | Tap::Done) {
            return;
        }
        let (api, write) = (self.api, self.write);
        if chunk.size() > 0 {
            let chunk: &[u8] = chunk.bytes().ok().flatten().unwrap_or_default();
            if matches!(self.tap, Tap::Sniff) {
                // Leading whitespace means nothing to either format: wait for a byte that does.
                if let Some(&first) = chunk.iter().find(|b| !b.is_ascii_whitespace()) {
                    self.tap = self.sniffed_tap(first);
                }
            }
            match &mut self.tap {
                Tap::Sse(sse) => {
                    let SseTap {
                        parser,
                        extractor,
                        events,
                    } = sse.as_mut();
                    parser.feed(chunk, events);
                    for ev in events.drain(..) {
                        extractor.on_event(&ev);
                    }
                }
                Tap::Json {
                    body,
                    cap,
                    overflow,
                } => {
                    if *overflow || body.len().saturating_add(chunk.len()) > *cap {
                        // Too big to parse within the cap: keep nothing.
                        *overflow = true;
                        *body = Vec::new();
                    } else if end_of_stream && body.is_empty() {
                        // The whole body in one chunk: read in place, not copied.
                        ex.answer = read_json(api, write, chunk);
                        self.tap = Tap::Done;
                        return;
                    } else {
                        body.extend_from_slice(chunk);
                    }
                }
                Tap::Off | Tap::Sniff | Tap::Done => {}
            }
        }
        if end_of_stream {
            self.finish(ex);
        }
    }

    /// Ends the response reading (also when the stream was cut) and stores the answer.
    fn finish(&mut self, ex: &mut Exchange) {
        match std::mem::replace(&mut self.tap, Tap::Done) {
            Tap::Sse(sse) => {
                let SseTap {
                    mut parser,
                    extractor,
                    ..
                } = *sse;
                parser.finish();
                let mut answer = extractor.into_answer();
                answer.truncated |= parser.truncated();
                ex.answer = Some(answer);
            }
            Tap::Json { body, overflow, .. } => {
                if overflow {
                    self.response_truncated = true;
                } else {
                    ex.answer = read_json(self.api, self.write, &body);
                }
            }
            Tap::Off | Tap::Sniff | Tap::Done => {}
        }
    }

    /// The exchange is over: count usage and write the record.
    pub fn on_log(&mut self, plugin: &Plugin, route: &FilterRoute, ex: &mut Exchange) {
        self.finish(ex);
        let level = ex.caller.as_ref().map(|c| c.level);
        if plugin.config.logging.metrics {
            let model = ex
                .model
                .as_deref()
                .or_else(|| ex.answer.as_ref().and_then(|a| a.model.as_deref()));
            plugin
                .usage
                .count(&route.name, model, level.unwrap_or(0), ex.answer.as_ref());
        }
        if !self.write {
            return;
        }
        let ip = ex
            .client_ip
            .map(|ip| llm_forward_core::cidr::ip_text(&ip))
            .or_else(source_ip);
        let line = chatlog::write(&RecordInput {
            started_ms: ex.started_ms,
            now_ms: host::now_ms(),
            first_byte_ms: ex.first_byte_ms,
            uid: new_uid(),
            route: &route.name,
            api: Some(self.api),
            method: &ex.method,
            path: route_path(&route.prefix, &ex.path),
            ip,
            key_name: ex.caller.as_ref().and_then(|c| c.key_name.as_deref()),
            level,
            model: ex.model.as_deref(),
            stream: ex.body.is_none().then_some(ex.stream),
            // Nothing after the log reads the request body.
            body: ex.body.take(),
            request_truncated: self.request_truncated,
            answer: ex.answer.as_ref(),
            response_truncated: self.response_truncated,
            status: ex.status,
            cache: ex.cache_status,
            messages: self.messages,
        });
        let key = plugin.log_keys.get(ex.route).map_or("", String::as_str);
        if host::set_property(vec![key], Some(&line)).is_err() {
            host::log(
                LogLevel::Warn,
                "llm-forward: could not store the log record",
            );
        }
    }
}

/// The answer of a whole non-stream body: all of it for the record, or only what the usage
/// metrics read (model and usage) when no record is written.
fn read_json(api: ApiKind, write: bool, body: &[u8]) -> Option<Answer> {
    if write {
        from_json_body(api, body)
    } else {
        usage_from_json_body(api, body)
    }
}

/// The downstream address without port, from Envoy's `source.address` attribute.
fn source_ip() -> Option<String> {
    let bytes = host::get_property(vec!["source", "address"])
        .ok()
        .flatten()?;
    let addr = String::from_utf8(bytes).ok()?;
    match addr.parse::<std::net::SocketAddr>() {
        Ok(sock) => Some(sock.ip().to_string()),
        Err(_) => Some(addr),
    }
}

thread_local! {
    /// Per-worker uid state: a 128-bit seed from the host (WASI `random_get`, once) and a counter.
    static UID: std::cell::Cell<Option<(u64, u64, u64)>> = const { std::cell::Cell::new(None) };
}

/// SplitMix64's finalizer: a bijection on u64 that scrambles every bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 128 bits: the worker's random seed mixed with a per-worker counter, so uids never repeat within
/// a worker and look random across workers, without a host call per request. Falls back to clock
/// bits if the host has no randomness.
fn new_uid() -> String {
    let (a, b, n) = UID.with(|cell| {
        let (a, b, n) = cell.get().unwrap_or_else(|| {
            let mut seed = [0u8; 16];
            if getrandom::fill(&mut seed).is_err() {
                seed[..8].copy_from_slice(&host::now_ms().to_le_bytes());
            }
            let (lo, hi) = seed.split_at(8);
            let word = |s: &[u8]| s.iter().fold(0u64, |w, &x| (w << 8) | u64::from(x));
            (word(lo), word(hi), 0)
        });
        cell.set(Some((a, b, n.wrapping_add(1))));
        (a, b, n)
    });
    let mut bytes = [0u8; 16];
    let (hi, lo) = bytes.split_at_mut(8);
    hi.copy_from_slice(&mix64(a.wrapping_add(n)).to_be_bytes());
    lo.copy_from_slice(&mix64(b ^ mix64(n)).to_be_bytes());
    chatlog::hex(&bytes)
}

/// Distinct model labels kept per worker; later ones are counted as `other`.
pub const MAX_MODEL_LABELS: usize = 1000;

/// Requests and token counters per route × model × level, defined on first use:
/// `llm_forward.usage.<route>.<model>.<level>.{requests,prompt_tokens,completion_tokens}_total`.
#[derive(Debug, Default)]
pub struct UsageMetrics {
    counters: RefCell<HashMap<String, [Option<u32>; 3]>>,
    models: RefCell<HashMap<String, ()>>,
    /// Memo of the ids by route → model as sent → level, looked up without building a string.
    /// Bounded by [`MAX_MEMO_MODELS`] models per route (beyond it, the slow path above).
    memo: RefCell<HashMap<String, ModelMemo>>,
}

type Ids = [Option<u32>; 3];

/// Model as sent → `(level, ids)`.
type ModelMemo = HashMap<String, Vec<(u32, Ids)>>;

/// Distinct model strings (as sent, before labelling) memoised per route and worker.
const MAX_MEMO_MODELS: usize = 2 * MAX_MODEL_LABELS;

impl UsageMetrics {
    fn label(&self, model: Option<&str>) -> String {
        let label = metric_label(model.unwrap_or(""));
        let mut models = self.models.borrow_mut();
        if models.contains_key(&label) {
            return label;
        }
        if models.len() >= MAX_MODEL_LABELS {
            return "other".into();
        }
        models.insert(label.clone(), ());
        label
    }

    /// The counter ids of `(route, model, level)`: from the memo (no allocation) when seen before.
    fn ids(&self, route: &str, model: Option<&str>, level: u32) -> Ids {
        let raw = model.unwrap_or("");
        let mut memo = self.memo.borrow_mut();
        if let Some(levels) = memo.get(route).and_then(|m| m.get(raw)) {
            if let Some((_, ids)) = levels.iter().find(|(l, _)| *l == level) {
                return *ids;
            }
        }
        let ids = self.define(route, model, level);
        let models = memo.entry(route.to_string()).or_default();
        if models.len() < MAX_MEMO_MODELS || models.contains_key(raw) {
            models
                .entry(raw.to_string())
                .or_default()
                .push((level, ids));
        }
        ids
    }

    fn define(&self, route: &str, model: Option<&str>, level: u32) -> Ids {
        let key = format!("{route}.{}.{level}", self.label(model));
        let mut counters = self.counters.borrow_mut();
        *counters.entry(key).or_insert_with_key(|key| {
            ["requests", "prompt_tokens", "completion_tokens"].map(|what| {
                host::define_metric(
                    MetricType::Counter,
                    &format!("llm_forward.usage.{key}.{what}_total"),
                )
                .ok()
            })
        })
    }

    pub fn count(&self, route: &str, model: Option<&str>, level: u32, answer: Option<&Answer>) {
        let ids = self.ids(route, model, level);
        let usage = answer.and_then(|a| a.usage.as_ref());
        let values = [
            1,
            usage.map_or(0, |u| u.prompt_tokens),
            usage.map_or(0, |u| u.completion_tokens),
        ];
        for (id, value) in ids.iter().zip(values) {
            if let (Some(id), true) = (id, value > 0) {
                let _ = host::increment_metric(*id, value as i64);
            }
        }
    }
}
