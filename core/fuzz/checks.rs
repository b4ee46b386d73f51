//! The invariants the fuzz targets check, one function per target. Shared by the cargo-fuzz targets
//! (`core/fuzz/fuzz_targets/*.rs`, nightly) and by `core/tests/fuzz_regressions.rs`, which replays
//! every file of `core/fuzz/regressions/<target>/` through the same function in a plain
//! `cargo test`. Each function takes the raw fuzz input and panics (assert) when an invariant
//! breaks; a panic inside the library is a finding too (the filter must never panic).
//!
//! Inputs are raw bytes: a few leading bytes steer parameters (buffer sizes, chunk boundaries,
//! API kinds), the rest is the text under test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_core::access::{self, KeyLocation};
use llm_forward_core::answer::{
    self, Answer, ApiKind, Choice, StreamExtractor, ToolCall, Usage, MAX_ENTRIES,
};
use llm_forward_core::cache::{self, Directive, Entry, Keying};
use llm_forward_core::cache_key::{self, CacheScope, CachingField};
use llm_forward_core::config::{Config, FilterConfig};
use llm_forward_core::limits::config::{
    global_id, pacing_interval_ms, parse_openai_forward_limits, rule_id, select, LimitKind,
};
use llm_forward_core::limits::grammar::{parse_limit, LimitSpec, Rate};
use llm_forward_core::limits::stream::{
    asked_for_usage, inject_include_usage, rewrite_injected_usage, EventSplitter, UsageRewrite,
};
use llm_forward_core::limits::window::{self, Strategy, WindowState};
use llm_forward_core::sse::{SseEvent, SseParser};
use serde_json::Value;

/// Reads steering values off the front of the input; past its end everything reads as 0.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }
    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) << 8 | u16::from(self.u8())
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, _| acc << 8 | u64::from(self.u8()))
    }
    /// The next `n` bytes (fewer at the end).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
    /// A string of up to `max` bytes, its length read first.
    fn string(&mut self, max: usize) -> String {
        let n = usize::from(self.u8()) % (max + 1);
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
    fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }
}

/// Chunk boundaries derived from `seed`: sizes 0..=32 (empty chunks included, as Envoy may call
/// with no new bytes), covering all of `len`.
fn chunk_sizes(seed: u64, len: usize) -> Vec<usize> {
    let mut x = seed | 1;
    let mut sizes = Vec::new();
    let mut covered = 0;
    while covered < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let size = (x % 33) as usize;
        sizes.push(size);
        covered += size;
    }
    sizes
}

