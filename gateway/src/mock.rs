//! A deterministic mock of an OpenAI-compatible upstream.
//!
//! Two users: the integration tests, which put a real Envoy (with the filter) in front of it and then assert
//! both what the client saw and what the upstream received; and `llm-forward run --demo`, which lets people try
//! the gateway without an API key or a network.
//!
//! Design choices:
//! - **Everything is recorded first**, before any routing or failure injection, so a test can always check
//!   what reached the upstream (including retries, rewritten bodies and multipart uploads).
//! - **Answers are fixed** (text, ids, `created`), so cached and fresh responses can be compared byte for byte.
//! - **Behaviour is steered by `x-mock-*` request headers** rather than the OpenAI body, so a test can ask for
//!   chunking, delays, errors or tool calls without changing what the gateway parses (see the table below).
//! - **Routes match on the path suffix**, so the same mock serves `/v1/chat/completions` and
//!   `/anything/v1/chat/completions` behind prefix rewrites.
//! - **A bad request never crashes the mock**: every problem with the input becomes an OpenAI-style JSON error.
//!
//! # Knobs
//!
//! | header                     | effect                                                                       |
//! |----------------------------|------------------------------------------------------------------------------|
//! | `x-mock-status: S`         | answer status `S` (3xx–5xx) with an OpenAI-style error body; 2xx = no-op     |
//! | `x-mock-sleep-ms: D`       | sleep before sending the response headers (any route; `/slow` defaults 5000) |
//! | `x-mock-chunks: N`         | answer text becomes N pieces `"tok0 "`, `"tok1 "`, … (stream and non-stream) |
//! | `x-mock-delay-ms: D`       | streaming: sleep before each content / tool-call chunk                       |
//! | `x-mock-tool-calls: K`     | chat: answer with K parallel tool calls instead of text                      |
//! | `x-mock-completion-tokens` | `usage.completion_tokens` (default: number of content chunks)                |
//! | `x-mock-prompt-tokens`     | `usage.prompt_tokens` (default 10; embeddings 2)                             |
//! | `x-mock-body-bytes: N`     | non-stream chat/completions: pad the answer text to N bytes                  |
//! | `x-mock-reset-after: N`    | streaming: send N events, then drop the connection (no chunked terminator)   |
//! | `x-mock-malformed: 1`      | streaming: mix broken events (not JSON, bad UTF-8, CR-only lines, a comment, |
//! |                            | an event without data, a 64 KiB line) into the stream before `[DONE]`        |
//!
//! A knob with an unparsable value is answered with 400, so a typo in a test fails loudly.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// The default answer text; streamed as four pieces ("Hello", " world,", " from", " mock!").
pub const ANSWER: &str = "Hello world, from mock!";
const ANSWER_PIECES: [&str; 4] = ["Hello", " world,", " from", " mock!"];
/// Fixed `created` timestamp: a real clock would make cached and fresh answers differ.
const CREATED: u64 = 1_700_000_000;
const DEFAULT_MODEL: &str = "mock-model";
const PROMPT_TOKENS: u64 = 10;
const EMBEDDING_PROMPT_TOKENS: u64 = 2;
const SLOW_DEFAULT_MS: u64 = 5_000;
/// Caps on knobs, so that a silly header value cannot exhaust the test machine's memory.
const MAX_CHUNKS: usize = 100_000;
const MAX_TOOL_CALLS: usize = 1_000;
const MAX_BODY_BYTES: usize = 256 << 20;
/// Tool-call arguments are streamed in fragments of this many characters.
const ARGUMENT_FRAGMENT_CHARS: usize = 8;
const MODELS: [&str; 4] = [
    "gpt-4o-mini",
    "gpt-4o",
    "text-embedding-3-small",
    DEFAULT_MODEL,
];

/// A body can fail mid-way (`x-mock-reset-after`): hyper then drops the connection.
type Body = BoxBody<Bytes, std::io::Error>;

/// One request exactly as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path plus `?query`, as received.
    pub path: String,
    /// In arrival order; names are lower-case (hyper normalises them), repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The path without the query string.
    fn path_only(&self) -> &str {
        self.path
            .split_once('?')
            .map_or(self.path.as_str(), |(p, _)| p)
    }
}

/// How many requests the mock keeps for inspection.
pub const MAX_RECORDED: usize = 10_000;

/// State shared between the handle the test holds and the server's connection tasks.
#[derive(Default)]
struct State {
    /// The most recent [`MAX_RECORDED`] requests: a long-running demo or benchmark must not grow forever.
    requests: Mutex<VecDeque<RecordedRequest>>,
    /// Every request ever received (recorded or already forgotten), until `clear`.
    received: AtomicU64,
    /// Request id → attempts still to fail with 503.
    fail_ids: Mutex<HashMap<String, u32>>,
    /// Authorization value → (status, responses still to fail).
    fail_keys: Mutex<HashMap<String, (u16, u32)>>,
    /// Source of `x-request-id` values for requests that carry none.
    counter: AtomicU64,
}