fn chunks<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    for &size in sizes {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[derive(Debug, PartialEq)]
struct Parsed {
    events: Vec<SseEvent>,
    truncated: bool,
    discarded: bool,
    retry: Option<u64>,
}

fn parse_sse(pieces: &[&[u8]], max_buffer: usize) -> Parsed {
    let mut parser = SseParser::new(max_buffer);
    let mut events = Vec::new();
    for piece in pieces {
        parser.feed(piece, &mut events);
        assert!(
            parser.buffered_bytes() <= max_buffer,
            "buffered {} > max {max_buffer}",
            parser.buffered_bytes()
        );
    }
    let retry = parser.retry();
    let discarded = parser.finish();
    Parsed {
        events,
        truncated: parser.truncated(),
        discarded,
        retry,
    }
}

fn text_bytes(a: &Answer) -> usize {
    a.choices
        .iter()
        .map(|c| {
            c.content.len()
                + c.reasoning_content.len()
                + c.tool_calls
                    .iter()
                    .map(|t| {
                        t.id.as_ref().map_or(0, String::len)
                            + t.kind.as_ref().map_or(0, String::len)
                            + t.name.len()
                            + t.arguments.len()
                    })
                    .sum::<usize>()
        })
        .sum()
}

fn check_answer_shape(a: &Answer, max_text: usize) {
    assert!(text_bytes(a) <= max_text, "answer text above its budget");
    let entries: usize =
        a.choices.len() + a.choices.iter().map(|c| c.tool_calls.len()).sum::<usize>();
    assert!(entries <= MAX_ENTRIES, "{entries} entries");
    assert!(
        a.choices.windows(2).all(|w| w[0].index < w[1].index),
        "choices not sorted/unique"
    );
    for c in &a.choices {
        assert!(
            c.tool_calls.windows(2).all(|w| w[0].index < w[1].index),
            "tool calls not sorted/unique"
        );
        assert_ne!(c.finish_reason.as_deref(), Some(""));
    }
}

/// SSE parser + answer extractor + the limits' event splitter and usage rewrite.
///
/// - the same bytes give the same events, flags and answer whatever the chunking (one chunk,
///   random chunks, byte by byte);
/// - the parser never holds more than `max_buffer` bytes;
/// - the answer stays within its text budget and `MAX_ENTRIES`, sorted by index;
/// - the splitter loses and changes no byte; with no pending limit its events do not depend on
///   the chunking either;
/// - a usage rewrite removes exactly the top-level `usage: null` and nothing else.
pub fn sse(data: &[u8]) {
    let mut u = Input::new(data);
    let max_buffer = match u.u8() % 4 {
        0 => 1 + usize::from(u.u8()),
        1 => 64 + usize::from(u.u16()) % 4096,
        _ => 1 << 20,
    };
    let max_text = match u.u8() % 3 {
        0 => usize::from(u.u8()),
        1 => usize::from(u.u16()),
        _ => usize::MAX,
    };
    let seed = u.u64();
    let stream = u.rest();

    let whole = parse_sse(&[stream], max_buffer);
    let random = parse_sse(
        &chunks(stream, &chunk_sizes(seed, stream.len())),
        max_buffer,
    );
    assert_eq!(whole, random, "random chunking changed the parse");
    if stream.len() <= 2048 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            whole,
            parse_sse(&bytes, max_buffer),
            "byte-by-byte changed the parse"
        );
    }

    let mut ex = StreamExtractor::new(max_text);
    for ev in &whole.events {
        ex.on_event(ev);
    }
    let malformed = ex.malformed();
    let answer = ex.into_answer();
    assert_eq!(answer.events, whole.events.len() as u64);
    assert!(malformed <= answer.events);
    check_answer_shape(&answer, max_text);

    // The limits module's byte-level splitter.
    for max_pending in [usize::MAX, max_buffer] {
        let run = |pieces: &[&[u8]]| {
            let mut splitter = EventSplitter::new(max_pending);
            let mut out = Vec::new();
            for p in pieces {
                out.extend(splitter.feed(p));
            }
            out.extend(splitter.finish());
            out
        };
        let a = run(&[stream]);
        let b = run(&chunks(stream, &chunk_sizes(seed, stream.len())));
        assert_eq!(a.concat(), stream, "splitter changed the bytes");
        assert_eq!(b.concat(), stream, "splitter changed the bytes (chunked)");
        assert!(a.iter().chain(&b).all(|e| !e.is_empty()), "empty event");
        if max_pending == usize::MAX {
            assert_eq!(a, b, "splitter events depend on chunking");
        }
        for event in &a {
            check_usage_rewrite(event);
        }
    }
}

fn check_usage_rewrite(event: &[u8]) {
    let rewrite = rewrite_injected_usage(event);
    let UsageRewrite::Replace(new) = rewrite else {
        return;
    };
    assert_ne!(new.as_slice(), event);
    let data = |bytes: &[u8]| -> Value {
        let mut p = SseParser::new(usize::MAX);
        let mut evs = Vec::new();
        p.feed(bytes, &mut evs);
        p.feed(b"\n\n", &mut evs);
        assert_eq!(
            evs.len(),
            1,
            "rewrite changed the event count: {:?}",
            String::from_utf8_lossy(bytes)
        );
        serde_json::from_str(evs[0].data.trim()).expect("rewritten data is JSON")
    };
    let mut before = data(event);
    let after = data(&new);
    let removed = before.as_object_mut().and_then(|o| o.remove("usage"));
    assert_eq!(removed, Some(Value::Null));
    assert_eq!(before, after, "rewrite changed more than `usage: null`");
}

/// A choice list from the input: indexes strictly increasing, texts from the input.
fn gen_answer(u: &mut Input<'_>) -> Answer {
    let n_choices = usize::from(u.u8() % 4);
    let mut index = 0u32;
    let mut choices = Vec::new();
    for _ in 0..n_choices {
        index = index.saturating_add(u32::from(u.u8() % 3));
        let mut tool_calls = Vec::new();
        let mut t_index = 0u32;
        for _ in 0..u.u8() % 3 {
            t_index = t_index.saturating_add(u32::from(u.u8() % 3));
            let nonempty = |s: String| (!s.is_empty()).then_some(s);
            tool_calls.push(ToolCall {
                index: t_index,
                id: nonempty(u.string(12)),
                kind: nonempty(u.string(8)),
                name: u.string(12),
                arguments: u.string(40),
            });
            t_index = t_index.saturating_add(1);
        }
        let finish = u.string(10);
        choices.push(Choice {
            index,
            content: u.string(60),
            reasoning_content: u.string(30),
            tool_calls,
            finish_reason: (!finish.is_empty()).then_some(finish),
        });
        index = index.saturating_add(1);
    }
    let usage = (u.u8() % 2 == 1).then(|| Usage {
        prompt_tokens: u.u64() >> 12,
        completion_tokens: u.u64() >> 12,
        total_tokens: u.u64() >> 12,
        cached_tokens: (u.u8() % 2 == 1).then(|| u.u64() >> 12),
    });
    Answer {
        choices,
        usage,
        ..Answer::default()
    }
}

/// What an answer reads as after a rebuild (chat JSON or chat SSE) and a re-read: defaults filled.
fn rebuilt_chat(answer: &Answer, id: &str) -> Vec<Choice> {
    let mut choices = if answer.choices.is_empty() {
        vec![Choice::default()]
    } else {
        answer.choices.clone()
    };
    for c in &mut choices {
        let base = id.strip_prefix("chatcmpl-").unwrap_or(id).to_string();
        let index = c.index;
        for t in &mut c.tool_calls {
            t.id.get_or_insert_with(|| format!("call_{base}_{index}_{}", t.index));
            t.kind.get_or_insert_with(|| "function".into());
        }
        if c.finish_reason.is_none() {
            c.finish_reason = Some(
                if c.tool_calls.is_empty() {
                    "stop"
                } else {
                    "tool_calls"
                }
                .into(),
            );
        }
    }
    choices
}

fn rebuilt_completion(answer: &Answer) -> Vec<Choice> {
    rebuilt_chat(answer, "x")
        .into_iter()
        .map(|c| Choice {
            index: c.index,
            content: c.content,
            finish_reason: c.finish_reason,
            ..Choice::default()
        })
        .collect()
}

fn read_sse(body: &[u8]) -> Answer {
    let mut p = SseParser::new(usize::MAX);
    let mut evs = Vec::new();
    p.feed(body, &mut evs);
    assert!(!p.finish(), "rebuilt stream ends mid-event");
    let mut ex = StreamExtractor::new(usize::MAX);
    for e in &evs {
        ex.on_event(e);
    }
    assert_eq!(ex.malformed(), 0, "rebuilt stream has malformed events");
    let a = ex.into_answer();
    assert!(a.done, "rebuilt stream has no [DONE]");
    a
}