/// A poisoned lock only means another handler panicked mid-update; the data is still usable for a mock,
/// and refusing to serve would turn one bug into a cascade of confusing test failures.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running mock server. Dropping it stops the server (listener and open connections).
pub struct MockUpstream {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
    /// Present when the server owns its thread and runtime ([`MockUpstream::spawn`]).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockUpstream {
    /// Start on a background thread with its own single-threaded tokio runtime, for blocking tests.
    /// Returns once the socket is listening (port 0 = a free port; see [`MockUpstream::addr`]).
    pub fn spawn(addr: SocketAddr) -> std::io::Result<MockUpstream> {
        // Bind on the caller's thread so that bind errors are returned and the port is known on return.
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let state = Arc::new(State::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let server_state = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name(format!("mock-upstream-{}", addr.port()))
            // Dropping the runtime at the end of the thread cancels every connection and stream task.
            .spawn(move || runtime.block_on(serve(listener, server_state, shutdown_rx)))?;
        Ok(MockUpstream {
            addr,
            state,
            shutdown,
            thread: Some(thread),
        })
    }

    /// Start inside the current tokio runtime (for `llm-forward run --demo`).
    pub async fn start(addr: SocketAddr) -> std::io::Result<MockUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let (shutdown, shutdown_rx) = watch::channel(false);
        tokio::spawn(serve(listener, Arc::clone(&state), shutdown_rx));
        Ok(MockUpstream {
            addr,
            state,
            shutdown,
            thread: None,
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, with an unspecified bind address (0.0.0.0 / ::) replaced by loopback so it can be
    /// connected to.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).iter().cloned().collect()
    }

    /// How many requests arrived since start (or `clear`), including ones no longer recorded.
    pub fn request_count(&self) -> usize {
        self.state.received.load(Ordering::SeqCst) as usize
    }

    /// Forget the recorded requests (injected failures are kept).
    pub fn clear(&self) {
        let mut requests = lock(&self.state.requests);
        requests.clear();
        self.state.received.store(0, Ordering::SeqCst);
    }

    /// Fail the next `n` requests whose `x-request-id` (or `x-mock-request-id`, for setups where Envoy
    /// regenerates `x-request-id`) equals `request_id` with 503 and an OpenAI-style error. Replaces any
    /// previous count for that id; `n = 0` cancels.
    pub fn fail_first(&self, request_id: &str, n: u32) {
        lock(&self.state.fail_ids).insert(request_id.to_owned(), n);
    }

    /// Answer the next `times` requests whose `authorization` header equals `authorization` with `status`
    /// (e.g. 429 or 401) and an OpenAI-style error. Replaces any previous setting for that value.
    pub fn fail_key(&self, authorization: &str, status: u16, times: u32) {
        lock(&self.state.fail_keys).insert(authorization.to_owned(), (status, times));
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        // Receivers also treat a dropped sender as shutdown; sending makes the intent explicit.
        let _ = self.shutdown.send(true);
        if let Some(thread) = self.thread.take() {
            // Joining makes "dropped" mean "port closed", so a test can assert the upstream is gone.
            let _ = thread.join();
        }
    }
}

/// Serve until `shutdown` fires. Envoy keeps idle upstream connections in its pool; closing them
/// behind its back makes tests flaky, so no header-read timeout.
async fn serve(listener: TcpListener, state: Arc<State>, shutdown: watch::Receiver<bool>) {
    let handler = move |req| {
        let state = Arc::clone(&state);
        async move {
            match handle(state, req).await {
                Ok(r) => r,
                Err(never) => match never {},
            }
        }
    };
    crate::http_server::serve(
        crate::http_server::Listener::Tcp(listener),
        crate::http_server::ServeOptions::default(),
        handler,
        shutdown,
    )
    .await;
}

/// Record the request, answer it, and stamp the headers every response carries.
async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let (body, body_error) = match body.collect().await {
        Ok(collected) => (collected.to_bytes(), None),
        Err(e) => (Bytes::new(), Some(e.to_string())),
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.to_string(), |pq| pq.as_str().to_owned());
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        path,
        headers,
        body: body.to_vec(),
    };
    {
        let mut requests = lock(&state.requests);
        if requests.len() == MAX_RECORDED {
            requests.pop_front();
        }
        requests.push_back(recorded.clone());
        state.received.fetch_add(1, Ordering::SeqCst);
    }

    let mut response = match body_error {
        Some(e) => error_response(400, &format!("could not read the request body: {e}")),
        None => respond(&state, &recorded).await,
    };

    // Echo the raw header value (always a valid HeaderValue), else number the request.
    let request_id = parts
        .headers
        .get("x-request-id")
        .or_else(|| parts.headers.get("x-mock-request-id"))
        .cloned()
        .or_else(|| {
            let n = state.counter.fetch_add(1, Ordering::Relaxed) + 1;
            HeaderValue::from_str(&format!("mock-{n}")).ok()
        });
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-mock"),
        HeaderValue::from_static("1"),
    );
    headers.insert(
        HeaderName::from_static("openai-processing-ms"),
        HeaderValue::from_static("1"),
    );
    if let Some(id) = request_id {
        headers.insert(HeaderName::from_static("x-request-id"), id);
    }
    Ok(response)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Echo,
    Chat,
    Completions,
    Embeddings,
    Models,
    Slow,
    NotFound,
}

impl Route {
    fn of(path: &str) -> Route {
        // `/echo` may be followed by anything, so multipart tests can post to `/echo/upload/x`.
        if path.ends_with("/echo") || path.contains("/echo/") {
            Route::Echo
        } else if path.ends_with("/chat/completions") {
            Route::Chat
        } else if path.ends_with("/completions") {
            Route::Completions
        } else if path.ends_with("/embeddings") {
            Route::Embeddings
        } else if path.ends_with("/models") {
            Route::Models
        } else if path.ends_with("/slow") {
            Route::Slow
        } else {
            Route::NotFound
        }
    }
}