/// Answer reading and the replay conversions used for cache hits:
/// - `from_json_body` on arbitrary bytes never panics and gives a well-shaped answer;
/// - rebuilding an answer (chat/completion, JSON/SSE, with and without usage) and reading the
///   result back gives the same choices (defaults filled) and usage.
pub fn answer(data: &[u8]) {
    let mut u = Input::new(data);
    let mode = u.u8();
    let answer = if mode & 1 == 0 {
        let kind =
            [ApiKind::Chat, ApiKind::Completion, ApiKind::Embedding][usize::from(mode / 2 % 3)];
        let Some(a) = answer::from_json_body(kind, u.rest()) else {
            return;
        };
        check_answer_shape(&a, usize::MAX);
        if kind == ApiKind::Embedding {
            assert!(a.choices.is_empty());
            return;
        }
        a
    } else {
        gen_answer(&mut u)
    };
    let id = "chatcmpl-fuzz";
    let created = 1_700_000_000;

    let json = answer::to_chat_completion_json(&answer, "m", id, created).to_string();
    let back =
        answer::from_json_body(ApiKind::Chat, json.as_bytes()).expect("rebuilt chat JSON reads");
    // A non-stream message's tool calls carry no `index` (OpenAI's shape): their position is it.
    let mut expected = rebuilt_chat(&answer, id);
    for c in &mut expected {
        for (position, t) in c.tool_calls.iter_mut().enumerate() {
            t.index = position as u32;
        }
    }
    assert_eq!(back.choices, expected, "chat JSON round trip");
    assert_eq!(back.usage, answer.usage, "chat JSON usage");

    let json = answer::to_completion_json(&answer, "m", id, created).to_string();
    let back = answer::from_json_body(ApiKind::Completion, json.as_bytes())
        .expect("rebuilt completion JSON reads");
    assert_eq!(
        back.choices,
        rebuilt_completion(&answer),
        "completion JSON round trip"
    );

    for include_usage in [false, true] {
        let usage = if include_usage {
            Some(answer.usage.clone().unwrap_or_default())
        } else {
            None
        };
        let back = read_sse(&answer::to_chat_sse(
            &answer,
            "m",
            id,
            created,
            include_usage,
        ));
        assert_eq!(
            back.choices,
            rebuilt_chat(&answer, id),
            "chat SSE round trip"
        );
        assert_eq!(back.usage, usage, "chat SSE usage");
        let back = read_sse(&answer::to_completion_sse(
            &answer,
            "m",
            id,
            created,
            include_usage,
        ));
        assert_eq!(
            back.choices,
            rebuilt_completion(&answer),
            "completion SSE round trip"
        );
        assert_eq!(back.usage, usage, "completion SSE usage");
    }
}

/// The limit grammar, OpenAI-Forward's limit strings, rule ids and the window arithmetic:
/// - a parsed spec prints to a string that parses back to the same spec (and prints the same);
/// - windows never panic on any state read from shared data (garbage included) or clock, and
///   the states they produce decode back to themselves.
pub fn limits(data: &[u8]) {
    let mut u = Input::new(data);
    let mode = u.u8();
    let now_ms = u.u64();
    let state_bytes = u.take(WindowState::ENCODED_LEN);
    let cost = u64::from(u.u16());
    let text = String::from_utf8_lossy(u.rest()).into_owned();

    if mode % 4 == 3 {
        // OpenAI-Forward's env form: `{"/v1/chat": [{"level": 1, "limit": "60/minute"}]}` or a
        // single limit string.
        let _ = parse_openai_forward_limits("FUZZ", &text);
        return;
    }
    let Ok(spec) = parse_limit(&text) else {
        let _ = serde_json::from_str::<LimitSpec>(&text);
        return;
    };
    let printed = spec.to_string();
    let again = parse_limit(&printed)
        .unwrap_or_else(|e| panic!("`{printed}` (from `{text}`) no longer parses: {e}"));
    assert_eq!(again, spec, "`{text}` → `{printed}` parsed differently");
    assert_eq!(again.to_string(), printed);
    let json = serde_json::to_string(&spec).unwrap();
    assert_eq!(serde_json::from_str::<LimitSpec>(&json).unwrap(), spec);
    if let LimitSpec::Rates(rates) = &spec {
        assert!(!rates.is_empty());
    }
    let _ = global_id(&spec);
    let _ = pacing_interval_ms(&spec);

    let strategy = if mode & 1 == 0 {
        Strategy::FixedWindow
    } else {
        Strategy::SlidingWindow
    };
    let state = WindowState::decode(state_bytes);
    if let Some(s) = state {
        assert_eq!(WindowState::decode(&s.encode()), Some(s));
    }
    for rate in spec.rates() {
        let _ = rate.to_string();
        let _ = rate.interval_ms();
        check_window(strategy, rate, state, now_ms, cost);
    }
}

fn check_window(
    strategy: Strategy,
    rate: &Rate,
    state: Option<WindowState>,
    now_ms: u64,
    cost: u64,
) {
    let roundtrip = |s: WindowState| {
        assert_eq!(
            WindowState::decode(&s.encode()),
            Some(s),
            "state {s:?} does not decode"
        );
    };
    let d = window::try_acquire(strategy, rate, state, now_ms, cost);
    roundtrip(d.new_state);
    assert_eq!(d.limit, rate.amount);
    if d.allowed {
        assert!(cost <= rate.amount, "admitted a cost above the amount");
        assert!(d.remaining <= rate.amount);
        // The admitted cost is counted.
        let again = window::try_acquire(strategy, rate, Some(d.new_state), now_ms, 0);
        assert!(
            again.remaining <= d.remaining.saturating_add(0),
            "remaining grew after an admission"
        );
        roundtrip(window::refund(
            rate,
            Some(d.new_state),
            now_ms,
            d.new_state.window_start_ms,
            cost,
        ));
    }
    let c = window::check(strategy, rate, state, now_ms);
    roundtrip(c.new_state);
    roundtrip(window::charge(strategy, rate, state, now_ms, cost));
    let _ = window::combine(&[d, c]);
}

/// Config parsing:
/// - `Config::from_json` + `validate` never panic;
/// - a config that validates gives a `FilterConfig` that survives the JSON trip to the filter
///   (`FilterConfig::from_json` accepts it and reads the same value) and that the filter compiles
///   (`Access::compile`, rule ids, cache classification): a config the gateway accepts must never
///   be refused (or crash) inside Envoy;
/// - `FilterConfig::from_json` on arbitrary bytes never panics, nor what the filter does with it.
pub fn config(data: &[u8]) {
    let mut u = Input::new(data);
    let mode = u.u8();
    let text = u.rest();
    let secret = |_: &str| Some("sk-fuzz-secret".to_string());
    if mode & 1 == 0 {
        let Ok(config) = Config::from_json(text) else {
            return;
        };
        let Ok(valid) = config.validate() else {
            return;
        };
        let filter = FilterConfig::from_valid(&valid);
        let json = serde_json::to_vec(&filter).unwrap();
        let back = FilterConfig::from_json(&json).unwrap_or_else(|e| {
            panic!(
                "validated config refused by the filter: {e}\n{}",
                String::from_utf8_lossy(&json)
            )
        });
        assert_eq!(back, filter, "FilterConfig JSON round trip");
        let compiled = access::Access::compile(&back.access, back.routes.len(), &secret);
        if let Err(e) = &compiled {
            panic!("validated config does not compile in the filter: {e}");
        }
        exercise_filter_config(&back);
    } else if let Ok(filter) = FilterConfig::from_json(text) {
        let _ = access::Access::compile(&filter.access, filter.routes.len(), &secret);
        exercise_filter_config(&filter);
    }
}