/// The `x-mock-*` request headers, parsed once.
#[derive(Debug, Default)]
struct Knobs {
    status: Option<u16>,
    sleep_ms: Option<u64>,
    chunks: Option<usize>,
    delay_ms: u64,
    tool_calls: usize,
    completion_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    body_bytes: Option<usize>,
    reset_after: Option<usize>,
    malformed: bool,
}

impl Knobs {
    fn parse(req: &RecordedRequest) -> Result<Knobs, String> {
        let knobs = Knobs {
            status: knob(req, "x-mock-status")?,
            sleep_ms: knob(req, "x-mock-sleep-ms")?,
            chunks: knob(req, "x-mock-chunks")?,
            delay_ms: knob(req, "x-mock-delay-ms")?.unwrap_or(0),
            tool_calls: knob(req, "x-mock-tool-calls")?.unwrap_or(0),
            completion_tokens: knob(req, "x-mock-completion-tokens")?,
            prompt_tokens: knob(req, "x-mock-prompt-tokens")?,
            body_bytes: knob(req, "x-mock-body-bytes")?,
            reset_after: knob(req, "x-mock-reset-after")?,
            malformed: knob::<u8>(req, "x-mock-malformed")?.unwrap_or(0) != 0,
        };
        if knobs.status.is_some_and(|s| !(200..=599).contains(&s)) {
            return Err("x-mock-status must be within 200..=599".into());
        }
        if knobs.chunks.is_some_and(|n| n > MAX_CHUNKS) {
            return Err(format!("x-mock-chunks must be at most {MAX_CHUNKS}"));
        }
        if knobs.tool_calls > MAX_TOOL_CALLS {
            return Err(format!(
                "x-mock-tool-calls must be at most {MAX_TOOL_CALLS}"
            ));
        }
        if knobs.body_bytes.is_some_and(|n| n > MAX_BODY_BYTES) {
            return Err(format!(
                "x-mock-body-bytes must be at most {MAX_BODY_BYTES}"
            ));
        }
        Ok(knobs)
    }

    fn usage(&self, default_completion: usize) -> Usage {
        let prompt = self.prompt_tokens.unwrap_or(PROMPT_TOKENS);
        let completion = self.completion_tokens.unwrap_or(default_completion as u64);
        Usage { prompt, completion }
    }
}

fn knob<T: FromStr>(req: &RecordedRequest, name: &str) -> Result<Option<T>, String> {
    req.header(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("invalid {name} header: {v:?}"))
        })
        .transpose()
}

/// Failure injection, then the knobs that apply to every route, then the route itself.
async fn respond(state: &State, req: &RecordedRequest) -> Response<Body> {
    // Decided (and counted) on arrival, so an attempt that a proxy abandons mid-sleep still counts.
    let injected = take_injected_failure(state, req);
    let knobs = match Knobs::parse(req) {
        Ok(knobs) => knobs,
        Err(message) => return error_response(400, &message),
    };
    let route = Route::of(req.path_only());
    let default_sleep = (route == Route::Slow).then_some(SLOW_DEFAULT_MS);
    let slept_ms = knobs.sleep_ms.or(default_sleep).unwrap_or(0);
    if slept_ms > 0 {
        tokio::time::sleep(Duration::from_millis(slept_ms)).await;
    }
    if let Some(response) = injected {
        return response;
    }
    if let Some(status) = knobs.status.filter(|s| *s >= 300) {
        return error_response(status, &format!("injected by x-mock-status: {status}"));
    }
    let method_ok = match route {
        Route::Chat | Route::Completions | Route::Embeddings => req.method == "POST",
        Route::Models => req.method == "GET",
        Route::Echo | Route::Slow | Route::NotFound => true,
    };
    if !method_ok {
        return error_response(
            405,
            &format!("method {} not allowed on {}", req.method, req.path_only()),
        );
    }
    match route {
        Route::Chat => completion(req, &knobs, Api::Chat),
        Route::Completions => completion(req, &knobs, Api::Legacy),
        Route::Embeddings => embeddings(req, &knobs),
        Route::Models => models(),
        Route::Echo => echo(req),
        Route::Slow => json_response(
            StatusCode::OK,
            format!(r#"{{"ok":true,"slept_ms":{slept_ms}}}"#),
        ),
        Route::NotFound => error_response(
            404,
            &format!("Invalid URL ({} {})", req.method, req.path_only()),
        ),
    }
}

/// Consume one unit of a `fail_first` or `fail_key` budget matching this request, if any.
fn take_injected_failure(state: &State, req: &RecordedRequest) -> Option<Response<Body>> {
    {
        let mut ids = lock(&state.fail_ids);
        for name in ["x-request-id", "x-mock-request-id"] {
            let Some(id) = req.header(name) else { continue };
            if let Some(left) = ids.get_mut(id).filter(|left| **left > 0) {
                *left -= 1;
                return Some(error_response(
                    503,
                    &format!("mock: injected failure for request id {id}"),
                ));
            }
        }
    }
    let auth = req.header("authorization")?;
    let mut keys = lock(&state.fail_keys);
    let (status, left) = keys.get_mut(auth).filter(|(_, left)| *left > 0)?;
    *left -= 1;
    Some(error_response(
        *status,
        "mock: injected failure for this API key",
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    /// `/chat/completions`: `message` / `delta` objects, tool calls.
    Chat,
    /// `/completions`: `text` choices.
    Legacy,
}

#[derive(Clone, Copy)]
struct Usage {
    prompt: u64,
    completion: u64,
}

impl Usage {
    fn to_json(self) -> String {
        format!(
            r#"{{"prompt_tokens":{},"completion_tokens":{},"total_tokens":{}}}"#,
            self.prompt,
            self.completion,
            self.prompt.saturating_add(self.completion)
        )
    }
}

struct ToolCall {
    id: String,
    name: &'static str,
    arguments: String,
}

fn tool_calls(k: usize) -> Vec<ToolCall> {
    (0..k)
        .map(|i| ToolCall {
            id: format!("call_mock_{i}"),
            name: "get_weather",
            arguments: format!(r#"{{"location":"City {i}","unit":"celsius"}}"#),
        })
        .collect()
}

/// A JSON string literal for `s`.
fn js(s: &str) -> String {
    Value::from(s).to_string()
}

/// Chat and legacy completions, streamed or not.
fn completion(req: &RecordedRequest, knobs: &Knobs, api: Api) -> Response<Body> {
    let body = match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return error_response(400, "the request body must be a JSON object"),
        Err(e) => {
            return error_response(
                400,
                &format!("We could not parse the JSON body of your request. ({e})"),
            )
        }
    };
    let model = js(body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_MODEL));
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let pieces: Vec<String> = match knobs.chunks {
        Some(n) => (0..n).map(|i| format!("tok{i} ")).collect(),
        None => ANSWER_PIECES.iter().map(|p| (*p).to_owned()).collect(),
    };
    let calls = if api == Api::Chat {
        tool_calls(knobs.tool_calls)
    } else {
        Vec::new()
    };

    if stream {
        let (events, streamed_chunks) = match api {
            Api::Chat if !calls.is_empty() => chat_tool_call_events(&model, &calls),
            Api::Chat => chat_text_events(&model, &pieces),
            Api::Legacy => legacy_text_events(&model, &pieces),
        };
        let mut events = events;
        if include_usage {
            let id = if api == Api::Chat {
                "chatcmpl-mock"
            } else {
                "cmpl-mock"
            };
            let object = if api == Api::Chat {
                "chat.completion.chunk"
            } else {
                "text_completion"
            };
            events.push(SseEvent::now(format!(
                r#"{{"id":"{id}","object":"{object}","created":{CREATED},"model":{model},"choices":[],"usage":{}}}"#,
                knobs.usage(streamed_chunks).to_json()
            )));
        }
        if knobs.malformed {
            events = with_malformed_events(events);
        }
        return sse_response(
            events,
            Duration::from_millis(knobs.delay_ms),
            knobs.reset_after,
        );
    }

    let mut text: String = pieces.concat();
    if let Some(target) = knobs.body_bytes {
        // Pad with a repeating ASCII filler so the JSON stays readable and the size is exact.
        let missing = target.saturating_sub(text.len());
        text.extend(" mock".chars().cycle().take(missing));
    }
    let json = match api {
        Api::Chat if !calls.is_empty() => {
            let entries: Vec<String> = calls
                .iter()
                .map(|c| {
                    format!(
                        r#"{{"id":{},"type":"function","function":{{"name":{},"arguments":{}}}}}"#,
                        js(&c.id),
                        js(c.name),
                        js(&c.arguments)
                    )
                })
                .collect();
            let fragments: usize = calls.iter().map(|c| fragments(&c.arguments).len()).sum();
            format!(
                r#"{{"id":"chatcmpl-mock","object":"chat.completion","created":{CREATED},"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":null,"tool_calls":[{}]}},"logprobs":null,"finish_reason":"tool_calls"}}],"usage":{},"system_fingerprint":"fp_mock"}}"#,
                entries.join(","),
                knobs.usage(fragments).to_json()
            )
        }
        Api::Chat => format!(
            r#"{{"id":"chatcmpl-mock","object":"chat.completion","created":{CREATED},"model":{model},"choices":[{{"index":0,"message":{{"role":"assistant","content":{}}},"logprobs":null,"finish_reason":"stop"}}],"usage":{},"system_fingerprint":"fp_mock"}}"#,
            js(&text),
            knobs.usage(pieces.len()).to_json()
        ),
        Api::Legacy => format!(
            r#"{{"id":"cmpl-mock","object":"text_completion","created":{CREATED},"model":{model},"choices":[{{"text":{},"index":0,"logprobs":null,"finish_reason":"stop"}}],"usage":{}}}"#,
            js(&text),
            knobs.usage(pieces.len()).to_json()
        ),
    };
    json_response(StatusCode::OK, json)
}

/// One SSE `data:` event; `delayed` events wait `x-mock-delay-ms` before being sent.
struct SseEvent {
    data: String,
    delayed: bool,
}

impl SseEvent {
    fn now(data: String) -> SseEvent {
        SseEvent {
            data,
            delayed: false,
        }
    }
    fn delayed(data: String) -> SseEvent {
        SseEvent {
            data,
            delayed: true,
        }
    }
}

fn chat_chunk(model: &str, delta: &str, finish_reason: &str) -> String {
    format!(
        r#"{{"id":"chatcmpl-mock","object":"chat.completion.chunk","created":{CREATED},"model":{model},"choices":[{{"index":0,"delta":{delta},"finish_reason":{finish_reason}}}]}}"#
    )
}

/// Role delta, one delta per piece, finish chunk. Returns the events and the number of content chunks.
fn chat_text_events(model: &str, pieces: &[String]) -> (Vec<SseEvent>, usize) {
    let mut events = vec![SseEvent::now(chat_chunk(
        model,
        r#"{"role":"assistant","content":""}"#,
        "null",
    ))];
    for piece in pieces {
        events.push(SseEvent::delayed(chat_chunk(
            model,
            &format!(r#"{{"content":{}}}"#, js(piece)),
            "null",
        )));
    }
    events.push(SseEvent::now(chat_chunk(model, "{}", r#""stop""#)));
    (events, pieces.len())
}

fn fragments(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    chars
        .chunks(ARGUMENT_FRAGMENT_CHARS)
        .map(|c| c.iter().collect())
        .collect()
}

/// Parallel tool calls the way OpenAI streams them, but interleaved by `index` (OpenAI usually sends them
/// one after the other; interleaving checks that the gateway really assembles them by index).
/// Round 0 opens every call (id, name, empty arguments); later rounds send one argument fragment per call.
fn chat_tool_call_events(model: &str, calls: &[ToolCall]) -> (Vec<SseEvent>, usize) {
    let mut events = vec![SseEvent::now(chat_chunk(
        model,
        r#"{"role":"assistant","content":null}"#,
        "null",
    ))];
    let mut sent = 0;
    for (i, call) in calls.iter().enumerate() {
        let delta = format!(
            r#"{{"tool_calls":[{{"index":{i},"id":{},"type":"function","function":{{"name":{},"arguments":""}}}}]}}"#,
            js(&call.id),
            js(call.name)
        );
        events.push(SseEvent::delayed(chat_chunk(model, &delta, "null")));
    }
    let split: Vec<Vec<String>> = calls.iter().map(|c| fragments(&c.arguments)).collect();
    let rounds = split.iter().map(Vec::len).max().unwrap_or(0);
    for round in 0..rounds {
        for (i, frags) in split.iter().enumerate() {
            let Some(fragment) = frags.get(round) else {
                continue;
            };
            let delta = format!(
                r#"{{"tool_calls":[{{"index":{i},"function":{{"arguments":{}}}}}]}}"#,
                js(fragment)
            );
            events.push(SseEvent::delayed(chat_chunk(model, &delta, "null")));
            sent += 1;
        }
    }
    events.push(SseEvent::now(chat_chunk(model, "{}", r#""tool_calls""#)));
    (events, sent)
}

fn legacy_chunk(model: &str, text: &str, finish_reason: &str) -> String {
    format!(
        r#"{{"id":"cmpl-mock","object":"text_completion","created":{CREATED},"model":{model},"choices":[{{"text":{},"index":0,"logprobs":null,"finish_reason":{finish_reason}}}]}}"#,
        js(text)
    )
}

fn legacy_text_events(model: &str, pieces: &[String]) -> (Vec<SseEvent>, usize) {
    let mut events: Vec<SseEvent> = pieces
        .iter()
        .map(|p| SseEvent::delayed(legacy_chunk(model, p, "null")))
        .collect();
    events.push(SseEvent::now(legacy_chunk(model, "", r#""stop""#)));
    (events, pieces.len())
}

/// A response body fed by a channel, so each SSE event leaves as its own HTTP chunk when it is produced
/// (and delays between events are real delays on the wire, which is what streaming tests need).
/// Chunks, or an error that makes hyper drop the connection mid-body (`x-mock-reset-after`).
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|item| item.map(Frame::data)))
    }
}

/// Broken events mixed into a stream (`x-mock-malformed`): each must be skipped (or counted as
/// malformed) by the gateway without losing the good events around it.
fn with_malformed_events(events: Vec<SseEvent>) -> Vec<SseEvent> {
    let broken = [
        "this is not json".to_string(),
        r#"{"choices":[{"index":0,"delta":{"content":"unterminated"#.to_string(),
        "\u{0}\u{1}\u{7f} control bytes".to_string(),
        // Raw lines: a comment, a field without data, CR-only line endings, invalid UTF-8 and a
        // 64 KiB line are written by `sse_bytes` as they are (the `data` is the whole event).
        "\u{1}RAW: keep-alive comment\n\n".to_string(),
        "\u{1}RAWevent: ping\n\n".to_string(),
        "\u{1}RAWdata: {\"choices\":[]}\r\r".to_string(),
        "\u{1}RAWdata: \u{fffd}bad utf-8 follows: \u{2}\n\n".to_string(),
        "x".repeat(64 * 1024),
        r#"{"choices":"not an array","usage":{"prompt_tokens":"many"}}"#.to_string(),
        r#"{"choices":[{"index":-1,"delta":{"content":7}}]}"#.to_string(),
    ];
    let mut out = Vec::with_capacity(events.len() + broken.len());
    let mut broken = broken.into_iter();
    for event in events {
        out.push(event);
        if let Some(b) = broken.next() {
            out.push(SseEvent::now(b));
        }
    }
    out.extend(broken.map(SseEvent::now));
    out
}

/// The bytes of one event: `data: …\n\n`, or a raw event (marked by a leading `\u{1}RAW`) with
/// `\u{2}` standing for an invalid UTF-8 byte.
fn sse_bytes(data: &str) -> Bytes {
    match data.strip_prefix("\u{1}RAW") {
        Some(raw) => {
            let mut out = Vec::with_capacity(raw.len());
            for part in raw.split('\u{2}').enumerate() {
                if part.0 > 0 {
                    out.extend_from_slice(b"\xff\xfe");
                }
                out.extend_from_slice(part.1.as_bytes());
            }
            Bytes::from(out)
        }
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

fn sse_response(
    events: Vec<SseEvent>,
    delay: Duration,
    reset_after: Option<usize>,
) -> Response<Body> {
    // Capacity 1: the producer runs at most one event ahead of the socket (backpressure).
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        for (sent, event) in events.into_iter().enumerate() {
            if reset_after == Some(sent) {
                let reset =
                    std::io::Error::new(std::io::ErrorKind::ConnectionReset, "x-mock-reset-after");
                let _ = tx.send(Err(reset)).await;
                return;
            }
            if event.delayed && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(sse_bytes(&event.data))).await.is_err() {
                return; // client went away
            }
        }
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    let mut response = Response::new(ChannelBody(rx).boxed());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn embeddings(req: &RecordedRequest, knobs: &Knobs) -> Response<Body> {
    let body = match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return error_response(400, "the request body must be a JSON object"),
        Err(e) => {
            return error_response(
                400,
                &format!("We could not parse the JSON body of your request. ({e})"),
            )
        }
    };
    // An array of strings (or of token arrays) is several inputs; a flat array of numbers is one token list.
    let inputs = match body.get("input") {
        Some(Value::Array(items)) if items.first().is_some_and(Value::is_number) => 1,
        Some(Value::Array(items)) => items.len(),
        _ => 1,
    };
    let data: Vec<String> = (0..inputs)
        .map(|i| format!(r#"{{"object":"embedding","index":{i},"embedding":[0.1,0.2,0.3]}}"#))
        .collect();
    let model = js(body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("text-embedding-mock"));
    let prompt = knobs.prompt_tokens.unwrap_or(EMBEDDING_PROMPT_TOKENS);
    json_response(
        StatusCode::OK,
        format!(
            r#"{{"object":"list","data":[{}],"model":{model},"usage":{{"prompt_tokens":{prompt},"total_tokens":{prompt}}}}}"#,
            data.join(",")
        ),
    )
}

fn models() -> Response<Body> {
    let data: Vec<String> = MODELS
        .iter()
        .map(|id| {
            format!(
                r#"{{"id":{},"object":"model","created":{CREATED},"owned_by":"mock"}}"#,
                js(id)
            )
        })
        .collect();
    json_response(
        StatusCode::OK,
        format!(r#"{{"object":"list","data":[{}]}}"#, data.join(",")),
    )
}

/// What the upstream saw, as JSON; repeated headers are joined with ", ".
fn echo(req: &RecordedRequest) -> Response<Body> {
    let mut headers = serde_json::Map::new();
    for (name, value) in &req.headers {
        match headers.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(value);
            }
            _ => {
                headers.insert(name.clone(), Value::from(value.as_str()));
            }
        }
    }
    let body = std::str::from_utf8(&req.body).map_or(Value::Null, Value::from);
    let json = json!({
        "method": req.method,
        "path": req.path,
        "headers": headers,
        "body_len": req.body.len(),
        "body": body,
    });
    json_response(StatusCode::OK, json.to_string())
}

fn json_response(status: StatusCode, json: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(json))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"error":{"message","type","param","code"}}` with the type/code OpenAI uses for that status.
fn error_response(status: u16, message: &str) -> Response<Body> {
    // 1xx/unknown statuses cannot carry a final response; fall back to 500 rather than confuse hyper.
    let status = StatusCode::from_u16(status)
        .ok()
        .filter(|s| s.as_u16() >= 200)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (kind, code) = match status.as_u16() {
        401 => ("invalid_request_error", "invalid_api_key"),
        403 => ("invalid_request_error", "permission_denied"),
        404 => ("invalid_request_error", "unknown_url"),
        405 => ("invalid_request_error", "method_not_allowed"),
        429 => ("requests", "rate_limit_exceeded"),
        400..=499 => ("invalid_request_error", "invalid_request"),
        503 => ("server_error", "service_unavailable"),
        _ => ("server_error", "server_error"),
    };
    let json = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    json_response(status, json.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// The HTTP chunks, when the body was chunked.
        chunks: Vec<Vec<u8>>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "{method} {path} HTTP/1.1\r\nhost: mock\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn read_line(r: &mut BufReader<TcpStream>) -> String {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line.trim_end_matches(['\r', '\n']).to_owned()
    }

    /// Reads one response (content-length or chunked), leaving the connection usable for the next one.
    fn read_reply(r: &mut BufReader<TcpStream>) -> Reply {
        let status_line = read_line(r);
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let line = read_line(r);
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut reply = Reply {
            status,
            headers,
            body: Vec::new(),
            chunks: Vec::new(),
        };
        if reply.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&read_line(r), 16).unwrap();
                let mut chunk = vec![0; size];
                r.read_exact(&mut chunk).unwrap();
                assert_eq!(read_line(r), "");
                if size == 0 {
                    break;
                }
                reply.body.extend_from_slice(&chunk);
                reply.chunks.push(chunk);
            }
        } else {
            let len: usize = reply.header("content-length").unwrap().parse().unwrap();
            reply.body = vec![0; len];
            r.read_exact(&mut reply.body).unwrap();
        }
        reply
    }

    fn send(
        mock: &MockUpstream,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let stream = TcpStream::connect(mock.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        reader
            .get_mut()
            .write_all(&raw_request(method, path, headers, body))
            .unwrap();
        read_reply(&mut reader)
    }

    fn spawn() -> MockUpstream {
        MockUpstream::spawn("127.0.0.1:0".parse().unwrap()).unwrap()
    }

    #[test]
    fn chat_non_stream() {
        let mock = spawn();
        let body = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("x-request-id", "abc")],
            body,
        );
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(reply.header("x-mock"), Some("1"));
        assert_eq!(reply.header("x-request-id"), Some("abc"));
        assert_eq!(reply.header("openai-processing-ms"), Some("1"));
        let json = reply.json();
        assert_eq!(json["object"], "chat.completion");
        assert_eq!(json["model"], "gpt-4o-mini");
        assert_eq!(json["choices"][0]["message"]["content"], ANSWER);
        assert_eq!(json["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            json["usage"],
            json!({"prompt_tokens":10,"completion_tokens":4,"total_tokens":14})
        );

        let recorded = mock.requests();
        assert_eq!(mock.request_count(), 1);
        assert_eq!(recorded[0].method, "POST");
        assert_eq!(recorded[0].path, "/v1/chat/completions");
        assert_eq!(recorded[0].body, body);
        assert_eq!(recorded[0].header("X-Request-Id"), Some("abc"));
        assert_eq!(recorded[0].json().unwrap()["model"], "gpt-4o-mini");
        mock.clear();
        assert_eq!(mock.request_count(), 0);
    }

    #[test]
    fn chat_stream_with_usage() {
        let mock = spawn();
        let body = br#"{"model":"m1","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
        let headers = [
            ("x-mock-chunks", "3"),
            ("x-mock-delay-ms", "5"),
            ("x-mock-completion-tokens", "7"),
        ];
        let reply = send(&mock, "POST", "/prefix/v1/chat/completions", &headers, body);
        assert_eq!(reply.status, 200);
        assert!(reply
            .header("content-type")
            .unwrap()
            .starts_with("text/event-stream"));
        assert_eq!(reply.header("x-mock"), Some("1"));
        assert_eq!(reply.header("x-request-id"), Some("mock-1"));
        // role, 3 pieces, finish, usage, [DONE] — each its own HTTP chunk.
        let events: Vec<String> = reply
            .chunks
            .iter()
            .map(|c| String::from_utf8(c.clone()).unwrap())
            .collect();
        assert_eq!(events.len(), 7, "{events:?}");
        for event in &events {
            assert!(
                event.starts_with("data: ") && event.ends_with("\n\n"),
                "{event:?}"
            );
        }
        assert_eq!(events[6], "data: [DONE]\n\n");
        assert_eq!(
            events[1],
            "data: {\"id\":\"chatcmpl-mock\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\
             \"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok0 \"},\"finish_reason\":null}]}\n\n"
        );
        let parsed: Vec<Value> = events[..6]
            .iter()
            .map(|e| serde_json::from_str(&e["data: ".len()..]).unwrap())
            .collect();
        assert_eq!(parsed[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = parsed[1..4]
            .iter()
            .map(|p| p["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, "tok0 tok1 tok2 ");
        assert_eq!(parsed[4]["choices"][0]["finish_reason"], "stop");
        assert_eq!(parsed[5]["choices"], json!([]));
        assert_eq!(
            parsed[5]["usage"],
            json!({"prompt_tokens":10,"completion_tokens":7,"total_tokens":17})
        );
        assert_eq!(parsed[5]["model"], "m1");
    }

    #[test]
    fn stream_without_include_usage_has_no_usage_chunk() {
        let mock = spawn();
        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[],
            br#"{"model":"m","stream":true}"#,
        );
        let body = String::from_utf8(reply.body).unwrap();
        assert!(!body.contains("usage"), "{body}");
        assert!(body.ends_with("data: [DONE]\n\n"));
        assert_eq!(reply.chunks.len(), 1 + 4 + 1 + 1);
    }

    #[test]
    fn streamed_tool_calls_are_interleaved_and_reassemble() {
        let mock = spawn();
        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("x-mock-tool-calls", "2")],
            br#"{"model":"m","stream":true}"#,
        );
        let body = String::from_utf8(reply.body).unwrap();
        let mut args = [String::new(), String::new()];
        let mut order = Vec::new();
        let mut finish = None;
        for line in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(line).unwrap();
            if let Some(reason) = v["choices"][0]["finish_reason"].as_str() {
                finish = Some(reason.to_owned());
            }
            for call in v["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = call["index"].as_u64().unwrap() as usize;
                order.push(i);
                args[i].push_str(call["function"]["arguments"].as_str().unwrap());
            }
        }
        assert_eq!(finish.as_deref(), Some("tool_calls"));
        assert!(
            order.windows(2).any(|w| w[0] != w[1]),
            "calls are interleaved: {order:?}"
        );
        for (i, a) in args.iter().enumerate() {
            let parsed: Value = serde_json::from_str(a).unwrap();
            assert_eq!(parsed["location"], format!("City {i}"));
        }

        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("x-mock-tool-calls", "3")],
            b"{}",
        );
        let json = reply.json();
        assert_eq!(json["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            json["choices"][0]["message"]["tool_calls"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn legacy_completions_and_body_padding() {
        let mock = spawn();
        let reply = send(
            &mock,
            "POST",
            "/v1/completions",
            &[("x-mock-body-bytes", "5000")],
            b"{}",
        );
        let json = reply.json();
        assert_eq!(json["object"], "text_completion");
        let text = json["choices"][0]["text"].as_str().unwrap();
        assert_eq!(text.len(), 5000);
        assert!(text.starts_with(ANSWER));

        let reply = send(&mock, "POST", "/v1/completions", &[], br#"{"stream":true}"#);
        let body = String::from_utf8(reply.body).unwrap();
        assert!(body.contains(r#""text":" mock!""#), "{body}");
        assert!(body.ends_with("data: [DONE]\n\n"));
    }

    #[test]
    fn fail_first_then_succeed() {
        let mock = spawn();
        mock.fail_first("retry-me", 2);
        let body = br#"{"model":"m"}"#;
        for _ in 0..2 {
            let reply = send(
                &mock,
                "POST",
                "/v1/chat/completions",
                &[("x-request-id", "retry-me")],
                body,
            );
            assert_eq!(reply.status, 503);
            assert_eq!(reply.header("x-request-id"), Some("retry-me"));
            assert_eq!(reply.json()["error"]["type"], "server_error");
        }
        // Other ids are unaffected; the alternative header works too.
        mock.fail_first("other", 1);
        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("x-mock-request-id", "other")],
            body,
        );
        assert_eq!(reply.status, 503);
        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("x-request-id", "retry-me")],
            body,
        );
        assert_eq!(reply.status, 200);
        assert_eq!(mock.request_count(), 4, "failed attempts are recorded too");
    }

    #[test]
    fn fail_key_and_status_knob() {
        let mock = spawn();
        mock.fail_key("Bearer sk-a", 429, 1);
        let body = b"{}";
        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-a")],
            body,
        );
        assert_eq!(reply.status, 429);
        assert_eq!(reply.json()["error"]["code"], "rate_limit_exceeded");
        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("authorization", "Bearer sk-a")],
            body,
        );
        assert_eq!(reply.status, 200);

        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("x-mock-status", "500")],
            body,
        );
        assert_eq!(reply.status, 500);
        assert!(reply.json()["error"]["message"].is_string());
        let reply = send(
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("x-mock-status", "nope")],
            body,
        );
        assert_eq!(reply.status, 400);
    }

    #[test]
    fn echo_reports_what_it_received() {
        let mock = spawn();
        let body =
            b"--b\r\ncontent-disposition: form-data; name=\"f\"\r\n\r\n\xff\x00bin\r\n--b--\r\n";
        let reply = send(
            &mock,
            "PUT",
            "/v1/echo/x/y?a=1&b=2",
            &[("x-custom", "v1"), ("x-custom", "v2")],
            body,
        );
        assert_eq!(reply.status, 200);
        let json = reply.json();
        assert_eq!(json["method"], "PUT");
        assert_eq!(json["path"], "/v1/echo/x/y?a=1&b=2");
        assert_eq!(json["headers"]["x-custom"], "v1, v2");
        assert_eq!(json["body_len"], body.len());
        assert_eq!(json["body"], Value::Null, "not UTF-8");
        assert_eq!(mock.requests()[0].body, body);

        let reply = send(&mock, "GET", "/echo", &[], b"");
        assert_eq!(reply.json()["body"], "");
    }

    #[test]
    fn embeddings_models_errors() {
        let mock = spawn();
        let reply = send(
            &mock,
            "POST",
            "/v1/embeddings",
            &[],
            br#"{"model":"e","input":["a","b","c"]}"#,
        );
        let json = reply.json();
        assert_eq!(json["data"].as_array().unwrap().len(), 3);
        assert_eq!(json["data"][2]["index"], 2);
        assert_eq!(json["usage"]["total_tokens"], 2);

        let reply = send(&mock, "GET", "/v1/models", &[], b"");
        assert!(reply.json()["data"].as_array().unwrap().len() >= 3);

        let reply = send(&mock, "POST", "/v1/chat/completions", &[], b"{not json");
        assert_eq!(reply.status, 400);
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");

        let reply = send(&mock, "GET", "/v1/nothing", &[], b"");
        assert_eq!(reply.status, 404);
        assert!(reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/nothing"));
    }

    #[test]
    fn keep_alive_and_shutdown() {
        let mock = spawn();
        let addr = mock.addr();
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream);
        for _ in 0..3 {
            reader
                .get_mut()
                .write_all(&raw_request("GET", "/v1/models", &[], b""))
                .unwrap();
            assert_eq!(read_reply(&mut reader).status, 200);
        }
        assert_eq!(mock.request_count(), 3);
        assert!(mock.base_url().starts_with("http://127.0.0.1:"));
        drop(mock);
        assert!(
            TcpStream::connect(addr).is_err(),
            "dropping the mock closes the listener"
        );
    }

    #[test]
    fn slow_sleeps() {
        let mock = spawn();
        let started = std::time::Instant::now();
        let reply = send(&mock, "GET", "/slow", &[("x-mock-sleep-ms", "50")], b"");
        assert_eq!(reply.status, 200);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn start_inside_a_runtime() {
        let mock = MockUpstream::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = mock.addr();
        let reply = tokio::task::spawn_blocking(move || {
            let stream = TcpStream::connect(addr).unwrap();
            let mut reader = BufReader::new(stream);
            reader
                .get_mut()
                .write_all(&raw_request("POST", "/v1/chat/completions", &[], b"{}"))
                .unwrap();
            read_reply(&mut reader)
        })
        .await
        .unwrap();
        assert_eq!(reply.json()["choices"][0]["message"]["content"], ANSWER);
        assert_eq!(mock.request_count(), 1);
    }
}