fn exercise_filter_config(filter: &FilterConfig) {
    for r in &filter.limits.requests {
        let _ = rule_id(LimitKind::Requests, r);
    }
    for r in &filter.limits.tokens {
        let _ = rule_id(LimitKind::Tokens, r);
    }
    let _ = global_id(&filter.limits.global);
    for path in ["/", "/v1/chat/completions?x=1", "", "//a"] {
        let _ = select(&filter.limits.requests, path, 0);
        let _ = select(&filter.limits.pacing, path, 1);
        if let Some(c) = &filter.cache {
            for r in &filter.routes {
                let _ = c.classify(r.kind, path, "POST");
            }
        }
    }
}

/// Request-body handling, as the filter does it on every JSON request:
/// - `parse_body` never panics and agrees with the JSON it returns (`model`, `stream`);
/// - `take_caching_flag` removes the field and reports what it held;
/// - cache keys are deterministic, ignore object key order and `null` fields' absence, and change
///   with the scope; `canonical_json` is idempotent;
/// - `inject_include_usage` makes `asked_for_usage` true on streaming bodies, is idempotent, and
///   touches nothing else;
/// - query-parameter keys survive `replace_query_param` → `query_param`.
pub fn request_body(data: &[u8]) {
    let mut u = Input::new(data);
    let mode = u.u8();
    if mode % 4 == 3 {
        let name = u.string(8);
        let value = u.string(24);
        let path = String::from_utf8_lossy(u.rest()).into_owned();
        let _ = access::query_param(&path, &name);
        let _ = KeyLocation::parse(&name);
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        let replaced = access::replace_query_param(&path, &name, Some(&value));
        if valid_name && !path.contains('#') {
            assert_eq!(
                access::query_param(&replaced, &name),
                Some(value.clone()),
                "{path:?} → {replaced:?}"
            );
        }
        let removed = access::replace_query_param(&path, &name, None);
        if valid_name && !path.contains('#') {
            assert_eq!(
                access::query_param(&removed, &name),
                None,
                "{path:?} → {removed:?}"
            );
        }
        let headers = vec![
            ("authorization".to_string(), path.clone()),
            ("x-api-key".to_string(), value),
        ];
        for loc in [
            KeyLocation::Bearer,
            KeyLocation::Header("x-api-key".into()),
            KeyLocation::Query(name),
        ] {
            let _ = loc.extract(&headers, &path);
        }
        let _ = Directive::parse(Some(&path));
        return;
    }
    let bytes = u.rest();
    let Ok(body) = access::parse_body(bytes) else {
        return;
    };
    let obj = body.json.as_object().expect("parse_body returns objects");
    assert_eq!(
        body.model.as_deref(),
        obj.get("model").and_then(Value::as_str)
    );
    assert_eq!(
        body.stream,
        obj.get("stream").and_then(Value::as_bool) == Some(true)
    );

    let mut json = body.json.clone();
    let held = obj.get("caching").cloned();
    let field = cache_key::take_caching_flag(&mut json);
    assert!(json.get("caching").is_none());
    match (held, field) {
        (None, CachingField::Absent) => assert_eq!(json, body.json),
        (Some(Value::Bool(b)), CachingField::Flag(f)) => assert_eq!(b, f),
        (Some(v), CachingField::Invalid) => assert!(!v.is_boolean()),
        (held, field) => panic!("caching {held:?} read as {field:?}"),
    }
    assert_eq!(
        cache_key::take_caching_flag(&mut json),
        CachingField::Absent
    );

    // Keys: same request, keys in another order → same key; another scope → another key.
    let reversed = reverse_keys(&json);
    let canonical = cache_key::canonical_json(&json);
    assert_eq!(canonical, cache_key::canonical_json(&reversed));
    let reparsed: Value = serde_json::from_str(&canonical)
        .unwrap_or_else(|e| panic!("canonical JSON does not parse ({e}): {canonical}"));
    // Floats may move by one ULP through serde_json's fast float parser (no float_roundtrip);
    // the key is computed once from the client's bytes, so only the rest must be stable.
    if !has_float(&json) {
        assert_eq!(
            cache_key::canonical_json(&reparsed),
            canonical,
            "canonical JSON not stable"
        );
    }
    let scope = CacheScope::Level(u32::from(mode));
    for api in [ApiKind::Chat, ApiKind::Completion, ApiKind::Embedding] {
        let k1 = cache::json_key(api, &scope, "/", &json);
        let k2 = cache::json_key(api, &scope, "/", &reversed);
        assert_eq!(k1, k2, "key depends on field order");
        if let Some(k) = &k1 {
            assert!(cache::valid_key(k), "invalid cache key {k}");
            let other = cache::json_key(api, &CacheScope::Key("k".into()), "/", &json);
            assert_ne!(other.as_ref(), Some(k), "scope not in the key");
        }
    }
    let general = cache_key::general_cache_key(&scope, "/", "POST", "/x", bytes);
    assert!(cache::valid_key(&general));
    let (stream, _usage) = cache::stream_mode(&json);
    assert_eq!(stream, body.stream);

    // stream_options injection (token quotas on streams).
    let mut injected = json.clone();
    let changed = inject_include_usage(&mut injected);
    if body.stream {
        assert!(
            asked_for_usage(&injected),
            "injection did not ask for usage"
        );
        assert_eq!(changed, !asked_for_usage(&json));
        let mut twice = injected.clone();
        assert!(
            !inject_include_usage(&mut twice),
            "injection not idempotent"
        );
        assert_eq!(twice, injected);
        // Nothing but stream_options changed.
        let mut a = injected.as_object().unwrap().clone();
        let mut b = json.as_object().unwrap().clone();
        let opts = a.remove("stream_options");
        b.remove("stream_options");
        assert_eq!(a, b);
        if let (Some(Value::Object(new)), Some(Value::Object(old))) =
            (opts, json.get("stream_options"))
        {
            for (k, v) in old {
                if k != "include_usage" {
                    assert_eq!(new.get(k), Some(v), "stream_options.{k} lost");
                }
            }
        }
    } else {
        assert!(!changed);
        assert_eq!(injected, json);
    }
    let _ = cache::plan(
        Directive::parse(None),
        field,
        mode & 1 == 0,
        Keying::Json(ApiKind::Chat),
    );
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

fn reverse_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.iter().rev() {
                out.insert(k.clone(), reverse_keys(v));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(reverse_keys).collect()),
        other => other.clone(),
    }
}

/// What the filter does with a cache service's answer: `Entry::decode` + `replay` on arbitrary
/// bytes (a broken or hostile cache service) never panic, and only replay a 2xx status (the
/// filter sends it as a local reply); entries the filter itself would store decode to
/// themselves and replay in both modes.
pub fn cache_entry(data: &[u8]) {
    let mut u = Input::new(data);
    let mode = u.u8();
    let want_stream = mode & 1 == 1;
    let include_usage = mode & 2 == 2;
    if mode & 4 == 0 {
        let bytes = u.rest();
        if let Some(entry) = Entry::decode(bytes) {
            assert_eq!(Entry::decode(&entry.encode()).as_ref(), Some(&entry));
            if let Some(r) = cache::replay(&entry, want_stream, include_usage, Some("m")) {
                assert!(
                    (200..300).contains(&r.status),
                    "replayed status {}",
                    r.status
                );
                // The content type becomes a response header: never a smuggled line or control byte.
                assert!(
                    cache::is_plain_media_type(&r.content_type),
                    "replayed content type {:?}",
                    r.content_type
                );
            }
        }
        return;
    }
    let keying = match mode >> 3 & 3 {
        0 => Keying::Json(ApiKind::Chat),
        1 => Keying::Json(ApiKind::Completion),
        2 => Keying::Json(ApiKind::Embedding),
        _ => Keying::Raw,
    };
    let sse = mode & 0x20 != 0;
    let status = 200 + u32::from(u.u8() % 8);
    let body = u.rest().to_vec();
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    let Some(entry) = Entry::from_response(keying, status, Some(content_type), body, 1_700_000_000)
    else {
        return;
    };
    let decoded = Entry::decode(&entry.encode()).expect("stored entry decodes");
    assert_eq!(decoded, entry);
    for (stream, usage) in [(false, false), (true, false), (true, true)] {
        let replay = cache::replay(&entry, stream, usage, Some("m"));
        if keying != Keying::Json(ApiKind::Embedding) || !stream {
            let r = replay.expect("a stored entry replays");
            assert_eq!(r.status, status);
        }
    }
}

/// `model_of`: where a request's model is (path, query, JSON, multipart, url-encoded form). The
/// model permission of restricted levels trusts this answer, so besides never panicking:
/// - a model read from a JSON body is what a full JSON parse reads (no parser differential);
/// - a model read from a multipart body occurs in it, and a body built from parts with exactly one
///   plain `model` field reads back that field;
/// - a model named by a path is a non-empty single segment.
pub fn model_of(data: &[u8]) {
    use llm_forward_core::access::model_of::{self, ModelSource};
    let mut u = Input::new(data);
    match u.u8() % 5 {
        0 => {
            let boundary = u.string(12);
            let body = u.rest();
            let ct = format!("multipart/form-data; boundary={boundary}");
            if let Ok(m) = model_of::body_model(Some(&ct), body) {
                assert!(!m.is_empty());
                let found = body.windows(m.len()).any(|w| w == m.as_bytes());
                assert!(found, "{m:?} is not in the body");
            }
        }
        1 => {
            // Structured: up to 4 parts, names from a small set, values without the boundary.
            let boundary = "fuzzBoundary7";
            let mut body = Vec::new();
            let mut models = Vec::new();
            for _ in 0..(u.u8() % 5) {
                let name =
                    ["model", "file", "prompt", "Model", "language"][usize::from(u.u8() % 5)];
                let value = u.string(16).replace(boundary, "").replace(['\r', '\n'], "");
                body.extend_from_slice(
                    format!(
                        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                    )
                    .as_bytes(),
                );
                models.push((name, value));
            }
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            let ct = format!("multipart/form-data; boundary={boundary}");
            let got = model_of::body_model(Some(&ct), &body);
            let exact: Vec<&String> = models
                .iter()
                .filter(|(n, _)| *n == "model")
                .map(|(_, v)| v)
                .collect();
            let odd_case = models.iter().any(|(n, _)| *n == "Model");
            match (exact.as_slice(), odd_case) {
                ([one], false) if !one.trim().is_empty() => {
                    assert_eq!(got.as_deref(), Ok(one.trim()), "{body:?}")
                }
                ([], false) => assert!(got.is_err(), "no model field: {got:?}"),
                _ => assert!(got.is_err(), "ambiguous: {got:?}"),
            }
        }
        2 => {
            let body = u.rest();
            if let Ok(m) = model_of::json_model(body) {
                let full: Value = serde_json::from_slice(body).expect("json_model accepted it");
                assert_eq!(full.get("model").and_then(Value::as_str), Some(m.as_str()));
            }
        }
        3 => {
            let body = u.rest();
            if let Ok(m) = model_of::form_model(body) {
                assert!(!m.is_empty() && m == m.trim());
            }
        }
        _ => {
            let method = ["POST", "GET", "PUT"][usize::from(u.u8() % 3)];
            let openai = u.u8().is_multiple_of(2);
            let path = String::from_utf8_lossy(u.rest()).into_owned();
            let (path, query) = match path.split_once('?') {
                Some((p, q)) => (p.to_string(), Some(q.to_string())),
                None => (path, None),
            };
            if let Some(ModelSource::Named(m)) =
                model_of::model_source(openai, method, &path, query.as_deref())
            {
                assert!(!m.trim().is_empty(), "{path:?}");
                if query.is_none() {
                    assert!(!m.contains('/'), "{path:?} → {m:?}");
                }
            }
        }
    }
}
